//! Next-word prediction and text generation from an exported model, loaded once and queried
//! many times.
//!
//! Two kinds of file are understood, told apart by the model itself:
//! - kiln's own export: `tokens` int64 `[batch, seq]` plus LSTM state in and out, with the
//!   vocabulary and tokenizer in the file's metadata (see [`crate::contract`]);
//! - a plain one-hot model such as `torch.onnx.export` writes for the seed lecture's code: one
//!   float input `[batch, seq, vocab]`, logits out, no metadata; the vocabulary comes from a
//!   JSON file of the words in index order.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::contract::{self, NextWordMeta, TokenizerSpec};
use crate::error::run_err;
pub use crate::error::{Error, Result};
use crate::text::{self, Vocab};

/// How the graph takes its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Interface {
    /// kiln's export: token ids and LSTM state `[layers, batch, hidden]` in and out.
    TokenIds { layers: usize, hidden: usize },
    /// One-hot float rows `[batch, seq, vocab]`, logits out, no state (`torch.onnx.export`).
    OneHot { seq: usize },
}

/// Options for [`NextWordModel::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The vocabulary of a model without kiln metadata: a JSON array of words in index order.
    pub vocab: Option<std::path::PathBuf>,
}

/// One forward pass's outputs, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// `[batch, vocab]`: scores for the word after the last position.
    pub logits: Vec<f32>,
    /// `[layers, batch, hidden]`; empty for one-hot models, which have no state.
    pub hn: Vec<f32>,
    pub cn: Vec<f32>,
}

/// A word and the probability the model gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordProb {
    pub word: String,
    pub probability: f32,
}

/// The words of a prompt that the model actually read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    /// The words fed to the model (the prompt's last `context` words).
    pub words: Vec<String>,
    /// Whether earlier words of the prompt were dropped because the prompt was longer than the
    /// context the model was trained on.
    pub truncated: bool,
    /// Prompt words the vocabulary lacks, read as `<unk>`.
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub context: Context,
    /// The most likely next words, most likely first.
    pub top: Vec<WordProb>,
}

/// Sampling settings for [`NextWordModel::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// How many words to generate.
    pub words: usize,
    /// Softmax temperature; 0 always takes the most likely word.
    pub temperature: f32,
    /// Sample only among the `k` most likely words.
    pub top_k: Option<usize>,
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { words: 20, temperature: 1.0, top_k: None, seed: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub context: Context,
    /// The generated words, in order.
    pub words: Vec<String>,
}

/// A loaded next-word model.
#[derive(Debug, Clone)]
pub struct NextWordModel {
    plan: Arc<TypedRunnableModel>,
    meta: NextWordMeta,
    vocab: Vocab,
    interface: Interface,
}

