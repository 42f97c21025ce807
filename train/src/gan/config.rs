//! What a GAN training run is made of, its defaults — which depend on the data (2-D points or
//! images) and the family — and the checks a configuration must pass. `kiln-train gan` maps its
//! flags onto [`GanOptions`] and nothing more; tests build their runs the same way.

use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use tch::Device;

use super::data::images::FolderOptions;
use super::data::TrainData;
use super::dcgan::DcganConfig;
use super::mlp::MlpGanConfig;
use super::GanArch;
use crate::optim::Schedule;
use crate::run::{self, LogStyle};

/// G's objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// G minimises E[log(1 − D(G(z)))], the seed's objective as written.
    Minimax,
    /// G maximises E[log D(G(z))] (Goodfellow et al. 2014 advise it): strong gradients early on.
    NonSaturating,
}

/// How a GAN trains; saved in checkpoints and in the exported file.
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
    #[serde(default = "crate::checkpoint::one")]
    pub d_steps: usize,
    pub seed: u64,
}

/// Everything one `kiln-train gan` run needs.
#[derive(Debug, Clone)]
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
    pub log: LogStyle,
}

/// The network family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// Fully connected G and D (the seed lecture's GAN), for 2-D data.
    Mlp,
    /// Radford et al.'s convolutional GAN, for 28×28, 32×32 and 64×64 images.
    Dcgan,
}

/// A run as a user describes it: every setting optional, taking its default — for the family
/// and the data — when unset. [`GanOptions::resolve`] applies the defaults and checks.
#[derive(Debug, Clone, Default)]
pub struct GanOptions {
    /// `ring8`, `grid25`, `fashion-mnist`, `idx:FOLDER` or `images:FOLDER`.
    pub data: String,
    /// Default: mlp for 2-D data, dcgan for images.
    pub arch: Option<Arch>,
    pub loss: Option<GanLoss>,
    pub out: Option<PathBuf>,
    /// Default: beside `out`, as `OUT.ckpt.safetensors`.
    pub checkpoint: Option<PathBuf>,
    /// Default: beside `out`, as `OUT-log/`.
    pub log_dir: Option<PathBuf>,
    pub latent: Option<i64>,
    pub hidden: Option<i64>,
    pub g_layers: Option<i64>,
    pub d_layers: Option<i64>,
    pub batch_norm: bool,
    pub pack: Option<i64>,
    pub maxout: Option<i64>,
    pub g_width: Option<i64>,
    pub d_width: Option<i64>,
    pub image_size: Option<u32>,
    pub channels: Option<u32>,
    pub lr: Option<f64>,
    pub d_lr: Option<f64>,
    pub beta1: Option<f64>,
    pub ema: Option<f64>,
    pub r1: Option<f64>,
    pub d_steps: Option<usize>,
    pub schedule: Option<Schedule>,
    pub batch: Option<i64>,
    pub steps_per_epoch: Option<usize>,
    pub epochs: Option<usize>,
    pub seed: Option<u64>,
}

/// Defaults that do not depend on the family.
pub mod defaults {
    /// mlp: hidden width, hidden layers of G and of D.
    pub const HIDDEN: i64 = 128;
    pub const G_LAYERS: i64 = 3;
    pub const D_LAYERS: i64 = 3;
    /// dcgan: channels of G's last and D's first hidden layer.
    pub const WIDTH: i64 = 64;
    /// images:FOLDER: side and channels of the training images.
    pub const IMAGE_SIZE: u32 = 64;
    pub const CHANNELS: u32 = 3;
    pub const BETA1: f64 = 0.5;
    /// Steps per epoch on the built-in 2-D data (images: one pass).
    pub const POINT_STEPS: usize = 500;
    /// mlp: no packing, LeakyReLU units in D.
    pub const PACK: i64 = 1;
    pub const MAXOUT: i64 = 1;
    /// One D update per G update, no R1 penalty, no weight average.
    pub const D_STEPS: usize = 1;
    pub const R1: f64 = 0.0;
    pub const EMA: f64 = 0.0;
    pub const LOSS: super::GanLoss = super::GanLoss::NonSaturating;
    pub const SEED: u64 = 0;
}

