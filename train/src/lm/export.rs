//! From a trained [`TextLstm`](super::model::TextLstm) to an ONNX file: each parameter, by its
//! path (see [`super::model`]), into the exporter's next-word layers.

use std::path::Path;

use kiln_export::layers::{Embedding, Linear, LstmLayer};
use kiln_export::{ExportError, NextWordWeights};
use kiln_infer::contract::NextWordMeta;
use tch::nn;

use super::model::{InputKind, LmConfig};
use crate::weights::Params;

/// The exporter's view of a [`super::model::TextLstm`] held in `vs`.
pub fn weights(vs: &nn::VarStore, config: &LmConfig) -> Result<NextWordWeights, ExportError> {
    let mut p = Params::new(vs);
    let (vocab, hidden) = (config.vocab as usize, config.hidden as usize);
    let embedding = match config.input {
        InputKind::OneHot => Embedding::one_hot(vocab),
        InputKind::Embedding { dim } => {
            Embedding { vocab, dim: dim as usize, weight: p.take("embedding.weight")? }
        }
    };
    let mut width = embedding.dim;
    let mut lstm = Vec::new();
    for l in 0..config.layers {
        lstm.push(LstmLayer {
            inputs: width,
            hidden,
            w_ih: p.take(&format!("lstm.weight_ih_l{l}"))?,
            w_hh: p.take(&format!("lstm.weight_hh_l{l}"))?,
            b_ih: p.take(&format!("lstm.bias_ih_l{l}"))?,
            b_hh: p.take(&format!("lstm.bias_hh_l{l}"))?,
        });
        width = hidden;
    }
    // Tied: the head's weight is the embedding's (one variable in the VarStore, taken above).
    let weight = if config.tie_weights { Vec::new() } else { p.take("head.weight")? };
    let head = Linear { inputs: hidden, outputs: vocab, weight, bias: p.take("head.bias")? };
    p.finish()?;
    Ok(NextWordWeights { embedding, lstm, head, tied: config.tie_weights })
}

/// Exports the model in `vs` to `path` (atomically).
pub fn write_onnx(
    vs: &nn::VarStore,
    config: &LmConfig,
    meta: &NextWordMeta,
    path: &Path,
) -> Result<(), ExportError> {
    let weights = weights(vs, config)?;
    let model = kiln_export::next_word_model(&weights, meta)?;
    kiln_export::write_model(&model, path)
}
