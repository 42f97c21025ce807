//! `kiln-train` driven as a user drives it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn train() -> Command {
    Command::cargo_bin("kiln-train").unwrap()
}

/// `kiln-train ARGS` fails as a user should see it: exit 1 (clap's usage errors: 2), no signal,
/// and one line on stderr, an `error:` line that says `message`.
fn fails(args: &[&str], message: &str) {
    let out = train().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(matches!(code, Some(1 | 2)), "{args:?}: exit {:?} (a signal, if None):\n{stderr}", out.status);
    assert!(stderr.contains(message), "{args:?}: stderr does not say {message:?}:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: panicked:\n{stderr}");
    if code == Some(1) {
        assert!(
            stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1,
            "{args:?}: not one error line:\n{stderr}"
        );
    }
}

fn corpus(dir: &Path) -> String {
    let text: String =
        (0..60).map(|i| format!("the cat {} sat on the mat . a dog saw {} cats\n", i % 7, i % 5)).collect();
    let p = dir.join("corpus.txt");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Probabilities `kiln predict --json` gives for `prompt`.
fn probabilities(model: &Path, prompt: &str) -> Vec<(String, f64)> {
    let m = kiln_infer::NextWordModel::load(model, &Default::default()).unwrap();
    let p = m.predict(prompt, 50).unwrap();
    p.top.into_iter().map(|w| (w.word, w.probability as f64)).collect()
}

#[test]
fn seed_preset_prints_the_lectures_lines_and_writes_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seed.onnx");
    let assert = train().args(["lm", "--preset", "seed", "--out", out.to_str().unwrap()]).assert().success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    for (i, line) in lines[..5].iter().enumerate() {
        let prefix = format!("Epoch: {:04} cost = ", (i + 1) * 100);
        let cost = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(cost.len(), 8, "six decimals: {line:?}");
        cost.parse::<f64>().unwrap();
    }
    assert_eq!(
        lines[5],
        "[['i', 'like'], ['i', 'love'], ['i', 'hate'], ['you', 'like'], ['you', 'love'], ['you', 'hate']] \
         -> ['dog', 'coffee', 'milk', 'cat', 'milk', 'coffee']"
    );
    assert!(out.exists());
    assert!(dir.path().join("seed.ckpt.safetensors").exists());
}

#[test]
fn resuming_gives_the_same_model_as_an_uninterrupted_run() {
    // Adam (its moments saved and restored) on a constant rate, and the corpus default, SGD
    // whose plateau schedule recomputes its rate from the saved held-out history.
    for optimiser in
        [["--optimizer", "adam", "--schedule", "constant"], ["--optimizer", "sgd", "--schedule", "plateau"]]
    {
        let dir = tempfile::tempdir().unwrap();
        let c = corpus(dir.path());
        let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
        let common = [
            "lm",
            "--corpus",
            &c,
            "--embed",
            "8",
            "--hidden",
            "16",
            "--layers",
            "2",
            "--dropout",
            "0.2",
            "--batch-size",
            "16",
            "--device",
            "cpu",
            "--seed",
            "4",
        ];
        train()
            .args(common)
            .args(optimiser)
            .args(["--epochs", "4", "--out", &path("a.onnx")])
            .assert()
            .success()
            .stdout(predicate::str::contains("epoch    4/4"));
        train()
            .args(common)
            .args(optimiser)
            .args(["--epochs", "2", "--out", &path("b.onnx")])
            .assert()
            .success();
        train()
            .args([
                "lm",
                "--resume",
                &path("b.ckpt.safetensors"),
                "--epochs",
                "4",
                "--out",
                &path("b.onnx"),
                "--device",
                "cpu",
            ])
            .assert()
            .success()
            .stdout(predicate::str::contains("epoch    3/4"));
        let (a, b) = (
            probabilities(&dir.path().join("a.onnx"), "the cat"),
            probabilities(&dir.path().join("b.onnx"), "the cat"),
        );
        assert_eq!(a.len(), b.len());
        for ((wa, pa), (wb, pb)) in a.iter().zip(&b) {
            assert_eq!(wa, wb);
            assert!((pa - pb).abs() < 1e-6, "{optimiser:?} {wa}: {pa} vs {pb}");
        }
        // Resuming a finished run asks for more epochs.
        fails(&["lm", "--resume", &path("a.ckpt.safetensors")], "pass --epochs N");
    }
}