/// Defaults that depend on the family.
struct FamilyDefaults {
    latent: i64,
    lr: f64,
    batch: i64,
    epochs: usize,
    schedule: Schedule,
}

const MLP: FamilyDefaults =
    FamilyDefaults { latent: 2, lr: 3e-4, batch: 256, epochs: 20, schedule: Schedule::Cosine };
const DCGAN: FamilyDefaults =
    FamilyDefaults { latent: 100, lr: 2e-4, batch: 128, epochs: 5, schedule: Schedule::Constant };

impl GanOptions {
    /// How pictures of an `images:FOLDER` data set are cropped and resized.
    pub fn folder(&self) -> FolderOptions {
        FolderOptions {
            size: self.image_size.unwrap_or(defaults::IMAGE_SIZE),
            channels: self.channels.unwrap_or(defaults::CHANNELS),
        }
    }

    /// Loads the data these options name, after checking that the output folders exist (a
    /// wrong path fails before a long load).
    pub fn load_data(&self) -> anyhow::Result<TrainData> {
        check_outputs(&self.out, &self.checkpoint)?;
        // Before any picture is read: a folder of thousands would be loaded for nothing.
        let folder = self.folder();
        if DcganConfig::plan(folder.size as i64).is_none() {
            bail!(
                "--image-size must be 28, 32 or 64, not {}: the DCGAN makes 28×28, 32×32 or 64×64 images",
                folder.size
            );
        }
        if !matches!(folder.channels, 1 | 3) {
            bail!("--channels must be 1 (grey) or 3 (colour), not {}", folder.channels);
        }
        TrainData::load(&self.data, Some(self.folder()))
    }

    /// The run these options describe on `data` (loaded with [`GanOptions::load_data`]), on
    /// `device`, with defaults applied and every setting checked.
    pub fn resolve(&self, data: &TrainData, device: Device) -> anyhow::Result<GanRun> {
        check_outputs(&self.out, &self.checkpoint)?;
        let arch = self.arch.unwrap_or(if data.is_images() { Arch::Dcgan } else { Arch::Mlp });
        let d = if arch == Arch::Dcgan { &DCGAN } else { &MLP };
        let latent = self.latent.unwrap_or(d.latent);
        let shape = data.sample_shape();
        let (hidden, g_layers, d_layers) = (
            self.hidden.unwrap_or(defaults::HIDDEN),
            self.g_layers.unwrap_or(defaults::G_LAYERS),
            self.d_layers.unwrap_or(defaults::D_LAYERS),
        );
        let (pack, maxout) = (self.pack.unwrap_or(defaults::PACK), self.maxout.unwrap_or(defaults::MAXOUT));
        let (g_width, d_width) =
            (self.g_width.unwrap_or(defaults::WIDTH), self.d_width.unwrap_or(defaults::WIDTH));
        let model = match arch {
            Arch::Mlp => GanArch::Mlp(MlpGanConfig {
                latent,
                hidden,
                g_layers,
                d_layers,
                dim: shape.iter().product::<usize>() as i64,
                batch_norm: self.batch_norm,
                pack,
                maxout,
            }),
            Arch::Dcgan => GanArch::Dcgan(DcganConfig {
                latent,
                channels: shape.first().copied().unwrap_or(0) as i64,
                size: shape.last().copied().unwrap_or(0) as i64,
                g_width,
                d_width,
            }),
        };
        if [latent, hidden, g_layers, d_layers, pack, maxout, g_width, d_width].iter().any(|&v| v < 1) {
            bail!(
                "--latent, --hidden, --g-layers, --d-layers, --pack, --maxout, --g-width and --d-width must \
                 be at least 1"
            );
        }
        let train = GanTrainConfig {
            folder: self.data.starts_with("images:").then(|| self.folder()),
            data: self.data.clone(),
            loss: self.loss.unwrap_or(defaults::LOSS),
            lr: self.lr.unwrap_or(d.lr),
            d_lr: self.d_lr,
            beta1: self.beta1.unwrap_or(defaults::BETA1),
            batch: self.batch.unwrap_or(d.batch),
            steps_per_epoch: self.steps_per_epoch.or((!data.is_images()).then_some(defaults::POINT_STEPS)),
            epochs: self.epochs.unwrap_or(d.epochs),
            schedule: self.schedule.unwrap_or(d.schedule),
            r1: self.r1.unwrap_or(defaults::R1),
            d_steps: self.d_steps.unwrap_or(defaults::D_STEPS),
            ema: self.ema.unwrap_or(defaults::EMA),
            seed: self.seed.unwrap_or(defaults::SEED),
        };
        validate(&train)?;
        Ok(GanRun {
            model,
            train,
            device,
            checkpoint: self.checkpoint.clone().or_else(|| run::default_checkpoint(self.out.as_deref())),
            log_dir: self.log_dir.clone().or_else(|| default_log_dir(self.out.as_deref())),
            out: self.out.clone(),
            log: LogStyle::Progress,
        })
    }
}

