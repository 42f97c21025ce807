// Binaries and tests of this crate find libtorch without LD_LIBRARY_PATH: torch-sys tells every
// crate that depends on it directly where it found the library (tch-rs README, FAQ). The same
// folder is compiled in as KILN_LIBTORCH_LIB, where `--device cuda` looks for libtorch_cuda.so.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath={dir}");
        println!("cargo:rustc-env=KILN_LIBTORCH_LIB={dir}");
    }
}
