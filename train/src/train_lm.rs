//! The next-word training loop: data, epochs of Adam on minibatches, held-out perplexity,
//! checkpoints, resume, and the export at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_infer::contract::{NextWordMeta, TokenizerSpec};
use kiln_infer::next_word::{LoadOptions, NextWordModel};
use kiln_infer::text::Vocab;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::adam::Adam;
use crate::checkpoint;
use crate::corpus::{self, VocabOptions, Windows};
use crate::lm::{InputKind, LmConfig, TextLstm, MAX_ONE_HOT_VOCAB};

/// Where the text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The seed lecture's six sentences.
    Seed,
    /// A UTF-8 text file, one sequence per line.
    Corpus(PathBuf),
}

/// How training runs; saved in checkpoints and in the exported file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub source: Source,
    pub tokenizer: TokenizerSpec,
    pub vocab: VocabOptions,
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

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The same rate throughout (the seed lecture).
    #[default]
    Constant,
    /// Cosine decay from `lr` to `lr / 100` over all steps (Loshchilov & Hutter 2017, no
    /// restarts): large steps early, fine ones at the end.
    Cosine,
}

impl Schedule {
    /// The rate for step `step` (0-based) of `total`.
    pub fn lr(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let min = base / 100.0;
                let t = step as f64 / total.max(1) as f64;
                min + 0.5 * (base - min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// What the user sees while training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// The seed lecture's lines (`Epoch: 0100 cost = 0.146148`) and its final prediction line.
    Seed,
    /// A progress bar with loss and perplexity, and one line per epoch.
    Progress,
    /// Nothing (library use, tests).
    Quiet,
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

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's steps (before each step's update).
    pub train_loss: f64,
    /// Held-out cross-entropy (nats per word), when there is a held-out set.
    pub valid_loss: Option<f64>,
}

/// The checkpoint's JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointInfo {
    format: u32,
    epochs_done: usize,
    adam_step: i64,
    model: LmConfig,
    train: TrainConfig,
    vocab: Vec<String>,
    history: Vec<EpochStats>,
}

