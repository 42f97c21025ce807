//! The scaffolding every training run shares: what the user sees while it runs, per-epoch seeds,
//! where its files go, and the check that an exported file computes what the trained model does.

use std::path::{Path, PathBuf};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};

/// What the user sees while training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// The seed lecture's own lines (`Epoch: 0100 cost = 0.146148`) and its final prediction
    /// line (next-word models; other runs show nothing).
    Seed,
    /// A progress bar on stderr and one line per epoch on stdout.
    Progress,
    /// Nothing (library use, tests).
    Quiet,
}

/// The progress bar of a run and the lines printed above it.
pub struct Progress {
    bar: ProgressBar,
    visible: bool,
}

impl Progress {
    /// A bar over `steps` steps, shown only with [`LogStyle::Progress`].
    pub fn new(steps: usize, style: LogStyle) -> Self {
        let visible = style == LogStyle::Progress;
        let bar = if visible {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {elapsed_precise} < {eta} {msg}")
                    .expect("the template is valid"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, visible }
    }

    /// Prints `line` on stdout above the bar (nothing when the bar is not shown).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.visible {
            self.bar.suspend(|| println!("{}", line.as_ref()));
        }
    }

    /// The text beside the bar.
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// One step done.
    pub fn step(&self) {
        self.bar.inc(1);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// libtorch's seed for epoch `epoch` of a run seeded with `seed`: each epoch draws from its own
/// seed, so a resumed run shuffles, drops out and samples exactly as an uninterrupted one.
pub fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    (seed as i64).wrapping_mul(1_000_003).wrapping_add(epoch as i64)
}

/// Checks that the folder `path` would be written into exists; `flag` names the setting in the
/// message.
pub fn check_output_folder(path: &Path, flag: &str) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{flag} {}: the folder {} does not exist", path.display(), dir.display());
    }
    Ok(())
}

/// A file beside `out`: its stem followed by `suffix` (`g.onnx`, `.ckpt.safetensors` →
/// `g.ckpt.safetensors`).
pub fn beside(out: &Path, suffix: &str) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{stem}{suffix}"))
}

/// The default checkpoint of a run exporting to `out`: `OUT.ckpt.safetensors` beside it.
pub fn default_checkpoint(out: Option<&Path>) -> Option<PathBuf> {
    out.map(|o| beside(o, ".ckpt.safetensors"))
}

/// The check of an exported file: `got` (the file, run by tract) against `want` (the trained
/// model). The tolerance is relative to the outputs' scale — `tolerance × max(1, max |want|)` —
/// since float32 sums differ in proportion to the values summed: a large but healthy model
/// passes, a wrong graph does not. Above it, or NaN, the exporter is wrong: the file is removed
/// and the run fails. Returns the largest difference.
pub fn check_export(
    path: &Path,
    got: &[f32],
    want: &[f32],
    tolerance: f32,
    what: &str,
) -> anyhow::Result<f32> {
    let diff = kiln_infer::numeric::max_abs_diff(got, want);
    let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
    if diff.is_nan() || !scale.is_finite() || diff > tolerance * scale {
        let _ = std::fs::remove_file(path);
        bail!(
            "the exported {what} disagrees with the trained one (max |Δ| = {diff} on outputs up to {scale}); \
             nothing was written"
        );
    }
    Ok(diff)
}

/// The error that ends a run that diverged in `epoch` (`what` says how: a loss not a number,
/// weights or optimiser state no longer finite), saying whether the last good checkpoint is there
/// to resume from (one is saved only after an epoch passes these checks, so it never holds the
/// bad state).
pub fn diverged(epoch: usize, what: &str, checkpoint: Option<&Path>) -> anyhow::Error {
    let kept = match checkpoint.filter(|p| p.exists()) {
        Some(p) => {
            format!("the last good checkpoint, {}, is kept: resume from it with a lower --lr", p.display())
        }
        None => "no checkpoint was saved before it: start again with a lower --lr".to_string(),
    };
    anyhow::anyhow!("training diverged in epoch {epoch}: {what}; {kept}")
}