#[test]
fn rare_and_unknown_words_read_as_unk() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(dir.path());
    let out = dir.path().join("m.onnx");
    // "6" appears in 8 of the 60 lines (i % 7 == 6), below "--min-count 10": it becomes <unk>.
    train()
        .args([
            "lm",
            "--corpus",
            &c,
            "--min-count",
            "10",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--device",
            "cpu",
        ])
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
    let m = kiln_infer::NextWordModel::load(&out, &Default::default()).unwrap();
    assert_eq!(m.vocab().words()[0], "<unk>");
    assert!(!m.vocab().contains("6") && m.vocab().contains("the"));
    let p = m.predict("the zebra", 3).unwrap();
    assert_eq!(p.context.unknown, ["zebra"]);
    assert_eq!(p.top.len(), 3);
}

#[test]
fn gan_trains_exports_and_evaluates_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.onnx");
    let out_s = out.to_str().unwrap();
    // A short run: the quality bar is tested in tests/gan.rs; here, the command's shape.
    let assert = train()
        .args(["gan", "--data", "ring8", "--loss", "minimax", "--epochs", "2", "--steps-per-epoch", "20"])
        .args(["--batch-norm", "--pack", "2", "--maxout", "3", "--d-steps", "2", "--device", "cpu"])
        .args(["--out", out_s])
        .assert()
        .success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("epoch    2/2  D loss ") && stdout.contains("D(G(z)) "), "{stdout}");
    // Beside --out: the checkpoint and the log folder with a scatter per epoch and the losses.
    assert!(dir.path().join("g.ckpt.safetensors").is_file());
    for f in ["scatter-epoch-001.png", "scatter-epoch-002.png", "losses.png"] {
        let img = image::open(dir.path().join("g-log").join(f)).unwrap();
        assert!(img.width() >= 600, "{f}");
    }
    let eval =
        train().args(["eval", out_s, "--data", "ring8", "--samples", "100", "--json"]).assert().success();
    let m: serde_json::Value = serde_json::from_slice(&eval.get_output().stdout).unwrap();
    assert_eq!(m["samples"], 100);
    assert_eq!(m["modes"], 8);
    assert_eq!(m["per_mode"].as_array().unwrap().len(), 8);
    train()
        .args(["eval", out_s, "--data", "grid25"])
        .assert()
        .success()
        .stdout(predicate::str::contains("/25 modes covered"));

    fails(&["gan", "--data", "moons"], "--data moons: expected ring8, grid25, fashion-mnist, idx:FOLDER");
    fails(&["gan", "--data", "ring8", "--arch", "dcgan"], "--arch dcgan trains on images");
    fails(&["gan", "--data", "ring8", "--d-lr", "0"], "--lr and --d-lr must be positive numbers");
    fails(&["gan", "--data", "ring8", "--ema", "1"], "--ema must be in [0, 1)");
    fails(&["gan", "--data", "idx:no/such/dir"], "no train-images-idx3-ubyte");
    fails(&["gan", "--data", "images:no/such/dir"], "no/such/dir: not a folder");
    fails(&["eval", out_s, "--data", "fashion-mnist"], "needs 1×28×28 images");
    fails(&["gan", "--resume", out_s], "not a safetensors file");
    fails(&["gan", "--data", "ring8", "--pack", "0"], "must be at least 1");
    fails(&["gan", "--data", "ring8", "--maxout", "0"], "must be at least 1");
    fails(&["gan", "--data", "ring8", "--d-steps", "0"], "--d-steps must be at least 1");
    fails(&["gan", "--data", "ring8", "--image-size", "0"], "--image-size must be 28, 32 or 64, not 0");
    fails(&["gan", "--data", "fashion-mnist", "--channels", "2"], "--channels must be 1 (grey) or 3");
    fails(&["gan", "--data", "ring8", "--latent", "1000000000"], "more than the");
    // A corpus that never ends is read no further than the limit (it was read until memory ran out).
    fails(&["lm", "--corpus", "/dev/zero"], "corpus /dev/zero holds more than the 2000 MB of text");
    fails(&["lm", "--corpus", "no/such.txt"], "cannot read corpus no/such.txt");
    // A checkpoint must be a file: a device was read until memory ran out.
    fails(&["gan", "--resume", "/dev/zero"], "cannot read checkpoint /dev/zero: it is not a file");
    // About 1.5 TB of activations: refused before libtorch is asked (its failed allocation
    // aborted the process).
    fails(&["gan", "--data", "ring8", "--batch", "100000000"], "a training step would hold about");
    fails(
        &["gan", "--data", "ring8", "--out", "no/such/dir/g.onnx"],
        "the folder no/such/dir does not exist",
    );
    fails(&["eval", "no/such.onnx", "--data", "ring8"], "cannot read no/such.onnx");
    let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/seed-lstm.onnx");
    fails(
        &["eval", seed.to_str().unwrap(), "--data", "ring8"],
        "it is a next-word model, and this needs a generator model",
    );
    // A run that diverges fails loud, writes no model and leaves no empty log folder.
    let bad = tempfile::tempdir().unwrap();
    let bad_out = bad.path().join("d.onnx");
    fails(
        &[
            "gan",
            "--data",
            "ring8",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "5",
            "--lr",
            "1e10",
            "--device",
            "cpu",
        ]
        .into_iter()
        .chain(["--out", bad_out.to_str().unwrap()])
        .collect::<Vec<_>>(),
        "training diverged in epoch 1: a loss is not a number; no checkpoint was saved before it",
    );
    assert_eq!(std::fs::read_dir(bad.path()).unwrap().count(), 0, "a failed run left files");
}

