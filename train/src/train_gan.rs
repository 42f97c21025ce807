//! GAN training: alternate one discriminator step and one generator step on fresh data and
//! noise, log the losses and the means of D(x) and D(G(z)), draw plots, save checkpoints, export G.
//!
//! Two families ([`GanArch`]): the seed lecture's fully connected GAN on the built-in 2-D
//! mixtures, and DCGAN on images (Fashion-MNIST, IDX folders, picture folders).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_export::layers::{Activation, Linear};
use kiln_export::GenLayer;
use kiln_infer::contract::GeneratorMeta;
use kiln_infer::samples::Samples;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Reduction, Tensor};

use crate::adam::Adam;
use crate::checkpoint;
use crate::dcgan::{self, DcganConfig};
use crate::gan::{self, MlpGanConfig};
use crate::image_data::{self, FolderOptions, ImageSet, Split};
use crate::plots::{self, CurvePoint};
use crate::toy2d::Mixture;
use crate::train_lm::Schedule;

/// G's objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// The seed's objective as written: G minimises E[log(1 − D(G(z)))].
    Minimax,
    /// G maximises E[log D(G(z))] (Goodfellow et al. 2014): strong gradients early on.
    NonSaturating,
}

/// The network family and its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum GanArch {
    Mlp(MlpGanConfig),
    Dcgan(DcganConfig),
}

impl GanArch {
    pub fn latent(&self) -> i64 {
        match self {
            GanArch::Mlp(c) => c.latent,
            GanArch::Dcgan(c) => c.latent,
        }
    }

    /// Samples D judges at once (PacGAN; 1 for DCGAN).
    fn pack(&self) -> i64 {
        match self {
            GanArch::Mlp(c) => c.pack,
            GanArch::Dcgan(_) => 1,
        }
    }

