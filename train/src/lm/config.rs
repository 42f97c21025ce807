//! What a next-word training run is made of, its presets and defaults, and the checks a
//! configuration must pass. `kiln-train lm` maps its flags onto [`LmOptions`] and nothing more;
//! tests build their runs through the same functions, so a changed default is tested as shipped.

use std::path::PathBuf;

use anyhow::bail;
use kiln_infer::contract::TokenizerSpec;
use serde::{Deserialize, Serialize};
use tch::Device;

use super::corpus::VocabOptions;
use super::model::{InputKind, LmConfig};
use crate::optim::{Method, Schedule};
use crate::run::{self, LogStyle};

/// Where the text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The seed lecture's six sentences.
    Seed,
    /// A UTF-8 text file, one sequence per line.
    Corpus(PathBuf),
}

/// What a training example is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// The seed lecture's: windows of `context` words read from a zero state, the last word's
    /// successor predicted.
    #[default]
    Windows,
    /// The text as one token stream (`<eos>` ending each line) in `batch_size` parallel
    /// streams, truncated back-propagation through `context` words, a prediction at every
    /// word, the state carried from one window to the next (as PyTorch's word_language_model).
    Stream,
}

/// How training runs; saved in checkpoints and in the exported file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub source: Source,
    /// A held-out text of its own (else `valid_fraction` of the lines are held out).
    #[serde(default)]
    pub valid: Option<PathBuf>,
    #[serde(default)]
    pub protocol: Protocol,
    pub tokenizer: TokenizerSpec,
    pub vocab: VocabOptions,
    /// How the weights move (Adam when absent: files and checkpoints made before SGD existed).
    #[serde(default)]
    pub optimizer: Method,
    pub lr: f64,
    pub epochs: usize,
    /// Examples per step; `None` trains on the whole set at once (the seed's full batch).
    pub batch_size: Option<usize>,
    /// Clip the gradients' global norm to this.
    pub clip: Option<f64>,
    /// Fraction of lines held out for validation.
    pub valid_fraction: f64,
    /// How the learning rate moves over the run.
    #[serde(default)]
    pub schedule: Schedule,
    pub seed: u64,
}

/// Everything one `kiln-train lm` run needs.
#[derive(Debug, Clone)]
pub struct LmRun {
    pub model: LmConfig,
    pub train: TrainConfig,
    pub device: Device,
    /// Export the trained model here.
    pub out: Option<PathBuf>,
    /// Save a checkpoint here every `checkpoint_every` epochs and at the end.
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: usize,
    pub log: LogStyle,
}

impl LmRun {
    /// The seed lecture, as `kiln-train lm --preset seed` runs it: six sentences, one-hot input,
    /// hidden 5, Adam lr 0.01, 500 full-batch epochs, on the CPU, with the lecture's log lines.
    pub fn seed_preset() -> Self {
        LmOptions { preset: Some(Preset::Seed), ..Default::default() }
            .resolve(Device::Cpu)
            .expect("the seed preset is a valid configuration")
    }

    /// A run on `corpus` with every setting at its default for a corpus.
    pub fn for_corpus(corpus: PathBuf) -> Self {
        LmOptions { corpus: Some(corpus), ..Default::default() }
            .resolve(Device::Cpu)
            .expect("the corpus defaults are a valid configuration")
    }
}

/// Named starting points for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The seed lecture: six sentences, one-hot input, hidden 5, Adam lr 0.01, 500 full-batch epochs.
    Seed,
}

/// How tokens enter the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Input {
    /// One-hot vectors (small vocabularies).
    OneHot,
    /// A learnt embedding (`embed` dimensions).
    Embedding,
}

