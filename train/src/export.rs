//! From a trained tch model to an ONNX file: copies each parameter out of the `VarStore` by its
//! path (see [`crate::lm`]) into the exporter's plain arrays. Every variable must be used by
//! some exported layer, so a parameter added to the model but not to the exporter is an error,
//! not a silently wrong file.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_export::layers::{BatchNorm, Embedding, Linear, LstmLayer};
use kiln_export::{ExportError, NextWordWeights};
use kiln_infer::contract::NextWordMeta;
use tch::{nn, Tensor};

use crate::lm::{InputKind, LmConfig};

/// Takes parameters out of a `VarStore` by name, remembering which were taken.
pub(crate) struct Params {
    vars: BTreeMap<String, Tensor>,
}

impl Params {
    pub(crate) fn new(vs: &nn::VarStore) -> Self {
        Params { vars: vs.variables().into_iter().collect() }
    }

    pub(crate) fn take(&mut self, name: &str) -> Result<Vec<f32>, ExportError> {
        let t = self
            .vars
            .remove(name)
            .ok_or_else(|| ExportError::Invalid(format!("the model has no parameter `{name}`")))?;
        let t = t.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
        Vec::<f32>::try_from(&t.view(-1)).map_err(|e| ExportError::Invalid(format!("{name}: {e}")))
    }

    /// A BatchNorm layer's four tensors under `prefix` (PyTorch's eps, 1e-5), in eval mode.
    pub(crate) fn batch_norm(&mut self, prefix: &str, channels: usize) -> Result<BatchNorm, ExportError> {
        Ok(BatchNorm {
            channels,
            gamma: self.take(&format!("{prefix}.weight"))?,
            beta: self.take(&format!("{prefix}.bias"))?,
            running_mean: self.take(&format!("{prefix}.running_mean"))?,
            running_var: self.take(&format!("{prefix}.running_var"))?,
            eps: 1e-5,
        })
    }

    pub(crate) fn finish(self) -> Result<(), ExportError> {
        match self.vars.into_keys().next() {
            Some(unused) => Err(ExportError::UnusedParameter(unused)),
            None => Ok(()),
        }
    }
}

/// The exporter's view of a [`crate::lm::TextLstm`] held in `vs`.
pub fn next_word_weights(vs: &nn::VarStore, config: &LmConfig) -> Result<NextWordWeights, ExportError> {
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
    let head =
        Linear { inputs: hidden, outputs: vocab, weight: p.take("head.weight")?, bias: p.take("head.bias")? };
    p.finish()?;
    Ok(NextWordWeights { embedding, lstm, head })
}

/// Exports the model in `vs` to `path` (atomically).
pub fn export_next_word(
    vs: &nn::VarStore,
    config: &LmConfig,
    meta: &NextWordMeta,
    path: &Path,
) -> Result<(), ExportError> {
    let weights = next_word_weights(vs, config)?;
    let model = kiln_export::next_word_model(&weights, meta)?;
    kiln_export::write_model(&model, path)
}
