//! `kiln-train`: trains kiln's models on libtorch through `tch` and exports them to ONNX with
//! kiln's own exporter (`kiln-export`).
//!
//! - [`lm`]: the TextLSTM next-word model (layers, config, model).
//! - [`corpus`]: vocabulary and training windows from text.
//! - [`train_lm`]: the training loop, checkpoints, resume, export.
//! - [`adam`]: Adam with saveable state; [`checkpoint`]: safetensors checkpoints.
//! - [`export`]: from a `VarStore` to the exporter's weight arrays.

pub mod adam;
pub mod checkpoint;
pub mod corpus;
pub mod export;
pub mod lm;
pub mod train_lm;

/// Picks the device: `cpu`, `cuda` (an error when no GPU is usable) or `auto`.
pub fn device(name: &str) -> anyhow::Result<tch::Device> {
    match name {
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
        "cuda" => anyhow::bail!("--device cuda: no CUDA device is usable here; use --device cpu or auto"),
        "auto" => Ok(tch::Device::cuda_if_available()),
        other => anyhow::bail!("--device {other}: expected cpu, cuda or auto"),
    }
}
