//! The `kiln` binary as it ships to boards: cross-built with `cargo xtask cross` (the release
//! profile) for aarch64 (glibc and static musl) and armv7, run under qemu-user on every model in
//! `models/`, and compared with the x86_64 build of the same profile (as is the static x86_64
//! musl build, natively):
//!
//! - next-word models: `predict --json` gives the same top-k words with probabilities within
//!   1e-4; greedy `generate` gives the same words; `info --json` is identical;
//! - generators: `sample --seed 3` feeds the same noise, bit for bit, and gives samples within
//!   1e-3 of x86_64's, value by value;
//! - `bench` runs and times what it was asked to;
//! - each binary is an ELF file for its machine within its size budget, and the musl ones are
//!   static (no program interpreter).
//!
//! armv7 runs twice: with tract's NEON kernels (Raspberry Pi 2 and later on a 32-bit OS) and
//! without them (`TRACT_CPU_ARM32_NEON=false`, the path of ARM cores without NEON).
//!
//! The first test to run builds all five binaries (2-3 minutes each from cold on 2 cores: fat LTO).
//! `cargo xtask test` installs the cross compilers and qemu-user first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A way to run one of the built binaries here.
struct Device {
    name: &'static str,
    triple: &'static str,
    /// qemu-user and, for glibc binaries, the folder with the target's loader and libraries.
    qemu: Option<(&'static str, Option<&'static str>)>,
    env: &'static [(&'static str, &'static str)],
}

const X86_64: Device = Device { name: "x86_64", triple: "x86_64-unknown-linux-gnu", qemu: None, env: &[] };
const X86_64_MUSL: Device =
    Device { name: "x86_64-musl", triple: "x86_64-unknown-linux-musl", qemu: None, env: &[] };
const AARCH64: Device = Device {
    name: "aarch64",
    triple: "aarch64-unknown-linux-gnu",
    qemu: Some(("qemu-aarch64", Some("/usr/aarch64-linux-gnu"))),
    env: &[],
};
const AARCH64_MUSL: Device = Device {
    name: "aarch64-musl",
    triple: "aarch64-unknown-linux-musl",
    qemu: Some(("qemu-aarch64", None)),
    env: &[],
};
const ARMV7_NEON: Device = Device {
    name: "armv7 (NEON)",
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: Some(("qemu-arm", Some("/usr/arm-linux-gnueabihf"))),
    env: &[("TRACT_CPU_ARM32_NEON", "true")],
};
const ARMV7_NO_NEON: Device = Device {
    name: "armv7 (no NEON)",
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: Some(("qemu-arm", Some("/usr/arm-linux-gnueabihf"))),
    env: &[("TRACT_CPU_ARM32_NEON", "false")],
};

/// Builds the five binaries once, through the command users run; returns each triple's file, as
/// `cargo xtask cross` reports it ("PATH N bytes (…)").
fn built() -> &'static HashMap<String, PathBuf> {
    static FILES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    FILES.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let start = std::time::Instant::now();
        let out = Command::new(cargo)
            .current_dir(root())
            .args([
                "run",
                "--quiet",
                "-p",
                "xtask",
                "--",
                "cross",
                "x86_64",
                "aarch64",
                "armv7",
                "aarch64-musl",
                "x86_64-musl",
            ])
            .output()
            .expect("cargo runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cargo xtask cross failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("cross builds: {:.0} s\n{stdout}", start.elapsed().as_secs_f64());
        stdout
            .lines()
            .filter_map(|line| line.split_once(' ').map(|(path, _)| PathBuf::from(path)))
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?.strip_prefix("kiln-")?.to_string();
                Some((name, path))
            })
            .collect()
    })
}

fn binary(d: &Device) -> PathBuf {
    built()
        .get(d.triple)
        .unwrap_or_else(|| panic!("cargo xtask cross reported no {} binary", d.triple))
        .clone()
}