impl NextWordModel {
    /// Loads and optimises a model file once; every query after that reuses the plan.
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let (model, props) = crate::error::read_model(path)?;
        Self::from_parsed(path, model, &props, options)
    }

    /// From a file [`crate::error::read_model`] has read.
    pub(crate) fn from_parsed(
        path: &Path,
        model: InferenceModel,
        props: &BTreeMap<String, String>,
        options: &LoadOptions,
    ) -> Result<Self> {
        let shown = path.display().to_string();
        let bad = |e: anyhow::Error| Error::BadModel { path: shown.clone(), reason: format!("{e:#}") };
        let (model, meta, interface) = if props.contains_key(contract::key::KIND) {
            if options.vocab.is_some() {
                return Err(Error::VocabNotNeeded(shown));
            }
            let meta = NextWordMeta::from_props(props)
                .map_err(|source| Error::Contract { path: shown.clone(), source })?;
            let interface = Interface::TokenIds { layers: meta.layers, hidden: meta.hidden };
            (model, meta, interface)
        } else {
            foreign_one_hot(model, &shown, options)?
        };
        let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(bad)?;
        let vocab = Vocab::new(meta.vocab.clone());
        Ok(NextWordModel { plan, meta, vocab, interface })
    }

    pub fn meta(&self) -> &NextWordMeta {
        &self.meta
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    pub fn interface(&self) -> Interface {
        self.interface
    }

    /// One forward pass over `batch` rows of `seq` token ids each (row-major), from the given
    /// state, or from zeros when `state` is `None`.
    pub fn run_ids(
        &self,
        tokens: &[i64],
        batch: usize,
        seq: usize,
        state: Option<(&[f32], &[f32])>,
    ) -> Result<StepOutput> {
        if batch == 0 || seq == 0 || tokens.len() != batch * seq {
            return Err(Error::Option(format!(
                "{} token ids do not make a [{batch}, {seq}] batch",
                tokens.len()
            )));
        }
        let n_vocab = self.vocab.len() as i64;
        if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
            return Err(Error::Option(format!("token id {bad} is outside the vocabulary")));
        }
        match self.interface {
            Interface::TokenIds { layers, hidden } => {
                let state_len = layers * batch * hidden;
                let zeros = vec![0f32; state_len];
                let (h0, c0) = state.unwrap_or((&zeros, &zeros));
                if h0.len() != state_len || c0.len() != state_len {
                    return Err(Error::Option(format!(
                        "state must hold [{layers}, {batch}, {hidden}] values"
                    )));
                }
                let inputs = tvec!(
                    tensor_from(&[batch, seq], tokens.to_vec())?.into(),
                    tensor_from(&[layers, batch, hidden], h0.to_vec())?.into(),
                    tensor_from(&[layers, batch, hidden], c0.to_vec())?.into(),
                );
                let out = self.plan.run(inputs).map_err(run_err)?;
                Ok(StepOutput { logits: floats(&out[0])?, hn: floats(&out[1])?, cn: floats(&out[2])? })
            }
            Interface::OneHot { seq: fixed } => {
                if seq != fixed {
                    return Err(Error::PromptTooShort { need: fixed, got: seq });
                }
                if state.is_some() {
                    return Err(Error::Option("this model takes no recurrent state".into()));
                }
                // The plan was optimised for batch 1 (tract needs a concrete batch for an LSTM
                // without explicit initial states): one row at a time.
                let vocab = self.vocab.len();
                let mut logits = Vec::with_capacity(batch * vocab);
                for row in tokens.chunks(seq) {
                    let mut x = vec![0f32; seq * vocab];
                    for (t, &id) in row.iter().enumerate() {
                        x[t * vocab + id as usize] = 1.0;
                    }
                    let out =
                        self.plan.run(tvec!(tensor_from(&[1, seq, vocab], x)?.into())).map_err(run_err)?;
                    logits.extend(floats(&out[0])?);
                }
                Ok(StepOutput { logits, hn: vec![], cn: vec![] })
            }
        }
    }

    /// Cuts `prompt` into words and keeps the last `context` of them, as the model was trained.
    pub fn context(&self, prompt: &str) -> Result<(Context, Vec<i64>)> {
        let words = text::words(&self.meta.tokenizer, prompt);
        if words.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let keep = self.meta.context;
        if let Interface::OneHot { seq } = self.interface {
            if words.len() < seq {
                return Err(Error::PromptTooShort { need: seq, got: words.len() });
            }
        }
        let truncated = words.len() > keep;
        let words = words[words.len().saturating_sub(keep)..].to_vec();
        let mut unknown = Vec::new();
        let mut ids = Vec::with_capacity(words.len());
        for w in &words {
            if !self.vocab.contains(w) {
                unknown.push(w.clone());
            }
            ids.push(self.vocab.id(w)? as i64);
        }
        Ok((Context { words, truncated, unknown }, ids))
    }

    /// The `k` most likely next words after `prompt`.
    pub fn predict(&self, prompt: &str, k: usize) -> Result<Prediction> {
        if k == 0 {
            return Err(Error::Option("-k must be at least 1".into()));
        }
        let (context, ids) = self.context(prompt)?;
        let out = self.run_ids(&ids, 1, ids.len(), None)?;
        let probs = softmax(&out.logits, 1.0);
        let top = top_k(&probs, k)
            .into_iter()
            .map(|i| WordProb { word: self.vocab.word(i).to_string(), probability: probs[i] })
            .collect();
        Ok(Prediction { context, top })
    }

    /// Generates words after `prompt`. With kiln's models the LSTM state is carried, so each
    /// new word costs one step; one-hot models re-read their fixed window each time.
    pub fn generate(&self, prompt: &str, options: &GenerateOptions) -> Result<Generation> {
        let (context, words) = self.generate_iter(prompt, options)?;
        Ok(Generation { context, words: words.collect::<Result<_>>()? })
    }

    /// Like [`NextWordModel::generate`], one word at a time, as each is chosen.
    pub fn generate_iter(&self, prompt: &str, options: &GenerateOptions) -> Result<(Context, Words<'_>)> {
        if !(options.temperature >= 0.0 && options.temperature.is_finite()) {
            return Err(Error::Option("--temperature must be a finite number >= 0".into()));
        }
        if options.top_k == Some(0) {
            return Err(Error::Option("--top-k must be at least 1".into()));
        }
        let (context, ids) = self.context(prompt)?;
        let last = match self.interface {
            Interface::TokenIds { .. } => Some(self.run_ids(&ids, 1, ids.len(), None)?),
            Interface::OneHot { .. } => None,
        };
        let words = Words {
            model: self,
            options: options.clone(),
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            left: options.words,
            window: ids,
            last,
            pending: None,
        };
        Ok((context, words))
    }

    fn choose(&self, logits: &[f32], options: &GenerateOptions, rng: &mut ChaCha8Rng) -> usize {
        let mut probs = softmax(logits, options.temperature.max(f32::MIN_POSITIVE));
        // `<unk>` is a stand-in for rare words, not a word to show; skip it unless it is all
        // the model has.
        if let Some(unk) = self.vocab.unk() {
            if probs.iter().enumerate().any(|(i, &p)| i != unk && p > 0.0) {
                probs[unk] = 0.0;
            }
        }
        if options.temperature == 0.0 {
            return top_k(&probs, 1)[0];
        }
        let candidates = top_k(&probs, options.top_k.unwrap_or(probs.len()));
        let total: f32 = candidates.iter().map(|&i| probs[i]).sum();
        let mut x = rng.random::<f32>() * total;
        for &i in &candidates {
            x -= probs[i];
            if x <= 0.0 {
                return i;
            }
        }
        candidates[candidates.len() - 1]
    }
}

