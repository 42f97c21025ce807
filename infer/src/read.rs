//! Reading a model file: the bytes (from a path or given), tract's parse of the graph, and the
//! file's `metadata_props`; the conversions between `ndarray` arrays and tract's tensors.

use std::collections::BTreeMap;
use std::path::Path;

use tract_onnx::prelude::*;

use crate::error::{run_err, Error, Result};

/// A parsed model file: tract's graph and the file's metadata.
pub(crate) struct ModelFile {
    /// How messages name the file (its path, or the name given with its bytes).
    pub name: String,
    pub graph: InferenceModel,
    /// `metadata_props`, without tract's `onnx.metadata_props.` prefix.
    pub props: BTreeMap<String, String>,
}

impl ModelFile {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: name.clone(), source })?;
        Self::parse(&bytes, name)
    }

    /// Parses a model file's bytes; `name` names it in messages.
    pub fn parse(bytes: &[u8], name: String) -> Result<Self> {
        let graph = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(|e| Error::BadModel { path: name.clone(), source: e.into() })?;
        let props = metadata(&graph);
        Ok(ModelFile { name, graph, props })
    }

    /// Whether the file declares a `kiln.kind`.
    pub fn kind(&self) -> Option<&str> {
        self.props.get(crate::contract::key::KIND).map(String::as_str)
    }

    /// tract's optimised, runnable plan of `graph`.
    pub fn plan(name: &str, graph: InferenceModel) -> Result<std::sync::Arc<TypedRunnableModel>> {
        graph
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| Error::BadModel { path: name.to_string(), source: e.into() })
    }
}

/// The graph's `metadata_props`, without tract's `onnx.metadata_props.` prefix.
fn metadata(model: &InferenceModel) -> BTreeMap<String, String> {
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

/// A tract tensor's values as an `ndarray` array of `D` dimensions.
pub(crate) fn array<T: Datum + Clone, D: tract_ndarray::Dimension>(
    t: &Tensor,
) -> Result<tract_ndarray::Array<T, D>> {
    let view = t.to_plain_array_view::<T>().map_err(run_err)?;
    view.to_owned().into_dimensionality::<D>().map_err(run_err)
}

/// An `ndarray` view as a tract input.
pub(crate) fn input<T: Datum + Clone, D: tract_ndarray::Dimension>(
    a: tract_ndarray::ArrayView<T, D>,
) -> TValue {
    a.to_owned().into_dyn().into_tensor().into()
}
