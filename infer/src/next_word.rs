//! Next-word prediction and text generation from an exported model, loaded once and queried
//! many times.
//!
//! Two kinds of file are understood, told apart by the model itself:
//! - kiln's own export: `tokens` int64 `[batch, seq]` plus LSTM state in and out, with the
//!   vocabulary and tokenizer in the file's metadata (see [`crate::contract`]);
//! - models without metadata ([`crate::foreign`]), given their vocabulary: a plain one-hot
//!   model, or a recurrent word LM as PyTorch's `word_language_model` exports one.

use std::path::Path;

use crate::ndarray::{Array2, Array3, ArrayView2, ArrayView3, Ix3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tract_onnx::prelude::*;

use crate::contract::{NextWordMeta, EOS};
use crate::error::{Error, Result};
use crate::foreign::{Ports, ScoresOf, TokenLayout};
use crate::read::{self, LoadOptions, ModelFile};
use crate::sampling::{softmax, top_k, Sampling};
use crate::text::{self, Vocab};

/// The most text `kiln score` reads from a file: the text and its token ids are held at once.
pub const MAX_SCORED_TEXT_BYTES: u64 = 1_000_000_000;

/// How the graph takes its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Interface {
    /// kiln's export: token ids and LSTM state `[layers, batch, hidden]` in and out.
    TokenIds { layers: usize, hidden: usize },
    /// One-hot float rows `[batch, seq, vocab]`, logits out, no state (`torch.onnx.export`).
    OneHot { seq: usize },
    /// A recurrent word LM without kiln metadata (PyTorch's `word_language_model`): token ids
    /// laid out as `layout`, LSTM state in and out, scores (logits or log-probabilities) for
    /// every position when `every_position`, else for the last.
    ForeignTokenIds { layers: usize, hidden: usize, layout: TokenLayout, every_position: bool },
}

/// An LSTM stack's state: `h` and `c`, each `[layers, batch, hidden]`.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub h: Array3<f32>,
    pub c: Array3<f32>,
}

/// One forward pass's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// `[batch, vocab]`: scores for the word after the last position.
    pub logits: Array2<f32>,
    /// `[batch, seq, vocab]`: scores after every position, when the file has `logits_all`.
    pub logits_all: Option<EveryPosition>,
    /// The state after the last position; `None` for one-hot models, which have no state.
    pub state: Option<State>,
}

/// Scores after every position, `[batch, seq, vocab]` ([`EveryPosition::view`]), in the
/// buffer the model computed them in: they are a scoring call's largest value (72 MB for 64
/// windows of 35 words over 8,000 words), and a copy into an array of their own cost about a
/// tenth of such a call.
#[derive(Debug, Clone)]
pub struct EveryPosition(Arc<Tensor>);

impl EveryPosition {
    /// `t`'s scores, when it holds `[batch, seq, vocab]` floats.
    fn new(t: &TValue, dims: (usize, usize, usize)) -> Option<Self> {
        let fits = t.to_plain_array_view::<f32>().is_ok() && t.shape() == [dims.0, dims.1, dims.2];
        fits.then(|| EveryPosition(t.clone().into_arc_tensor()))
    }

    /// The scores, `[batch, seq, vocab]`.
    pub fn view(&self) -> ArrayView3<'_, f32> {
        self.0
            .to_plain_array_view::<f32>()
            .ok()
            .and_then(|v| v.into_dimensionality::<Ix3>().ok())
            .expect("checked when made: plain floats of rank 3")
    }

    /// `(batch, seq, vocab)`.
    pub fn dim(&self) -> (usize, usize, usize) {
        self.view().dim()
    }
}

impl From<Array3<f32>> for EveryPosition {
    fn from(a: Array3<f32>) -> Self {
        EveryPosition(Arc::new(a.into_tensor()))
    }
}