/// The data of one run.
#[derive(Debug, Clone)]
pub struct LmData {
    pub vocab: Vocab,
    pub train: Windows,
    pub valid: Windows,
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

/// Reads the text and builds vocabulary and windows. With `vocab` given (on resume) it is
/// reused as is: a model's vocabulary never changes under it.
pub fn prepare_data(train: &TrainConfig, context: usize, vocab: Option<Vocab>) -> anyhow::Result<LmData> {
    let text = match &train.source {
        Source::Seed => corpus::SEED_SENTENCES.join("\n"),
        Source::Corpus(path) => std::fs::read_to_string(path).with_context(|| {
            format!("cannot read corpus {} (it must be a UTF-8 text file)", path.display())
        })?,
    };
    let lines = corpus::tokenize_lines(&train.tokenizer, &text);
    if lines.is_empty() {
        bail!("the corpus has no words");
    }
    let (train_lines, valid_lines) = corpus::split_lines(lines, train.valid_fraction, train.seed);
    let vocab = match vocab {
        Some(v) => v,
        // The lecture's vocabulary is its words in alphabetical order (reference: sorted(set)).
        None if train.source == Source::Seed => {
            let mut words: Vec<String> = train_lines.iter().flatten().cloned().collect();
            words.sort();
            words.dedup();
            Vocab::new(words)
        }
        None => corpus::build_vocab(&train_lines, &train.vocab),
    };
    let train_w = corpus::windows(&train_lines, &vocab, context);
    let valid_w = corpus::windows(&valid_lines, &vocab, context);
    if train_w.is_empty() {
        bail!(
            "no training line has more than {context} words: lower --context or give longer lines \
             (each line is one sequence)"
        );
    }
    Ok(LmData { vocab, train: train_w, valid: valid_w })
}

fn windows_tensors(w: &Windows, device: Device) -> (Tensor, Tensor) {
    let x = Tensor::from_slice(&w.inputs).view([w.len() as i64, w.context as i64]).to_device(device);
    let y = Tensor::from_slice(&w.targets).to_device(device);
    (x, y)
}

/// Mean cross-entropy (nats) of `model` on `w`, in evaluation mode.
pub fn evaluate(model: &TextLstm, w: &Windows, device: Device) -> f64 {
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

/// Trains from scratch.
pub fn train_lm(run: &LmRun) -> anyhow::Result<LmOutcome> {
    let data = prepare_data(&run.train, run.model.context as usize, None)?;
    let mut model_cfg = run.model.clone();
    model_cfg.vocab = data.vocab.len() as i64;
    train_from(run, model_cfg, data, None)
}

/// Continues a run from `checkpoint`: same model, data and vocabulary, optimizer moments
/// restored; `epochs` (if given) raises the total number of epochs.
pub fn resume_lm(
    checkpoint_path: &Path,
    epochs: Option<usize>,
    device: Device,
    out: Option<PathBuf>,
    log: LogStyle,
) -> anyhow::Result<LmOutcome> {
    let loaded = checkpoint::load(checkpoint_path)?;
    let info: CheckpointInfo = serde_json::from_value(loaded.info.clone())
        .with_context(|| format!("{} is not a next-word checkpoint", checkpoint_path.display()))?;
    let mut train = info.train.clone();
    if let Some(e) = epochs {
        train.epochs = e;
    }
    checkpoint::check_epochs_left(info.epochs_done, train.epochs)?;
    let data = prepare_data(&train, info.model.context as usize, Some(Vocab::new(info.vocab.clone())))?;
    let run = LmRun {
        model: info.model.clone(),
        train,
        device,
        out,
        checkpoint: Some(checkpoint_path.to_path_buf()),
        checkpoint_every: 1,
        log,
    };
    train_from(&run, info.model.clone(), data, Some((info, loaded.tensors)))
}

type Resume = (CheckpointInfo, std::collections::HashMap<String, Tensor>);

fn train_from(run: &LmRun, cfg: LmConfig, data: LmData, resume: Option<Resume>) -> anyhow::Result<LmOutcome> {
    if cfg.input == InputKind::OneHot && cfg.vocab > MAX_ONE_HOT_VOCAB {
        bail!(
            "one-hot input with {} words would need a {0}×{0} table: use --input embedding \
             (or --max-vocab {MAX_ONE_HOT_VOCAB})",
            cfg.vocab
        );
    }
    let device = run.device;
    tch::manual_seed(run.train.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = TextLstm::new(&vs.root(), &cfg);
    let mut adam = Adam::new(&vs, run.train.lr);
    let (mut history, start) = match resume {
        None => (Vec::new(), 0),
        Some((info, tensors)) => {
            checkpoint::restore(&vs, &tensors, "model.")?;
            adam.load_state(info.adam_step, |k| tensors.get(k).map(|t| t.to_device(device)))
                .map_err(anyhow::Error::msg)?;
            (info.history, info.epochs_done)
        }
    };

    let (x, y) = windows_tensors(&data.train, device);
    let n = data.train.len();
    let batch = run.train.batch_size.unwrap_or(n).clamp(1, n);
    let steps_per_epoch = n.div_ceil(batch);
    let total_steps = run.train.epochs * steps_per_epoch;
    let bar = match run.log {
        LogStyle::Progress => {
            let bar = ProgressBar::new(((run.train.epochs - start) * steps_per_epoch) as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {elapsed_precise} < {eta} {msg}")
                    .expect("the template is valid"),
            );
            bar
        }
        _ => ProgressBar::hidden(),
    };
    if run.log == LogStyle::Progress {
        bar.suspend(|| {
            println!(
                "training on {} windows ({} held out), vocabulary {}, {} step(s) per epoch, {:?}",
                n,
                data.valid.len(),
                data.vocab.len(),
                steps_per_epoch,
                device
            )
        });
    }

    for epoch in start..run.train.epochs {
        let t0 = Instant::now();
        // Per-epoch seeds: a resumed run shuffles and drops out exactly as an uninterrupted one.
        tch::manual_seed((run.train.seed as i64).wrapping_mul(1_000_003).wrapping_add(epoch as i64));
        let mut order: Vec<i64> = (0..n as i64).collect();
        if batch < n {
            let mut rng = ChaCha8Rng::seed_from_u64(run.train.seed);
            rng.set_stream(epoch as u64);
            order.shuffle(&mut rng);
        }
        let order = Tensor::from_slice(&order).to_device(device);
        let mut loss_sum = 0.0;
        for step in 0..steps_per_epoch {
            let lo = step * batch;
            let len = batch.min(n - lo);
            let idx = order.narrow(0, lo as i64, len as i64);
            let (logits, _) = model.forward(&x.index_select(0, &idx), None, true);
            let loss = logits.cross_entropy_for_logits(&y.index_select(0, &idx));
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                bail!("the loss became {value} at epoch {}: lower --lr or set --clip", epoch + 1);
            }
            loss_sum += value * len as f64;
            adam.lr = run.train.schedule.lr(run.train.lr, epoch * steps_per_epoch + step, total_steps);
            adam.backward_step(&loss, run.train.clip);
            bar.inc(1);
        }
        let stats = EpochStats {
            epoch: epoch + 1,
            train_loss: loss_sum / n as f64,
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
                bar.suspend(|| {
                    println!(
                        "epoch {:>4}/{}  train loss {:.4}  ppl {:.2}{valid}  ({:.1} s)",
                        epoch + 1,
                        run.train.epochs,
                        stats.train_loss,
                        stats.train_loss.exp(),
                        t0.elapsed().as_secs_f64()
                    )
                });
            }
            _ => {}
        }
        let last = epoch + 1 == run.train.epochs;
        if let Some(path) = &run.checkpoint {
            if last || (epoch + 1) % run.checkpoint_every.max(1) == 0 {
                let info = CheckpointInfo {
                    format: 1,
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
                checkpoint::save(path, &tensors, &serde_json::to_value(&info)?)?;
            }
        }
    }
    bar.finish_and_clear();
    vs.freeze();

    let meta = NextWordMeta {
        vocab: data.vocab.words().to_vec(),
        tokenizer: run.train.tokenizer.clone(),
        context: cfg.context as usize,
        layers: cfg.layers as usize,
        hidden: cfg.hidden as usize,
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
        crate::export::export_next_word(&outcome.vs, &cfg, &outcome.meta, out)
            .with_context(|| format!("cannot export to {}", out.display()))?;
        let diff = verify_export(&outcome, out)?;
        if run.log == LogStyle::Progress {
            println!("exported {} (checked with tract: max |Δlogit| = {diff:.1e})", out.display());
        }
    }
    Ok(outcome)
}

/// The seed lecture's closing line: `[['i', 'like'], …] -> ['dog', …]`.
fn seed_prediction_line(o: &LmOutcome) -> String {
    let w = &o.data.train;
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
/// training windows. A difference above 1e-3 means the exporter is wrong: the file is removed.
fn verify_export(o: &LmOutcome, path: &Path) -> anyhow::Result<f32> {
    let model = NextWordModel::load(path, &LoadOptions::default())?;
    let w = &o.data.train;
    let n = w.len().min(64);
    let ids = &w.inputs[..n * w.context];
    let got = model.run_ids(ids, n, w.context, None)?;
    let (x, _) = windows_tensors(w, Device::Cpu);
    let want = o.logits(&x.narrow(0, 0, n as i64)).to_device(Device::Cpu).view(-1);
    let want: Vec<f32> = Vec::try_from(&want)?;
    let diff = got.logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    if diff.is_nan() || diff > 1e-3 {
        let _ = std::fs::remove_file(path);
        bail!(
            "the exported model disagrees with the trained one (max |Δlogit| = {diff}); nothing was written"
        );
    }
    Ok(diff)
}
