//! A next-word model as ONNX: token ids → embedding (or one-hot) → stacked LSTM → linear head
//! on the last position, with the LSTM state as explicit inputs and outputs.
//!
//! ```text
//! tokens [batch, seq] ──Transpose──▶ [seq, batch] ──Gather(embedding)──▶ x [seq, batch, E]
//! h0, c0 [layers, batch, H] ──Slice per layer──▶ [1, batch, H]
//! x ──LSTM l0──▶ Y [seq, batch, H] ──LSTM l1──▶ … ──▶ Y_h of the top layer [1, batch, H]
//! Y_h ──Squeeze──▶ [batch, H] ──Gemm(head)──▶ logits [batch, vocab]
//! Y of the top layer ──Transpose──▶ [batch, seq, H] ──MatMul(headᵀ) + bias──▶ logits_all
//!                                                                [batch, seq, vocab]
//! Y_h, Y_c of every layer ──Concat──▶ hn, cn [layers, batch, H]
//! ```
//!
//! With tied weights (Press & Wolf 2017) the head's weight is the embedding matrix: one
//! initializer serves the `Gather` and both products.

use kiln_infer::contract::{io, NextWordMeta};
use kiln_infer::pb::ModelProto;

use crate::graph::{attr_int, Dim, Elem, GraphBuilder};
use crate::layers::{self, Embedding, Linear, LstmLayer};
use crate::ExportError;

/// The weights of a next-word model, in PyTorch's layouts.
#[derive(Debug, Clone, PartialEq)]
pub struct NextWordWeights {
    /// The input layer: a learnt embedding, or [`Embedding::one_hot`].
    pub embedding: Embedding,
    pub lstm: Vec<LstmLayer>,
    /// The output layer; with `tied`, its `weight` is not read (the embedding's is used).
    pub head: Linear,
    /// The head shares the embedding matrix (`embedding.dim` = hidden).
    pub tied: bool,
}

/// Builds the ONNX model; `meta` goes into `metadata_props` (see [`kiln_infer::contract`]).
pub fn next_word_model(w: &NextWordWeights, meta: &NextWordMeta) -> Result<ModelProto, ExportError> {
    let invalid = |m: String| Err(ExportError::Invalid(m));
    let vocab = w.embedding.vocab;
    let Some(top) = w.lstm.last() else { return invalid("a next-word model needs an LSTM layer".into()) };
    let hidden = top.hidden;
    if meta.vocab.len() != vocab || w.head.outputs != vocab {
        return invalid(format!(
            "vocabulary sizes disagree: metadata {}, embedding {vocab}, head {}",
            meta.vocab.len(),
            w.head.outputs
        ));
    }
    if meta.layers != w.lstm.len() || meta.hidden != hidden || w.head.inputs != hidden {
        return invalid("metadata layers/hidden disagree with the weights".into());
    }
    if w.tied && w.embedding.dim != hidden {
        return invalid(format!(
            "tied weights need the embedding's width ({}) to equal the hidden size ({hidden})",
            w.embedding.dim
        ));
    }
    let mut width = w.embedding.dim;
    for (l, layer) in w.lstm.iter().enumerate() {
        if layer.inputs != width || layer.hidden != hidden {
            return invalid(format!("LSTM layer {l} takes {} inputs of width {width}", layer.inputs));
        }
        width = hidden;
    }

    let mut g = GraphBuilder::new("kiln_next_word");
    let (batch, seq) = (Dim::Param(io::BATCH), Dim::Param(io::SEQ));
    let (layers, h) = (Dim::Fixed(w.lstm.len()), Dim::Fixed(hidden));
    g.input(io::TOKENS, Elem::I64, &[batch, seq]);
    g.input(io::H0, Elem::F32, &[layers, batch, h]);
    g.input(io::C0, Elem::F32, &[layers, batch, h]);

    let tokens_t = layers::transpose(&mut g, io::TOKENS, &[1, 0]); // [seq, batch]
                                                                   // The [vocab, E] table and x [seq, batch, E].
    let (embedding_weight, mut x) = layers::embedding(&mut g, "embedding", &w.embedding, &tokens_t)?;
    let (mut hs, mut cs) = (Vec::new(), Vec::new());
    for (l, layer) in w.lstm.iter().enumerate() {
        let h0 = layers::slice(&mut g, io::H0, 0, l as i64, l as i64 + 1)?; // [1, batch, H]
        let c0 = layers::slice(&mut g, io::C0, 0, l as i64, l as i64 + 1)?;
        let out = layers::lstm(&mut g, &format!("lstm.l{l}"), layer, &x, &h0, &c0, true)?;
        if let Some(y) = out.y {
            x = y; // [seq, batch, H]
        }
        hs.push(out.y_h);
        cs.push(out.y_c);
    }
    let axes0 = g.ints("axes", &[1], &[0])?;
    let last = g.op("Squeeze", &[&hs[hs.len() - 1], &axes0], vec![]); // [batch, H]
    let head_weight = if w.tied {
        embedding_weight
    } else {
        g.weight("head.weight", &[vocab, hidden], &w.head.weight)? // [vocab, H]
    };
    let head_bias = g.weight("head.bias", &[vocab], &w.head.bias)?;
    g.node("Gemm", &[&last, &head_weight, &head_bias], &[io::LOGITS], vec![attr_int("transB", 1)]); // [batch, vocab]
    let every = layers::transpose(&mut g, &x, &[1, 0, 2]); // [batch, seq, H]
    let head_t = layers::transpose(&mut g, &head_weight, &[1, 0]); // [H, vocab]
    let products = g.op("MatMul", &[&every, &head_t], vec![]); // [batch, seq, vocab]
    g.node("Add", &[&products, &head_bias], &[io::LOGITS_ALL], vec![]);
    for (parts, name) in [(&hs, io::HN), (&cs, io::CN)] {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        g.node("Concat", &refs, &[name], vec![attr_int("axis", 0)]); // [layers, batch, H]
    }
    g.output(io::LOGITS, Elem::F32, &[batch, Dim::Fixed(vocab)]);
    g.output(io::HN, Elem::F32, &[layers, batch, h]);
    g.output(io::CN, Elem::F32, &[layers, batch, h]);
    g.output(io::LOGITS_ALL, Elem::F32, &[batch, seq, Dim::Fixed(vocab)]);
    Ok(g.finish("kiln next-word LSTM", meta.to_props()))
}