/// The default log folder of a run exporting to `out`: `OUT-log/` beside it.
pub fn default_log_dir(out: Option<&std::path::Path>) -> Option<PathBuf> {
    out.map(|o| run::beside(o, "-log"))
}

/// The folders the model and its checkpoint would be written into exist.
pub(crate) fn check_outputs(out: &Option<PathBuf>, checkpoint: &Option<PathBuf>) -> anyhow::Result<()> {
    for (p, flag) in [(out, "--out"), (checkpoint, "--checkpoint")] {
        if let Some(p) = p {
            run::check_output_folder(p, flag)?;
        }
    }
    Ok(())
}

/// The weight average's decay: 0 (off) or in (0, 1).
pub fn check_ema(ema: f64) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&ema) {
        bail!("--ema must be in [0, 1): 0 (off) or a decay such as 0.999");
    }
    Ok(())
}

/// The checks every training configuration passes.
pub fn validate(t: &GanTrainConfig) -> anyhow::Result<()> {
    check_ema(t.ema)?;
    if t.schedule == Schedule::Plateau {
        bail!("--schedule plateau follows a held-out loss, which a GAN has not: use constant or cosine");
    }
    if !(t.r1 >= 0.0 && t.r1.is_finite()) {
        bail!("--r1 must be 0 (off) or a positive number");
    }
    if t.epochs == 0 || t.steps_per_epoch == Some(0) || t.batch < 1 || t.d_steps == 0 {
        bail!("--epochs, --steps-per-epoch, --batch and --d-steps must be at least 1");
    }
    let positive = |v: f64| v > 0.0 && v.is_finite();
    if !positive(t.lr) || !t.d_lr.is_none_or(positive) || !(0.0..1.0).contains(&t.beta1) {
        bail!("--lr and --d-lr must be positive numbers and --beta1 in [0, 1)");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gan::data::mixtures::Mixture;

    #[test]
    fn defaults_follow_the_data() {
        let ring = TrainData::Points(Mixture::ring8());
        let o = GanOptions { data: "ring8".into(), out: Some("g.onnx".into()), ..Default::default() };
        let run = o.resolve(&ring, Device::Cpu).unwrap();
        let GanArch::Mlp(c) = &run.model else { panic!("2-D data trains an MLP GAN") };
        assert_eq!((c.latent, c.hidden, c.g_layers, c.dim), (2, 128, 3, 2));
        assert_eq!((run.train.lr, run.train.batch, run.train.epochs), (3e-4, 256, 20));
        assert_eq!((run.train.schedule, run.train.steps_per_epoch), (Schedule::Cosine, Some(500)));
        assert_eq!(run.log_dir.unwrap(), PathBuf::from("g-log"));
        assert_eq!(run.checkpoint.unwrap(), PathBuf::from("g.ckpt.safetensors"));
    }

    #[test]
    fn bad_settings_are_refused() {
        let ring = TrainData::Points(Mixture::ring8());
        let bad = |o: GanOptions| o.resolve(&ring, Device::Cpu).unwrap_err().to_string();
        let base = || GanOptions { data: "ring8".into(), ..Default::default() };
        assert!(bad(GanOptions { ema: Some(1.0), ..base() }).contains("--ema"));
        assert!(bad(GanOptions { pack: Some(0), ..base() }).contains("at least 1"));
        assert!(bad(GanOptions { d_lr: Some(0.0), ..base() }).contains("--d-lr"));
    }
}