/// MNIST-format files of `n` random 28×28 images (gzipped, as the data sets ship them).
fn random_idx(dir: &Path, n: usize) {
    use std::io::Write as _;
    let mut bytes = vec![0u8, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend((0..n * 784).map(|i| ((i * 7919 + i / 784 * 13) % 251) as u8));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
}

/// Samples of an exported generator at fixed noise.
fn samples(model: &Path) -> Vec<f32> {
    kiln_infer::GeneratorModel::load(model).unwrap().sample(4, 9).unwrap().data.iter().copied().collect()
}

#[test]
fn dcgan_on_idx_files_writes_grids_checkpoints_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    random_idx(dir.path(), 24);
    let data = format!("idx:{}", dir.path().display());
    let run = |out: &Path, epochs: &str| {
        train()
            .args([
                "gan",
                "--data",
                &data,
                "--g-width",
                "4",
                "--d-width",
                "4",
                "--latent",
                "8",
                "--ema",
                "0.9",
            ])
            .args(["--batch", "8", "--epochs", epochs, "--device", "cpu", "--out", out.to_str().unwrap()])
            .assert()
            .success()
    };
    let full = dir.path().join("full.onnx");
    run(&full, "3");
    let log = dir.path().join("full-log");
    for f in ["samples-epoch-001.png", "samples-epoch-003.png", "losses.png"] {
        assert!(log.join(f).is_file(), "{f}");
    }
    // 64 fixed-noise samples in an 8×8 grid of 28-pixel images with 2-pixel gutters.
    assert_eq!(image::open(log.join("samples-epoch-003.png")).unwrap().width(), 8 * 30 + 2);
    let g = kiln_infer::GeneratorModel::load(&full).unwrap();
    assert_eq!(g.meta().output_shape, [1, 28, 28]);
    assert_eq!(g.meta().latent, 8);

    // Two epochs, then resumed to three: the same (averaged) generator as the uninterrupted run.
    let part = dir.path().join("part.onnx");
    run(&part, "2");
    let ckpt = dir.path().join("part.ckpt.safetensors");
    train()
        .args(["gan", "--resume", ckpt.to_str().unwrap(), "--epochs", "3", "--device", "cpu"])
        .args(["--out", part.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("epoch    3/3"));
    assert!(dir.path().join("part-log/samples-epoch-003.png").is_file());
    let (a, b) = (samples(&full), samples(&part));
    let d = kiln_infer::numeric::max_abs_diff(&a, &b);
    assert!(d <= 1e-6, "resumed run differs from the uninterrupted one by {d}");
    fails(&["gan", "--resume", ckpt.to_str().unwrap(), "--epochs", "3"], "already done 3 of 3 epochs");
    fails(&["gan", "--resume", ckpt.to_str().unwrap(), "--data", "ring8"], "cannot be used with");
}

#[test]
fn picture_folders_are_read_and_unreadable_files_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    for i in 0..6u8 {
        image::RgbImage::from_pixel(40, 30, image::Rgb([i * 40, 100, 200 - i * 30]))
            .save(pics.join(format!("{i}.png")))
            .unwrap();
    }
    std::fs::write(pics.join("broken.jpg"), b"not a jpeg").unwrap();
    let out = dir.path().join("g.onnx");
    train()
        .args([
            "gan",
            "--data",
            &format!("images:{}", pics.display()),
            "--image-size",
            "32",
            "--channels",
            "3",
        ])
        .args(["--g-width", "4", "--d-width", "4", "--batch", "4", "--epochs", "1", "--device", "cpu"])
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("6 images, 1 unreadable files skipped"));
    let g = kiln_infer::GeneratorModel::load(&out).unwrap();
    assert_eq!(g.meta().output_shape, [3, 32, 32]);
    // The weight average can be switched on when resuming; it starts from the saved weights.
    let ckpt = dir.path().join("g.ckpt.safetensors");
    train()
        .args(["gan", "--resume", ckpt.to_str().unwrap(), "--epochs", "2", "--ema", "0.5", "--device", "cpu"])
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("epoch    2/2"));
    let info = kiln_infer::GeneratorModel::load(&out).unwrap().meta().train_config.clone();
    assert_eq!(info["train"]["ema"], 0.5);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(&["gan", "--data", &format!("images:{}", empty.display())], "no readable PNG or JPEG pictures");
    fails(
        &["gan", "--data", &format!("images:{}", pics.display()), "--image-size", "48"],
        "makes 28×28, 32×32 or 64×64 images",
    );
}