impl PartialEq for EveryPosition {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
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
    /// The words fed to the model: all of them for a stream model (after the `<eos>` every
    /// stream starts with), else the prompt's last `context` words.
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

/// The most words [`NextWordModel::generate`] collects into one [`Generation`] (about 10 MB of
/// text and JSON); [`NextWordModel::generate_iter`] has no such bound.
pub const MAX_COLLECTED_WORDS: usize = 100_000;

/// Next-word models with at most this many bytes of weights get a plan per concrete input shape
/// (see [`read::Runner`]); larger ones run every call on the plan for any shape. Each concrete
/// plan holds its own packed copy of the weights (up to [`read::Runner::SHAPES`] of them), so the
/// bound is on memory: a model past it keeps one. Speed favours the concrete plans on both
/// shipped models. Measured 2026-12-06 (`kiln bench`, release build, one thread, this 2-core
/// machine, shared host, the two plans interleaved, min of 4–12 rounds): the tied Shakespeare
/// LSTM (9 MB) next word at 64 windows 40.4 → 33.7 ms, at one 1.75 → 1.34 ms, every position at
/// 64 windows 121 → 91 ms, at one 4.04 → 3.26 ms; `kiln score` on the sample text 54 → 72 MB
/// resident. The seed LSTM (under 1 KB) at 64 windows 71 → 37 µs (2026-12-01).
const PER_SHAPE_MAX_WEIGHTS: usize = 32 << 20;

/// Bytes of the constants of a typed graph: its weights.
fn weight_bytes(typed: &TypedModel) -> usize {
    typed
        .nodes
        .iter()
        .filter_map(|n| n.op_as::<tract_onnx::tract_core::ops::konst::Const>())
        .map(|c| c.val().len() * c.val().datum_type().size_of())
        .sum()
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
    /// Stop at the end of the line (`<eos>`, stream models); otherwise `<eos>` is generated as
    /// a word like any other.
    pub stop_at_eos: bool,
}

impl GenerateOptions {
    /// How each word is drawn.
    pub fn sampling(&self) -> Sampling {
        Sampling { temperature: self.temperature, top_k: self.top_k }
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { words: 20, temperature: 1.0, top_k: None, seed: 0, stop_at_eos: true }
    }
}

/// How well a model predicts a text (see [`NextWordModel::score`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Predictions scored: every word and line end after the first token of the stream.
    pub predictions: usize,
    /// Line ends among them (`<eos>`, stream models).
    pub line_ends: usize,
    /// Words of the text the vocabulary lacks, read (and scored) as `<unk>`.
    pub unknown: usize,
    /// Mean cross-entropy, nats per prediction.
    pub cross_entropy: f64,
    /// exp(cross-entropy): the per-word perplexity.
    pub perplexity: f64,
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
    /// The plan [`NextWordModel::step`] runs: for a file that also writes every position's
    /// logits, a plan without them (predicting and generating never read them; in the shipped
    /// Shakespeare LSTM they are most of a call's work).
    plan: read::Runner,
    /// For such a file, the plan over every output, which [`NextWordModel::run`] (and so
    /// scoring) uses; made at its first call.
    every: Option<read::LazyRunner>,
    meta: NextWordMeta,
    vocab: Vocab,
    interface: Interface,
    /// Which input and output carries what.
    ports: Ports,
}

