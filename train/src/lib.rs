//! `kiln-train`: trains kiln's models on libtorch through `tch` and exports them to ONNX with
//! kiln's own exporter (`kiln-export`).
//!
//! - [`lm`]: the TextLSTM next-word model (layers, config, model).
//! - [`corpus`]: vocabulary and training windows from text.
//! - [`train_lm`]: the training loop, checkpoints, resume, export.
//! - [`adam`]: Adam with saveable state; [`checkpoint`]: safetensors checkpoints.
//! - [`export`]: from a `VarStore` to the exporter's weight arrays.
//! - [`gan`] (fully connected) and [`dcgan`]: the GAN families; [`train_gan`]: their training
//!   loop, checkpoints, resume, export; [`toy2d`]: the 2-D mixtures and their mode metrics;
//!   [`image_data`]: Fashion-MNIST, IDX and picture folders; [`plots`]: loss curves, scatters.
//! - [`classifier`]: the Fashion-MNIST classifier and the sample-quality figures built on it.

pub mod adam;
pub mod checkpoint;
pub mod classifier;
pub mod corpus;
pub mod dcgan;
pub mod export;
pub mod gan;
pub mod image_data;
pub mod lm;
pub mod plots;
pub mod toy2d;
pub mod train_gan;
pub mod train_lm;

/// Picks the device: `cpu`, `cuda` (an error when no GPU is usable) or `auto`.
///
/// libtorch's CUDA half (`libtorch_cuda.so`) is loaded only here, on demand: the linker drops
/// it from our binaries (no symbol of it is used), and the CPU-only bootstrap does not install
/// the CUDA libraries it needs, so loading it unconditionally would stop every run.
/// Serde's default for the settings added after files were first written (1 = the old behaviour).
pub(crate) fn one<T: From<u8>>() -> T {
    T::from(1)
}

pub fn device(name: &str) -> anyhow::Result<tch::Device> {
    match name {
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => {
            load_torch_cuda().map_err(|e| {
                anyhow::anyhow!(
                    "--device cuda: libtorch's CUDA libraries cannot be loaded ({e}); install them with \
                     `cargo xtask bootstrap --cuda` (the full torch wheel, about 4.9 GB)"
                )
            })?;
            if tch::Cuda::is_available() {
                Ok(tch::Device::Cuda(0))
            } else {
                anyhow::bail!("--device cuda: no CUDA device is usable here; use --device cpu or auto")
            }
        }
        "auto" => Ok(match load_torch_cuda() {
            Ok(()) => tch::Device::cuda_if_available(),
            Err(_) => tch::Device::Cpu,
        }),
        other => anyhow::bail!("--device {other}: expected cpu, cuda or auto"),
    }
}

fn load_torch_cuda() -> Result<(), String> {
    use std::sync::OnceLock;
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let Some(dir) = option_env!("KILN_LIBTORCH_LIB") else {
                return Err("the libtorch folder was not known at build time".into());
            };
            let path = std::path::Path::new(dir).join("libtorch_cuda.so");
            if !path.exists() {
                return Err(format!("{} does not exist: this libtorch is CPU-only", path.display()));
            }
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            // SAFETY: loading libtorch's own CUDA library runs its static initialisers, which
            // register the CUDA backend with the already-loaded libtorch; nothing else is called.
            let lib =
                unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())?;
            // Stays loaded for the life of the process, as the backend registration requires.
            std::mem::forget(lib);
            Ok(())
        })
        .clone()
}
