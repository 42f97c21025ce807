//! Next-word models that kiln did not write, read from their graphs with a vocabulary given
//! beside them (a JSON array of the words in index order):
//!
//! - a plain one-hot model such as `torch.onnx.export` writes for the seed lecture's code: one
//!   float input `[batch, seq, vocab]`, logits out, no state;
//! - a recurrent word LM such as PyTorch's `word_language_model` exports (`RNNModel`, LSTM):
//!   int64 token ids, sequence-first or batch-first, and the LSTM state `h0`, `c0` in; scores for
//!   every position (`[seq·batch, vocab]` or 3-D) or for the last one, and `hn`, `cn` out. The
//!   scores may be logits or log-probabilities: softmax reads both the same. Which input is the
//!   tokens and which the state pair is read from their types and shapes, which output is the
//!   scores from theirs; only a layout the graph cannot tell (an export whose batch and
//!   sequence sizes are equal) needs [`LoadOptions::layout`].
//!
//! PyTorch's exporter writes fixed shapes (the example input's `[seq, batch]`) and bakes them
//! into `Reshape` targets. Such a file is made to take any sequence and batch by turning each
//! target entry that copies an input axis of the export's sequence or batch size into ONNX's
//! "copy this axis" (0); the result is checked at load against the file as written (a word at a
//! time, batch 1, must give the file's own scores), and the file is refused if it differs.

use std::collections::HashMap;

use serde::Serialize;
use tract_onnx::pb::{tensor_proto::DataType, ModelProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::contract::{NextWordMeta, TokenizerSpec, EOS};
use crate::error::{Error, Result};
use crate::next_word::Interface;
use crate::read::{self, LoadOptions};

/// How a token-id input lays out its two axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TokenLayout {
    /// `[seq, batch]`, as `torch.nn.LSTM` takes by default.
    SeqFirst,
    /// `[batch, seq]`, as kiln's own files take.
    BatchFirst,
}

/// Which input and output of a recurrent next-word graph carries what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    pub tokens: usize,
    pub h: usize,
    pub c: usize,
    pub scores: usize,
    pub hn: usize,
    pub cn: usize,
}

impl Ports {
    /// kiln's contract: `tokens, h0, c0` in; `logits, hn, cn` (then `logits_all`) out.
    pub const KILN: Ports = Ports { tokens: 0, h: 1, c: 2, scores: 0, hn: 1, cn: 2 };

    /// A call's inputs in the graph's order: `tokens` (`[batch, seq]`, laid out as `layout`
    /// wants) and the state `h`, `c`.
    pub fn inputs(
        self,
        layout: TokenLayout,
        tokens: tract_ndarray::ArrayView2<i64>,
        h: &tract_ndarray::Array3<f32>,
        c: &tract_ndarray::Array3<f32>,
    ) -> TVec<TValue> {
        let tokens = match layout {
            TokenLayout::SeqFirst => tokens.t(),
            TokenLayout::BatchFirst => tokens,
        };
        let mut inputs: Vec<Option<TValue>> = vec![None, None, None];
        inputs[self.tokens] = Some(read::input(tokens));
        inputs[self.h] = Some(read::input(h.view()));
        inputs[self.c] = Some(read::input(c.view()));
        inputs.into_iter().flatten().collect()
    }
}

/// A foreign next-word model, ready to be typed and planned.
pub(crate) struct Foreign {
    pub graph: InferenceModel,
    pub meta: NextWordMeta,
    pub interface: Interface,
    pub ports: Ports,
}

/// Reads the interface of a graph without kiln metadata.
pub(crate) fn read(
    model: InferenceModel,
    proto: Option<&ModelProto>,
    shown: &str,
    options: &LoadOptions,
) -> Result<Foreign> {
    let unsupported = |reason: String| Error::Unsupported { path: shown.to_string(), reason };
    let words = read_vocab(shown, options)?;
    let inputs = model.input_outlets().map_err(|e| unsupported(e.to_string()))?.len();
    match inputs {
        1 => one_hot(model, shown, words),
        3 => token_ids(model, proto, shown, words, options),
        n => Err(unsupported(format!(
            "it has {n} inputs; a model without kiln metadata must take one one-hot float input \
             [batch, seq, vocab], or int64 token ids with an LSTM's h0 and c0"
        ))),
    }
}