impl NextWordModel {
    /// Loads a model file and checks it against its metadata. Its plan is optimised once, at
    /// load, or for a model with small weights at the first call of each input shape; the calls
    /// after it reuse the plan.
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        Self::from_file(ModelFile::read(path.as_ref(), options)?, options)
    }

    /// Like [`NextWordModel::load`], from the file's bytes; `name` names it in messages.
    pub fn from_bytes(bytes: &[u8], name: &str, options: &LoadOptions) -> Result<Self> {
        Self::from_file(ModelFile::parse(bytes, name.to_string(), options)?, options)
    }

    pub(crate) fn from_file(file: ModelFile, options: &LoadOptions) -> Result<Self> {
        let path = file.name.clone();
        crate::error::catching(&path, "loading the model", move || Self::build(file, options))
    }

    fn build(file: ModelFile, options: &LoadOptions) -> Result<Self> {
        let ModelFile { name, graph, props, limits, proto, .. } = file;
        let (graph, meta, interface, ports) = if props.contains_key(crate::contract::key::KIND) {
            if options.vocab.is_some() {
                return Err(Error::VocabNotNeeded(name));
            }
            let meta = NextWordMeta::from_props(&props)
                .map_err(|source| Error::Contract { path: name.clone(), source })?;
            let interface = Interface::TokenIds { layers: meta.layers, hidden: meta.hidden };
            (graph, meta, interface, Ports::KILN)
        } else {
            let f = crate::foreign::read(graph, proto.as_ref(), &name, options)?;
            (f.graph, f.meta, f.interface, f.ports)
        };
        let typed = ModelFile::typed(&name, graph)?;
        if let Interface::TokenIds { layers, hidden } = interface {
            // tokens, h0, c0 in; logits, hn, cn (and logits_all) out.
            let check = read::Checker { name: &name, graph: &typed };
            check.counts(3, (3, 4))?;
            let vocab = meta.vocab.len();
            check.axis(true, 0, 1, vocab, crate::contract::key::VOCAB, "logits")?;
            check.gather_rows(vocab, crate::contract::key::VOCAB)?;
            for input in [1, 2] {
                check.axis(false, input, 0, layers, crate::contract::key::LAYERS, "a state")?;
                check.axis(false, input, 2, hidden, crate::contract::key::HIDDEN, "a state")?;
            }
        }
        let per_shape = weight_bytes(&typed) <= PER_SHAPE_MAX_WEIGHTS;
        let max = limits.max_call_bytes;
        let (plan, every) = match interface {
            Interface::TokenIds { .. } if typed.outputs.len() > 3 => {
                let with_outputs = |graph: TypedModel, outputs: Vec<OutletId>| {
                    graph
                        .with_output_outlets(&outputs)
                        .and_then(|g| g.into_compact())
                        .map_err(|e| Error::BadModel { path: name.clone(), source: e.into() })
                };
                // hn, cn, logits_all: what scoring needs. The last position's logits are read
                // from logits_all, so the plan does not compute them twice (the file's own head
                // for them reads the whole weight again: 12% of scoring one window of 35 words
                // on the Shakespeare LSTM).
                let scoring = with_outputs(typed.clone(), typed.outputs[1..4].to_vec())?;
                let every = read::LazyRunner::new(&name, scoring, per_shape, max)?;
                // logits, hn, cn: what a step needs.
                let step = typed.outputs[..3].to_vec();
                (read::Runner::new(&name, with_outputs(typed, step)?, per_shape, max)?, Some(every))
            }
            _ => (read::Runner::new(&name, typed, per_shape, max)?, None),
        };
        let vocab = Vocab::new(meta.vocab.clone());
        Ok(NextWordModel { plan, every, meta, vocab, interface, ports })
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

    /// Checks that a call on `batch` windows of `seq` tokens stays within
    /// [`Limits::max_call_bytes`](crate::Limits), before anything is allocated for it: a call
    /// that scores every position ([`NextWordModel::run`]) when `every_position`, else one that
    /// predicts the next word ([`NextWordModel::step`]).
    pub fn check_batch(&self, batch: usize, seq: usize, every_position: bool) -> Result<()> {
        match self.interface {
            Interface::TokenIds { layers, hidden } => {
                let state = [layers, batch, hidden];
                let shapes: [&[usize]; 3] = [&[batch, seq], &state, &state];
                match (&self.every, every_position) {
                    (Some(every), true) => every.check_call(&shapes),
                    _ => self.plan.check_call(&shapes),
                }
            }
            Interface::ForeignTokenIds { layers, hidden, layout, .. } => {
                let state = [layers, batch, hidden];
                let tokens = match layout {
                    TokenLayout::SeqFirst => [seq, batch],
                    TokenLayout::BatchFirst => [batch, seq],
                };
                let mut shapes: [&[usize]; 3] = [&state, &state, &state];
                shapes[self.ports.tokens] = &tokens;
                self.plan.check_call(&shapes)
            }
            // One window at a time, in a plan made for one.
            Interface::OneHot { .. } => Ok(()),
        }
    }

    /// Makes now the plan that scoring runs ([`NextWordModel::run`], [`NextWordModel::score`]),
    /// which is otherwise made at its first use; nothing to do for a model that has one plan.
    pub fn prepare_scoring(&self) -> Result<()> {
        self.every.as_ref().map_or(Ok(()), |every| every.get().map(drop))
    }

    /// Whether one call scores every position of its tokens (a text is then scored in chunks).
    pub fn scores_every_position(&self) -> bool {
        match self.interface {
            Interface::TokenIds { .. } => self.every.is_some(),
            Interface::ForeignTokenIds { every_position, .. } => every_position,
            Interface::OneHot { .. } => false,
        }
    }

    /// One forward pass over `tokens` `[batch, seq]`, from `state`, or from zeros when `state`
    /// is `None`, with every output the file has (`logits_all` too, where it has them).
    pub fn run(&self, tokens: ArrayView2<i64>, state: Option<&State>) -> Result<StepOutput> {
        self.forward(tokens, state, true)
    }

    /// Like [`NextWordModel::run`], without every position's logits (`logits_all` is `None`):
    /// the scores for the next word and the state, all that predicting and generating read.
    /// Less work where the file writes every position's logits too.
    pub fn step(&self, tokens: ArrayView2<i64>, state: Option<&State>) -> Result<StepOutput> {
        self.forward(tokens, state, false)
    }

    fn forward(&self, tokens: ArrayView2<i64>, state: Option<&State>, every: bool) -> Result<StepOutput> {
        let (batch, seq) = tokens.dim();
        if batch == 0 || seq == 0 {
            return Err(Error::Input(format!("a [{batch}, {seq}] batch of token ids is empty")));
        }
        let n_vocab = self.vocab.len() as i64;
        if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
            return Err(Error::Input(format!("token id {bad} is outside the vocabulary")));
        }
        match self.interface {
            Interface::TokenIds { layers, hidden } => {
                let mut zeros = None;
                let state = given_or_zero(state, &mut zeros, (layers, batch, hidden))?;
                let inputs =
                    tvec!(read::input(tokens), read::input(state.h.view()), read::input(state.c.view()));
                let scoring = match (&self.every, every) {
                    (Some(all), true) => Some(all.get()?),
                    _ => None,
                };
                let out = scoring.unwrap_or(&self.plan).run(inputs)?;
                // The step's plan computes logits, hn and cn; scoring's hn, cn and logits_all.
                let (h, c) = if scoring.is_some() { (0, 1) } else { (1, 2) };
                let vocab = self.vocab.len();
                let state = State { h: read::array(&out[h])?, c: read::array(&out[c])? };
                // The graph's shapes were checked at load where tract could tell them; a graph
                // whose shapes depend on the values is checked here, before anything indexes them.
                let expected = |what: &str, got: String, want: String| {
                    Error::Input(format!("the model computed {what} of shape {got}, not {want}"))
                };
                let logits_all = match scoring {
                    Some(_) => Some(EveryPosition::new(&out[2], (batch, seq, vocab)).ok_or_else(|| {
                        let got = match out[2].shape() {
                            [a, b, c] => format!("{:?}", (a, b, c)),
                            other => format!("{other:?}"),
                        };
                        expected("logits_all", got, format!("{:?}", (batch, seq, vocab)))
                    })?),
                    None => None,
                };
                let logits: Array2<f32> = match &logits_all {
                    Some(all) => all.view().slice(crate::ndarray::s![.., seq - 1, ..]).to_owned(),
                    None => read::array(&out[0])?,
                };
                read::finite(&logits, "logits")?;
                if logits.dim() != (batch, vocab) {
                    return Err(expected(
                        "logits",
                        format!("{:?}", logits.dim()),
                        format!("{:?}", (batch, vocab)),
                    ));
                }
                if state.h.dim() != (layers, batch, hidden) || state.c.dim() != (layers, batch, hidden) {
                    let want = format!("{:?}", (layers, batch, hidden));
                    return Err(expected("a state", format!("{:?}", state.h.dim()), want));
                }
                Ok(StepOutput { logits, logits_all, state: Some(state) })
            }
            Interface::ForeignTokenIds { layers, hidden, layout, .. } => {
                let mut zeros = None;
                let state = given_or_zero(state, &mut zeros, (layers, batch, hidden))?;
                let out = self.plan.run(self.ports.inputs(layout, tokens, &state.h, &state.c))?;
                let scores: crate::ndarray::ArrayD<f32> = read::array(&out[self.ports.scores])?;
                let shape = scores.shape().to_vec();
                let vocab = self.vocab.len();
                let (logits, logits_all) = match crate::foreign::arrange(scores, layout, batch, seq) {
                    Some(ScoresOf::Every(all)) if all.dim().2 == vocab => {
                        (all.slice(crate::ndarray::s![.., seq - 1, ..]).to_owned(), Some(all.into()))
                    }
                    Some(ScoresOf::Last(last)) if last.dim().1 == vocab => (last, None),
                    _ => {
                        return Err(Error::Input(format!(
                        "the model computed scores of shape {shape:?} for {batch} row(s) of {seq} token(s)"
                    )))
                    }
                };
                read::finite(&logits, "scores")?;
                let state =
                    State { h: read::array(&out[self.ports.hn])?, c: read::array(&out[self.ports.cn])? };
                if state.h.dim() != (layers, batch, hidden) || state.c.dim() != (layers, batch, hidden) {
                    return Err(Error::Input(format!(
                        "the model computed a state of shape {:?}, not {:?}",
                        state.h.dim(),
                        (layers, batch, hidden)
                    )));
                }
                Ok(StepOutput { logits, logits_all, state: Some(state) })
            }
            Interface::OneHot { seq: fixed } => {
                if seq != fixed {
                    return Err(Error::PromptTooShort { need: fixed, got: seq });
                }
                if state.is_some() {
                    return Err(Error::Input("this model takes no recurrent state".into()));
                }
                // The plan was optimised for batch 1 (tract needs a concrete batch for an LSTM
                // without explicit initial states): one row at a time.
                let vocab = self.vocab.len();
                let mut logits = Array2::zeros((batch, vocab));
                for (row, mut out_row) in tokens.outer_iter().zip(logits.outer_iter_mut()) {
                    let mut x = tract_ndarray::Array3::<f32>::zeros((1, seq, vocab));
                    for (t, &id) in row.iter().enumerate() {
                        x[(0, t, id as usize)] = 1.0;
                    }
                    let out = self.plan.run(tvec!(read::input(x.view())))?;
                    let l: Array2<f32> = read::array(&out[0])?;
                    if l.dim() != (1, vocab) {
                        return Err(Error::Input(format!(
                            "the model computed logits of shape {:?}, not {:?}",
                            l.dim(),
                            (1, vocab)
                        )));
                    }
                    out_row.assign(&l.row(0));
                }
                read::finite(&logits, "logits")?;
                Ok(StepOutput { logits, logits_all: None, state: None })
            }
        }
    }

    /// Cuts `prompt` into words and keeps what the model reads: all of them after `<eos>` for a
    /// stream model, else the last `context`, as the model was trained.
    pub fn context(&self, prompt: &str) -> Result<(Context, Vec<i64>)> {
        let words = text::words(&self.meta.tokenizer, prompt);
        if words.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let keep = if self.meta.stream { words.len() } else { self.meta.context };
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
        if let Some(eos) = self.eos() {
            ids.insert(0, eos as i64);
        }
        Ok((Context { words, truncated, unknown }, ids))
    }

    /// The id of `<eos>` in a stream model.
    fn eos(&self) -> Option<usize> {
        self.meta.stream.then(|| self.vocab.id(EOS).ok()).flatten()
    }

    /// The token ids of `text` read as a stream model reads it: `<eos>`, then each non-empty
    /// line's words followed by `<eos>`; other models read the words alone. Returns the ids and
    /// how many words were read as `<unk>`.
    pub fn stream_ids(&self, text: &str) -> Result<(Vec<i64>, usize)> {
        let eos = self.eos();
        let mut ids: Vec<i64> = eos.map(|e| e as i64).into_iter().collect();
        let mut unknown = 0;
        for line in text.lines() {
            let words = text::words(&self.meta.tokenizer, line);
            if words.is_empty() {
                continue;
            }
            for w in &words {
                unknown += usize::from(!self.vocab.contains(w));
                ids.push(self.vocab.id(w)? as i64);
            }
            ids.extend(eos.map(|e| e as i64));
        }
        Ok((ids, unknown))
    }

    /// The per-word perplexity of `text`, read as one stream with the state carried (see
    /// [`NextWordModel::stream_ids`]): every token after the first is predicted from all before
    /// it. Runs chunks of 256 tokens where the file has `logits_all`, a token at a time otherwise.
    pub fn score(&self, text: &str) -> Result<Score> {
        let (ids, unknown) = self.stream_ids(text)?;
        self.score_ids(&ids, unknown)
    }

    /// [`NextWordModel::score`] of a stream of token ids (`unknown` of them were words read as
    /// `<unk>`, for the report).
    pub fn score_ids(&self, ids: &[i64], unknown: usize) -> Result<Score> {
        if let Interface::OneHot { .. } = self.interface {
            return Err(Error::Input(
                "scoring needs a model that carries its state; this one reads a fixed window".into(),
            ));
        }
        if ids.len() < 2 {
            return Err(Error::Input("the text has nothing to predict: give at least two words".into()));
        }
        // Without scores at every position, the last position's are the only ones: a token at
        // a time.
        let chunk = if self.scores_every_position() { 256 } else { 1 };
        let (mut total, mut state, mut at) = (0f64, None, 0);
        while at + 1 < ids.len() {
            let len = chunk.min(ids.len() - 1 - at);
            let out = self.run(row(&ids[at..at + len]).view(), state.as_ref())?;
            let targets = &ids[at + 1..at + 1 + len];
            match &out.logits_all {
                Some(all) => {
                    let all = all.view();
                    for (j, &t) in targets.iter().enumerate() {
                        total += nll(all.slice(crate::ndarray::s![0, j, ..]).iter().copied(), t as usize);
                    }
                }
                None => total += nll(out.logits.iter().copied(), targets[0] as usize),
            }
            at += len;
            state = out.state;
        }
        let predictions = ids.len() - 1;
        let eos = self.eos().map(|e| e as i64);
        let line_ends = ids[1..].iter().filter(|&&t| Some(t) == eos).count();
        let cross_entropy = total / predictions as f64;
        if !cross_entropy.is_finite() {
            return Err(Error::Output(format!("the model's cross-entropy on the text is {cross_entropy}")));
        }
        Ok(Score { predictions, line_ends, unknown, cross_entropy, perplexity: cross_entropy.exp() })
    }

    /// The `k` most likely next words after `prompt`.
    pub fn predict(&self, prompt: &str, k: usize) -> Result<Prediction> {
        if k == 0 {
            return Err(Error::argument("k", "must be at least 1"));
        }
        let (context, ids) = self.context(prompt)?;
        let out = self.step(row(&ids).view(), None)?;
        let probs = softmax(out.logits.as_slice().expect("a fresh array is contiguous"), 1.0);
        let top = top_k(&probs, k)
            .into_iter()
            .map(|i| WordProb { word: self.vocab.word(i).to_string(), probability: probs[i] })
            .collect();
        Ok(Prediction { context, top })
    }

    /// Generates words after `prompt`. With kiln's models the LSTM state is carried, so each
    /// new word costs one step; one-hot models re-read their fixed window each time.
    pub fn generate(&self, prompt: &str, options: &GenerateOptions) -> Result<Generation> {
        if options.words > MAX_COLLECTED_WORDS {
            return Err(Error::argument(
                "n",
                format!(
                    "must be at most {MAX_COLLECTED_WORDS} when the words are collected before they are \
                     shown (as for JSON): take more one at a time, as plain text does"
                ),
            ));
        }
        let (context, words) = self.generate_iter(prompt, options)?;
        Ok(Generation { context, words: words.collect::<Result<_>>()? })
    }

    /// Like [`NextWordModel::generate`], one word at a time (any number of them), as each is chosen.
    pub fn generate_iter(&self, prompt: &str, options: &GenerateOptions) -> Result<(Context, Words<'_>)> {
        options.sampling().check()?;
        if options.words == 0 {
            return Err(Error::argument("n", "must be at least 1"));
        }
        let (context, ids) = self.context(prompt)?;
        let last = match self.interface {
            Interface::TokenIds { .. } | Interface::ForeignTokenIds { .. } => {
                Some(self.step(row(&ids).view(), None)?)
            }
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
            eos: if options.stop_at_eos { self.eos() } else { None },
        };
        Ok((context, words))
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
    /// Generation ends when this word (`<eos>`) is chosen.
    eos: Option<usize>,
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
            (Some(last), Some(id)) => m.step(row(&[id]).view(), last.state.as_ref()).map(|out| *last = out),
            (Some(_), None) => Ok(()),
            (None, _) => m.step(row(&self.window).view(), None).map(|out| self.last = Some(out)),
        };
        if let Err(e) = step {
            self.left = 0;
            return Some(Err(e));
        }
        let logits = &self.last.as_ref().expect("set above").logits;
        let logits = logits.as_slice().expect("a fresh array is contiguous");
        let next = self.options.sampling().choose(logits, m.vocab.unk(), &mut self.rng);
        if Some(next) == self.eos {
            self.left = 0;
            return None;
        }
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

