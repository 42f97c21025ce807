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
    /// Train a GAN on a built-in 2-D mixture (ring8, grid25) and export its generator.
    Gan(GanArgs),
    /// Measure an exported generator's samples against the data's modes (PacGAN's metrics).
    Eval(EvalArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum LossArg {
    /// G minimises log(1 − D(G(z))), the seed's objective as written.
    Minimax,
    /// G maximises log D(G(z)) (Goodfellow et al. advise it).
    NonSaturating,
}

#[derive(clap::Args, Debug)]
struct GanArgs {
    /// Network family (only the fully connected `mlp` so far).
    #[arg(long, default_value = "mlp", value_parser = ["mlp"])]
    arch: String,
    /// Training data: ring8 or grid25.
    #[arg(long, value_parser = ["ring8", "grid25"])]
    data: String,
    /// G's objective.
    #[arg(long, value_enum, default_value = "non-saturating")]
    loss: LossArg,
    /// Write the generator here (ONNX).
    #[arg(long, value_name = "FILE.onnx")]
    out: Option<PathBuf>,
    /// Noise size.
    #[arg(long, default_value_t = 2)]
    latent: i64,
    /// Width of the hidden layers of G and D.
    #[arg(long, default_value_t = 128)]
    hidden: i64,
    /// Hidden layers of G.
    #[arg(long, default_value_t = 3)]
    g_layers: i64,
    /// Hidden layers of D.
    #[arg(long, default_value_t = 3)]
    d_layers: i64,
    /// Batch normalisation in G.
    #[arg(long)]
    batch_norm: bool,
    /// PacGAN packing degree (D judges this many samples together; 1 = plain GAN).
    #[arg(long, default_value_t = 1)]
    pack: i64,
    /// Adam learning rate (both networks).
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
    /// Adam β1.
    #[arg(long, default_value_t = 0.5)]
    beta1: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value = "cosine")]
    schedule: ScheduleArg,
    /// Packs per step.
    #[arg(long, default_value_t = 256)]
    batch: i64,
    /// Steps (one D update and one G update each) per epoch.
    #[arg(long, default_value_t = 500)]
    steps_per_epoch: usize,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
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
    /// The data it should reproduce.
    #[arg(long, value_parser = ["ring8", "grid25"])]
    data: String,
    /// How many samples to draw.
    #[arg(long, default_value_t = 2500)]
    samples: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
    use kiln_train::gan::MlpGanConfig;
    use kiln_train::train_gan::{GanLoss, GanRun, GanTrainConfig};
    if let Some(p) = &a.out {
        check_out_dir(p, "--out")?;
    }
    if a.latent < 1 || a.hidden < 1 || a.g_layers < 1 || a.d_layers < 1 || a.pack < 1 || a.batch < 1 {
        bail!("--latent, --hidden, --g-layers, --d-layers, --pack and --batch must be at least 1");
    }
    if a.epochs == 0 || a.steps_per_epoch == 0 || !(a.lr > 0.0) {
        bail!("--epochs and --steps-per-epoch must be at least 1 and --lr positive");
    }
    let run = GanRun {
        model: MlpGanConfig {
            latent: a.latent,
            hidden: a.hidden,
            g_layers: a.g_layers,
            d_layers: a.d_layers,
            dim: 2,
            batch_norm: a.batch_norm,
            pack: a.pack,
        },
        train: GanTrainConfig {
            data: a.data,
            loss: match a.loss {
                LossArg::Minimax => GanLoss::Minimax,
                LossArg::NonSaturating => GanLoss::NonSaturating,
            },
            lr: a.lr,
            beta1: a.beta1,
            batch: a.batch,
            steps_per_epoch: a.steps_per_epoch,
            epochs: a.epochs,
            schedule: match a.schedule {
                ScheduleArg::Constant => Schedule::Constant,
                ScheduleArg::Cosine => Schedule::Cosine,
            },
            seed: a.seed,
        },
        device: kiln_train::device(&a.device)?,
        out: a.out,
        verbose: true,
    };
    kiln_train::train_gan::train_gan(&run)?;
    Ok(())
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let data = kiln_train::toy2d::Mixture::by_name(&a.data).expect("clap checked the name");
    let g = kiln_infer::generator::GeneratorModel::load(&a.model)?;
    if g.meta().output_shape != [2] {
        bail!(
            "{} makes samples of shape {:?}; --data {} needs 2-D points",
            a.model.display(),
            g.meta().output_shape,
            a.data
        );
    }
    let samples = g.sample(a.samples, a.seed)?;
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
