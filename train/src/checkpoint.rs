//! Checkpoints: one safetensors file holding the tensors and, in its header metadata, the JSON
//! that says what they are (configs, vocabulary, progress). Written atomically, so a training
//! run killed mid-save leaves the previous checkpoint intact.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Kind, Tensor};

/// The metadata key that holds the checkpoint's JSON.
const INFO_KEY: &str = "kiln.checkpoint";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write checkpoint {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Saves float tensors and `info` to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    info: &serde_json::Value,
) -> Result<(), CheckpointError> {
    let err = |reason: String| CheckpointError::Write { path: path.display().to_string(), reason };
    let mut bytes: BTreeMap<&str, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in tensors {
        let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let data: Vec<f32> = Vec::try_from(&t.view(-1)).map_err(|e: tch::TchError| err(e.to_string()))?;
        bytes.insert(name, (shape, data.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views = bytes
        .iter()
        .map(|(n, (shape, data))| Ok((*n, TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| err(e.to_string()))?;
    let meta = HashMap::from([(INFO_KEY.to_string(), info.to_string())]);
    let buf = safetensors::serialize(views, Some(meta)).map_err(|e| err(e.to_string()))?;
    kiln_infer::fsx::write_atomic(path, &buf).map_err(|e| err(e.to_string()))
}

/// A loaded checkpoint: tensors by name (on the CPU) and the info JSON.
#[derive(Debug)]
pub struct Loaded {
    pub tensors: HashMap<String, Tensor>,
    pub info: serde_json::Value,
}

pub fn load(path: &Path) -> Result<Loaded, CheckpointError> {
    let err = |reason: String| CheckpointError::Read { path: path.display().to_string(), reason };
    let buf = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let (_, metadata) =
        SafeTensors::read_metadata(&buf).map_err(|e| err(format!("not a safetensors file ({e})")))?;
    let info = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(INFO_KEY))
        .ok_or_else(|| err("not a kiln checkpoint (no kiln.checkpoint metadata)".into()))?;
    let info = serde_json::from_str(info).map_err(|e| err(e.to_string()))?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| err(e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(err(format!("tensor {name} is {:?}, expected F32", view.dtype())));
        }
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.insert(name, Tensor::from_slice(&data).reshape(shape));
    }
    Ok(Loaded { tensors, info })
}

/// Copies `tensors[prefix + name]` into each variable of `vs` (onto the variable's device),
/// checking that every one is there with the right shape.
pub fn restore(
    vs: &tch::nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
) -> anyhow::Result<()> {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let key = format!("{prefix}{name}");
            let saved = tensors.get(&key).ok_or_else(|| anyhow::anyhow!("the checkpoint lacks `{key}`"))?;
            if saved.size() != var.size() {
                anyhow::bail!(
                    "`{key}` has shape {:?} in the checkpoint, {:?} here",
                    saved.size(),
                    var.size()
                );
            }
            var.copy_(&saved.to_device(var.device()));
        }
        Ok(())
    })
}

/// Resuming needs epochs left to run: `done` of `total` saved.
pub fn check_epochs_left(done: usize, total: usize) -> anyhow::Result<()> {
    if done >= total {
        anyhow::bail!(
            "the checkpoint has already done {done} of {total} epochs: pass --epochs N with N > {done}"
        );
    }
    Ok(())
}
