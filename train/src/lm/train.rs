//! The next-word training loop: data, epochs of Adam on minibatches, held-out perplexity,
//! checkpoints, resume, and the export at the end.

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

use super::config::{LmRun, Source, TrainConfig};
use super::corpus::{self, Windows};
use super::model::{InputKind, LmConfig, TextLstm, MAX_ONE_HOT_VOCAB};
use crate::checkpoint;
use crate::optim::Adam;
use crate::run::{self, LogStyle, Progress};

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's steps (before each step's update).
    pub train_loss: f64,
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
pub fn train(run: &LmRun) -> anyhow::Result<LmOutcome> {
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
    let bar = Progress::new((run.train.epochs - start) * steps_per_epoch, run.log);
    bar.println(format!(
        "training on {} windows ({} held out), vocabulary {}, {} step(s) per epoch, {:?}",
        n,
        data.valid.len(),
        data.vocab.len(),
        steps_per_epoch,
        device
    ));

    for epoch in start..run.train.epochs {
        let t0 = Instant::now();
        tch::manual_seed(run::epoch_seed(run.train.seed, epoch));
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
            bar.step();
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
                bar.println(format!(
                    "epoch {:>4}/{}  train loss {:.4}  ppl {:.2}{valid}  ({:.1} s)",
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
        super::export::write_onnx(&outcome.vs, &cfg, &outcome.meta, out)
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
/// training windows (see [`run::check_export`]).
fn verify_export(o: &LmOutcome, path: &Path) -> anyhow::Result<f32> {
    let model = NextWordModel::load(path, &LoadOptions::default())?;
    let w = &o.data.train;
    let n = w.len().min(64);
    let ids = Array2::from_shape_vec((n, w.context), w.inputs[..n * w.context].to_vec())?;
    let got = model.run(ids.view(), None)?;
    let (x, _) = windows_tensors(w, Device::Cpu);
    let want = o.logits(&x.narrow(0, 0, n as i64)).to_device(Device::Cpu).view(-1);
    let want: Vec<f32> = Vec::try_from(&want)?;
    let got: Vec<f32> = got.logits.iter().copied().collect();
    run::check_export(path, &got, &want, 1e-3, "model")
}