/// Generated words, one per [`Iterator::next`]; see [`NextWordModel::generate_iter`].
pub struct Words<'m> {
    model: &'m NextWordModel,
    options: GenerateOptions,
    rng: ChaCha8Rng,
    left: usize,
    /// The fixed window of a one-hot model.
    window: Vec<i64>,
    /// The last step's output (token-id models): logits for the next word and the state.
    last: Option<StepOutput>,
    /// The word chosen last, not yet fed to the model.
    pending: Option<i64>,
}

impl Iterator for Words<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let m = self.model;
        let step = match (&mut self.last, self.pending.take()) {
            // Feed the previous word, carrying the state: one LSTM step.
            (Some(last), Some(id)) => {
                m.run_ids(&[id], 1, 1, Some((&last.hn, &last.cn))).map(|out| *last = out)
            }
            (Some(_), None) => Ok(()),
            (None, _) => {
                let seq = self.window.len();
                m.run_ids(&self.window, 1, seq, None).map(|out| self.last = Some(out))
            }
        };
        if let Err(e) = step {
            self.left = 0;
            return Some(Err(e));
        }
        let logits = &self.last.as_ref().expect("set above").logits;
        let next = m.choose(logits, &self.options, &mut self.rng);
        if let Interface::OneHot { .. } = m.interface {
            self.last = None;
            self.window.remove(0);
            self.window.push(next as i64);
        } else {
            self.pending = Some(next as i64);
        }
        Some(Ok(m.vocab.word(next).to_string()))
    }
}