/// The state a call starts from: `state` when it has the shape `dims`, zeros (held in `slot`)
/// when none is given.
fn given_or_zero<'a>(
    state: Option<&'a State>,
    slot: &'a mut Option<State>,
    dims: (usize, usize, usize),
) -> Result<&'a State> {
    let state = match state {
        Some(s) => s,
        None => {
            let z = Array3::zeros(dims);
            slot.insert(State { h: z.clone(), c: z })
        }
    };
    if state.h.dim() != dims || state.c.dim() != dims {
        let (layers, batch, hidden) = dims;
        return Err(Error::Input(format!("the state must be [{layers}, {batch}, {hidden}]")));
    }
    Ok(state)
}

/// −ln softmax(logits)[target], in f64.
fn nll(logits: impl Iterator<Item = f32> + Clone, target: usize) -> f64 {
    let max = logits.clone().fold(f64::NEG_INFINITY, |m, x| m.max(x as f64));
    // Each term in f32 (within an ulp, as the logits themselves), summed in f64: the f64 `exp`
    // took most of a scoring run's time on an 8,000-word vocabulary.
    let max32 = max as f32;
    let sum: f64 = logits.clone().map(|x| (x - max32).exp() as f64).sum();
    let at = logits.clone().nth(target).map_or(f64::NAN, |x| x as f64);
    max + sum.ln() - at
}

