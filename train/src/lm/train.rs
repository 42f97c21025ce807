//! The next-word training loop: data, epochs of Adam or SGD on minibatches (windows or truncated-BPTT
//! stream windows, see [`Protocol`]), held-out perplexity, checkpoints, resume, and the checked
//! export at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use kiln_infer::contract::NextWordMeta;
use kiln_infer::ndarray::Array2;
use kiln_infer::text::Vocab;
use kiln_infer::{LoadOptions, NextWordModel};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::config::{LmRun, Protocol, Source, TrainConfig};
use super::corpus::{self, Windows};
use super::model::{InputKind, LmConfig, TextLstm, MAX_ONE_HOT_VOCAB};
use crate::checkpoint;
use crate::optim::{Optimizer, Schedule};
use crate::run::{self, LogStyle, Progress};

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's steps (before each step's update).
    pub train_loss: f64,
    /// Predictions trained on per second of the epoch's training steps (held-out evaluation
    /// not counted).
    #[serde(default)]
    pub words_per_second: f64,
    /// Held-out cross-entropy (nats per word), when there is a held-out set.
    pub valid_loss: Option<f64>,
}

/// The checkpoint's JSON (its kind and format are [`checkpoint::NEXT_WORD`]'s).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointInfo {
    epochs_done: usize,
    adam_step: i64,
    model: LmConfig,
    train: TrainConfig,
    vocab: Vec<String>,
    history: Vec<EpochStats>,
}

/// Training or held-out examples, as the run's [`Protocol`] reads text.
#[derive(Debug, Clone)]
pub enum Examples {
    Windows(Windows),
    /// One token stream ([`corpus::stream`]).
    Stream(Vec<i64>),
}