/// A run as a user describes it: every setting optional, taking the preset's value or the
/// default for a corpus when unset. [`LmOptions::resolve`] applies the defaults and checks.
#[derive(Debug, Clone, Default)]
pub struct LmOptions {
    pub preset: Option<Preset>,
    pub corpus: Option<PathBuf>,
    pub valid: Option<PathBuf>,
    pub protocol: Option<Protocol>,
    /// Stream protocol: the truncated-BPTT length (windows: use `context`).
    pub bptt: Option<i64>,
    pub tie_weights: Option<bool>,
    pub out: Option<PathBuf>,
    /// Default: beside `out`, as `OUT.ckpt.safetensors`.
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: Option<usize>,
    pub input: Option<Input>,
    pub embed: Option<i64>,
    pub hidden: Option<i64>,
    pub layers: Option<i64>,
    pub dropout: Option<f64>,
    pub context: Option<i64>,
    pub optimizer: Option<Method>,
    pub lr: Option<f64>,
    pub epochs: Option<usize>,
    pub schedule: Option<Schedule>,
    /// 0: the whole training set at once.
    pub batch_size: Option<usize>,
    /// 0: no clipping.
    pub clip: Option<f64>,
    pub valid_fraction: Option<f64>,
    pub min_count: Option<usize>,
    pub max_vocab: Option<usize>,
    pub keep_case: bool,
    pub keep_punctuation: bool,
    pub seed: Option<u64>,
}

/// An optimiser's learning rate, schedule and gradient clipping (0: none).
struct Rates {
    lr: f64,
    schedule: Schedule,
    clip: f64,
    /// [`LmConfig::init_range`] for a corpus.
    init_range: Option<f64>,
}

/// The defaults: the seed lecture's when `seed`, else those for a corpus.
struct Defaults {
    protocol: Protocol,
    tie_weights: bool,
    input: Input,
    /// `None`: as wide as the hidden state (so that the weights can be tied).
    embed: Option<i64>,
    hidden: i64,
    layers: i64,
    dropout: f64,
    context: i64,
    optimizer: Method,
    /// Rate, schedule and clipping for each optimiser.
    adam: Rates,
    sgd: Rates,
    epochs: usize,
    batch_size: usize,
    valid_fraction: f64,
    checkpoint_every: usize,
    split_punctuation: bool,
    log: LogStyle,
}

const SEED_DEFAULTS: Defaults = Defaults {
    protocol: Protocol::Windows,
    tie_weights: false,
    input: Input::OneHot,
    embed: Some(32),
    hidden: 5,
    layers: 1,
    dropout: 0.0,
    context: 2,
    optimizer: Method::Adam,
    adam: Rates { lr: 0.01, schedule: Schedule::Constant, clip: 0.0, init_range: None },
    // Not the lecture's; a rate that learns its six sentences in as many epochs.
    sgd: Rates { lr: 1.0, schedule: Schedule::Constant, clip: 0.0, init_range: None },
    epochs: 500,
    batch_size: 0,
    valid_fraction: 0.0,
    checkpoint_every: 100,
    // The lecture's words are plain lower-case words split on spaces.
    split_punctuation: false,
    log: LogStyle::Seed,
};

/// The sizes of PyTorch's word_language_model (200 × 2 layers, dropout 0.2, BPTT 35, 20
/// streams) and its optimiser (plain SGD at 20, clipping 0.25, its ±0.1 initialisation), with
/// tied weights and the rate decayed by a cosine instead of quartered on a plateau: the
/// configuration of the shipped `models/shakespeare-lstm.onnx`. On that split, 3 epochs each
/// (models/README.md): SGD + cosine 56.74 held-out perplexity after epoch 2, SGD + plateau (the
/// example's schedule) 61.58, Adam 0.002 + cosine 66.41.
const CORPUS_DEFAULTS: Defaults = Defaults {
    protocol: Protocol::Stream,
    tie_weights: true,
    input: Input::Embedding,
    embed: None,
    hidden: 200,
    layers: 2,
    dropout: 0.2,
    context: 35,
    optimizer: Method::Sgd,
    adam: Rates { lr: 0.002, schedule: Schedule::Cosine, clip: 0.5, init_range: None },
    sgd: Rates { lr: 20.0, schedule: Schedule::Cosine, clip: 0.25, init_range: Some(0.1) },
    epochs: 3,
    batch_size: 20,
    valid_fraction: 0.1,
    checkpoint_every: 1,
    split_punctuation: true,
    log: LogStyle::Progress,
};