    /// The exporter's view of the generator held in `vs`.
    pub fn generator_stack(&self, vs: &nn::VarStore) -> anyhow::Result<Vec<GenLayer>> {
        match self {
            GanArch::Mlp(c) => generator_stack(vs, c),
            GanArch::Dcgan(c) => c.generator_stack(vs),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanTrainConfig {
    /// `ring8`, `grid25`, `fashion-mnist`, `idx:FOLDER` or `images:FOLDER`.
    pub data: String,
    /// How pictures from `images:FOLDER` are cropped and resized.
    #[serde(default)]
    pub folder: Option<FolderOptions>,
    pub loss: GanLoss,
    /// G's learning rate, and D's unless `d_lr` is set.
    pub lr: f64,
    /// D's learning rate when it differs from G's (two time-scale update rule, Heusel et al.
    /// 2017).
    #[serde(default)]
    pub d_lr: Option<f64>,
    pub beta1: f64,
    /// Packs per step (each of `pack` samples).
    pub batch: i64,
    /// Steps per epoch; `None`: one pass over an image data set (built-in mixtures need a number).
    pub steps_per_epoch: Option<usize>,
    pub epochs: usize,
    /// Learning-rate schedule over all steps (both networks).
    pub schedule: Schedule,
    /// Decay of the exponential moving average of G's weights that is exported; 0 = off.
    #[serde(default)]
    pub ema: f64,
    /// R1 penalty weight γ (Mescheder et al. 2018): D's loss gains γ/2 · E‖∇ₓD(x)‖² on real
    /// data, which damps the oscillation around the data; 0 = off.
    #[serde(default)]
    pub r1: f64,
    /// D updates per G update (k in Goodfellow et al. 2014, Algorithm 1), each on fresh data
    /// and noise.
    #[serde(default = "crate::one")]
    pub d_steps: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GanEpoch {
    pub epoch: usize,
    pub d_loss: f64,
    pub g_loss: f64,
    /// Mean D(x) on real data and D(G(z)) on generated data (probabilities).
    pub d_real: f64,
    pub d_fake: f64,
    /// Wall-clock seconds the epoch took.
    #[serde(default)]
    pub seconds: f64,
}

/// What the user sees while training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GanLog {
    /// A progress bar and one line per epoch.
    Progress,
    /// Nothing (library use, tests).
    Quiet,
}

pub struct GanRun {
    pub model: GanArch,
    pub train: GanTrainConfig,
    pub device: Device,
    /// Export the generator here.
    pub out: Option<PathBuf>,
    /// Save a checkpoint (G, D, both optimisers) here after every epoch.
    pub checkpoint: Option<PathBuf>,
    /// Write the sample grid / scatter of each epoch and the loss curve here.
    pub log_dir: Option<PathBuf>,
    pub log: GanLog,
}

pub struct GanOutcome {
    pub g_vs: nn::VarStore,
    pub d_vs: nn::VarStore,
    pub g: Gen,
    pub d: Disc,
    /// The averaged generator, when `--ema` is on (the one exported).
    pub ema: Option<Ema>,
    pub history: Vec<GanEpoch>,
    pub meta: GeneratorMeta,
}

impl GanOutcome {
    /// The generator that is exported: the average when there is one, else G.
    pub fn exported(&self) -> (&nn::VarStore, &Gen) {
        match &self.ema {
            Some(e) => (&e.vs, &e.g),
            None => (&self.g_vs, &self.g),
        }
    }

    /// The exported generator in evaluation mode (BatchNorm with its running statistics).
    pub fn generate(&self, z: &Tensor) -> Tensor {
        tch::no_grad(|| self.exported().1.forward_t(z, false))
    }
}

/// The data a run trains on.
pub enum TrainData {
    Points(Mixture),
    Images(ImageSet),
}

impl TrainData {
    /// Loads the data named by `spec` (see [`GanTrainConfig::data`]).
    pub fn load(spec: &str, folder: Option<FolderOptions>) -> anyhow::Result<Self> {
        if let Some(m) = Mixture::by_name(spec) {
            return Ok(TrainData::Points(m));
        }
        let set = if spec == "fashion-mnist" {
            image_data::load_fashion_mnist(Split::Train)?
        } else if let Some(dir) = spec.strip_prefix("idx:") {
            image_data::load_idx_dir(Path::new(dir), Split::Train)?
        } else if let Some(dir) = spec.strip_prefix("images:") {
            let opts = folder.unwrap_or(FolderOptions { size: 64, channels: 3 });
            image_data::load_image_folder(Path::new(dir), opts)?
        } else {
            bail!("--data {spec}: expected ring8, grid25, fashion-mnist, idx:FOLDER or images:FOLDER")
        };
        Ok(TrainData::Images(set))
    }

    pub fn sample_shape(&self) -> Vec<usize> {
        match self {
            TrainData::Points(_) => vec![2],
            TrainData::Images(s) => s.sample_shape(),
        }
    }

    /// `n` real samples on `device` (images drawn with replacement).
    pub fn sample(&self, n: i64, device: Device) -> Tensor {
        match self {
            TrainData::Points(m) => m.sample(n, device),
            TrainData::Images(s) => {
                let idx = Tensor::randint(s.len() as i64, [n], (Kind::Int64, Device::Cpu));
                s.images.index_select(0, &idx).to_device(device)
            }
        }
    }

    fn value_range(&self) -> [f32; 2] {
        match self {
            TrainData::Points(m) => m.value_range(),
            TrainData::Images(_) => [-1.0, 1.0],
        }
    }
}

/// G of either family.
pub enum Gen {
    Mlp(gan::Generator),
    Dcgan(dcgan::Generator),
}

impl Gen {
    fn new(arch: &GanArch, vs: &nn::Path) -> Self {
        match arch {
            GanArch::Mlp(c) => Gen::Mlp(gan::Generator::new(vs, c)),
            GanArch::Dcgan(c) => Gen::Dcgan(dcgan::Generator::new(vs, c)),
        }
    }

    pub fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        match self {
            Gen::Mlp(g) => g.forward_t(z, train),
            Gen::Dcgan(g) => g.forward_t(z, train),
        }
    }
}

/// D of either family.
pub enum Disc {
    Mlp(gan::Discriminator),
    Dcgan(dcgan::Discriminator),
}

impl Disc {
    fn new(arch: &GanArch, vs: &nn::Path) -> Self {
        match arch {
            GanArch::Mlp(c) => Disc::Mlp(gan::Discriminator::new(vs, c)),
            GanArch::Dcgan(c) => Disc::Dcgan(dcgan::Discriminator::new(vs, c)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Disc::Mlp(d) => d.forward(x),
            Disc::Dcgan(d) => d.forward(x),
        }
    }
}

/// An exponential moving average of G's variables (Yazıcı et al. 2019): the averaged generator
/// is the one exported, its samples free of the last steps' oscillation.
pub struct Ema {
    pub vs: nn::VarStore,
    pub g: Gen,
    decay: f64,
    /// (average, live) pairs.
    pairs: Vec<(Tensor, Tensor)>,
}

impl Ema {
    fn new(arch: &GanArch, live: &nn::VarStore, decay: f64) -> anyhow::Result<Self> {
        let vs = nn::VarStore::new(live.device());
        let g = Gen::new(arch, &(vs.root() / "g"));
        let live_vars = live.variables();
        let mut pairs = Vec::new();
        for (name, avg) in vs.variables() {
            let l = live_vars.get(&name).with_context(|| format!("no live `{name}` to average"))?;
            pairs.push((avg, l.shallow_clone()));
        }
        let ema = Ema { vs, g, decay, pairs };
        ema.copy_live();
        Ok(ema)
    }

    fn copy_live(&self) {
        tch::no_grad(|| {
            for (avg, live) in &self.pairs {
                avg.shallow_clone().copy_(live);
            }
        });
    }

    fn update(&self) {
        tch::no_grad(|| {
            for (avg, live) in &self.pairs {
                let _ = avg.shallow_clone().lerp_(live, 1.0 - self.decay);
            }
        });
    }
}

/// Checks that the architecture fits the data (sizes, families) before anything is built.
pub fn check_arch(arch: &GanArch, shape: &[usize], data: &str) -> anyhow::Result<()> {
    match (arch, shape) {
        (GanArch::Mlp(c), [d]) if *d as i64 == c.dim => Ok(()),
        (GanArch::Mlp(_), _) => {
            bail!("--arch mlp trains on 2-D points (ring8, grid25); {data} holds {shape:?} images: use --arch dcgan")
        }
        (GanArch::Dcgan(_), [_]) => {
            bail!("--arch dcgan trains on images; {data} holds 2-D points: use --arch mlp")
        }
        (GanArch::Dcgan(c), [ch, h, w]) => {
            if h != w || DcganConfig::plan(*h as i64).is_none() {
                bail!("--arch dcgan makes 28×28, 32×32 or 64×64 images; {data} holds {h}×{w} (images:FOLDER takes --image-size)")
            }
            if c.channels != *ch as i64 || c.size != *h as i64 {
                bail!(
                    "the DCGAN makes {}×{}×{} images but {data} holds {ch}×{h}×{w}",
                    c.channels,
                    c.size,
                    c.size
                )
            }
            Ok(())
        }
        _ => bail!("{data}: samples of shape {shape:?} cannot be learnt"),
    }
}

/// What a GAN checkpoint's JSON says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointInfo {
    kind: String,
    format: u32,
    epochs_done: usize,
    g_step: i64,
    d_step: i64,
    model: GanArch,
    train: GanTrainConfig,
    history: Vec<GanEpoch>,
    curve: Vec<CurvePoint>,
}

const CHECKPOINT_KIND: &str = "gan";

pub fn train_gan(run: &GanRun) -> anyhow::Result<GanOutcome> {
    let data = TrainData::load(&run.train.data, run.train.folder)?;
    train_from(run, &data, None)
}

/// [`train_gan`] on data already loaded with [`TrainData::load`] from `run.train.data`.
pub fn train_from_loaded(run: &GanRun, data: &TrainData) -> anyhow::Result<GanOutcome> {
    train_from(run, data, None)
}

/// Continues the run saved in `checkpoint_path` up to `epochs` epochs in all (default: as saved);
/// `ema` switches the weight average on (from the saved weights), off, or changes its decay.
pub fn resume_gan(
    checkpoint_path: &Path,
    epochs: Option<usize>,
    ema: Option<f64>,
    device: Device,
    out: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    log: GanLog,
) -> anyhow::Result<GanOutcome> {
    let loaded = checkpoint::load(checkpoint_path)?;
    let info: CheckpointInfo = serde_json::from_value(loaded.info.clone())
        .ok()
        .filter(|i: &CheckpointInfo| i.kind == CHECKPOINT_KIND)
        .with_context(|| format!("{} is not a GAN checkpoint", checkpoint_path.display()))?;
    let mut train = info.train.clone();
    if let Some(e) = epochs {
        train.epochs = e;
    }
    if !train.data.starts_with("images:") {
        train.folder = None; // only picture folders are cropped and resized
    }
    if let Some(decay) = ema {
        train.ema = decay;
    }
    checkpoint::check_epochs_left(info.epochs_done, train.epochs)?;
    let run = GanRun {
        model: info.model.clone(),
        train,
        device,
        out,
        checkpoint: Some(checkpoint_path.to_path_buf()),
        log_dir,
        log,
    };
    let data = TrainData::load(&run.train.data, run.train.folder)?;
    train_from(&run, &data, Some((info, loaded.tensors)))
}

type Resume = (CheckpointInfo, std::collections::HashMap<String, Tensor>);

fn train_from(run: &GanRun, data: &TrainData, resume: Option<Resume>) -> anyhow::Result<GanOutcome> {
    let (arch, t, device) = (&run.model, &run.train, run.device);
    let shape = data.sample_shape();
    check_arch(arch, &shape, &t.data)?;
    if let TrainData::Images(set) = data {
        if set.skipped > 0 && run.log == GanLog::Progress {
            println!("{}: {} images, {} unreadable files skipped", t.data, set.len(), set.skipped);
        }
    }
    let steps_per_epoch = match (t.steps_per_epoch, data) {
        (Some(s), _) => s,
        (None, TrainData::Images(s)) => s.len().div_ceil((t.batch * arch.pack()) as usize),
        (None, TrainData::Points(_)) => bail!("--steps-per-epoch is needed with built-in 2-D data"),
    };
    if steps_per_epoch == 0 {
        bail!("--steps-per-epoch must be at least 1");
    }
    tch::manual_seed(t.seed as i64);
    let g_vs = nn::VarStore::new(device);
    let d_vs = nn::VarStore::new(device);
    let g = Gen::new(arch, &(g_vs.root() / "g"));
    let d = Disc::new(arch, &(d_vs.root() / "d"));
    let mut g_opt = Adam::with_betas(&g_vs, t.lr, t.beta1, 0.999);
    let d_base = t.d_lr.unwrap_or(t.lr);
    let mut d_opt = Adam::with_betas(&d_vs, d_base, t.beta1, 0.999);
    let (mut history, mut curve, start, saved) = match resume {
        None => (Vec::new(), Vec::new(), 0, None),
        Some((info, tensors)) => {
            if info.model != *arch {
                bail!("the checkpoint's model differs from this run's");
            }
            checkpoint::restore(&g_vs, &tensors, "")?;
            checkpoint::restore(&d_vs, &tensors, "")?;
            let get = |k: &str| tensors.get(k).map(|t| t.to_device(device));
            g_opt.load_state(info.g_step, get).map_err(anyhow::Error::msg)?;
            d_opt.load_state(info.d_step, get).map_err(anyhow::Error::msg)?;
            (info.history, info.curve, info.epochs_done, Some(tensors))
        }
    };
    let ema = if t.ema > 0.0 { Some(Ema::new(arch, &g_vs, t.ema)?) } else { None };
    // A checkpoint without an average (EMA switched on at resume): it starts from G's weights.
    let saved_ema = saved.as_ref().filter(|t| t.keys().any(|k| k.starts_with("ema.")));
    if let (Some(ema), Some(tensors)) = (&ema, saved_ema) {
        checkpoint::restore(&ema.vs, tensors, "ema.")?;
    }

    let latent = arch.latent();
    let pack = arch.pack();
    let n = t.batch * pack;
    let ones = Tensor::ones([t.batch], (Kind::Float, device));
    let zeros = Tensor::zeros([t.batch], (Kind::Float, device));
    let bce = |logits: &Tensor, target: &Tensor| {
        logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::Mean)
    };
    // Fixed noise for the per-epoch pictures: the portable generator `kiln sample` uses, so
    // `kiln sample OUT.onnx -n 64 --seed S` redraws the last grid.
    let fixed_n = if shape.len() == 1 { 2000 } else { 64 };
    let fixed_z =
        Tensor::from_slice(&kiln_infer::noise::normal(t.seed, fixed_n * latent as usize)).view([-1, latent]);
    if let Some(dir) = &run.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let total = t.epochs * steps_per_epoch;
    let bar = match run.log {
        GanLog::Progress => {
            let bar = ProgressBar::new(((t.epochs - start) * steps_per_epoch) as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {elapsed_precise} < {eta} {msg}")
                    .expect("the template is valid"),
            );
            bar
        }
        GanLog::Quiet => ProgressBar::hidden(),
    };
    let curve_every = (steps_per_epoch / 10).max(1);
    for epoch in start..t.epochs {
        let t0 = std::time::Instant::now();
        // One seed per epoch: a resumed run draws what the uninterrupted run would have drawn.
        tch::manual_seed((t.seed as i64).wrapping_mul(1_000_003).wrapping_add(epoch as i64));
        let mut sums = [0f64; 4];
        let mut window = [0f64; 2];
        for step in 0..steps_per_epoch {
            let at = epoch * steps_per_epoch + step;
            (g_opt.lr, d_opt.lr) = (t.schedule.lr(t.lr, at, total), t.schedule.lr(d_base, at, total));
            // D: maximise log D(x) + log(1 − D(G(z))), `d_steps` times.
            let mut d_step = || {
                let x = data.sample(n, device).set_requires_grad(t.r1 > 0.0);
                let fake = g.forward_t(&Tensor::randn([n, latent], (Kind::Float, device)), true).detach();
                let (dr, df) = (d.forward(&x), d.forward(&fake));
                let mut d_loss = bce(&dr, &ones) + bce(&df, &zeros);
                if t.r1 > 0.0 {
                    let grad = Tensor::run_backward(&[dr.sum(Kind::Float)], &[&x], true, true).remove(0);
                    let sq = grad.square().flatten(1, -1).sum_dim_intlist(1, false, Kind::Float);
                    d_loss += sq.mean(Kind::Float) * (t.r1 / 2.0);
                }
                d_opt.backward_step(&d_loss, None);
                (d_loss, dr)
            };
            let (mut d_loss, mut dr) = d_step();
            for _ in 1..t.d_steps {
                (d_loss, dr) = d_step();
            }
            // G: one of the two objectives.
            let df = d.forward(&g.forward_t(&Tensor::randn([n, latent], (Kind::Float, device)), true));
            let g_loss = match t.loss {
                GanLoss::NonSaturating => bce(&df, &ones),
                GanLoss::Minimax => -bce(&df, &zeros),
            };
            g_opt.backward_step(&g_loss, None);
            if let Some(ema) = &ema {
                ema.update();
            }
            let (dl, gl) = (d_loss.double_value(&[]), g_loss.double_value(&[]));
            sums[0] += dl;
            sums[1] += gl;
            sums[2] += dr.sigmoid().mean(Kind::Float).double_value(&[]);
            sums[3] += df.sigmoid().mean(Kind::Float).double_value(&[]);
            window[0] += dl;
            window[1] += gl;
            if (step + 1) % curve_every == 0 || step + 1 == steps_per_epoch {
                let k = ((step % curve_every) + 1) as f64;
                curve.push(CurvePoint {
                    epoch: epoch as f64 + (step + 1) as f64 / steps_per_epoch as f64,
                    d_loss: window[0] / k,
                    g_loss: window[1] / k,
                });
                window = [0.0; 2];
            }
            bar.inc(1);
        }
        let k = steps_per_epoch as f64;
        let e = GanEpoch {
            epoch: epoch + 1,
            d_loss: sums[0] / k,
            g_loss: sums[1] / k,
            d_real: sums[2] / k,
            d_fake: sums[3] / k,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if !(e.d_loss.is_finite() && e.g_loss.is_finite()) {
            bar.finish_and_clear();
            bail!("training diverged in epoch {} (a loss is not a number): try a lower --lr", e.epoch);
        }
        history.push(e);
        if run.log == GanLog::Progress {
            bar.set_message(format!("D(x) {:.3}  D(G(z)) {:.3}", e.d_real, e.d_fake));
            bar.suspend(|| {
                println!(
                    "epoch {:>4}/{}  D loss {:.4}  G loss {:.4}  D(x) {:.3}  D(G(z)) {:.3}  ({:.1} s)",
                    e.epoch, t.epochs, e.d_loss, e.g_loss, e.d_real, e.d_fake, e.seconds
                )
            });
        }
        if let Some(dir) = &run.log_dir {
            let shown = ema.as_ref().map_or(&g, |e| &e.g);
            let fixed =
                tch::no_grad(|| shown.forward_t(&fixed_z.to_device(device), false)).to_device(Device::Cpu);
            let values: Vec<f32> = Vec::try_from(&fixed.view(-1))?;
            match data {
                TrainData::Points(m) => plots::scatter(
                    &dir.join(format!("scatter-epoch-{:03}.png", e.epoch)),
                    &values,
                    &m.means,
                    m.sigma,
                    &format!("{}: {fixed_n} samples after epoch {}", m.name, e.epoch),
                )?,
                TrainData::Images(_) => Samples { shape: shape.clone(), n: fixed_n, data: values }.write(
                    &dir.join(format!("samples-epoch-{:03}.png", e.epoch)),
                    [-1.0, 1.0],
                    Some(8),
                )?,
            }
            plots::loss_curve(&dir.join("losses.png"), &curve, &format!("GAN losses on {}", t.data))?;
        }
        if let Some(path) = &run.checkpoint {
            let info = CheckpointInfo {
                kind: CHECKPOINT_KIND.into(),
                format: 1,
                epochs_done: epoch + 1,
                g_step: g_opt.step,
                d_step: d_opt.step,
                model: arch.clone(),
                train: t.clone(),
                history: history.clone(),
                curve: curve.clone(),
            };
            let mut tensors: Vec<(String, Tensor)> = g_vs.variables().into_iter().collect();
            tensors.extend(d_vs.variables());
            tensors.extend(g_opt.state());
            tensors.extend(d_opt.state());
            if let Some(ema) = &ema {
                tensors.extend(ema.vs.variables().into_iter().map(|(k, v)| (format!("ema.{k}"), v)));
            }
            checkpoint::save(path, &tensors, &serde_json::to_value(&info)?)?;
        }
    }
    bar.finish_and_clear();

    let meta = GeneratorMeta {
        latent: latent as usize,
        output_shape: shape.clone(),
        value_range: data.value_range(),
        dataset: t.data.clone(),
        train_config: serde_json::json!({
            "model": arch,
            "train": t,
            "epochs_done": history.len(),
            "final": history.last(),
        }),
    };
    let outcome = GanOutcome { g_vs, d_vs, g, d, ema, history, meta };
    if let Some(out) = &run.out {
        let stack = arch.generator_stack(outcome.exported().0)?;
        let model = kiln_export::generator_model(&stack, &outcome.meta)?;
        kiln_export::write_model(&model, out)
            .with_context(|| format!("cannot export to {}", out.display()))?;
        let diff = verify_export(&outcome, &fixed_z, out)?;
        if run.log == GanLog::Progress {
            println!("exported {} (checked with tract: max |Δ| = {diff:.1e})", out.display());
        }
    }
    Ok(outcome)
}

/// Loads the exported file with tract and compares its samples with G's (eval mode) on up to 16
/// noise vectors. A difference above 1e-3 means the exporter is wrong: the file is removed.
fn verify_export(o: &GanOutcome, z: &Tensor, path: &Path) -> anyhow::Result<f32> {
    let g = kiln_infer::generator::GeneratorModel::load(path)?;
    let z = z.narrow(0, 0, z.size()[0].min(16));
    let n = z.size()[0] as usize;
    let device = o.exported().0.device();
    let want: Vec<f32> = Vec::try_from(&o.generate(&z.to_device(device)).to_device(Device::Cpu).view(-1))?;
    let got = g.generate(&Vec::<f32>::try_from(&z.view(-1))?, n)?;
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    if diff.is_nan() || diff > 1e-3 || got.len() != want.len() {
        let _ = std::fs::remove_file(path);
        bail!(
            "the exported generator disagrees with the trained one (max |Δ| = {diff}); nothing was written"
        );
    }
    Ok(diff)
}

/// The exporter's view of an MLP [`gan::Generator`] held in `vs` (BatchNorm with its running
/// statistics).
pub fn generator_stack(vs: &nn::VarStore, c: &MlpGanConfig) -> anyhow::Result<Vec<GenLayer>> {
    let mut p = crate::export::Params::new(vs);
    let mut stack = Vec::new();
    let mut width = c.latent as usize;
    let h = c.hidden as usize;
    for i in 0..c.g_layers {
        stack.push(GenLayer::Linear(Linear {
            inputs: width,
            outputs: h,
            weight: p.take(&format!("g.l{i}.weight"))?,
            bias: p.take(&format!("g.l{i}.bias"))?,
        }));
        if c.batch_norm {
            stack.push(GenLayer::BatchNorm(p.batch_norm(&format!("g.bn{i}"), h)?));
        }
        stack.push(GenLayer::Activation(Activation::Relu));
        width = h;
    }
    stack.push(GenLayer::Linear(Linear {
        inputs: width,
        outputs: c.dim as usize,
        weight: p.take("g.out.weight")?,
        bias: p.take("g.out.bias")?,
    }));
    p.finish()?;
    Ok(stack)
}
