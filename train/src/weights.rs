//! Parameters out of a tch `VarStore`, by path, into the exporter's plain arrays. Every
//! variable must be taken by some exported layer, so a parameter added to a model but not to its
//! export mapping is an error, not a silently wrong file.

use std::collections::BTreeMap;

use kiln_export::layers::BatchNorm;
use kiln_export::ExportError;
use tch::{nn, Tensor};

/// Takes parameters out of a `VarStore` by name, remembering which were taken.
pub struct Params {
    vars: BTreeMap<String, Tensor>,
}

impl Params {
    pub fn new(vs: &nn::VarStore) -> Self {
        Params { vars: vs.variables().into_iter().collect() }
    }

    pub fn take(&mut self, name: &str) -> Result<Vec<f32>, ExportError> {
        let t = self
            .vars
            .remove(name)
            .ok_or_else(|| ExportError::Invalid(format!("the model has no parameter `{name}`")))?;
        let t = t.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
        Vec::<f32>::try_from(&t.view(-1)).map_err(|e| ExportError::Invalid(format!("{name}: {e}")))
    }

    /// A BatchNorm layer's four tensors under `prefix` (PyTorch's eps, 1e-5), in eval mode.
    pub fn batch_norm(&mut self, prefix: &str, channels: usize) -> Result<BatchNorm, ExportError> {
        Ok(BatchNorm {
            channels,
            gamma: self.take(&format!("{prefix}.weight"))?,
            beta: self.take(&format!("{prefix}.bias"))?,
            running_mean: self.take(&format!("{prefix}.running_mean"))?,
            running_var: self.take(&format!("{prefix}.running_var"))?,
            eps: 1e-5,
        })
    }

    pub fn finish(self) -> Result<(), ExportError> {
        match self.vars.into_keys().next() {
            Some(unused) => Err(ExportError::UnusedParameter(unused)),
            None => Ok(()),
        }
    }
}
