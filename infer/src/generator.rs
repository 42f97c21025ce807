//! Sampling from an exported generator: noise `z [batch, latent]` in, samples out.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::contract::GeneratorMeta;
use crate::error::{run_err, Error, Result};

/// A loaded generator, optimised once for any batch size.
#[derive(Debug, Clone)]
pub struct GeneratorModel {
    plan: Arc<TypedRunnableModel>,
    meta: GeneratorMeta,
}

impl GeneratorModel {
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|e| Error::Read { path: shown.clone(), reason: e.to_string() })?;
        let bad = |e: anyhow::Error| Error::BadModel { path: shown.clone(), reason: format!("{e:#}") };
        let model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).map_err(bad)?;
        let meta = GeneratorMeta::from_props(&crate::next_word::metadata(&model))
            .map_err(|source| Error::Contract { path: shown.clone(), source })?;
        let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(bad)?;
        Ok(GeneratorModel { plan, meta })
    }

    pub fn meta(&self) -> &GeneratorMeta {
        &self.meta
    }

    /// Values in one sample.
    pub fn sample_len(&self) -> usize {
        self.meta.output_shape.iter().product()
    }

    /// Runs the generator on `batch` noise vectors (`z` row-major, `batch × latent`); returns
    /// `batch` samples, row-major.
    pub fn generate(&self, z: &[f32], batch: usize) -> Result<Vec<f32>> {
        let latent = self.meta.latent;
        if batch == 0 || z.len() != batch * latent {
            return Err(Error::Option(format!("{} noise values do not make [{batch}, {latent}]", z.len())));
        }
        let z = tract_ndarray::Array2::from_shape_vec((batch, latent), z.to_vec()).map_err(run_err)?;
        let out = self.plan.run(tvec!(z.into_tensor().into())).map_err(run_err)?;
        Ok(out[0].to_plain_array_view::<f32>().map_err(run_err)?.iter().copied().collect())
    }
}