impl Examples {
    /// Predictions the examples hold.
    pub fn len(&self) -> usize {
        match self {
            Examples::Windows(w) => w.len(),
            Examples::Stream(s) => s.len().saturating_sub(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `--batch-size` (`None`: unset) means for these examples: windows per minibatch (all
    /// by default), or parallel streams (1 by default).
    fn batch(&self, batch_size: Option<usize>) -> usize {
        match self {
            Examples::Windows(w) => batch_size.unwrap_or(w.len()).clamp(1, w.len().max(1)),
            Examples::Stream(_) => batch_size.unwrap_or(1).max(1),
        }
    }

    /// Optimiser steps in an epoch of `batch` ([`Examples::batch`]), in BPTT windows of `bptt`
    /// (streams).
    fn steps(&self, batch: usize, bptt: usize) -> usize {
        match self {
            Examples::Windows(w) => w.len().div_ceil(batch),
            Examples::Stream(s) => (s.len() / batch).saturating_sub(1).div_ceil(bptt),
        }
    }

    /// Predictions trained on in an epoch: every window, or every stream position but the last
    /// of each of `batch` rows (the tail that does not fill a row is left out).
    fn trained(&self, batch: usize) -> usize {
        match self {
            Examples::Windows(w) => w.len(),
            Examples::Stream(s) => batch * (s.len() / batch).saturating_sub(1),
        }
    }
}

/// The data of one run.
#[derive(Debug, Clone)]
pub struct LmData {
    pub vocab: Vocab,
    pub train: Examples,
    pub valid: Examples,
    /// Held-out words read as `<unk>` (stream protocol; windows skip nothing but count none).
    pub valid_unknown: usize,
}

impl LmData {
    /// The training windows (the windows protocol).
    pub fn train_windows(&self) -> Option<&Windows> {
        match &self.train {
            Examples::Windows(w) => Some(w),
            Examples::Stream(_) => None,
        }
    }
}

/// A finished run: the model (still in memory) and its history.
pub struct LmOutcome {
    pub vs: nn::VarStore,
    pub model: TextLstm,
    pub data: LmData,
    pub meta: NextWordMeta,
    pub history: Vec<EpochStats>,
}

impl LmOutcome {
    /// Logits `[n, vocab]` for windows `[n, context]`, in evaluation mode.
    pub fn logits(&self, tokens: &Tensor) -> Tensor {
        tch::no_grad(|| self.model.forward(&tokens.to_device(self.vs.device()), None, false).0)
    }
}

/// Reads the text and builds the vocabulary (from the training text only) and the examples.
/// With `vocab` given (on resume) it is reused as is: a model's vocabulary never changes under it.
pub fn prepare_data(train: &TrainConfig, context: usize, vocab: Option<Vocab>) -> anyhow::Result<LmData> {
    let read = |path: &Path, what: &str| corpus::read_text(path, what, corpus::MAX_TEXT_BYTES);
    let text = match &train.source {
        Source::Seed => corpus::SEED_SENTENCES.join("\n"),
        Source::Corpus(path) => read(path, "corpus")?,
    };
    let lines = corpus::tokenize_lines(&train.tokenizer, &text);
    if lines.is_empty() {
        bail!("the corpus has no words");
    }
    let (train_lines, valid_lines) = match &train.valid {
        Some(path) => (lines, corpus::tokenize_lines(&train.tokenizer, &read(path, "held-out text")?)),
        None => corpus::split_lines(lines, train.valid_fraction, train.seed),
    };
    let stream = train.protocol == Protocol::Stream;
    let vocab = match vocab {
        Some(v) => v,
        // The lecture's vocabulary is its words in alphabetical order (reference: sorted(set)).
        None if train.source == Source::Seed => {
            let mut words: Vec<String> = train_lines.iter().flatten().cloned().collect();
            words.sort();
            words.dedup();
            Vocab::new(words)
        }
        None if stream => corpus::build_stream_vocab(&train_lines, &train.vocab),
        None => corpus::build_vocab(&train_lines, &train.vocab),
    };
    if stream {
        let (train_ids, _) = corpus::stream(&train_lines, &vocab)?;
        let (valid_ids, valid_unknown) =
            if valid_lines.is_empty() { (Vec::new(), 0) } else { corpus::stream(&valid_lines, &vocab)? };
        let words = train_ids.len();
        let train_examples = Examples::Stream(train_ids);
        let streams = train_examples.batch(train.batch_size);
        if words < 2 * streams {
            bail!(
                "the training text has {words} words and line ends, too few for {streams} parallel streams: \
                 lower --batch-size"
            );
        }
        return Ok(LmData {
            vocab,
            train: train_examples,
            valid: Examples::Stream(valid_ids),
            valid_unknown,
        });
    }
    let train_w = corpus::windows(&train_lines, &vocab, context);
    let valid_w = corpus::windows(&valid_lines, &vocab, context);
    if train_w.is_empty() {
        bail!(
            "no training line has more than {context} words: lower --context or give longer lines \
             (each line is one sequence)"
        );
    }
    Ok(LmData {
        vocab,
        train: Examples::Windows(train_w),
        valid: Examples::Windows(valid_w),
        valid_unknown: 0,
    })
}

fn windows_tensors(w: &Windows, device: Device) -> (Tensor, Tensor) {
    let x = Tensor::from_slice(&w.inputs).view([w.len() as i64, w.context as i64]).to_device(device);
    let y = Tensor::from_slice(&w.targets).to_device(device);
    (x, y)
}

/// Mean cross-entropy (nats per prediction) of `model` on `examples`, in evaluation mode.
pub fn evaluate(model: &TextLstm, examples: &Examples, device: Device) -> f64 {
    match examples {
        Examples::Windows(w) => evaluate_windows(model, w, device),
        Examples::Stream(s) => evaluate_stream(model, s, device),
    }
}

/// A stream read as `kiln score` reads it: one stream, the state carried, every token after
/// the first predicted from all before it.
fn evaluate_stream(model: &TextLstm, ids: &[i64], device: Device) -> f64 {
    const CHUNK: usize = 256;
    let _guard = tch::no_grad_guard();
    let ids = Tensor::from_slice(ids).to_device(device).view([1, -1]);
    let n = ids.size()[1] as usize - 1;
    let mut state = model.lstm.zero_state(1, device);
    let mut total = 0.0;
    for at in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - at) as i64;
        let (logits, next) = model.forward_all(&ids.narrow(1, at as i64, len), &state, false); // [1, len, vocab]
        let loss = logits.view([len, -1]).log_softmax(-1, Kind::Float).nll_loss_nd::<Tensor>(
            &ids.narrow(1, at as i64 + 1, len).view([-1]),
            None,
            tch::Reduction::Sum,
            -100,
        );
        total += loss.double_value(&[]);
        state = next;
    }
    total / n as f64
}

/// Mean cross-entropy (nats) of `model` on windows `w`, in evaluation mode.
fn evaluate_windows(model: &TextLstm, w: &Windows, device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let (x, y) = windows_tensors(w, device);
    let n = w.len() as i64;
    let mut total = 0.0;
    for start in (0..n).step_by(8192) {
        let len = (n - start).min(8192);
        let (logits, _) = model.forward(&x.narrow(0, start, len), None, false);
        let loss = logits.log_softmax(-1, Kind::Float).nll_loss_nd::<Tensor>(
            &y.narrow(0, start, len),
            None,
            tch::Reduction::Sum,
            -100,
        );
        total += loss.double_value(&[]);
    }
    total / n as f64
}

/// Trains from scratch (after the checks [`LmOptions::resolve`](super::LmOptions::resolve)
/// makes, for runs built by hand).
pub fn train(run: &LmRun) -> anyhow::Result<LmOutcome> {
    super::config::validate(&run.model, &run.train)?;
    let data = prepare_data(&run.train, run.model.context as usize, None)?;
    let mut model_cfg = run.model.clone();
    model_cfg.vocab = data.vocab.len() as i64;
    train_from(run, model_cfg, data, None)
}

/// How to continue a saved run.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The checkpoint to continue from (and to keep saving to).
    pub checkpoint: PathBuf,
    /// Raise the total number of epochs to this (default: as saved).
    pub epochs: Option<usize>,
    pub device: Device,
    /// Export the model here at the end.
    pub out: Option<PathBuf>,
    pub log: LogStyle,
}

/// Continues a run from its checkpoint: same model, data and vocabulary, optimizer moments
/// restored.
pub fn resume(r: &Resume) -> anyhow::Result<LmOutcome> {
    if let Some(out) = &r.out {
        run::check_output_folder(out, "--out")?;
    }
    let checkpoint_path = r.checkpoint.as_path();
    let loaded = checkpoint::load(checkpoint_path, checkpoint::NEXT_WORD)?;
    let info: CheckpointInfo = serde_json::from_value(loaded.info.clone())
        .with_context(|| format!("{} is not a next-word checkpoint", checkpoint_path.display()))?;
    let mut train = info.train.clone();
    if let Some(e) = r.epochs {
        train.epochs = e;
    }
    checkpoint::check_epochs_left(info.epochs_done, train.epochs)?;
    let data = prepare_data(&train, info.model.context as usize, Some(Vocab::new(info.vocab.clone())))?;
    let run = LmRun {
        model: info.model.clone(),
        train,
        device: r.device,
        out: r.out.clone(),
        checkpoint: Some(checkpoint_path.to_path_buf()),
        checkpoint_every: 1,
        log: r.log,
    };
    train_from(&run, info.model.clone(), data, Some((info, loaded.tensors)))
}

type Saved = (CheckpointInfo, std::collections::HashMap<String, Tensor>);

fn train_from(run: &LmRun, cfg: LmConfig, data: LmData, resume: Option<Saved>) -> anyhow::Result<LmOutcome> {
    if cfg.input == InputKind::OneHot && cfg.vocab > MAX_ONE_HOT_VOCAB {
        bail!(
            "one-hot input with {} words would need a {0}×{0} table: use --input embedding \
             (or --max-vocab {MAX_ONE_HOT_VOCAB})",
            cfg.vocab
        );
    }
    let batch = data.train.batch(run.train.batch_size);
    let (step_floats, step_flags) = match &data.train {
        Examples::Stream(ids) => {
            let len = (cfg.context as usize).min((ids.len() / batch).saturating_sub(1)) as u128;
            (cfg.step_floats(batch as u128, len, len), "--batch-size or --bptt")
        }
        Examples::Windows(_) => {
            (cfg.step_floats(batch as u128, cfg.context as u128, 1), "--batch-size or --context")
        }
    };
    run::check_fits(&run::Footprint {
        parameters: cfg.parameters(),
        step_floats,
        sizes: "--hidden, --embed, --layers or --max-vocab",
        step_flags,
    })?;
    let device = run.device;
    tch::manual_seed(run.train.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = TextLstm::new(&vs.root(), &cfg);
    let mut adam = Optimizer::new(&vs, run.train.optimizer, run.train.lr);
    let (mut history, start) = match resume {
        None => (Vec::new(), 0),
        Some((info, tensors)) => {
            checkpoint::restore(&vs, &tensors, "model.")?;
            adam.load_state(info.adam_step, |k| tensors.get(k).map(|t| t.to_device(device)))
                .map_err(anyhow::Error::msg)?;
            (info.history, info.epochs_done)
        }
    };

    if run.train.schedule == Schedule::Plateau && data.valid.is_empty() {
        bail!("--schedule plateau follows the held-out loss, and this run holds nothing out: give --valid FILE or --valid-fraction");
    }
    let steps_per_epoch = data.train.steps(batch, cfg.context as usize);
    let total_steps = run.train.epochs * steps_per_epoch;
    let bar = Progress::new((run.train.epochs - start) * steps_per_epoch, run.log);
    bar.println(match &data.train {
        Examples::Windows(w) => format!(
            "training on {} windows ({} held out), vocabulary {}, {} step(s) per epoch, {:?}",
            w.len(),
            data.valid.len(),
            data.vocab.len(),
            steps_per_epoch,
            device
        ),
        Examples::Stream(s) => format!(
            "training on {} words and line ends in {batch} streams, {} held out ({:.2}% read as <unk>), \
             vocabulary {}, {} step(s) of {} per epoch, {:?}",
            s.len(),
            data.valid.len(),
            100.0 * data.valid_unknown as f64 / data.valid.len().max(1) as f64,
            data.vocab.len(),
            steps_per_epoch,
            cfg.context,
            device
        ),
    });

    run::training_begins();
    for epoch in start..run.train.epochs {
        let t0 = Instant::now();
        tch::manual_seed(run::epoch_seed(run.train.seed, epoch));
        let base = run.train.schedule.epoch_base(run.train.lr, history.iter().filter_map(|h| h.valid_loss));
        let mut step_lr =
            |step: usize| run.train.schedule.lr(base, epoch * steps_per_epoch + step, total_steps);
        let epoch_run = EpochRun { model: &model, adam: &mut adam, clip: run.train.clip, bar: &bar, epoch };
        let t_train = Instant::now();
        let loss_sum = match &data.train {
            Examples::Windows(w) => epoch_run.windows(w, batch, run, &mut step_lr)?,
            Examples::Stream(s) => epoch_run.stream(s, batch, cfg.context as usize, device, &mut step_lr)?,
        };
        if run::stop_requested() {
            bar.finish();
            return Err(run::interrupted(epoch + 1, run.checkpoint.as_deref()));
        }
        if let Some(bad) = adam.first_non_finite() {
            bar.finish();
            return Err(run::diverged(epoch + 1, &run::non_finite(bad), run.checkpoint.as_deref()));
        }
        let n = data.train.trained(batch);
        let words_per_second = n as f64 / t_train.elapsed().as_secs_f64();
        let stats = EpochStats {
            epoch: epoch + 1,
            train_loss: loss_sum / n as f64,
            words_per_second,
            valid_loss: (!data.valid.is_empty()).then(|| evaluate(&model, &data.valid, device)),
        };
        history.push(stats);
        match run.log {
            LogStyle::Seed if (epoch + 1) % 100 == 0 => {
                println!("Epoch: {:04} cost = {:.6}", epoch + 1, stats.train_loss)
            }
            LogStyle::Progress => {
                let valid = match stats.valid_loss {
                    Some(v) => format!("  valid loss {v:.4}  ppl {:.2}", v.exp()),
                    None => String::new(),
                };
                bar.set_message(format!("loss {:.4}{valid}", stats.train_loss));
                let speed = match run.train.protocol {
                    Protocol::Stream => format!(", {:.0} words/s", stats.words_per_second),
                    Protocol::Windows => String::new(),
                };
                bar.println(format!(
                    "epoch {:>4}/{}  train loss {:.4}  ppl {:.2}{valid}  ({:.1} s{speed})",
                    epoch + 1,
                    run.train.epochs,
                    stats.train_loss,
                    stats.train_loss.exp(),
                    t0.elapsed().as_secs_f64()
                ));
            }
            _ => {}
        }
        let last = epoch + 1 == run.train.epochs;
        if let Some(path) = &run.checkpoint {
            if last || (epoch + 1) % run.checkpoint_every.max(1) == 0 {
                let info = CheckpointInfo {
                    epochs_done: epoch + 1,
                    adam_step: adam.step,
                    model: cfg.clone(),
                    train: run.train.clone(),
                    vocab: data.vocab.words().to_vec(),
                    history: history.clone(),
                };
                let mut tensors: Vec<(String, Tensor)> =
                    vs.variables().into_iter().map(|(k, v)| (format!("model.{k}"), v)).collect();
                tensors.extend(adam.state());
                checkpoint::save(path, checkpoint::NEXT_WORD, &tensors, &info)?;
            }
        }
    }
    bar.finish();
    vs.freeze();

    let meta = NextWordMeta {
        vocab: data.vocab.words().into(),
        tokenizer: run.train.tokenizer.clone(),
        context: cfg.context as usize,
        layers: cfg.layers as usize,
        hidden: cfg.hidden as usize,
        stream: run.train.protocol == Protocol::Stream,
        train_config: serde_json::json!({
            "model": cfg,
            "train": run.train,
            "epochs_done": history.len(),
            "final": history.last(),
        }),
    };
    let outcome = LmOutcome { vs, model, data, meta, history };
    if run.log == LogStyle::Seed {
        println!("{}", seed_prediction_line(&outcome));
    }
    if let Some(out) = &run.out {
        super::export::write_onnx(&outcome.vs, &cfg, &outcome.meta, out)
            .with_context(|| format!("cannot export to {}", out.display()))?;
        let diff = verify_export(&outcome, out)?;
        if run.log == LogStyle::Progress {
            println!("exported {} (checked with tract: max |Δlogit| = {diff:.1e})", out.display());
        }
        if let (Examples::Stream(ids), Some(trainer)) =
            (&outcome.data.valid, outcome.history.last().and_then(|h| h.valid_loss))
        {
            let scored = score_export(out, ids, outcome.data.valid_unknown, trainer)?;
            if run.log == LogStyle::Progress {
                println!(
                    "held-out perplexity through the exported file: {:.2} over {} predictions (trainer: {:.2})",
                    scored.perplexity,
                    scored.predictions,
                    trainer.exp()
                );
            }
        }
    }
    Ok(outcome)
}

/// One epoch's steps: the optimiser with a per-step learning rate, progress, a loss that must stay finite.
struct EpochRun<'a> {
    model: &'a TextLstm,
    adam: &'a mut Optimizer,
    clip: Option<f64>,
    bar: &'a Progress,
    epoch: usize,
}

impl EpochRun<'_> {
    /// One update on `loss`, the mean over `predictions`; returns the loss summed over them.
    fn update(&mut self, loss: &Tensor, predictions: usize, lr: f64) -> anyhow::Result<f64> {
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            bail!("the loss became {value} at epoch {}: lower --lr or set --clip", self.epoch + 1);
        }
        self.adam.lr = lr;
        self.adam.backward_step(loss, self.clip);
        self.bar.step();
        Ok(value * predictions as f64)
    }

    /// Shuffled minibatches of windows, each read from a zero state.
    fn windows(
        mut self,
        w: &Windows,
        batch: usize,
        run: &LmRun,
        lr: &mut impl FnMut(usize) -> f64,
    ) -> anyhow::Result<f64> {
        let device = run.device;
        let (x, y) = windows_tensors(w, device);
        let n = w.len();
        let mut order: Vec<i64> = (0..n as i64).collect();
        if batch < n {
            let mut rng = ChaCha8Rng::seed_from_u64(run.train.seed);
            rng.set_stream(self.epoch as u64);
            order.shuffle(&mut rng);
        }
        let order = Tensor::from_slice(&order).to_device(device);
        let mut loss_sum = 0.0;
        for step in 0..n.div_ceil(batch) {
            if run::stop_requested() {
                break;
            }
            let lo = step * batch;
            let len = batch.min(n - lo);
            let idx = order.narrow(0, lo as i64, len as i64);
            let (logits, _) = self.model.forward(&x.index_select(0, &idx), None, true);
            let loss = logits.cross_entropy_for_logits(&y.index_select(0, &idx));
            loss_sum += self.update(&loss, len, lr(step))?;
        }
        Ok(loss_sum)
    }

    /// The stream cut into `streams` rows side by side, read in windows of `bptt` tokens with
    /// a prediction at every one, the state carried (detached) from window to window.
    ///
    /// ```text
    /// stream a b c d e f g h i j k l …   →   row 0: a b c d e f │ window 0: a b c → predict b c d
    ///                                        row 1: g h i j k l │ window 1: d e   → predict e f
    /// ```
    fn stream(
        mut self,
        ids: &[i64],
        streams: usize,
        bptt: usize,
        device: Device,
        lr: &mut impl FnMut(usize) -> f64,
    ) -> anyhow::Result<f64> {
        let cols = ids.len() / streams;
        // Rows are the streams; held as [cols, streams], each window is a contiguous slice
        // in the sequence-first layout the LSTM trains fastest in.
        let data = Tensor::from_slice(&ids[..streams * cols])
            .view([streams as i64, cols as i64])
            .transpose(0, 1)
            .contiguous()
            .to_device(device);
        let mut state = self.model.lstm.zero_state(streams as i64, device);
        let vocab = self.model.config.vocab;
        let mut loss_sum = 0.0;
        for (step, at) in (0..cols - 1).step_by(bptt).enumerate() {
            if run::stop_requested() {
                break;
            }
            let len = bptt.min(cols - 1 - at) as i64;
            let x = data.narrow(0, at as i64, len); // [len, streams]
            let y = data.narrow(0, at as i64 + 1, len);
            let (logits, (h, c)) = self.model.forward_seq_first(&x, &state, true); // [len, streams, vocab]
            let loss = logits.view([-1, vocab]).cross_entropy_for_logits(&y.reshape([-1]));
            state = (h.detach(), c.detach());
            loss_sum += self.update(&loss, streams * len as usize, lr(step))?;
        }
        Ok(loss_sum)
    }
}