fn read_vocab(shown: &str, options: &LoadOptions) -> Result<Vec<String>> {
    let vocab_path = options.vocab.as_ref().ok_or_else(|| Error::NeedVocab(shown.to_string()))?;
    let shown_vocab = vocab_path.display().to_string();
    // A vocabulary is smaller than the model it serves: the model's size limit bounds the read.
    let max = options.limits.max_bytes;
    let vocab_text = crate::fsx::read_text_bounded(vocab_path, max).map_err(|e| match e {
        crate::fsx::ReadError::Io(source) => Error::Read { path: shown_vocab.clone(), source },
        crate::fsx::ReadError::TooLarge { .. } => Error::Read {
            path: shown_vocab.clone(),
            source: std::io::Error::other(format!(
                "it holds more than {} MB, the most a model file may hold (--max-model-mb raises it), and a \
                 vocabulary is smaller than its model",
                max / 1_000_000
            )),
        },
    })?;
    let words: Vec<String> = serde_json::from_str(&vocab_text)
        .map_err(|source| Error::BadVocab { path: shown_vocab.clone(), source })?;
    if words.is_empty() {
        return Err(Error::EmptyVocab(shown_vocab));
    }
    Ok(words)
}

/// An input's element type and dimensions (`None` where tract cannot tell them yet).
fn input_fact(model: &InferenceModel, i: usize) -> Result<(Option<DatumType>, Option<Vec<TDim>>)> {
    let fact = model.input_fact(i).map_err(|e| Error::Input(e.to_string()))?;
    let dims = fact.shape.rank().concretize().and_then(|rank| {
        (0..rank as usize).map(|a| fact.shape.dim(a).and_then(|d| d.concretize())).collect()
    });
    Ok((fact.datum_type.concretize(), dims))
}

/// A plain one-hot model: a single one-hot float input `[batch, seq, vocab]`.
fn one_hot(model: InferenceModel, shown: &str, words: Vec<String>) -> Result<Foreign> {
    let unsupported = |reason: String| Error::Unsupported { path: shown.to_string(), reason };
    let (dt, dims) = input_fact(&model, 0)?;
    let fixed: Option<Vec<Option<usize>>> =
        dims.map(|d| d.iter().map(|x| x.to_i64().ok().map(|v| v as usize)).collect());
    let (seq, vocab) = match (dt, fixed.as_deref()) {
        (Some(dt), Some([_, Some(seq), Some(vocab)])) if dt == f32::datum_type() => (*seq, *vocab),
        _ => {
            let fact = model.input_fact(0).map_err(|e| unsupported(e.to_string()))?;
            return Err(unsupported(format!(
                "its input is {fact:?}; expected one-hot float [batch, seq, vocab]"
            )));
        }
    };
    if words.len() != vocab {
        return Err(Error::VocabMismatch { vocab: words.len(), model: vocab });
    }
    let graph = model
        .with_input_fact(0, f32::fact([1, seq, vocab]).into())
        .map_err(|e| unsupported(format!("{e:#}")))?;
    let meta = NextWordMeta {
        vocab: words.into(),
        // The seed's vocabulary is plain lower-case words split on spaces.
        tokenizer: TokenizerSpec { lowercase: true, split_punctuation: false },
        context: seq,
        layers: 0,
        hidden: 0,
        stream: false,
        train_config: serde_json::Value::Null,
    };
    // A single input and output: the kiln ports' first entries.
    Ok(Foreign { graph, meta, interface: Interface::OneHot { seq }, ports: Ports::KILN })
}