impl LmOptions {
    /// The run these options describe, on `device`, with defaults applied and every setting
    /// checked.
    pub fn resolve(&self, device: Device) -> anyhow::Result<LmRun> {
        for (p, flag) in [(&self.out, "--out"), (&self.checkpoint, "--checkpoint")] {
            if let Some(p) = p {
                run::check_output_folder(p, flag)?;
            }
        }
        if let Some(c) = self.clip {
            if !(c >= 0.0 && c.is_finite()) {
                bail!("--clip must be 0 (off) or a positive number, not {c}");
            }
        }
        let seed = self.preset == Some(Preset::Seed);
        let d = if seed { &SEED_DEFAULTS } else { &CORPUS_DEFAULTS };
        let source = match (&self.corpus, seed) {
            (Some(p), _) => Source::Corpus(p.clone()),
            (None, true) => Source::Seed,
            (None, false) => {
                bail!("nothing to train on: give --corpus FILE, or --preset seed for the lecture's sentences")
            }
        };
        let hidden = self.hidden.unwrap_or(d.hidden);
        let input = match self.input.unwrap_or(d.input) {
            Input::OneHot => InputKind::OneHot,
            Input::Embedding => InputKind::Embedding { dim: self.embed.or(d.embed).unwrap_or(hidden) },
        };
        let protocol = self.protocol.unwrap_or(d.protocol);
        if protocol == Protocol::Windows && self.bptt.is_some() {
            bail!("--bptt is for --protocol stream; windows take --context");
        }
        if protocol == Protocol::Stream && self.context.is_some() {
            bail!("--context is for --protocol windows; streams take --bptt");
        }
        let optimizer = self.optimizer.unwrap_or(d.optimizer);
        let rates = match optimizer {
            Method::Adam => &d.adam,
            Method::Sgd => &d.sgd,
        };
        let model = LmConfig {
            vocab: 0, // set from the data
            input,
            hidden,
            layers: self.layers.unwrap_or(d.layers),
            dropout: self.dropout.unwrap_or(d.dropout),
            context: self.bptt.or(self.context).unwrap_or(d.context),
            // Tied by default wherever the widths allow it.
            tie_weights: self
                .tie_weights
                .unwrap_or(d.tie_weights && input == InputKind::Embedding { dim: hidden }),
            init_range: rates.init_range,
        };
        let train = TrainConfig {
            source,
            valid: self.valid.clone(),
            protocol,
            tokenizer: TokenizerSpec {
                lowercase: !self.keep_case,
                split_punctuation: !self.keep_punctuation && d.split_punctuation,
            },
            vocab: VocabOptions { min_count: self.min_count.unwrap_or(1), max_vocab: self.max_vocab },
            optimizer,
            lr: self.lr.unwrap_or(rates.lr),
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: match self.batch_size.unwrap_or(d.batch_size) {
                0 => None,
                n => Some(n),
            },
            clip: match self.clip.unwrap_or(rates.clip) {
                c if c > 0.0 => Some(c),
                _ => None,
            },
            valid_fraction: self.valid_fraction.unwrap_or(if self.valid.is_some() {
                0.0
            } else {
                d.valid_fraction
            }),
            schedule: self.schedule.unwrap_or(rates.schedule),
            seed: self.seed.unwrap_or(0),
        };
        validate(&model, &train)?;
        Ok(LmRun {
            model,
            train,
            device,
            checkpoint: self.checkpoint.clone().or_else(|| run::default_checkpoint(self.out.as_deref())),
            out: self.out.clone(),
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
            log: d.log,
        })
    }
}

