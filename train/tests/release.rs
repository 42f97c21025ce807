//! The release build of `kiln-train`, as users run it, answers misuse with one line. Its
//! profile aborts on panic (`panic = "abort"`), so a panic there is a SIGABRT and a backtrace
//! for the user, not the exit 101 the dev build's tests see. Each case must end with exit 1 and
//! exactly one `error:` line (clap's usage errors: exit 2), no signal, within a time bound, and
//! leave nothing in the folder it was told to write to.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `cargo build --release -p kiln-train`, as `cargo xtask demo` builds it; the binary's path.
fn release_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let start = Instant::now();
    let out = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--release", "-p", "kiln-train", "--bin", "kiln-train"])
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "release build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("release build: {:.0} s", start.elapsed().as_secs_f64());
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    target.join("release").join("kiln-train")
}

#[test]
fn the_release_build_answers_every_misuse_with_one_error_line() {
    let bin = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(at("corpus.txt"), "the cat sat on the mat\na dog saw the cat\n".repeat(50)).unwrap();
    std::fs::write(at("empty.txt"), "").unwrap();
    std::fs::write(at("latin1.txt"), [0x63, 0x61, 0x66, 0xe9, b'\n']).unwrap();
    // A checkpoint of random bytes, and one cut short.
    std::fs::write(
        at("noise.safetensors"),
        (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(at("cut.safetensors"), [8, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap();
    // IDX headers: one declaring 2^31 × 2^31 × 2^31 images, one declaring more than it holds.
    std::fs::create_dir(at("huge")).unwrap();
    let mut huge = vec![0u8, 0, 8, 3];
    for d in [1u32 << 31, 1 << 31, 1 << 31] {
        huge.extend(d.to_be_bytes());
    }
    std::fs::write(at("huge/train-images-idx3-ubyte"), &huge).unwrap();
    std::fs::create_dir(at("short")).unwrap();
    let mut short = vec![0u8, 0, 8, 3];
    for d in [1000u32, 28, 28] {
        short.extend(d.to_be_bytes());
    }
    short.extend([0u8; 784]);
    std::fs::write(at("short/train-images-idx3-ubyte"), &short).unwrap();
    std::fs::create_dir(at("nopics")).unwrap();
    let corpus = at("corpus.txt");
    let out = at("out/m.onnx");
    std::fs::create_dir(at("out")).unwrap();
    let seed = root().join("models/seed-lstm.onnx").to_str().unwrap().to_string();

    // (arguments, exit code, what the error line says)
    let cases: Vec<(Vec<String>, i32, &str)> = [
        (vec!["lm", "--corpus", "no/such.txt"], 1, "cannot read corpus no/such.txt"),
        (vec!["lm", "--corpus", &at("empty.txt")], 1, "the corpus has no words"),
        (vec!["lm", "--corpus", &at("latin1.txt")], 1, "it must be a UTF-8 text file"),
        (vec!["lm", "--corpus", "/dev/zero"], 1, "holds more than the 2000 MB of text"),
        (vec!["lm", "--resume", "/dev/zero"], 1, "it is not a file"),
        (vec!["lm", "--corpus", &corpus, "--clip", "NaN"], 1, "--clip must be 0 (off) or a positive number"),
        (vec!["lm", "--corpus", &corpus, "--epochs", "0"], 1, "--epochs must be at least 1"),
        (vec!["lm", "--corpus", &corpus, "--hidden", "100000", "--batch-size", "1"], 1, "memory available"),
        (vec!["lm", "--corpus", &corpus, "--context", "3"], 1, "--context is for --protocol windows"),
        (
            vec!["lm", "--corpus", &corpus, "--out", "no/such/dir/m.onnx"],
            1,
            "the folder no/such/dir does not exist",
        ),
        (vec!["lm", "--resume", &at("noise.safetensors")], 1, "noise.safetensors"),
        (vec!["lm", "--resume", &at("cut.safetensors")], 1, "cut.safetensors"),
        (vec!["lm", "--resume", &corpus], 1, "not a safetensors file"),
        (vec!["lm", "--corpus", &corpus, "--no-such-flag"], 2, "unexpected argument"),
        (
            vec!["gan", "--data", "moons"],
            1,
            "--data moons: expected ring8, grid25, fashion-mnist, idx:FOLDER",
        ),
        (vec!["gan", "--data", "ring8", "--image-size", "0"], 1, "--image-size must be 28, 32 or 64, not 0"),
        (vec!["gan", "--data", "ring8", "--image-size", "3000"], 1, "--image-size must be 28, 32 or 64"),
        (vec!["gan", "--data", "fashion-mnist", "--channels", "2"], 1, "--channels must be 1 (grey) or 3"),
        (vec!["gan", "--data", "ring8", "--latent", "1000000000"], 1, "memory available"),
        (vec!["gan", "--data", "ring8", "--batch", "100000000"], 1, "a training step would hold about"),
        (vec!["gan", "--data", "ring8", "--d-steps", "0"], 1, "--d-steps must be at least 1"),
        (vec!["gan", "--data", &format!("idx:{}", at("huge"))], 1, "more than the 2000000000 bytes"),
        (vec!["gan", "--data", &format!("idx:{}", at("short"))], 1, "train-images-idx3-ubyte"),
        (vec!["gan", "--data", &format!("images:{}", at("nopics"))], 1, "no readable PNG or JPEG pictures"),
        (vec!["gan", "--resume", &at("noise.safetensors")], 1, "noise.safetensors"),
        (
            vec![
                "gan",
                "--data",
                "ring8",
                "--out",
                &out,
                "--lr",
                "1e10",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "5",
            ],
            1,
            "training diverged in epoch 1",
        ),
        (vec!["eval", "no/such.onnx", "--data", "ring8"], 1, "cannot read no/such.onnx"),
        (
            vec!["eval", &seed, "--data", "ring8"],
            1,
            "it is a next-word model, and this needs a generator model",
        ),
    ]
    .into_iter()
    .map(|(args, code, says)| (args.into_iter().map(String::from).collect(), code, says))
    .collect();

    let mut failures = Vec::new();
    for (args, code, says) in &cases {
        let start = Instant::now();
        let mut child = Command::new(&bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A case that hangs fails here rather than stalling the suite.
        while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let took = start.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let one_line =
            *code == 2 || (stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1);
        if output.status.code() != Some(*code) || !one_line || !stderr.contains(says) || took.as_secs() >= 30
        {
            failures.push(format!(
                "kiln-train {}: {:?} in {took:.1?}, stderr:\n{stderr}",
                args.join(" "),
                output.status
            ));
        }
        let left: Vec<_> = std::fs::read_dir(at("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        if !left.is_empty() {
            failures.push(format!("kiln-train {}: left {left:?} in the output folder", args.join(" ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
