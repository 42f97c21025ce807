//! `kiln-train gan`: flags onto [`GanOptions`].

use std::path::PathBuf;

use kiln_train::gan::config::{defaults, Arch};
use kiln_train::gan::{self, GanEpoch, GanLoss, GanOptions, Resume};
use kiln_train::optim::Schedule;
use kiln_train::run::LogStyle;

#[derive(clap::Args, Debug)]
pub struct GanArgs {
    /// Network family [default: mlp for 2-D data, dcgan for images].
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// Training data: ring8, grid25 (built in), fashion-mnist (Debian's dataset-fashion-mnist),
    /// idx:FOLDER (MNIST-format files, gzipped or not) or images:FOLDER (PNG/JPEG pictures).
    #[arg(long, required_unless_present = "resume")]
    data: Option<String>,
    /// Continue the run saved in this checkpoint (model, data and settings as saved; --epochs
    /// may raise the total).
    #[arg(long, value_name = "CKPT", conflicts_with_all = ["arch", "data", "loss", "latent", "hidden", "g_layers", "d_layers", "batch_norm", "pack", "maxout", "d_steps", "g_width", "d_width", "image_size", "channels", "lr", "d_lr", "beta1", "r1", "schedule", "batch", "steps_per_epoch", "seed"])]
    resume: Option<PathBuf>,
    /// G's objective.
    #[arg(long, value_enum, default_value_t = defaults::LOSS)]
    loss: GanLoss,
    /// Write the generator here (ONNX).
    #[arg(long, value_name = "FILE.onnx")]
    out: Option<PathBuf>,
    /// Save a checkpoint here after every epoch [default: next to --out, as FILE.ckpt.safetensors].
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Write each epoch's sample grid (images) or scatter (2-D) and the loss curve here
    /// [default: next to --out, as FILE-log/].
    #[arg(long, value_name = "FOLDER")]
    log_dir: Option<PathBuf>,
    /// Noise size [default: 2 for mlp, 100 for dcgan].
    #[arg(long)]
    latent: Option<i64>,
    /// mlp: width of the hidden layers of G and D.
    #[arg(long, default_value_t = defaults::HIDDEN)]
    hidden: i64,
    /// mlp: hidden layers of G.
    #[arg(long, default_value_t = defaults::G_LAYERS)]
    g_layers: i64,
    /// mlp: hidden layers of D.
    #[arg(long, default_value_t = defaults::D_LAYERS)]
    d_layers: i64,
    /// mlp: batch normalisation in G.
    #[arg(long)]
    batch_norm: bool,
    /// mlp: PacGAN packing degree (D judges this many samples together; 1 = plain GAN).
    #[arg(long, default_value_t = defaults::PACK)]
    pack: i64,
    /// mlp: D's hidden units are maxout units of this many pieces (as in the VEEGAN and PacGAN
    /// 2-D experiments); 1: LeakyReLU(0.2).
    #[arg(long, default_value_t = defaults::MAXOUT)]
    maxout: i64,
    /// dcgan: channels of G's last hidden layer (doubling towards the noise).
    #[arg(long, default_value_t = defaults::WIDTH)]
    g_width: i64,
    /// dcgan: channels of D's first layer (doubling towards the output).
    #[arg(long, default_value_t = defaults::WIDTH)]
    d_width: i64,
    /// images:FOLDER: side of the square training images (centre-cropped, resized): 28, 32 or 64.
    #[arg(long, default_value_t = defaults::IMAGE_SIZE)]
    image_size: u32,
    /// images:FOLDER: 1 (grayscale) or 3 (RGB).
    #[arg(long, default_value_t = defaults::CHANNELS, value_parser = clap::value_parser!(u32).range(1..=3))]
    channels: u32,
    /// Adam learning rate, both networks [default: 3e-4 for mlp, 2e-4 for dcgan].
    #[arg(long)]
    lr: Option<f64>,
    /// D's learning rate, when it should differ from G's (two time-scale update rule, Heusel
    /// et al. 2017) [default: --lr].
    #[arg(long)]
    d_lr: Option<f64>,
    /// Adam β1.
    #[arg(long, default_value_t = defaults::BETA1)]
    beta1: f64,
    /// Export an exponential moving average of G's weights with this decay (Yazıcı et al.
    /// 2019), e.g. 0.999; 0: off, G as trained [default: 0]. With --resume: start (or re-decay)
    /// the average from the checkpoint's weights.
    #[arg(long)]
    ema: Option<f64>,
    /// R1 gradient penalty on real data, weight γ (Mescheder et al. 2018); 0: off.
    #[arg(long, default_value_t = defaults::R1)]
    r1: f64,
    /// D updates per G update (k in Goodfellow et al. 2014, Algorithm 1).
    #[arg(long, default_value_t = defaults::D_STEPS)]
    d_steps: usize,
    /// Learning-rate schedule [default: cosine for mlp, constant for dcgan].
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// Samples (packs, with --pack) per step [default: 256 for mlp, 128 for dcgan].
    #[arg(long)]
    batch: Option<i64>,
    /// Steps (one D update and one G update each) per epoch [default: 500 for 2-D data, one
    /// pass over the images].
    #[arg(long)]
    steps_per_epoch: Option<usize>,
    /// Epochs [default: 20 for mlp, 5 for dcgan].
    #[arg(long)]
    epochs: Option<usize>,
    /// Random seed: the same seed gives the same generator on CPU.
    #[arg(long, default_value_t = defaults::SEED)]
    seed: u64,
    /// Where to train.
    #[arg(long, default_value = "auto", value_parser = ["cpu", "cuda", "auto"])]
    device: String,
}

pub fn run(a: GanArgs) -> anyhow::Result<()> {
    let device = kiln_train::device(&a.device)?;
    let outcome = match a.resume {
        Some(checkpoint) => {
            let log_dir = a.log_dir.or_else(|| gan::config::default_log_dir(a.out.as_deref()));
            let r = Resume {
                checkpoint,
                epochs: a.epochs,
                ema: a.ema,
                device,
                out: a.out,
                log_dir,
                log: LogStyle::Progress,
            };
            gan::resume(&r)?
        }
        None => {
            let options = GanOptions {
                data: a.data.unwrap_or_default(),
                arch: a.arch,
                loss: Some(a.loss),
                out: a.out,
                checkpoint: a.checkpoint,
                log_dir: a.log_dir,
                latent: a.latent,
                hidden: Some(a.hidden),
                g_layers: Some(a.g_layers),
                d_layers: Some(a.d_layers),
                batch_norm: a.batch_norm,
                pack: Some(a.pack),
                maxout: Some(a.maxout),
                g_width: Some(a.g_width),
                d_width: Some(a.d_width),
                image_size: Some(a.image_size),
                channels: Some(a.channels),
                lr: a.lr,
                d_lr: a.d_lr,
                beta1: Some(a.beta1),
                ema: a.ema,
                r1: Some(a.r1),
                d_steps: Some(a.d_steps),
                schedule: a.schedule,
                batch: a.batch,
                steps_per_epoch: a.steps_per_epoch,
                epochs: a.epochs,
                seed: Some(a.seed),
            };
            let data = options.load_data()?;
            gan::train_on(&options.resolve(&data, device)?, &data)?
        }
    };
    print_final(&outcome.history);
    Ok(())
}

fn print_final(history: &[GanEpoch]) {
    if let Some(e) = history.last() {
        println!(
            "done: D(x) {:.3}, D(G(z)) {:.3} after {} epochs (1/2 each at the equilibrium)",
            e.d_real, e.d_fake, e.epoch
        );
    }
}