/// The checks every configuration passes before any data is read.
pub fn validate(m: &LmConfig, t: &TrainConfig) -> anyhow::Result<()> {
    if let InputKind::Embedding { dim } = m.input {
        if dim < 1 {
            bail!("--embed must be at least 1");
        }
    }
    if m.hidden < 1 || m.layers < 1 || m.context < 1 {
        bail!("--hidden, --layers and --context must be at least 1");
    }
    if m.tie_weights && m.input != (InputKind::Embedding { dim: m.hidden }) {
        bail!(
            "--tie-weights needs an embedding as wide as the hidden state: --embed {0} --hidden {0}",
            m.hidden
        );
    }
    if t.protocol == Protocol::Stream && t.source == Source::Seed {
        bail!("the seed lecture trains on windows: --protocol stream needs --corpus");
    }
    if t.valid.is_some() && t.valid_fraction > 0.0 {
        bail!("give --valid FILE or --valid-fraction, not both");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_preset_is_the_lecture() {
        let run = LmRun::seed_preset();
        assert_eq!(run.model.input, InputKind::OneHot);
        assert_eq!((run.model.hidden, run.model.layers, run.model.context), (5, 1, 2));
        assert_eq!((run.train.lr, run.train.epochs, run.train.batch_size), (0.01, 500, None));
        assert_eq!(run.train.source, Source::Seed);
        assert!(!run.train.tokenizer.split_punctuation);
        assert_eq!(run.log, LogStyle::Seed);
    }

    #[test]
    fn options_override_the_preset_and_are_checked() {
        let o = LmOptions { preset: Some(Preset::Seed), hidden: Some(7), ..Default::default() };
        assert_eq!(o.resolve(Device::Cpu).unwrap().model.hidden, 7);
        let o = LmOptions { preset: Some(Preset::Seed), dropout: Some(1.5), ..Default::default() };
        assert!(o.resolve(Device::Cpu).unwrap_err().to_string().contains("--dropout"));
        assert!(LmOptions::default().resolve(Device::Cpu).is_err(), "no corpus and no preset");
    }

    #[test]
    fn a_corpus_run_checkpoints_beside_its_model() {
        let o = LmOptions {
            corpus: Some("book.txt".into()),
            out: Some("book.onnx".into()),
            ..Default::default()
        };
        let run = o.resolve(Device::Cpu).unwrap();
        assert_eq!(run.checkpoint.unwrap(), PathBuf::from("book.ckpt.safetensors"));
        assert_eq!(run.model.input, InputKind::Embedding { dim: 200 });
        assert!(run.model.tie_weights && run.train.protocol == Protocol::Stream);
        assert!(run.train.tokenizer.split_punctuation);
    }

    #[test]
    fn each_optimiser_brings_its_own_rate_schedule_clipping_and_init_unless_set() {
        let corpus = |optimizer, lr| LmOptions {
            corpus: Some("book.txt".into()),
            optimizer,
            lr,
            ..Default::default()
        };
        let sgd = corpus(None, None).resolve(Device::Cpu).unwrap();
        assert_eq!(sgd.train.optimizer, Method::Sgd, "a corpus trains with SGD by default");
        assert_eq!((sgd.train.lr, sgd.train.clip, sgd.model.init_range), (20.0, Some(0.25), Some(0.1)));
        assert_eq!(sgd.train.schedule, Schedule::Cosine);
        let adam = corpus(Some(Method::Adam), None).resolve(Device::Cpu).unwrap();
        assert_eq!((adam.train.lr, adam.train.clip, adam.model.init_range), (0.002, Some(0.5), None));
        assert_eq!(adam.train.schedule, Schedule::Cosine);
        assert_eq!(corpus(Some(Method::Adam), Some(0.01)).resolve(Device::Cpu).unwrap().train.lr, 0.01);
        let seed = LmRun::seed_preset();
        assert_eq!(
            (seed.train.optimizer, seed.train.schedule, seed.model.init_range),
            (Method::Adam, Schedule::Constant, None)
        );
    }
}