/// The exported file's held-out figure (through tract, as `kiln score` computes it) against the
/// trainer's `trainer` cross-entropy; more than 1% apart, the file is wrong and removed.
fn score_export(
    path: &Path,
    ids: &[i64],
    unknown: usize,
    trainer: f64,
) -> anyhow::Result<kiln_infer::next_word::Score> {
    let model = NextWordModel::load(path, &LoadOptions::default())?;
    let scored = model.score_ids(ids, unknown)?;
    let gap = (scored.cross_entropy - trainer).abs();
    if gap.is_nan() || gap > 0.01 * trainer {
        let _ = std::fs::remove_file(path);
        bail!(
            "the exported model's held-out cross-entropy {:.4} is not within 1% of the trainer's {trainer:.4}; \
             nothing was written",
            scored.cross_entropy
        );
    }
    Ok(scored)
}

/// The seed lecture's closing line: `[['i', 'like'], …] -> ['dog', …]`.
fn seed_prediction_line(o: &LmOutcome) -> String {
    let Some(w) = o.data.train_windows() else { return String::new() };
    let (x, _) = windows_tensors(w, Device::Cpu);
    let predicted = o.logits(&x).argmax(-1, false);
    let predicted: Vec<i64> = Vec::try_from(&predicted.to_device(Device::Cpu)).unwrap_or_default();
    let quote = |id: i64| format!("'{}'", o.data.vocab.word(id as usize));
    let inputs: Vec<String> = w
        .inputs
        .chunks(w.context)
        .map(|c| format!("[{}]", c.iter().map(|&i| quote(i)).collect::<Vec<_>>().join(", ")))
        .collect();
    let outputs: Vec<String> = predicted.iter().map(|&i| quote(i)).collect();
    format!("[{}] -> [{}]", inputs.join(", "), outputs.join(", "))
}