/// One row of token ids, `[1, len]`.
fn row(ids: &[i64]) -> Array2<i64> {
    Array2::from_shape_vec((1, ids.len()), ids.to_vec()).expect("one row of ids")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Shakespeare LSTM's embedding matrix (8000 × 200, 6.4 MB) is read by the lookup and
    /// by both heads: each head's product gets it packed when its plan is made, in the step's
    /// plans and in scoring's, for any batch and for a call's own shape, rather than packed again
    /// at every call (over tract's folding budget, a weight read by several nodes was left for
    /// the call: 92% of a next-word call). And scoring's head computes its logits in the order
    /// the output has them, `[batch, seq, vocab]`: the LSTM's sequence-first output is reordered
    /// before the product, not the 8,000-wide product after it.
    #[test]
    fn the_word_models_heads_are_packed_at_load_and_write_their_output_in_place() {
        let path = format!("{}/../models/shakespeare-lstm.onnx", env!("CARGO_MANIFEST_DIR"));
        let model = NextWordModel::load(&path, &LoadOptions::default()).unwrap();
        assert!(model.plan.per_shape(), "9 MB of weights: plans per shape");
        let tokens = Array2::from_shape_vec((2, 3), vec![4, 5, 6, 7, 8, 9]).unwrap();
        model.step(tokens.view(), None).unwrap();
        model.run(tokens.view(), None).unwrap();
        let every = model.every.as_ref().expect("the file writes every position's logits");
        for (which, runner) in [("step", &model.plan), ("scoring", every.get().unwrap())] {
            let shaped = runner.shape_plans();
            assert_eq!(shaped.len(), 1, "{which}: one call, one plan of its shape");
            let plans = [("any batch", runner.any_plan().unwrap()), ("the call's shape", shaped[0].clone())];
            for (kind, plan) in plans {
                let graph = plan.model();
                let packs_at_run: Vec<&str> = graph
                    .nodes()
                    .iter()
                    .filter(|n| n.op().name() == "OptMatMulPack")
                    .filter(|n| n.inputs.iter().all(|i| graph.node(i.node).op().name() == "Const"))
                    .map(|n| n.name.as_str())
                    .collect();
                assert_eq!(
                    packs_at_run,
                    Vec::<&str>::new(),
                    "{which}'s plan for {kind} packs a constant at each call"
                );
                let vocab = TDim::Val(model.meta().vocab.len() as i64);
                let moved: Vec<&str> = graph
                    .nodes()
                    .iter()
                    .filter(|n| n.op().name() == "MoveAxis" && n.outputs[0].fact.shape.last() == Some(&vocab))
                    .map(|n| n.name.as_str())
                    .collect();
                assert_eq!(moved, Vec::<&str>::new(), "{which}'s plan for {kind} moves logits");
            }
        }
    }

    /// Batches of 1 to 9 windows: the first shapes get plans of their own (the models' weights
    /// are small), the later ones run on the plan for any shape. Every row's scores, and its
    /// state, must match the same windows run in one batch of 9.
    #[test]
    fn every_batch_size_gives_the_rows_of_one_big_batch() {
        let dir = env!("CARGO_MANIFEST_DIR");
        for path in
            [format!("{dir}/../models/seed-lstm.onnx"), format!("{dir}/tests/fixtures/tiny-coin-stream.onnx")]
        {
            let model = NextWordModel::load(&path, &LoadOptions::default()).unwrap();
            assert!(model.plan.per_shape(), "{path}: small weights, plans per shape");
            let words = model.meta().vocab.len() as i64;
            let seq = 3;
            let ids: Vec<i64> = (0..9 * seq as i64).map(|i| (i * 7 + i / 3) % words).collect();
            let tokens = Array2::from_shape_vec((9, seq), ids).unwrap();
            let all = model.run(tokens.view(), None).unwrap();
            for batch in 1..=9 {
                let got = model.run(tokens.slice(crate::ndarray::s![..batch, ..]), None).unwrap();
                let diff = crate::numeric::max_abs_diff(
                    got.logits.as_slice().unwrap(),
                    all.logits.slice(crate::ndarray::s![..batch, ..]).to_owned().as_slice().unwrap(),
                );
                assert!(diff <= 1e-5, "{path}, batch {batch}: scores differ by {diff}");
                // Both models carry a state.
                let (g, a) = (got.state.as_ref().unwrap(), all.state.as_ref().unwrap());
                let rows = crate::ndarray::s![.., ..batch, ..];
                let h = crate::numeric::max_abs_diff(
                    g.h.as_slice().unwrap(),
                    a.h.slice(rows).to_owned().as_slice().unwrap(),
                );
                assert!(h <= 1e-5, "{path}, batch {batch}: states differ by {h}");
            }
        }
    }

    /// The word index and the metadata hold one list of words: the Shakespeare LSTM's 8,000
    /// copied were 0.35 ms of its load.
    #[test]
    fn a_word_models_index_shares_its_metadatas_words() {
        let path = format!("{}/../models/seed-lstm.onnx", env!("CARGO_MANIFEST_DIR"));
        let model = NextWordModel::load(&path, &LoadOptions::default()).unwrap();
        assert!(!model.meta().vocab.is_empty());
        assert_eq!(model.meta().vocab.as_ptr(), model.vocab().words().as_ptr(), "the words were copied");
    }

    /// A recurrent layer keeps values of its own in a call's state, so a word model's calls do
    /// not run in a kept state: the same window gives the same scores and state every time.
    #[test]
    fn a_word_models_calls_each_run_in_a_state_of_their_own() {
        let model = NextWordModel::load(
            format!("{}/../models/seed-lstm.onnx", env!("CARGO_MANIFEST_DIR")),
            &LoadOptions::default(),
        )
        .unwrap();
        let tokens = Array2::from_shape_vec((2, 3), vec![1i64, 2, 3, 4, 5, 6]).unwrap();
        let first = model.run(tokens.view(), None).unwrap();
        let other = Array2::from_shape_vec((2, 3), vec![6i64, 5, 4, 3, 2, 1]).unwrap();
        model.run(other.view(), None).unwrap();
        let again = model.run(tokens.view(), None).unwrap();
        assert_eq!(first.logits, again.logits);
        assert_eq!(first.state.unwrap().h, again.state.unwrap().h);
        assert_eq!(model.plan.idle_states(), 0, "a state of a recurrent plan was kept");
    }

    /// A predicting call is checked against the plan it runs, not the larger plan that scores
    /// every position: at the smallest batch whose scoring call is refused, a step fits and runs.
    #[test]
    fn a_step_is_checked_against_its_own_plan() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let limits = crate::Limits { max_call_bytes: 20_000_000, ..Default::default() };
        let options = LoadOptions { limits, ..Default::default() };
        let model = NextWordModel::load(format!("{dir}/../models/shakespeare-lstm.onnx"), &options).unwrap();
        let seq = model.meta().context;
        let batch = (0..20).map(|p| 1usize << p).find(|&b| model.check_batch(b, seq, true).is_err());
        let batch = batch.expect("some batch under 2^20 windows is too large to score");
        model.check_batch(batch, seq, false).unwrap();
        let tokens = Array2::from_elem((batch, seq), 1i64);
        assert_eq!(model.step(tokens.view(), None).unwrap().logits.nrows(), batch);
        assert!(matches!(model.run(tokens.view(), None), Err(Error::CallTooLarge { .. })));
    }

    /// Files that write every position's logits too: a step (predicting, generating) runs a plan
    /// without them and must give the scores and state of the plan over every output, from a
    /// carried state; the plan over every output is made only when first used.
    #[test]
    fn a_step_gives_the_next_word_and_state_of_a_full_run() {
        let dir = env!("CARGO_MANIFEST_DIR");
        for path in [
            format!("{dir}/tests/fixtures/tiny-coin-stream.onnx"),
            format!("{dir}/../models/shakespeare-lstm.onnx"),
        ] {
            let model = NextWordModel::load(&path, &LoadOptions::default()).unwrap();
            assert!(model.scores_every_position(), "{path}");
            assert_eq!(model.plan.outputs(), 3, "{path}: the step's plan computes logits, hn, cn");
            let every = model.every.as_ref().unwrap();
            assert!(!every.made(), "{path}: the plan over every output is made at its first use");
            let words = model.meta().vocab.len() as i64;
            let ids = |batch: usize, seq: usize, salt: i64| {
                let ids = (0..(batch * seq) as i64).map(|i| (i * 7 + salt) % words).collect();
                Array2::from_shape_vec((batch, seq), ids).unwrap()
            };
            for (batch, seq) in [(1, 1), (1, 6), (3, 4)] {
                // A state that is not zeros: the one after a first window.
                let state = model.step(ids(batch, 5, 3).view(), None).unwrap().state;
                let tokens = ids(batch, seq, 1);
                let full = model.run(tokens.view(), state.as_ref()).unwrap();
                let step = model.step(tokens.view(), state.as_ref()).unwrap();
                assert!(every.made());
                // Its last position's logits are read from logits_all, not computed again.
                let scoring = every.get().unwrap();
                assert_eq!(scoring.outputs(), 3, "{path}: scoring's plan computes hn, cn, logits_all");
                let all = full.logits_all.as_ref().expect("run gives every position's logits");
                assert_eq!(all.dim(), (batch, seq, words as usize));
                assert!(step.logits_all.is_none(), "{path}: a step computes no logits_all");
                let d = |a: &Array2<f32>, b: &Array2<f32>| {
                    crate::numeric::max_abs_diff(a.as_slice().unwrap(), b.as_slice().unwrap())
                };
                let (f, s) = (full.state.unwrap(), step.state.unwrap());
                let flat = |a: &Array3<f32>| a.clone().into_shape_with_order((a.len(), 1)).unwrap();
                for (what, diff) in [
                    ("logits", d(&full.logits, &step.logits)),
                    ("h", d(&flat(&f.h), &flat(&s.h))),
                    ("c", d(&flat(&f.c), &flat(&s.c))),
                ] {
                    assert!(diff <= 1e-6, "{path}, batch {batch}, seq {seq}: {what} differ by {diff}");
                }
            }
        }
    }
}