/// A recurrent word LM: int64 token ids and an LSTM's `h0`, `c0` in; scores, `hn`, `cn` out.
fn token_ids(
    model: InferenceModel,
    proto: Option<&ModelProto>,
    shown: &str,
    words: Vec<String>,
    options: &LoadOptions,
) -> Result<Foreign> {
    let unsupported = |reason: String| Error::Unsupported { path: shown.to_string(), reason };
    let outputs = model.output_outlets().map_err(|e| unsupported(e.to_string()))?.len();
    if outputs != 3 {
        return Err(unsupported(format!(
            "it has 3 inputs and {outputs} outputs; a recurrent word model without kiln metadata \
             returns its scores, hn and cn"
        )));
    }
    // Roles by type: the int64 input of rank 2 is the tokens, the two float inputs of rank 3
    // (in the order the graph lists them) are h0 and c0.
    let facts: Vec<_> = (0..3).map(|i| input_fact(&model, i)).collect::<Result<_>>()?;
    let is = |i: usize, dt: DatumType, rank: usize| {
        facts[i].0 == Some(dt) && facts[i].1.as_ref().is_some_and(|d| d.len() == rank)
    };
    let tokens = (0..3).find(|&i| is(i, i64::datum_type(), 2));
    let state: Vec<usize> = (0..3).filter(|&i| is(i, f32::datum_type(), 3)).collect();
    let (tokens, h, c) = match (tokens, state.as_slice()) {
        (Some(t), &[h, c]) => (t, h, c),
        _ => {
            return Err(unsupported(
                "its 3 inputs are not int64 token ids [seq, batch] (or [batch, seq]) and an LSTM's \
                 float h0 and c0 [layers, batch, hidden]"
                    .into(),
            ))
        }
    };
    let dims = |i: usize| facts[i].1.clone().unwrap_or_default();
    let (tok, state_dims) = (dims(tokens), dims(h));
    if dims(c) != state_dims {
        return Err(unsupported(format!("its h0 is {:?} but its c0 is {:?}", state_dims, dims(c))));
    }
    let concrete = |d: &TDim| d.to_i64().ok().filter(|&v| v > 0).map(|v| v as usize);
    let (Some(layers), Some(hidden)) = (concrete(&state_dims[0]), concrete(&state_dims[2])) else {
        return Err(unsupported(format!(
            "its state is {state_dims:?}: the number of layers and the hidden size must be fixed"
        )));
    };
    let batch_dim = &state_dims[1];
    let layout = match (options.layout, tok[0] == *batch_dim, tok[1] == *batch_dim) {
        (Some(l), _, _) => l,
        (None, false, true) => TokenLayout::SeqFirst,
        (None, true, false) => TokenLayout::BatchFirst,
        _ => {
            return Err(unsupported(format!(
                "its token input is {} and its state {}: the graph does not tell which token axis is \
                 the batch; say it with --layout seq-first or --layout batch-first",
                shape_text(&tok),
                shape_text(&state_dims)
            )))
        }
    };
    let seq_first = layout == TokenLayout::SeqFirst;
    let export: Option<(usize, usize)> = match (concrete(&tok[0]), concrete(&tok[1])) {
        (Some(a), Some(b)) if seq_first => Some((a, b)),
        (Some(a), Some(b)) => Some((b, a)),
        _ => None,
    };
    let ports = {
        let mut p = Ports { tokens, h, c, scores: 0, hn: 1, cn: 2 };
        // Outputs: the two shaped as the state are hn and cn (in order), the other the scores.
        let out_dims: Vec<Option<Vec<TDim>>> = (0..3)
            .map(|i| {
                let f = model.output_fact(i).ok()?;
                let rank = f.shape.rank().concretize()? as usize;
                (0..rank).map(|a| f.shape.dim(a).and_then(|d| d.concretize())).collect()
            })
            .collect();
        let like_state: Vec<usize> = (0..3).filter(|&i| out_dims[i].as_ref() == Some(&state_dims)).collect();
        if let &[hn, cn] = like_state.as_slice() {
            p.scores = (0..3).find(|i| !like_state.contains(i)).unwrap_or(0);
            (p.hn, p.cn) = (hn, cn);
        }
        p
    };

    // Any sequence and batch: from the file as written, or after generalising its reshapes.
    let graph = match (export, proto) {
        (Some((seq, batch)), Some(proto)) => {
            let fixed = model.clone();
            let general = generalise(&model, proto, &[seq, batch], shown)?;
            let general = with_symbolic_inputs(general, ports, layout, layers, hidden, shown)?;
            let export = Export { seq, batch, vocab: words.len(), told: options.layout.is_some() };
            check_same(&fixed, &general, ports, layout, export, shown)?;
            general
        }
        _ => with_symbolic_inputs(model, ports, layout, layers, hidden, shown)?,
    };
    let positions = probe(&graph, ports, layout, layers, hidden, words.len(), shown)?;
    let meta = NextWordMeta {
        stream: words.iter().any(|w| w == EOS),
        vocab: words.into(),
        // word_language_model's corpus: words split on white space, as written.
        tokenizer: TokenizerSpec { lowercase: false, split_punctuation: false },
        context: export.map_or(1, |(seq, _)| seq),
        layers,
        hidden,
        train_config: serde_json::Value::Null,
    };
    let interface = Interface::ForeignTokenIds { layers, hidden, layout, every_position: positions };
    Ok(Foreign { graph, meta, interface, ports })
}

