//! Where training runs: the CPU, or a CUDA GPU when libtorch's CUDA half is installed.

/// Picks the device: `cpu`, `cuda` (an error when no GPU is usable) or `auto`.
///
/// libtorch's CUDA half (`libtorch_cuda.so`) is loaded only here, on demand: the linker drops
/// it from our binaries (no symbol of it is used), and the CPU-only bootstrap does not install
/// the CUDA libraries it needs, so loading it unconditionally would stop every run.
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