#[test]
fn stream_training_reports_the_held_out_figure_kiln_score_gives() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(dir.path());
    let valid = dir.path().join("valid.txt");
    let held_out = "the cat 3 sat on the mat . a zebra saw 2 cats\nthe dog sat\n";
    std::fs::write(&valid, held_out).unwrap();
    let out = dir.path().join("m.onnx");
    let run = train()
        .args(["lm", "--corpus", &c, "--valid", valid.to_str().unwrap(), "--hidden", "8", "--epochs", "2"])
        .args(["--batch-size", "4", "--device", "cpu", "--out", out.to_str().unwrap()])
        .assert()
        .success();
    let stdout = String::from_utf8(run.get_output().stdout.clone()).unwrap();
    // <eos>, 13 words, <eos>, 3 words, <eos>: 18 predictions, one of them <unk> (zebra).
    assert!(stdout.contains("18 held out (5.56% read as <unk>)"), "{stdout}");
    let line =
        stdout.lines().find(|l| l.starts_with("held-out perplexity through the exported file: ")).unwrap();
    let numbers: Vec<f64> =
        line.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|t| t.parse().ok()).collect();
    let (file, trainer) = (numbers[0], numbers[numbers.len() - 1]);
    assert!((file - trainer).abs() <= 0.01 * trainer, "{line}");
    // The library scores the held-out text to the same figure, as one stream.
    let m = kiln_infer::NextWordModel::load(&out, &Default::default()).unwrap();
    assert!(m.meta().stream && m.meta().vocab[..2] == ["<unk>", "<eos>"]);
    let s = m.score(held_out).unwrap();
    assert_eq!((s.predictions, s.line_ends, s.unknown), (18, 2, 1));
    assert!((s.perplexity - file).abs() < 0.01, "{} vs {file}", s.perplexity);

    fails(&["lm", "--corpus", &c, "--valid", &c, "--valid-fraction", "0.2"], "cannot be used with");
    fails(&["lm", "--corpus", &c, "--embed", "4", "--hidden", "8", "--tie-weights"], "--tie-weights needs");
    fails(&["lm", "--corpus", &c, "--context", "3"], "--context is for --protocol windows");
    fails(&["lm", "--preset", "seed", "--bptt", "3"], "--bptt is for --protocol stream");
    fails(&["lm", "--corpus", &c, "--schedule", "plateau", "--valid-fraction", "0"], "holds nothing out");
    fails(&["gan", "--data", "ring8", "--schedule", "plateau"], "--schedule plateau follows a held-out loss");
}

