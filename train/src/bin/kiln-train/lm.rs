//! `kiln-train lm`: flags onto [`LmOptions`].

use std::path::PathBuf;

use kiln_train::lm::config::{Input, LmOptions, Preset, Protocol};
use kiln_train::lm::{self, Resume};
use kiln_train::optim::{Method, Schedule};
use kiln_train::run::LogStyle;

#[derive(clap::Args, Debug)]
pub struct LmArgs {
    /// Start from a preset configuration; other flags override it.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// UTF-8 text to train on, read line by line.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    corpus: Option<PathBuf>,
    /// A held-out text to measure perplexity on each epoch (instead of --valid-fraction of the
    /// corpus's lines); the vocabulary comes from the corpus alone.
    #[arg(long, value_name = "FILE", conflicts_with = "valid_fraction")]
    valid: Option<PathBuf>,
    /// How the text becomes examples [default: stream for a corpus, windows for the seed].
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    /// Stream: words per truncated back-propagation window [default: 35].
    #[arg(long)]
    bptt: Option<i64>,
    /// The output layer shares the embedding matrix (needs --embed = --hidden) [default: on
    /// for a corpus].
    #[arg(long, overrides_with = "no_tie_weights")]
    tie_weights: bool,
    /// A separate output layer.
    #[arg(long)]
    no_tie_weights: bool,
    /// Write the trained model here (ONNX).
    #[arg(long, value_name = "FILE.onnx")]
    out: Option<PathBuf>,
    /// Continue training from this checkpoint (model, data and vocabulary as saved).
    #[arg(long, value_name = "CKPT", conflicts_with_all = ["preset", "corpus", "valid", "protocol", "bptt", "tie_weights", "no_tie_weights", "input", "embed", "hidden", "layers", "dropout", "context", "optimizer", "lr", "schedule", "batch_size", "clip", "valid_fraction", "min_count", "max_vocab", "keep_case", "keep_punctuation", "seed"])]
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
    /// Windows: words of context per example.
    #[arg(long)]
    context: Option<i64>,
    /// How the weights move: adam, or plain sgd (with a large --lr such as 20 and --clip 0.25)
    /// [default: sgd for a corpus, adam for the seed].
    #[arg(long, value_enum)]
    optimizer: Option<Method>,
    /// Learning rate [default: 20 with sgd, 0.002 with adam; seed: 0.01].
    #[arg(long)]
    lr: Option<f64>,
    /// Number of passes over the training data.
    #[arg(long)]
    epochs: Option<usize>,
    /// Learning-rate schedule: constant, cosine decay to lr/100, or plateau (lr/4 after each
    /// epoch that did not lower the held-out loss, as PyTorch's word_language_model) [default:
    /// cosine; seed: constant].
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// Windows per step (0: the whole training set at once); stream: parallel streams.
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

pub fn run(a: LmArgs) -> anyhow::Result<()> {
    let device = kiln_train::device(&a.device)?;
    if let Some(checkpoint) = a.resume {
        let r = Resume { checkpoint, epochs: a.epochs, device, out: a.out, log: LogStyle::Progress };
        lm::resume(&r)?;
        return Ok(());
    }
    let options = LmOptions {
        preset: a.preset,
        corpus: a.corpus,
        valid: a.valid,
        protocol: a.protocol,
        bptt: a.bptt,
        tie_weights: match (a.tie_weights, a.no_tie_weights) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        out: a.out,
        checkpoint: a.checkpoint,
        checkpoint_every: a.checkpoint_every,
        input: a.input,
        embed: a.embed,
        hidden: a.hidden,
        layers: a.layers,
        dropout: a.dropout,
        context: a.context,
        optimizer: a.optimizer,
        lr: a.lr,
        epochs: a.epochs,
        schedule: a.schedule,
        batch_size: a.batch_size,
        clip: a.clip,
        valid_fraction: a.valid_fraction,
        min_count: a.min_count,
        max_vocab: a.max_vocab,
        keep_case: a.keep_case,
        keep_punctuation: a.keep_punctuation,
        seed: a.seed,
    };
    lm::train(&options.resolve(device)?)?;
    Ok(())
}
