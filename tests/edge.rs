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
//!   static (no program interpreter);
//! - the x86_64 release build answers every misuse of `kiln` we know of (bad flags, hostile and
//!   broken model files, outputs it must not write) with exit 1 and one `error:` line, within
//!   2 s and 200 MB each.
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

/// Every way of misusing `kiln` we know of, run on the release build users get (`panic =
/// "abort"`): each must end with exit 1 and exactly one `error:` line (clap's usage errors: exit
/// 2), no "panicked", no signal, within 2 s. The model files are made here from the shipped
/// ones. Each process's peak memory must stay under 200 MB.
#[test]
fn the_release_build_answers_every_misuse_with_one_error_line() {
    use kiln_infer::pb::ModelProto;
    use prost::Message;
    let bin = binary(&X86_64);
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let model = |name: &str| root().join("models").join(name).to_str().unwrap().to_string();
    let readme = root().join("README.md").to_str().unwrap().to_string();
    let (seed, ring, fashion) =
        (model("seed-lstm.onnx"), model("ring8-gan.onnx"), model("fashion-dcgan.onnx"));
    let proto = |path: &str| ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();

    // Files: empty, cut in half, binary text, metadata that lies, NaN weights, outputs of the
    // wrong shape (a Squeeze in the LSTM), a tract assertion (an Expand to a negative size: kiln's
    // panic hook), 100k nodes.
    std::fs::write(at("empty.onnx"), b"").unwrap();
    let bytes = std::fs::read(&fashion).unwrap();
    std::fs::write(at("cut.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(at("binary.txt"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let mut lies = proto(&seed);
    lies.metadata_props.iter_mut().find(|p| p.key == "kiln.hidden").unwrap().value = "6".into();
    std::fs::write(at("lies.onnx"), lies.encode_to_vec()).unwrap();
    let mut zero = proto(&seed);
    zero.metadata_props.iter_mut().find(|p| p.key == "kiln.hidden").unwrap().value = "0".into();
    std::fs::write(at("zero.onnx"), zero.encode_to_vec()).unwrap();
    let mut no_outputs = proto(&ring);
    no_outputs.graph.as_mut().unwrap().output.clear();
    std::fs::write(at("no-outputs.onnx"), no_outputs.encode_to_vec()).unwrap();
    let mut nan = proto(&seed);
    for t in &mut nan.graph.as_mut().unwrap().initializer {
        if t.data_type == 1 {
            t.raw_data = f32::NAN.to_le_bytes().repeat(t.raw_data.len() / 4);
        }
    }
    std::fs::write(at("nan.onnx"), nan.encode_to_vec()).unwrap();
    let coin = root().join("infer/tests/fixtures/tiny-coin-stream.onnx");
    let mut squeeze = proto(coin.to_str().unwrap());
    squeeze.graph.as_mut().unwrap().node[8].op_type = "Squeeze".into();
    std::fs::write(at("squeeze.onnx"), squeeze.encode_to_vec()).unwrap();
    let image = root().join("infer/tests/fixtures/tiny-image-generator.onnx");
    let mut expand = proto(image.to_str().unwrap());
    expand.graph.as_mut().unwrap().node[2].op_type = "Expand".into();
    std::fs::write(at("expand.onnx"), expand.encode_to_vec()).unwrap();
    let mut chain = proto(&ring);
    {
        let g = chain.graph.as_mut().unwrap();
        let mut last = g.output[0].name.clone();
        for i in 0..100_000 {
            let next = format!("c{i}");
            g.node.push(kiln_infer::pb::NodeProto {
                op_type: "Identity".into(),
                input: vec![last],
                output: vec![next.clone()],
                ..Default::default()
            });
            last = next;
        }
        g.output[0].name = last;
    }
    std::fs::write(at("chain.onnx"), chain.encode_to_vec()).unwrap();
    std::fs::write(at("text.txt"), "<unk> <unk>\n").unwrap();

    let cases: Vec<(Vec<String>, i32, &str)> = [
        (vec!["info", "no/such.onnx"], 1, "no/such.onnx"),
        (vec!["info", &at("empty.onnx")], 1, "empty.onnx"),
        (vec!["info", &readme], 1, "README.md"),
        (vec!["info", "/dev/zero", "--max-model-mb", "1"], 1, "more than 1000000 bytes"),
        (vec!["info", &at("cut.onnx")], 1, "cut.onnx"),
        (vec!["info", &at("lies.onnx")], 1, "metadata `kiln.hidden` says 6"),
        (vec!["predict", &at("nan.onnx"), "i like"], 1, "NaN"),
        (vec!["info", &at("zero.onnx")], 1, "metadata `kiln.hidden` is malformed"),
        (vec!["sample", &at("no-outputs.onnx"), "-n", "3", "-o", &at("x.npy")], 1, "0 outputs"),
        // A node turned into a Squeeze: the graph still plans and runs, and gives every
        // position's logits with their axes out of order, which kiln's output check catches.
        (vec!["score", &at("squeeze.onnx"), &at("text.txt")], 1, "the model computed logits_all of shape"),
        (vec!["info", &at("expand.onnx")], 1, "internal failure while reading or running the model"),
        (vec!["info", &at("chain.onnx")], 1, "more than 10000 graph nodes"),
        (vec!["predict", &seed, ""], 1, "prompt"),
        (vec!["predict", &seed, "i like", "-k", "0"], 1, "-k"),
        (vec!["generate", &seed, "i", "-n", "0"], 1, "-n must be at least 1"),
        (vec!["generate", &seed, "i", "--temperature", "-1"], 1, "--temperature"),
        (vec!["generate", &seed, "i", "-n", "100000000", "--json"], 1, "at most 100000"),
        (vec!["predict", &seed, "zebra"], 1, "zebra"),
        (vec!["predict", &ring, "i like"], 1, "generator"),
        (vec!["sample", &seed], 1, "next-word"),
        (vec!["sample", &ring, "-n", "0"], 1, "-n must be at least 1"),
        (vec!["sample", &fashion], 1, "write them with -o FILE.png"),
        (vec!["sample", &fashion, "-n", "100000", "-o", &at("x.png")], 1, "4096×4096"),
        (vec!["sample", &ring, "-o", &at("x.txt")], 1, ".png, .csv or .npy"),
        (vec!["sample", &ring, "-o", &at("x.csv"), "--save-noise", &at("x.csv")], 1, "the same file"),
        (vec!["sample", &ring, "-o", &at("x.npy"), "--save-noise", &at("no/dir/z.npy")], 1, "cannot write"),
        (vec!["bench", &ring, "--batch", "100000000"], 1, "--max-call-mb"),
        (vec!["interpolate", &ring, "--from", "1", "--to", "2", "--steps", "1"], 1, "--steps"),
        (vec!["score", &seed, "no/such.txt"], 1, "no/such.txt"),
        (vec!["score", &seed, &at("binary.txt")], 1, "UTF-8"),
        (vec!["frobnicate"], 2, "frobnicate"),
        (vec!["predict"], 2, "required"),
    ]
    .into_iter()
    .map(|(args, code, says)| (args.into_iter().map(str::to_string).collect(), code, says))
    .collect();
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = files();
    let mut wrong = Vec::new();
    for (args, code, says) in &cases {
        let start = std::time::Instant::now();
        let (out, peak) = run_measured(Command::new(&bin).args(args).current_dir(dir.path()));
        let took = start.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let one_line = *code == 2 || (stderr.starts_with("error: ") && stderr.lines().count() == 1);
        if peak > 200_000_000 {
            wrong.push(format!("kiln {args:?}: {} MB at its peak", peak / 1_000_000));
        }
        if out.status.code() != Some(*code)
            || !one_line
            || stderr.contains("panicked")
            || !stderr.contains(says)
            || took > 2.0
        {
            wrong.push(format!("kiln {args:?}: {:?} after {took:.1} s, stderr {stderr:?}", out.status));
        }
    }
    // Nothing was written by the failing commands: only the files made above are there.
    assert_eq!(files(), before, "files written by failing commands");
    assert!(wrong.is_empty(), "{} of {} cases:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

/// Runs `cmd` to its end, returning its output and its peak resident memory in bytes (the
/// kernel's `ru_maxrss` of that one process, from `wait4`). An upper bound: Linux counts the
/// resident pages of the test process it was spawned from too (about 44 MB here).
// The child is reaped by `wait4` below, which `Child::wait` would not let us call.
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut Command) -> (std::process::Output, u64) {
    use std::io::Read as _;
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data, written by wait4 for the child this process spawned (and has
    // not waited for through `Child`, so the pid is still its own).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let status = std::os::unix::process::ExitStatusExt::from_raw(status);
    let out = std::process::Output { status, stdout: Vec::new(), stderr };
    (out, usage.ru_maxrss as u64 * 1024)
}