/// Ctrl-C ends a run at its next step: exit 130, one line naming the epoch and the checkpoint to
/// resume from, the checkpoints saved so far kept, no model written, no temporary left.
#[test]
fn an_interrupted_run_keeps_its_checkpoint_and_writes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let out = dir.path().join("m.onnx");
    let ckpt = dir.path().join("m.ckpt.safetensors");
    let bin = assert_cmd::cargo::cargo_bin("kiln-train");
    let child = std::process::Command::new(bin)
        .args(["lm", "--corpus", &corpus, "--out", out.to_str().unwrap(), "--epochs", "1000000"])
        .args(["--embed", "8", "--hidden", "8", "--layers", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !ckpt.exists() {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint after two minutes");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: signalling our own child, which has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains("interrupted in epoch")
            && error[0].contains(&format!("--resume {}", ckpt.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "an interrupted run exported a model");
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["corpus.txt", "m.ckpt.safetensors"]);
    // The checkpoint is whole: a resumed run reads it, and asked for one epoch, says how many it
    // has done already.
    train()
        .args(["lm", "--resume", ckpt.to_str().unwrap(), "--epochs", "1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("the checkpoint has already done"));
}

/// Before training begins (here: waiting to read a corpus from a pipe nobody writes), a signal
/// ends the process at once: there is no step to stop at and nothing written to keep.
#[test]
fn a_signal_while_data_is_read_ends_the_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("corpus.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string naming a path in our own temporary folder.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let out = dir.path().join("m.onnx");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln-train"))
        .args(["lm", "--corpus", fifo.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signalling our own child, which has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut child = child;
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() >= 10 {
            let _ = child.kill();
            panic!("still running 10 s after SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted before training began: nothing was written"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["corpus.fifo"]);
}

/// A batch whose training step could not fit in memory is refused before the model is built,
/// naming the flags that size a step (libtorch's failed allocation would abort the process).
/// The step asked for here — 100 streams × 2,999 positions × 8 layers of 1,024 — is estimated at
/// about 120 GB, beyond this machine class's 24 GB; the model alone (67M parameters) fits.
#[test]
fn a_training_step_too_large_for_memory_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let line: String = (0..1000).map(|i| format!("w{} ", i % 50)).collect();
    let text = format!("{}\n", line.trim_end()).repeat(300);
    let c = dir.path().join("big.txt");
    std::fs::write(&c, text).unwrap();
    let args =
        ["lm", "--corpus", c.to_str().unwrap(), "--batch-size", "100", "--bptt", "2999", "--embed", "1024"];
    let args = [&args[..], &["--hidden", "1024", "--layers", "8", "--valid-fraction", "0"]].concat();
    let start = std::time::Instant::now();
    fails(&args, "a training step would hold about");
    fails(&args, "lower --batch-size or --bptt");
    assert!(start.elapsed().as_secs() < 60, "refused only after {:?}", start.elapsed());
}
