//! `kiln-train`: the training command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use kiln_infer::contract::TokenizerSpec;
use kiln_train::corpus::VocabOptions;
use kiln_train::lm::{InputKind, LmConfig};
use kiln_train::train_lm::{self, LmRun, LogStyle, Schedule, Source, TrainConfig};

/// Train kiln models on libtorch and export them to ONNX for the `kiln` inference binary.
#[derive(Parser, Debug)]
#[command(name = "kiln-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a word-level next-word LSTM and export it to ONNX.
    Lm(LmArgs),
    /// Train a GAN (2-D mixtures, Fashion-MNIST, IDX or picture folders) and export its generator.
    Gan(GanArgs),
    /// Measure an exported generator's samples: PacGAN's mode metrics (2-D) or classifier-based
    /// Inception Score, Fréchet distance and class histogram (Fashion-MNIST).
    Eval(EvalArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum LossArg {
    /// G minimises log(1 − D(G(z))), the seed's objective as written.
    Minimax,
    /// G maximises log D(G(z)) (Goodfellow et al. advise it).
    NonSaturating,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ArchArg {
    /// Fully connected G and D (the seed lecture's GAN), for 2-D data.
    Mlp,
    /// Radford et al.'s convolutional GAN, for 28×28, 32×32 and 64×64 images.
    Dcgan,
}

#[derive(clap::Args, Debug)]
struct GanArgs {
    /// Network family [default: mlp for 2-D data, dcgan for images].
    #[arg(long, value_enum)]
    arch: Option<ArchArg>,
    /// Training data: ring8, grid25 (built in), fashion-mnist (Debian's dataset-fashion-mnist),
    /// idx:FOLDER (MNIST-format files, gzipped or not) or images:FOLDER (PNG/JPEG pictures).
    #[arg(long, required_unless_present = "resume")]
    data: Option<String>,
    /// Continue the run saved in this checkpoint (model, data and settings as saved; --epochs
    /// may raise the total).
    #[arg(long, value_name = "CKPT", conflicts_with_all = ["arch", "data", "loss", "latent", "hidden", "g_layers", "d_layers", "batch_norm", "pack", "maxout", "d_steps", "g_width", "d_width", "image_size", "channels", "lr", "d_lr", "beta1", "r1", "schedule", "batch", "steps_per_epoch", "seed"])]
    resume: Option<PathBuf>,
    /// G's objective.
    #[arg(long, value_enum, default_value = "non-saturating")]
    loss: LossArg,
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
    #[arg(long, default_value_t = 128)]
    hidden: i64,
    /// mlp: hidden layers of G.
    #[arg(long, default_value_t = 3)]
    g_layers: i64,
    /// mlp: hidden layers of D.
    #[arg(long, default_value_t = 3)]
    d_layers: i64,
    /// mlp: batch normalisation in G.
    #[arg(long)]
    batch_norm: bool,
    /// mlp: PacGAN packing degree (D judges this many samples together; 1 = plain GAN).
    #[arg(long, default_value_t = 1)]
    pack: i64,
    /// mlp: D's hidden units are maxout units of this many pieces (as in the VEEGAN and PacGAN
    /// 2-D experiments); 1: LeakyReLU(0.2).
    #[arg(long, default_value_t = 1)]
    maxout: i64,
    /// dcgan: channels of G's last hidden layer (doubling towards the noise).
    #[arg(long, default_value_t = 64)]
    g_width: i64,
    /// dcgan: channels of D's first layer (doubling towards the output).
    #[arg(long, default_value_t = 64)]
    d_width: i64,
    /// images:FOLDER: side of the square training images (centre-cropped, resized): 28, 32 or 64.
    #[arg(long, default_value_t = 64)]
    image_size: u32,
    /// images:FOLDER: 1 (grayscale) or 3 (RGB).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=3))]
    channels: u32,
    /// Adam learning rate, both networks [default: 3e-4 for mlp, 2e-4 for dcgan].
    #[arg(long)]
    lr: Option<f64>,
    /// D's learning rate, when it should differ from G's (two time-scale update rule, Heusel
    /// et al. 2017) [default: --lr].
    #[arg(long)]
    d_lr: Option<f64>,
    /// Adam β1.
    #[arg(long, default_value_t = 0.5)]
    beta1: f64,
    /// Export an exponential moving average of G's weights with this decay (Yazıcı et al.
    /// 2019), e.g. 0.999; 0: off, G as trained [default: 0]. With --resume: start (or re-decay)
    /// the average from the checkpoint's weights.
    #[arg(long)]
    ema: Option<f64>,
    /// R1 gradient penalty on real data, weight γ (Mescheder et al. 2018); 0: off.
    #[arg(long, default_value_t = 0.0)]
    r1: f64,
    /// D updates per G update (k in Goodfellow et al. 2014, Algorithm 1).
    #[arg(long, default_value_t = 1)]
    d_steps: usize,
    /// Learning-rate schedule [default: cosine for mlp, constant for dcgan].
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
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
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to train.
    #[arg(long, default_value = "auto", value_parser = ["cpu", "cuda", "auto"])]
    device: String,
}

#[derive(clap::Args, Debug)]
struct EvalArgs {
    /// The exported generator.
    model: PathBuf,
    /// The data it should reproduce: ring8, grid25 (PacGAN's mode metrics) or fashion-mnist
    /// (Inception Score, Fréchet distance and class histogram with a Fashion-MNIST classifier).
    #[arg(long, value_parser = ["ring8", "grid25", "fashion-mnist"])]
    data: String,
    /// How many samples to draw [default: 2500 for 2-D data, 10000 for fashion-mnist].
    #[arg(long)]
    samples: Option<usize>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// fashion-mnist: the classifier's cache file (trained on first use) [default:
    /// ~/.cache/kiln/fashion-mnist-classifier.safetensors].
    #[arg(long, value_name = "FILE")]
    classifier: Option<PathBuf>,
    /// fashion-mnist: epochs to train the classifier when it is not cached.
    #[arg(long, default_value_t = 3)]
    classifier_epochs: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Preset {
    /// The seed lecture: six sentences, one-hot input, hidden 5, Adam lr 0.01, 500 full-batch epochs.
    Seed,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ScheduleArg {
    Constant,
    Cosine,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// One-hot vectors (small vocabularies).
    OneHot,
    /// A learnt embedding (--embed dimensions).
    Embedding,
}

#[derive(clap::Args, Debug)]
struct LmArgs {
    /// Start from a preset configuration; other flags override it.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// UTF-8 text to train on; each non-empty line is one sequence.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    corpus: Option<PathBuf>,
    /// Write the trained model here (ONNX).
    #[arg(long, value_name = "FILE.onnx")]
    out: Option<PathBuf>,
    /// Continue training from this checkpoint (model, data and vocabulary as saved).
    #[arg(long, value_name = "CKPT", conflicts_with_all = ["preset", "corpus", "input", "embed", "hidden", "layers", "dropout", "context", "lr", "schedule", "batch_size", "clip", "valid_fraction", "min_count", "max_vocab", "keep_case", "keep_punctuation", "seed"])]
    resume: Option<PathBuf>,
    /// Save a checkpoint (safetensors) here; default: next to --out, as FILE.ckpt.safetensors.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Save a checkpoint every N epochs (and always after the last).
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// Input layer.
    #[arg(long, value_enum)]
    input: Option<Input>,
    /// Embedding size (with --input embedding).
    #[arg(long)]
    embed: Option<i64>,
    /// LSTM hidden size.
    #[arg(long)]
    hidden: Option<i64>,
    /// Number of stacked LSTM layers.
    #[arg(long)]
    layers: Option<i64>,
    /// Dropout probability (input, between layers, before the head), in training only.
    #[arg(long)]
    dropout: Option<f64>,
    /// Words of context per example.
    #[arg(long)]
    context: Option<i64>,
    /// Adam learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Number of passes over the training data.
    #[arg(long)]
    epochs: Option<usize>,
    /// Learning-rate schedule: constant, or cosine decay to lr/100 [default: cosine; seed: constant].
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    /// Examples per step (0: the whole training set at once).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Clip the gradients' global norm to this (0: no clipping).
    #[arg(long)]
    clip: Option<f64>,
    /// Fraction of lines held out to measure perplexity each epoch.
    #[arg(long)]
    valid_fraction: Option<f64>,
    /// Words seen fewer times become <unk>.
    #[arg(long)]
    min_count: Option<usize>,
    /// Keep at most this many words (most frequent first), <unk> included.
    #[arg(long)]
    max_vocab: Option<usize>,
    /// Keep upper case (default: lower-case the text).
    #[arg(long)]
    keep_case: bool,
    /// Keep punctuation attached to words (default: punctuation marks are tokens).
    #[arg(long)]
    keep_punctuation: bool,
    /// Random seed: the same seed gives the same model on CPU.
    #[arg(long)]
    seed: Option<u64>,
    /// Where to train.
    #[arg(long, default_value = "auto", value_parser = ["cpu", "cuda", "auto"])]
    device: String,
}

fn main() -> ExitCode {
    // Training logs go to stdout with println!: behave like other Unix tools when the reader
    // goes away (`kiln-train … | head`) and end quietly instead of panicking on a closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lm(args) => lm(args),
        Command::Gan(args) => gan(args),
        Command::Eval(args) => eval(args),
    }
}

fn check_out_dir(path: &std::path::Path, flag: &str) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        bail!("{flag} {}: the folder {} does not exist", path.display(), dir.display());
    }
    Ok(())
}

fn lm(a: LmArgs) -> anyhow::Result<()> {
    let device = kiln_train::device(&a.device)?;
    for (p, flag) in [(&a.out, "--out"), (&a.checkpoint, "--checkpoint")] {
        if let Some(p) = p {
            check_out_dir(p, flag)?;
        }
    }
    if let Some(ckpt) = &a.resume {
        let log = LogStyle::Progress;
        train_lm::resume_lm(ckpt, a.epochs, device, a.out.clone(), log)?;
        return Ok(());
    }
    let seed = a.preset == Some(Preset::Seed);
    let source = match (&a.corpus, seed) {
        (Some(p), _) => Source::Corpus(p.clone()),
        (None, true) => Source::Seed,
        (None, false) => {
            bail!("nothing to train on: give --corpus FILE, or --preset seed for the lecture's sentences")
        }
    };
    let input = match a.input.unwrap_or(if seed { Input::OneHot } else { Input::Embedding }) {
        Input::OneHot => InputKind::OneHot,
        Input::Embedding => InputKind::Embedding { dim: a.embed.unwrap_or(32) },
    };
    let model = LmConfig {
        vocab: 0, // set from the data
        input,
        hidden: a.hidden.unwrap_or(if seed { 5 } else { 128 }),
        layers: a.layers.unwrap_or(1),
        dropout: a.dropout.unwrap_or(0.0),
        context: a.context.unwrap_or(if seed { 2 } else { 3 }),
    };
    let train = TrainConfig {
        source,
        tokenizer: TokenizerSpec { lowercase: !a.keep_case, split_punctuation: !a.keep_punctuation && !seed },
        vocab: VocabOptions { min_count: a.min_count.unwrap_or(1), max_vocab: a.max_vocab },
        lr: a.lr.unwrap_or(if seed { 0.01 } else { 0.002 }),
        epochs: a.epochs.unwrap_or(if seed { 500 } else { 10 }),
        batch_size: match a.batch_size.unwrap_or(if seed { 0 } else { 64 }) {
            0 => None,
            n => Some(n),
        },
        clip: match a.clip.unwrap_or(if seed { 0.0 } else { 5.0 }) {
            c if c > 0.0 => Some(c),
            _ => None,
        },
        valid_fraction: a.valid_fraction.unwrap_or(if seed { 0.0 } else { 0.1 }),
        schedule: match a.schedule.unwrap_or(if seed { ScheduleArg::Constant } else { ScheduleArg::Cosine }) {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Cosine => Schedule::Cosine,
        },
        seed: a.seed.unwrap_or(0),
    };
    validate(&model, &train)?;
    let checkpoint =
        a.checkpoint.clone().or_else(|| a.out.as_ref().map(|o| o.with_extension("ckpt.safetensors")));
    let run = LmRun {
        model,
        train,
        device,
        out: a.out,
        checkpoint,
        checkpoint_every: a.checkpoint_every.unwrap_or(if seed { 100 } else { 1 }),
        log: if seed { LogStyle::Seed } else { LogStyle::Progress },
    };
    train_lm::train_lm(&run)?;
    Ok(())
}

fn validate(m: &LmConfig, t: &TrainConfig) -> anyhow::Result<()> {
    if let InputKind::Embedding { dim } = m.input {
        if dim < 1 {
            bail!("--embed must be at least 1");
        }
    }
    if m.hidden < 1 || m.layers < 1 || m.context < 1 {
        bail!("--hidden, --layers and --context must be at least 1");
    }
    if !(0.0..1.0).contains(&m.dropout) {
        bail!("--dropout must be in [0, 1)");
    }
    if !(t.lr > 0.0 && t.lr.is_finite()) {
        bail!("--lr must be a positive number");
    }
    if t.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if !(0.0..1.0).contains(&t.valid_fraction) {
        bail!("--valid-fraction must be in [0, 1)");
    }
    if t.vocab.max_vocab == Some(0) {
        bail!("--max-vocab must be at least 1");
    }
    Ok(())
}

fn gan(a: GanArgs) -> anyhow::Result<()> {
    use kiln_train::dcgan::DcganConfig;
    use kiln_train::gan::MlpGanConfig;
    use kiln_train::image_data::FolderOptions;
    use kiln_train::train_gan::{self, GanArch, GanLog, GanLoss, GanRun, GanTrainConfig, TrainData};
    for (p, flag) in [(&a.out, "--out"), (&a.checkpoint, "--checkpoint")] {
        if let Some(p) = p {
            check_out_dir(p, flag)?;
        }
    }
    let device = kiln_train::device(&a.device)?;
    let out_stem = |suffix: &str| {
        a.out.as_ref().map(|o| {
            let stem = o.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            o.with_file_name(format!("{stem}{suffix}"))
        })
    };
    let checkpoint = a.checkpoint.clone().or_else(|| out_stem(".ckpt.safetensors"));
    let log_dir = a.log_dir.clone().or_else(|| out_stem("-log"));
    if let Some(ckpt) = &a.resume {
        if a.epochs == Some(0) {
            bail!("--epochs must be at least 1");
        }
        let out = a.out.clone();
        if a.ema.is_some_and(|e| !(0.0..1.0).contains(&e)) {
            bail!("--ema must be in [0, 1): 0 (off) or a decay such as 0.999");
        }
        let run = train_gan::resume_gan(ckpt, a.epochs, a.ema, device, out, log_dir, GanLog::Progress)?;
        print_final(&run.history);
        return Ok(());
    }
    let spec = a.data.clone().expect("clap requires --data without --resume");
    let folder = FolderOptions { size: a.image_size, channels: a.channels };
    // Load once here to pick defaults from the data (2-D points or images) and fail early.
    let data = TrainData::load(&spec, Some(folder))?;
    let images = !matches!(data, TrainData::Points(_));
    let arch_arg = a.arch.unwrap_or(if images { ArchArg::Dcgan } else { ArchArg::Mlp });
    let dc = arch_arg == ArchArg::Dcgan;
    let latent = a.latent.unwrap_or(if dc { 100 } else { 2 });
    let shape = data.sample_shape();
    let arch = match arch_arg {
        ArchArg::Mlp => GanArch::Mlp(MlpGanConfig {
            latent,
            hidden: a.hidden,
            g_layers: a.g_layers,
            d_layers: a.d_layers,
            dim: shape.iter().product::<usize>() as i64,
            batch_norm: a.batch_norm,
            pack: a.pack,
            maxout: a.maxout,
        }),
        ArchArg::Dcgan => GanArch::Dcgan(DcganConfig {
            latent,
            channels: shape.first().copied().unwrap_or(0) as i64,
            size: shape.last().copied().unwrap_or(0) as i64,
            g_width: a.g_width,
            d_width: a.d_width,
        }),
    };
    if [latent, a.hidden, a.g_layers, a.d_layers, a.pack, a.maxout, a.g_width, a.d_width]
        .iter()
        .any(|&v| v < 1)
    {
        bail!(
            "--latent, --hidden, --g-layers, --d-layers, --pack, --maxout, --g-width and --d-width must be at \
             least 1"
        );
    }
    let train = GanTrainConfig {
        folder: spec.starts_with("images:").then_some(folder),
        data: spec,
        loss: match a.loss {
            LossArg::Minimax => GanLoss::Minimax,
            LossArg::NonSaturating => GanLoss::NonSaturating,
        },
        lr: a.lr.unwrap_or(if dc { 2e-4 } else { 3e-4 }),
        d_lr: a.d_lr,
        beta1: a.beta1,
        batch: a.batch.unwrap_or(if dc { 128 } else { 256 }),
        steps_per_epoch: a.steps_per_epoch.or((!images).then_some(500)),
        epochs: a.epochs.unwrap_or(if dc { 5 } else { 20 }),
        schedule: match a.schedule.unwrap_or(if dc { ScheduleArg::Constant } else { ScheduleArg::Cosine }) {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Cosine => Schedule::Cosine,
        },
        r1: a.r1,
        d_steps: a.d_steps,
        ema: a.ema.unwrap_or(0.0),
        seed: a.seed,
    };
    if !(0.0..1.0).contains(&train.ema) {
        bail!("--ema must be in [0, 1): 0 (off) or a decay such as 0.999");
    }
    if !(train.r1 >= 0.0 && train.r1.is_finite()) {
        bail!("--r1 must be 0 (off) or a positive number");
    }
    if train.epochs == 0 || train.steps_per_epoch == Some(0) || train.batch < 1 || train.d_steps == 0 {
        bail!("--epochs, --steps-per-epoch, --batch and --d-steps must be at least 1");
    }
    let positive = |v: f64| v > 0.0 && v.is_finite();
    if !positive(train.lr) || !train.d_lr.is_none_or(positive) || !(0.0..1.0).contains(&train.beta1) {
        bail!("--lr and --d-lr must be positive numbers and --beta1 in [0, 1)");
    }
    let run = GanRun { model: arch, train, device, out: a.out, checkpoint, log_dir, log: GanLog::Progress };
    let outcome = train_gan::train_from_loaded(&run, &data)?;
    print_final(&outcome.history);
    Ok(())
}

fn print_final(history: &[kiln_train::train_gan::GanEpoch]) {
    if let Some(e) = history.last() {
        println!(
            "done: D(x) {:.3}, D(G(z)) {:.3} after {} epochs (1/2 each at the equilibrium)",
            e.d_real, e.d_fake, e.epoch
        );
    }
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let g = kiln_infer::generator::GeneratorModel::load(&a.model)?;
    if a.samples == Some(0) {
        bail!("--samples must be at least 1");
    }
    if a.data == "fashion-mnist" {
        return eval_fashion(&a, &g);
    }
    let data = kiln_train::toy2d::Mixture::by_name(&a.data).expect("clap checked the name");
    if g.meta().output_shape != [2] {
        bail!(
            "{} makes samples of shape {:?}; --data {} needs 2-D points",
            a.model.display(),
            g.meta().output_shape,
            a.data
        );
    }
    let samples = g.sample(a.samples.unwrap_or(2500), a.seed)?;
    let m = data.evaluate(&samples.data);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        println!(
            "{}: {}/{} modes covered, {:.1}% high quality, reverse KL {:.4} ({} samples, seed {})",
            m.data,
            m.modes_covered,
            m.modes,
            100.0 * m.high_quality,
            m.reverse_kl,
            m.samples,
            a.seed
        );
    }
    Ok(())
}