/// Set when the user asks a run to stop (Ctrl-C): training loops end at their next step.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks every run in this process to stop at its next training step, as if its epochs were up
/// but without saving or exporting anything more (a signal handler may call this).
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`request_stop`] was called.
pub fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set when a training loop starts: before that (reading data, building the model) nothing is
/// written that a stop should wait for, so a signal may end the process at once.
static TRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks that a training loop has started, from which point [`request_stop`] is how to end it.
pub fn training_begins() {
    TRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a training loop has started in this process.
pub fn training_began() -> bool {
    TRAINING.load(std::sync::atomic::Ordering::Relaxed)
}

/// A run that stopped because [`request_stop`] was called; its message says what is kept.
#[derive(Debug, thiserror::Error)]
#[error("interrupted in epoch {epoch}: {kept}")]
pub struct Interrupted {
    pub epoch: usize,
    kept: String,
}

/// The error of a run stopped in `epoch` (1-based), saying whether `checkpoint` holds the epochs
/// before it and how to go on.
pub fn interrupted(epoch: usize, checkpoint: Option<&Path>) -> anyhow::Error {
    let kept = match checkpoint.filter(|p| p.exists()) {
        Some(p) => format!(
            "the checkpoint {} holds the last epoch saved: continue with --resume {}",
            p.display(),
            p.display()
        ),
        None => "no checkpoint was saved before it, and nothing was written".to_string(),
    };
    Interrupted { epoch, kept }.into()
}

/// What [`crate::optim::Optimizer::first_non_finite`] found, as [`diverged`] says it.
pub fn non_finite((name, which): (String, &str)) -> String {
    format!("{which} of `{name}` are no longer finite numbers")
}

/// What a training run holds, for [`check_fits`].
pub struct Footprint<'a> {
    /// Trainable values: each held as an f32 four times (weights, gradients and Adam's two
    /// moments).
    pub parameters: u128,
    /// Floats one training step holds besides (activations, logits and their gradients,
    /// estimated from the batch).
    pub step_floats: u128,
    /// The flags that set the model's size, and those that size a step, as messages name them.
    pub sizes: &'a str,
    pub step_flags: &'a str,
}

/// Refuses, before anything is allocated, a run that would not fit in the memory this machine
/// has available: the model alone (naming `sizes`), or the model with one training step
/// (naming `step_flags`).
pub fn check_fits(f: &Footprint) -> anyhow::Result<()> {
    let (model, step) = (f.parameters.saturating_mul(16), f.step_floats.saturating_mul(4));
    let Some(available) = available_memory() else { return Ok(()) };
    let gb = |b: u128| b as f64 / 1e9;
    let available_gb = gb(available as u128);
    if model > available as u128 {
        anyhow::bail!(
            "the model would have {} parameters: {:.1} GB for its weights, gradients and Adam's \
             moments, more than the {available_gb:.1} GB of memory available: use smaller {}",
            f.parameters,
            gb(model),
            f.sizes
        );
    }
    if model.saturating_add(step) > available as u128 {
        anyhow::bail!(
            "a training step would hold about {:.1} GB (activations, logits and their gradients), \
             which with the model's {:.1} GB is more than the {available_gb:.1} GB of memory \
             available: lower {}",
            gb(step),
            gb(model),
            f.step_flags
        );
    }
    Ok(())
}

/// Bytes of memory available to a new allocation (Linux's `MemAvailable`); `None` elsewhere.
pub(crate) fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_export_check_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(check_export(&path, &[1.0], &[1.0], 1e-3, "model").unwrap(), 0.0);
        assert!(path.exists());
        // Relative to the outputs' scale: 0.5 off on outputs of 10,000 passes, 0.5 off on 1 fails.
        assert_eq!(check_export(&path, &[10_000.5], &[10_000.0], 1e-3, "model").unwrap(), 0.5);
        assert!(path.exists());
        assert!(check_export(&path, &[f32::NAN], &[1.0], 1e-3, "model").is_err());
        assert!(!path.exists());
        std::fs::write(&path, b"x").unwrap();
        assert!(check_export(&path, &[1.5], &[1.0], 1e-3, "model").is_err());
        assert!(!path.exists());
    }

    #[test]
    fn outputs_go_beside_the_model() {
        assert_eq!(beside(Path::new("d/g.onnx"), "-log"), Path::new("d/g-log"));
        assert_eq!(default_checkpoint(Some(Path::new("m.onnx"))).unwrap(), Path::new("m.ckpt.safetensors"));
    }
}
