//! Checkpoints: one safetensors file holding the tensors and, in its header metadata, the JSON
//! that says what they are (configs, vocabulary, progress). Written atomically, so a training
//! run killed mid-save leaves the previous checkpoint intact.
//!
//! Every checkpoint's JSON names its [`Kind`] and the kind's format version; [`load`] checks
//! both, so resuming a GAN from a language model's checkpoint, or reading a checkpoint written
//! by a newer kiln, is one clear error instead of a confusing one later.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::Tensor;

/// The metadata key that holds the checkpoint's JSON.
const INFO_KEY: &str = "kiln.checkpoint";

/// What a checkpoint holds, and the version of that kind's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The `kind` written into the checkpoint's JSON.
    pub name: &'static str,
    /// Bumped whenever an older kiln would misread the newer layout.
    pub format: u32,
    /// What a user calls it, for messages.
    pub what: &'static str,
}

/// A next-word model in training (`kiln-train lm`).
pub const NEXT_WORD: Kind = Kind { name: "next-word", format: 1, what: "next-word (kiln-train lm)" };
/// A GAN in training (`kiln-train gan`).
pub const GAN: Kind = Kind { name: "gan", format: 1, what: "GAN (kiln-train gan)" };
/// The Fashion-MNIST classifier `kiln-train eval` caches.
pub const FASHION_CLASSIFIER: Kind =
    Kind { name: "fashion-mnist-classifier", format: 1, what: "Fashion-MNIST classifier" };

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write checkpoint {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{path} is a {found} checkpoint, not a {} checkpoint", expected.what)]
    WrongKind { path: String, found: String, expected: Kind },
    #[error(
        "{path} is a {} checkpoint of format {found}, newer than this kiln reads ({}): upgrade kiln",
        kind.what, kind.format
    )]
    TooNew { path: String, found: u32, kind: Kind },
}

/// Saves float tensors and `info` (a JSON object) to `path` atomically, marked as `kind`.
pub fn save(
    path: &Path,
    kind: Kind,
    tensors: &[(String, Tensor)],
    info: &impl serde::Serialize,
) -> Result<(), CheckpointError> {
    let err = |reason: String| CheckpointError::Write { path: path.display().to_string(), reason };
    let mut info = serde_json::to_value(info).map_err(|e| err(e.to_string()))?;
    let Some(fields) = info.as_object_mut() else {
        return Err(err("the checkpoint's description is not a JSON object".into()));
    };
    fields.insert("kind".into(), kind.name.into());
    fields.insert("format".into(), kind.format.into());
    let mut bytes: BTreeMap<&str, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in tensors {
        let t = t.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
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

/// The most a checkpoint may hold, whatever the memory (its tensors are made from a copy).
pub const MAX_CHECKPOINT_BYTES: u64 = 64_000_000_000;

/// A loaded checkpoint: tensors by name (on the CPU) and the info JSON.
#[derive(Debug)]
pub struct Loaded {
    pub tensors: HashMap<String, Tensor>,
    pub info: serde_json::Value,
}

/// Loads a checkpoint of `kind`: another kind, or a newer format of this one, is an error.
pub fn load(path: &Path, kind: Kind) -> Result<Loaded, CheckpointError> {
    let shown = path.display().to_string();
    // A checkpoint becomes tensors as large as itself: one larger than the memory available is
    // refused before it is read, and so is a device or a pipe (`/dev/zero` named by mistake),
    // whose length cannot be known first.
    let kind_of = std::fs::metadata(path)
        .map_err(|e| CheckpointError::Read { path: shown.clone(), reason: e.to_string() })?;
    if !kind_of.is_file() {
        let reason = "it is not a file (a checkpoint is a file kiln-train wrote)".to_string();
        return Err(CheckpointError::Read { path: shown, reason });
    }
    let max = crate::run::available_memory().unwrap_or(MAX_CHECKPOINT_BYTES).min(MAX_CHECKPOINT_BYTES);
    let buf = kiln_infer::fsx::read_bounded(path, max).map_err(|e| CheckpointError::Read {
        path: shown.clone(),
        reason: match e {
            kiln_infer::fsx::ReadError::TooLarge { .. } => {
                format!("it holds more than the {} MB of memory available", max / 1_000_000)
            }
            kiln_infer::fsx::ReadError::Io(e) => e.to_string(),
        },
    })?;
    Ok(parse(&buf, kind, &shown)?.into_loaded())
}

/// A checkpoint's contents as read from its bytes, before any tensor is made.
#[derive(Debug)]
pub struct Parsed {
    /// Name, shape and values of each tensor.
    pub tensors: Vec<(String, Vec<i64>, Vec<f32>)>,
    pub info: serde_json::Value,
}

impl Parsed {
    /// The tensors made (on the CPU).
    pub fn into_loaded(self) -> Loaded {
        let tensors = self
            .tensors
            .into_iter()
            .map(|(name, shape, data)| (name, Tensor::from_slice(&data).reshape(shape)))
            .collect();
        Loaded { tensors, info: self.info }
    }
}

/// Reads a checkpoint of `kind` from its bytes (`shown` names it in messages), checking the
/// kind, the format and every value; [`load`] makes the tensors from it.
pub fn parse(buf: &[u8], kind: Kind, shown: &str) -> Result<Parsed, CheckpointError> {
    let err = |reason: String| CheckpointError::Read { path: shown.to_string(), reason };
    let (_, metadata) =
        SafeTensors::read_metadata(buf).map_err(|e| err(format!("not a safetensors file ({e})")))?;
    let info = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(INFO_KEY))
        .ok_or_else(|| err("not a kiln checkpoint (no kiln.checkpoint metadata)".into()))?;
    let info: serde_json::Value = serde_json::from_str(info).map_err(|e| err(e.to_string()))?;
    check_kind(&info, kind).map_err(|e| match e {
        KindMismatch::Kind(found) => {
            CheckpointError::WrongKind { path: shown.to_string(), found, expected: kind }
        }
        KindMismatch::Format(found) => CheckpointError::TooNew { path: shown.to_string(), found, kind },
    })?;
    let st = SafeTensors::deserialize(buf).map_err(|e| err(e.to_string()))?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(err(format!("tensor {name} is {:?}, expected F32", view.dtype())));
        }
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        // Training never saves a state that is not finite (it stops first), so one here means
        // the file was damaged: say so, rather than let the resumed run "diverge".
        if let Some(bad) = data.iter().find(|v| !v.is_finite()) {
            return Err(err(format!("tensor {name} holds {bad}: the file is damaged")));
        }
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.push((name, shape, data));
    }
    Ok(Parsed { tensors, info })
}