fn eval_fashion(a: &EvalArgs, g: &kiln_infer::generator::GeneratorModel) -> anyhow::Result<()> {
    use kiln_train::classifier;
    use kiln_train::image_data::{self, Split, FASHION_CLASSES};
    if g.meta().output_shape != [1, 28, 28] {
        bail!(
            "{} makes samples of shape {:?}; --data fashion-mnist needs 1×28×28 images",
            a.model.display(),
            g.meta().output_shape
        );
    }
    let train = image_data::load_fashion_mnist(Split::Train)?;
    let test = image_data::load_fashion_mnist(Split::Test)?;
    let cache = a.classifier.clone().or_else(classifier::default_cache);
    if !a.json && !cache.as_ref().is_some_and(|c| c.is_file()) {
        println!("training the Fashion-MNIST classifier ({} epochs; cached afterwards)", a.classifier_epochs);
    }
    let cls = classifier::load_or_train(cache.as_deref(), &train, &test, a.classifier_epochs, 0, !a.json)?;
    let n = a.samples.unwrap_or(10_000);
    let samples = g.sample(n, a.seed)?;
    let images = tch::Tensor::from_slice(&samples.data).view([n as i64, 1, 28, 28]);
    let (test_features, test_probs) = cls.model.run(&test.images);
    let test_gauss = classifier::gaussian(&test_features);
    let generated = classifier::quality(&cls.model, &images, &test_gauss)?;
    // The real reference: IS and histogram of the test set; the Fréchet distance of as many
    // training images (a fixed random subset) to the test set, the floor a generator can reach.
    tch::manual_seed(0);
    let pick = tch::Tensor::randperm(train.len() as i64, (tch::Kind::Int64, tch::Device::Cpu)).narrow(
        0,
        0,
        (n.min(train.len())) as i64,
    );
    let real_train = classifier::quality(&cls.model, &train.images.index_select(0, &pick), &test_gauss)?;
    let real = classifier::Quality {
        images: test.len(),
        inception_score: classifier::inception_score(&test_probs),
        frechet_distance: real_train.frechet_distance,
        class_histogram: classifier::class_histogram(&test_probs),
    };
    let ratio = generated.inception_score / real.inception_score;
    let balanced = generated.class_histogram.iter().all(|&f| (0.05..=0.15).contains(&f));
    if a.json {
        let report = serde_json::json!({
            "model": a.model.display().to_string(),
            "seed": a.seed,
            "classifier": {"test_accuracy": cls.info.test_accuracy, "epochs": cls.info.epochs, "cached": cls.cached},
            "classes": FASHION_CLASSES,
            "generated": generated,
            "real": real,
            "real_frechet_reference": format!("{} training images vs the test set", real_train.images),
            "is_ratio": ratio,
            "classes_within_5_to_15_percent": balanced,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "classifier: {:.2}% accuracy on the {} test images{}",
        100.0 * cls.info.test_accuracy,
        test.len(),
        if cls.cached { " (cached)" } else { "" }
    );
    println!("{:<28} {:>10} {:>10}", "", "generated", "real");
    println!("{:<28} {:>10} {:>10}", "images", generated.images, real.images);
    println!("{:<28} {:>10.3} {:>10.3}", "Inception Score", generated.inception_score, real.inception_score);
    println!(
        "{:<28} {:>10.3} {:>10.3}",
        "Fréchet distance to test", generated.frechet_distance, real.frechet_distance
    );
    for (i, name) in FASHION_CLASSES.iter().enumerate() {
        println!(
            "{:<28} {:>9.1}% {:>9.1}%",
            format!("class {i} {name}"),
            100.0 * generated.class_histogram[i],
            100.0 * real.class_histogram[i]
        );
    }
    println!(
        "IS ratio {:.3} (generated / real test set); every class between 5% and 15%: {}",
        ratio,
        if balanced { "yes" } else { "no" }
    );
    println!("(real Fréchet distance: {} training images vs the test set)", real_train.images);
    Ok(())
}