/// Softmax of `logits / temperature`, computed in f64 for stability.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = temperature as f64;
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let exps: Vec<f64> = logits.iter().map(|&x| ((x as f64 - max) / t).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

fn floats(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_plain_array_view::<f32>().map_err(run_err)?.iter().copied().collect())
}

fn tensor_from<T: Datum>(shape: &[usize], data: Vec<T>) -> Result<Tensor> {
    tract_ndarray::ArrayD::from_shape_vec(shape, data).map(|a| a.into_tensor()).map_err(run_err)
}

/// The file's `metadata_props`, without tract's `onnx.metadata_props.` prefix.
pub(crate) fn metadata(model: &InferenceModel) -> BTreeMap<String, String> {
    const PREFIX: &str = "onnx.metadata_props.";
    model
        .properties
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(PREFIX)?;
            let value = v.try_as_plain_ram().ok()?.to_scalar::<String>().ok()?.clone();
            Some((key.to_string(), value))
        })
        .collect()
}

/// A model without kiln metadata: accept a single one-hot float input `[batch, seq, vocab]`.
fn foreign_one_hot(
    model: InferenceModel,
    shown: &str,
    options: &LoadOptions,
) -> Result<(InferenceModel, NextWordMeta, Interface)> {
    let unsupported = |reason: String| Error::Unsupported { path: shown.to_string(), reason };
    let vocab_path = options.vocab.as_ref().ok_or_else(|| Error::NeedVocab(shown.to_string()))?;
    let vocab_text = std::fs::read_to_string(vocab_path)
        .map_err(|e| Error::Read { path: vocab_path.display().to_string(), reason: e.to_string() })?;
    let words: Vec<String> = serde_json::from_str(&vocab_text).map_err(|e| Error::Read {
        path: vocab_path.display().to_string(),
        reason: format!("not a JSON array of words: {e}"),
    })?;
    if words.is_empty() {
        return Err(Error::Read {
            path: vocab_path.display().to_string(),
            reason: "the vocabulary is empty".into(),
        });
    }
    let inputs = model.input_outlets().map_err(|e| unsupported(e.to_string()))?.len();
    if inputs != 1 {
        return Err(unsupported(format!(
            "it has {inputs} inputs; a model without kiln metadata must take one one-hot \
             float input [batch, seq, vocab]"
        )));
    }
    let fact = model.input_fact(0).map_err(|e| unsupported(e.to_string()))?;
    let dims: Vec<Option<usize>> = (0..fact.shape.rank().concretize().unwrap_or(0) as usize)
        .map(|i| fact.shape.dim(i).and_then(|d| d.concretize()).and_then(|d| d.as_i64().map(|v| v as usize)))
        .collect();
    let (seq, vocab) = match (fact.datum_type.concretize(), dims.as_slice()) {
        (Some(dt), [_, Some(seq), Some(vocab)]) if dt == f32::datum_type() => (*seq, *vocab),
        _ => {
            return Err(unsupported(format!(
                "its input is {fact:?}; expected one-hot float [batch, seq, vocab]"
            )))
        }
    };
    if words.len() != vocab {
        return Err(Error::VocabMismatch { vocab: words.len(), model: vocab });
    }
    let model = model
        .with_input_fact(0, f32::fact([1, seq, vocab]).into())
        .map_err(|e| unsupported(format!("{e:#}")))?;
    let meta = NextWordMeta {
        vocab: words,
        // The seed's vocabulary is plain lower-case words split on spaces.
        tokenizer: TokenizerSpec { lowercase: true, split_punctuation: false },
        context: seq,
        layers: 0,
        hidden: 0,
        train_config: serde_json::Value::Null,
    };
    Ok((model, meta, Interface::OneHot { seq }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0], 1.0);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(top_k(&p, 3), [1, 2, 0]);
        // A low temperature sharpens the distribution.
        assert!(softmax(&[1.0, 3.0, 2.0], 0.1)[1] > p[1]);
    }
}
