//! `cargo xtask cross TARGET…`: the `kiln` binary for a device, as one file to copy.
//!
//! Each build is `cargo build --release -p kiln-infer --bin kiln --target TRIPLE` (the shipped
//! release profile: size-tuned, fat LTO, stripped), with packed relocations on x86_64
//! ([`RELR`]); the linker for each ARM triple is set in `.cargo/config.toml`. What a build needs
//! and lacks is installed first: the Rust standard library for the triple (`rustup target add`)
//! and Debian's cross gcc (apt-get, as root or with password-less sudo; otherwise the exact
//! command is named). The file lands in `target/dist/kiln-TRIPLE` (under `CARGO_TARGET_DIR` when
//! that is set).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{apt_install, cargo, root, run, Result};

/// A device target `kiln` is built for.
pub struct Target {
    /// Short name on the command line.
    pub name: &'static str,
    pub triple: &'static str,
    /// The cross gcc `.cargo/config.toml` names as linker, and the Debian packages holding it
    /// (with the C library it links against).
    pub gcc: Option<(&'static str, &'static [&'static str])>,
    /// The qemu-user emulator that runs it here (tests/edge.rs).
    pub qemu: Option<&'static str>,
    /// Linked with packed relocations ([`RELR`]).
    pub relr: bool,
}

/// Linker flag for the x86_64 glibc build: pack the relative relocations of the
/// position-independent executable (DT_RELR) instead of 24 bytes each. That took the binary from
/// 12.00 MB to 11.20 MB (the relocations of tract's vtables), keeping PIE, at the cost of needing
/// glibc 2.36 (Debian 12) where it runs. It is passed here, not in the release profile (which
/// cannot carry linker flags), and only to builds with `--target`, so build scripts and proc
/// macros are linked as usual. Not for ARM: Debian 12's binutils (2.40) packs relocations on x86
/// only and ignores the flag there (the aarch64 binary came out byte for byte the same).
pub const RELR: &str = "-C link-arg=-Wl,-z,pack-relative-relocs";

const AARCH64_GCC: (&str, &[&str]) =
    ("aarch64-linux-gnu-gcc", &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"]);
const ARMHF_GCC: (&str, &[&str]) =
    ("arm-linux-gnueabihf-gcc", &["gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"]);

/// Every target `cargo xtask cross` knows.
pub const ALL: &[Target] = &[
    Target {
        name: "aarch64",
        triple: "aarch64-unknown-linux-gnu",
        gcc: Some(AARCH64_GCC),
        qemu: Some("qemu-aarch64"),
        relr: false,
    },
    Target {
        name: "armv7",
        triple: "armv7-unknown-linux-gnueabihf",
        gcc: Some(ARMHF_GCC),
        qemu: Some("qemu-arm"),
        relr: false,
    },
    Target {
        name: "aarch64-musl",
        triple: "aarch64-unknown-linux-musl",
        gcc: Some(AARCH64_GCC),
        qemu: Some("qemu-aarch64"),
        relr: false,
    },
    Target {
        name: "armv7-musl",
        triple: "armv7-unknown-linux-musleabihf",
        gcc: Some(ARMHF_GCC),
        qemu: Some("qemu-arm"),
        relr: false,
    },
    Target { name: "x86_64", triple: "x86_64-unknown-linux-gnu", gcc: None, qemu: None, relr: true },
    Target { name: "x86_64-musl", triple: "x86_64-unknown-linux-musl", gcc: None, qemu: None, relr: true },
];

/// The targets `tests/edge.rs` builds and runs (armv7-musl is left out: rustup's mirror here
/// serves no standard library for it; see docs/raspberry-pi.md).
pub const TARGETS: &[&str] = &["x86_64", "aarch64", "armv7", "aarch64-musl", "x86_64-musl"];

pub const NAMES: &str = "aarch64, armv7, aarch64-musl, armv7-musl, x86_64, x86_64-musl";

fn find(name: &str) -> Result<&'static Target> {
    ALL.iter().find(|t| t.name == name || t.triple == name).ok_or_else(|| {
        format!("cross: unknown target {name:?}: give one of {NAMES} (or their Rust target triples)")
    })
}

/// `cargo xtask cross TARGET…`: builds each, prints where the file is and its size.
pub fn cross(args: &[String]) -> Result {
    if args.is_empty() {
        return Err(format!("cross: name a target: {NAMES}"));
    }
    let targets = args.iter().map(|a| find(a)).collect::<Result<Vec<_>>>()?;
    tools(&targets.iter().map(|t| t.name).collect::<Vec<_>>())?;
    let target = target_dir();
    let dist = target.join("dist");
    std::fs::create_dir_all(&dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;
    for t in targets {
        let mut build = cargo();
        build.args(["build", "--release", "-p", "kiln-infer", "--bin", "kiln", "--target", t.triple]);
        if t.relr {
            let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
            build.env("RUSTFLAGS", format!("{flags} {RELR}").trim());
        }
        run(&mut build)?;
        let built = target.join(t.triple).join("release").join("kiln");
        let file = dist.join(format!("kiln-{}", t.triple));
        copy_atomic(&built, &file)?;
        let size = std::fs::metadata(&file).map_err(|e| e.to_string())?.len();
        println!("{} {} bytes ({:.2} MB)", file.display(), size, size as f64 / 1e6);
    }
    Ok(())
}

/// Where cargo builds: `CARGO_TARGET_DIR` when set, else `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// Installs what building (and, for ARM, running under emulation) the named targets needs.
pub fn tools(names: &[&str]) -> Result {
    let mut packages: Vec<&str> = Vec::new();
    for name in names {
        let t = find(name)?;
        rust_std(t.triple)?;
        if let Some((gcc, debs)) = t.gcc {
            if !on_path(gcc) || !debs.iter().all(|d| installed(d)) {
                packages.extend(debs.iter().copied());
            }
        }
        if let Some(qemu) = t.qemu {
            if !on_path(qemu) {
                packages.push("qemu-user");
            }
        }
    }
    packages.sort();
    packages.dedup();
    if packages.is_empty() {
        return Ok(());
    }
    apt_install(&packages, "the cross compilers or qemu-user are missing")
}

/// The Rust standard library for `triple`, from rustup.
fn rust_std(triple: &str) -> Result {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(triple).join("lib").is_dir() {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", triple]).env("RUST_BACKTRACE", "0")).map_err(|e| {
        format!("{e}\n  the Rust standard library for {triple} is missing: `rustup target add {triple}`")
    })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        .is_ok_and(|o| o.stdout.ends_with(b"install ok installed"))
}

fn copy_atomic(from: &Path, to: &Path) -> Result {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), to.display()))
}