enum KindMismatch {
    Kind(String),
    Format(u32),
}

fn check_kind(info: &serde_json::Value, kind: Kind) -> Result<(), KindMismatch> {
    // Next-word checkpoints were first written without a kind: a missing kind is one of those.
    let found = info.get("kind").and_then(|k| k.as_str()).unwrap_or(NEXT_WORD.name);
    if found != kind.name {
        return Err(KindMismatch::Kind(found.to_string()));
    }
    let format = info.get("format").and_then(|f| f.as_u64()).unwrap_or(1);
    if format > kind.format as u64 {
        return Err(KindMismatch::Format(u32::try_from(format).unwrap_or(u32::MAX)));
    }
    Ok(())
}

/// Serde's default for settings added after files were first written: 1, the behaviour files
/// without the setting were trained with.
pub(crate) fn one<T: From<u8>>() -> T {
    T::from(1)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(kind: Kind, format: Option<u32>) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let t = vec![("w".to_string(), Tensor::from_slice(&[1f32, 2.0]))];
        let mut info = serde_json::json!({"epochs_done": 3});
        save(&path, kind, &t, &info).unwrap();
        if let Some(f) = format {
            // Rewrite the header as a newer kiln would.
            info["kind"] = kind.name.into();
            info["format"] = f.into();
            let bytes = std::fs::read(&path).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let view = st.tensor("w").unwrap();
            let meta = HashMap::from([(INFO_KEY.to_string(), info.to_string())]);
            let buf = safetensors::serialize([("w", view)], Some(meta)).unwrap();
            std::fs::write(&path, buf).unwrap();
        }
        (dir, path)
    }

    #[test]
    fn a_checkpoint_reads_back_as_its_own_kind_only() {
        let (_dir, path) = saved(GAN, None);
        let loaded = load(&path, GAN).unwrap();
        assert_eq!(loaded.info["epochs_done"], 3);
        assert_eq!(loaded.info["kind"], "gan");
        assert_eq!(Vec::<f32>::try_from(&loaded.tensors["w"]).unwrap(), [1.0, 2.0]);
        let e = load(&path, NEXT_WORD).unwrap_err().to_string();
        assert!(e.contains("is a gan checkpoint, not a next-word (kiln-train lm) checkpoint"), "{e}");
    }

    #[test]
    fn a_newer_format_is_refused() {
        let (_dir, path) = saved(NEXT_WORD, Some(NEXT_WORD.format + 1));
        let e = load(&path, NEXT_WORD).unwrap_err().to_string();
        assert!(e.contains("newer than this kiln reads") && e.contains("upgrade kiln"), "{e}");
    }

    #[test]
    fn a_damaged_tensor_is_blamed_on_the_file() {
        let (_dir, path) = saved(GAN, None);
        let mut bytes = std::fs::read(&path).unwrap();
        // The last 4 bytes are w's second value: make it NaN.
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let e = load(&path, GAN).unwrap_err().to_string();
        assert!(e.contains("tensor w holds NaN: the file is damaged"), "{e}");
    }
}