/// Loads the exported file with tract and compares its logits with the tch model's on up to 64
/// training windows (see [`run::check_export`]).
fn verify_export(o: &LmOutcome, path: &Path) -> anyhow::Result<f32> {
    let model = NextWordModel::load(path, &LoadOptions::default())?;
    // Up to 64 training windows, or 4 rows of a stream window's length.
    let (rows, cols, ids) = match &o.data.train {
        Examples::Windows(w) => {
            let n = w.len().min(64);
            (n, w.context, w.inputs[..n * w.context].to_vec())
        }
        Examples::Stream(s) => {
            let cols = (o.model.config.context as usize).min(s.len() / 4).max(1);
            (s.len().min(4 * cols) / cols, cols, s[..s.len().min(4 * cols) / cols * cols].to_vec())
        }
    };
    let got = model.run(Array2::from_shape_vec((rows, cols), ids.clone())?.view(), None)?;
    let x = Tensor::from_slice(&ids).view([rows as i64, cols as i64]).to_device(o.vs.device());
    let (all, _) = tch::no_grad(|| {
        let zero = o.model.lstm.zero_state(rows as i64, o.vs.device());
        o.model.forward_all(&x, &zero, false)
    });
    let want: Vec<f32> = Vec::try_from(&all.select(1, -1).to_device(Device::Cpu).reshape([-1]))?;
    let got_last: Vec<f32> = got.logits.iter().copied().collect();
    let mut diff = run::check_export(path, &got_last, &want, 1e-3, "model")?;
    if let Some(got_all) = &got.logits_all {
        let want_all: Vec<f32> = Vec::try_from(&all.to_device(Device::Cpu).reshape([-1]))?;
        let got_all: Vec<f32> = got_all.view().iter().copied().collect();
        diff = diff.max(run::check_export(path, &got_all, &want_all, 1e-3, "model")?);
    }
    Ok(diff)
}