/// `[a, b, c]`, for messages.
fn shape_text(dims: &[TDim]) -> String {
    format!("[{}]", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// `model` with its inputs at any sequence and batch (symbols `seq`, `batch`) and its output
/// facts left for tract to derive.
fn with_symbolic_inputs(
    mut model: InferenceModel,
    ports: Ports,
    layout: TokenLayout,
    layers: usize,
    hidden: usize,
    shown: &str,
) -> Result<InferenceModel> {
    let bad = |e: TractError| Error::Unsupported {
        path: shown.to_string(),
        reason: format!("it cannot take other shapes than it was exported with ({e})"),
    };
    let (seq, batch) = (TDim::from(model.sym("seq")), TDim::from(model.sym("batch")));
    let tok = match layout {
        TokenLayout::SeqFirst => [seq, batch.clone()],
        TokenLayout::BatchFirst => [batch.clone(), seq],
    };
    let state = f32::fact(&[TDim::from(layers as i64), batch, TDim::from(hidden as i64)]);
    model.set_input_fact(ports.tokens, i64::fact(&tok).into()).map_err(bad)?;
    model.set_input_fact(ports.h, state.clone().into()).map_err(bad)?;
    model.set_input_fact(ports.c, state.into()).map_err(bad)?;
    for o in 0..3 {
        model.set_output_fact(o, InferenceFact::default()).map_err(bad)?;
    }
    Ok(model)
}

/// The file with each `Reshape` target entry that repeats its input's axis of a size in `sizes`
/// (the export's sequence and batch) replaced by 0, ONNX's "copy this axis".
fn generalise(
    model: &InferenceModel,
    proto: &ModelProto,
    sizes: &[usize],
    shown: &str,
) -> Result<InferenceModel> {
    let bad = |e: TractError| Error::BadModel { path: shown.to_string(), source: e.into() };
    let typed = model.clone().into_typed().map_err(bad)?;
    let mut proto = proto.clone();
    let Some(graph) = proto.graph.as_mut() else { return Err(bad(anyhow::anyhow!("no graph"))) };
    let mut constants: HashMap<String, TensorProto> =
        graph.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
    for n in graph.node.iter().filter(|n| n.op_type == "Constant") {
        if let (Some(out), Some(t)) = (n.output.first(), n.attribute.iter().find_map(|a| a.t.as_ref())) {
            constants.insert(out.clone(), t.clone());
        }
    }
    let mut added = Vec::new();
    for (i, node) in graph.node.iter_mut().enumerate() {
        let allow_zero = node.attribute.iter().any(|a| a.name == "allowzero" && a.i != 0);
        if node.op_type != "Reshape" || node.input.len() != 2 || allow_zero {
            continue;
        }
        let Some(target) = constants.get(&node.input[1]).and_then(crate::guard::int_values) else { continue };
        let Some(input) = typed
            .find_outlet_label(&node.input[0])
            .and_then(|o| typed.outlet_fact(o).ok())
            .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
        else {
            continue;
        };
        let general: Vec<i64> = target
            .iter()
            .enumerate()
            .map(|(axis, &v)| {
                let copies = input.get(axis).is_some_and(|&d| d as i64 == v) && sizes.contains(&(v as usize));
                if copies {
                    0
                } else {
                    v
                }
            })
            .collect();
        if general != target {
            let name = format!("{}.kiln_general_{i}", node.input[1]);
            added.push(TensorProto {
                name: name.clone(),
                dims: vec![general.len() as i64],
                data_type: DataType::Int64 as i32,
                int64_data: general,
                ..Default::default()
            });
            node.input[1] = name;
        }
    }
    graph.initializer.extend(added);
    // The exporter records every intermediate value's shape at the export's sizes: hints that
    // would pin the generalised graph to them.
    graph.value_info.clear();
    tract_onnx::onnx().model_for_proto_model(&proto).map_err(bad)
}

/// Deterministic token ids below `vocab` (a fixed multiplicative sequence: no RNG needed).
fn probe_tokens(n: usize, vocab: usize) -> Vec<i64> {
    (0..n).map(|i| ((i as u64 * 2_654_435_761 + 12_345) % vocab as u64) as i64).collect()
}

fn plan(model: &InferenceModel, shown: &str) -> Result<Arc<TypedRunnableModel>> {
    model
        .clone()
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| Error::BadModel { path: shown.to_string(), source: e.into() })
}

/// Runs `plan` on `tokens` (`[batch, seq]` in kiln's order) from zero state; returns the scores
/// as `[batch, seq, vocab]` when every position has them, and the state outputs.
fn call(
    plan: &Arc<TypedRunnableModel>,
    ports: Ports,
    layout: TokenLayout,
    (layers, hidden): (usize, usize),
    tokens: &tract_ndarray::Array2<i64>,
    state: Option<(tract_ndarray::Array3<f32>, tract_ndarray::Array3<f32>)>,
) -> Result<(tract_ndarray::ArrayD<f32>, tract_ndarray::Array3<f32>, tract_ndarray::Array3<f32>)> {
    let batch = tokens.nrows();
    let (h, c) = state.unwrap_or_else(|| {
        let z = tract_ndarray::Array3::<f32>::zeros((layers, batch, hidden));
        (z.clone(), z)
    });
    let out = plan.run(ports.inputs(layout, tokens.view(), &h, &c)).map_err(crate::error::run_err)?;
    Ok((read::array(&out[ports.scores])?, read::array(&out[ports.hn])?, read::array(&out[ports.cn])?))
}

/// The scores of a call on `[batch, seq]` tokens as `[batch, seq, vocab]` (every position) or
/// `[batch, vocab]` (the last), from what the graph returned; `None` when its shape is neither.
pub(crate) fn arrange(
    scores: tract_ndarray::ArrayD<f32>,
    layout: TokenLayout,
    batch: usize,
    seq: usize,
) -> Option<ScoresOf> {
    use tract_ndarray::{Ix2, Ix3};
    let shape = scores.shape().to_vec();
    let vocab = *shape.last()?;
    let (a, b) = match layout {
        TokenLayout::SeqFirst => (seq, batch),
        TokenLayout::BatchFirst => (batch, seq),
    };
    let full = match shape.as_slice() {
        [x, y, _] if (*x, *y) == (a, b) => scores.into_dimensionality::<Ix3>().ok()?,
        [n, _] if *n == a * b && seq > 1 => scores.into_shape_with_order((a, b, vocab)).ok()?,
        [n, _] if *n == batch => return Some(ScoresOf::Last(scores.into_dimensionality::<Ix2>().ok()?)),
        _ => return None,
    };
    Some(ScoresOf::Every(match layout {
        TokenLayout::SeqFirst => full.permuted_axes([1, 0, 2]).as_standard_layout().into_owned(),
        TokenLayout::BatchFirst => full,
    }))
}

/// A call's scores, arranged by [`arrange`].
pub(crate) enum ScoresOf {
    /// `[batch, seq, vocab]`.
    Every(tract_ndarray::Array3<f32>),
    /// `[batch, vocab]`.
    Last(tract_ndarray::Array2<f32>),
}

/// Runs the graph once on 3 rows of 2 tokens and tells from its answer whether it scores every
/// position; checks the vocabulary's size and the state's shape on the way.
fn probe(
    graph: &InferenceModel,
    ports: Ports,
    layout: TokenLayout,
    layers: usize,
    hidden: usize,
    vocab: usize,
    shown: &str,
) -> Result<bool> {
    let unsupported = |reason: String| Error::Unsupported { path: shown.to_string(), reason };
    let plan = plan(graph, shown)?;
    let (batch, seq) = (3, 2);
    let tokens = tract_ndarray::Array2::from_shape_vec((batch, seq), probe_tokens(batch * seq, vocab))
        .map_err(|e| Error::Input(e.to_string()))?;
    let (scores, hn, cn) = call(&plan, ports, layout, (layers, hidden), &tokens, None)
        .map_err(|e| unsupported(format!("it fails on 3 rows of 2 tokens: {e}")))?;
    let shape = scores.shape().to_vec();
    let width = scores.shape().last().copied().unwrap_or(0);
    if width != vocab {
        return Err(Error::VocabMismatch { vocab, model: width });
    }
    if hn.dim() != (layers, batch, hidden) || cn.dim() != (layers, batch, hidden) {
        return Err(unsupported(format!(
            "its state out is {:?}, not {:?} as its state in",
            hn.dim(),
            (layers, batch, hidden)
        )));
    }
    match arrange(scores, layout, batch, seq) {
        Some(ScoresOf::Every(_)) => Ok(true),
        Some(ScoresOf::Last(_)) => Ok(false),
        None => Err(unsupported(format!(
            "on 3 rows of 2 tokens it returns scores of shape {:?}; expected [seq·batch, vocab], \
             [seq, batch, vocab] or [batch, vocab]",
            shape
        ))),
    }
}

/// What a fixed-shape export was made for, and whether the user said its layout.
#[derive(Debug, Clone, Copy)]
struct Export {
    seq: usize,
    batch: usize,
    vocab: usize,
    told: bool,
}

/// Checks that the generalised graph computes what the file as written does: one export-shaped
/// call's scores for the first row against the same tokens fed one at a time in batch 1, the
/// state carried.
fn check_same(
    fixed: &InferenceModel,
    general: &InferenceModel,
    ports: Ports,
    layout: TokenLayout,
    export: Export,
    shown: &str,
) -> Result<()> {
    let Export { seq, batch, vocab, told } = export;
    let refuse = |why: String| Error::Unsupported {
        path: shown.to_string(),
        reason: format!(
            "it was exported for [seq, batch] = [{seq}, {batch}] only, and kiln could not make it take \
             other shapes ({why}): export it with dynamic sequence and batch axes{}",
            if told { ", or check --layout" } else { "" }
        ),
    };
    let state_dims = |m: &InferenceModel| -> Option<(usize, usize)> {
        let f = m.input_fact(ports.h).ok()?;
        let d = |a: usize| f.shape.dim(a)?.concretize()?.to_i64().ok().map(|v| v as usize);
        Some((d(0)?, d(2)?))
    };
    let sizes = state_dims(general).ok_or_else(|| refuse("its state has no fixed size".into()))?;
    let fixed_plan = plan(fixed, shown)?;
    let general_plan = plan(general, shown).map_err(|e| refuse(e.to_string()))?;
    let tokens = tract_ndarray::Array2::from_shape_vec((batch, seq), probe_tokens(batch * seq, vocab))
        .map_err(|e| Error::Input(e.to_string()))?;
    let (want, _, _) =
        call(&fixed_plan, ports, layout, sizes, &tokens, None).map_err(|e| refuse(e.to_string()))?;
    let want = match arrange(want, layout, batch, seq) {
        Some(ScoresOf::Every(all)) => all,
        // Scores for the last position only: compare those.
        Some(ScoresOf::Last(last)) => last.insert_axis(tract_ndarray::Axis(1)),
        None => return Err(refuse("its scores have an unexpected shape".into())),
    };
    let every = want.dim().1 == seq;
    let mut state = None;
    let mut worst = 0f32;
    let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
    for t in 0..seq {
        let one = tract_ndarray::Array2::from_elem((1, 1), tokens[(0, t)]);
        let (got, hn, cn) = call(&general_plan, ports, layout, sizes, &one, state.take())
            .map_err(|e| refuse(e.to_string()))?;
        state = Some((hn, cn));
        let got = got.iter().copied().collect::<Vec<f32>>();
        let row = if every { Some(t) } else { (t + 1 == seq).then_some(0) };
        if let Some(j) = row {
            let want_row: Vec<f32> = want.slice(tract_ndarray::s![0, j, ..]).iter().copied().collect();
            worst = worst.max(crate::numeric::max_abs_diff(&got, &want_row));
        }
    }
    // NaN (a length mismatch or a NaN score) fails this too.
    if worst.is_nan() || worst > 1e-4 * scale {
        return Err(refuse(format!(
            "a word at a time it scores up to {worst:.1e} away from the file as written"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_ndarray::{Array2, ArrayD, IxDyn};

    /// Scores whose value encodes (batch row, position, word): 100·b + 10·s + w.
    fn code(b: usize, s: usize, w: usize) -> f32 {
        (100 * b + 10 * s + w) as f32
    }

    #[test]
    fn scores_are_arranged_batch_first_from_every_layout() {
        let (batch, seq, vocab) = (3, 2, 4);
        let flat_seq_first =
            ArrayD::from_shape_fn(IxDyn(&[seq * batch, vocab]), |i| code(i[0] % batch, i[0] / batch, i[1]));
        let full_batch_first = ArrayD::from_shape_fn(IxDyn(&[batch, seq, vocab]), |i| code(i[0], i[1], i[2]));
        let full_seq_first = ArrayD::from_shape_fn(IxDyn(&[seq, batch, vocab]), |i| code(i[1], i[0], i[2]));
        for (scores, layout) in [
            (flat_seq_first, TokenLayout::SeqFirst),
            (full_batch_first, TokenLayout::BatchFirst),
            (full_seq_first, TokenLayout::SeqFirst),
        ] {
            let Some(ScoresOf::Every(all)) = arrange(scores, layout, batch, seq) else {
                panic!("{layout:?}")
            };
            assert_eq!(all.dim(), (batch, seq, vocab));
            assert!(all.indexed_iter().all(|((b, s, w), &v)| v == code(b, s, w)), "{layout:?}: {all:?}");
        }
        let last = ArrayD::from_shape_fn(IxDyn(&[batch, vocab]), |i| code(i[0], 1, i[1]));
        let Some(ScoresOf::Last(l)) = arrange(last, TokenLayout::SeqFirst, batch, seq) else {
            panic!("last")
        };
        assert_eq!(l, Array2::from_shape_fn((batch, vocab), |(b, w)| code(b, 1, w)));
        // Neither every position nor the last: not arranged.
        assert!(arrange(ArrayD::zeros(IxDyn(&[5, vocab])), TokenLayout::SeqFirst, batch, seq).is_none());
    }
}