/// Runs `kiln ARGS` on device `d`; panics with its stderr unless it succeeds.
fn kiln(d: &Device, args: &[&str]) -> Vec<u8> {
    let bin = binary(d);
    let mut cmd = match d.qemu {
        None => Command::new(&bin),
        Some((qemu, prefix)) => {
            let mut c = Command::new(qemu);
            if let Some(prefix) = prefix {
                c.args(["-L", prefix]);
            }
            c.arg(&bin);
            c
        }
    };
    cmd.args(args).current_dir(root());
    for (k, v) in d.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{}: cannot run {}: {e}", d.name, bin.display()));
    assert!(
        out.status.success(),
        "{}: kiln {args:?} failed ({}):\n{}",
        d.name,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("kiln --json prints JSON")
}

/// The shipped models, by kind.
fn shipped() -> Vec<(PathBuf, String)> {
    let mut models: Vec<PathBuf> = std::fs::read_dir(root().join("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    assert!(models.len() >= 4, "models/ holds the seed LSTM and three generators: {models:?}");
    models
        .into_iter()
        .map(|m| {
            let info = json(&kiln(&X86_64, &["info", m.to_str().unwrap(), "--json"]));
            (m, info["kind"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Little-endian float32 values of a `.npy` file `kiln` wrote (header length at bytes 8..10).
fn npy_values(bytes: &[u8]) -> Vec<f32> {
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// Compares device `d` with x86_64 on every shipped model.
fn matches_x86_64(d: &Device) {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut worst_p = 0f64;
    for (model, kind) in shipped() {
        let m = model.to_str().unwrap();
        let info = kiln(&X86_64, &["info", m, "--json"]);
        assert_eq!(json(&kiln(d, &["info", m, "--json"])), json(&info), "{}: info {m}", d.name);
        if kind == "next-word" {
            let vocab: Vec<String> = json(&info)["vocab"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap().to_string())
                .collect();
            // One- and two-word prompts made of the vocabulary's first words.
            let words: Vec<&str> = vocab.iter().take(8).map(String::as_str).collect();
            let prompts: Vec<String> =
                words.iter().map(|w| w.to_string()).chain(words.chunks(2).map(|p| p.join(" "))).collect();
            for prompt in &prompts {
                let want = json(&kiln(&X86_64, &["predict", m, prompt, "-k", "5", "--json"]));
                let got = json(&kiln(d, &["predict", m, prompt, "-k", "5", "--json"]));
                let (want, got) = (want["top"].as_array().unwrap(), got["top"].as_array().unwrap());
                assert_eq!(want.len(), got.len());
                for (w, g) in want.iter().zip(got) {
                    assert_eq!(w["word"], g["word"], "{}: {m} {prompt:?}: {want:?} vs {got:?}", d.name);
                    let (pw, pg) = (w["probability"].as_f64().unwrap(), g["probability"].as_f64().unwrap());
                    assert!((pw - pg).abs() <= 1e-4, "{}: {m} {prompt:?}: p {pw} vs {pg}", d.name);
                    worst_p = worst_p.max((pw - pg).abs());
                }
                checked += 1;
            }
            let greedy = ["generate", m, &prompts[0], "-n", "10", "--temperature", "0", "--json"];
            assert_eq!(
                json(&kiln(d, &greedy))["words"],
                json(&kiln(&X86_64, &greedy))["words"],
                "{}: {m}",
                d.name
            );
            eprintln!(
                "{}: {m}: {} prompts, the same top-5 words, probabilities within {worst_p:e}",
                d.name,
                prompts.len()
            );
        } else {
            let n = if json(&info)["output_shape"].as_array().unwrap().len() == 3 { "16" } else { "500" };
            let files = |who: &str| {
                (tmp.path().join(format!("{who}-z.npy")), tmp.path().join(format!("{who}-x.npy")))
            };
            let run = |dev: &Device, who: &str| {
                let (z, x) = files(who);
                kiln(
                    dev,
                    &[
                        "sample",
                        m,
                        "-n",
                        n,
                        "--seed",
                        "3",
                        "-o",
                        x.to_str().unwrap(),
                        "--save-noise",
                        z.to_str().unwrap(),
                    ],
                );
                (std::fs::read(z).unwrap(), std::fs::read(x).unwrap())
            };
            let (z_want, x_want) = run(&X86_64, "x86_64");
            let (z_got, x_got) = run(d, "device");
            assert!(z_want == z_got, "{}: {m}: the noise of --seed 3 differs from x86_64's", d.name);
            let (want, got) = (npy_values(&x_want), npy_values(&x_got));
            assert_eq!(want.len(), got.len());
            assert!(want.iter().any(|v| *v != 0.0), "{m}: samples are not all zero");
            let worst = kiln_infer::numeric::max_abs_diff(&want, &got);
            assert!(worst <= 1e-3, "{}: {m}: samples differ from x86_64's by up to {worst}", d.name);
            eprintln!("{}: {m}: noise identical, samples within {worst:e}", d.name);
            checked += 1;
        }
        let bench = json(&kiln(d, &["bench", m, "--iters", "3", "--warmup", "1", "--json"]));
        assert_eq!(bench["iters"], 3, "{}: {bench}", d.name);
        assert!(bench["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{}: {bench}", d.name);
    }
    assert!(checked >= 4, "compared {checked} queries");
}

#[test]
fn aarch64_answers_as_x86_64_does() {
    matches_x86_64(&AARCH64);
}

#[test]
fn aarch64_musl_answers_as_x86_64_does() {
    matches_x86_64(&AARCH64_MUSL);
}

#[test]
fn x86_64_musl_answers_as_x86_64_does() {
    matches_x86_64(&X86_64_MUSL);
}

#[test]
fn armv7_answers_as_x86_64_does_with_and_without_neon() {
    matches_x86_64(&ARMV7_NEON);
    matches_x86_64(&ARMV7_NO_NEON);
}

/// ELF facts of a binary: machine number and whether it names a program interpreter
/// (a dynamic loader). Enough of the ELF header and program headers to tell.
fn elf(path: &Path) -> (u16, bool) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is not an ELF file", path.display());
    let wide = b[4] == 2;
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let machine = u16_at(18);
    let (phoff, phentsize, phnum) = if wide {
        (u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize, u16_at(54) as usize, u16_at(56) as usize)
    } else {
        (u32_at(28) as usize, u16_at(42) as usize, u16_at(44) as usize)
    };
    const PT_INTERP: u32 = 3;
    let interp = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == PT_INTERP);
    (machine, interp)
}

#[test]
fn binaries_fit_their_size_budgets_and_target_their_machines() {
    const MB: u64 = 1_000_000;
    // (device, ELF machine: EM_X86_64 62, EM_ARM 40, EM_AARCH64 183, budget, statically linked)
    for (d, machine, budget, is_static) in [
        (&X86_64, 62, 12 * MB, false),
        (&AARCH64, 183, 10 * MB, false),
        (&ARMV7_NEON, 40, 10 * MB, false),
        (&AARCH64_MUSL, 183, 10 * MB, true),
        (&X86_64_MUSL, 62, 12 * MB, true),
    ] {
        let path = binary(d);
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!("{}: {size} bytes", d.name);
        assert!(size <= budget, "{}: {size} bytes, over the {budget}-byte budget", d.name);
        let (m, interp) = elf(&path);
        assert_eq!(m, machine, "{}: ELF machine", d.name);
        assert_eq!(!interp, is_static, "{}: statically linked?", d.name);
    }
}
