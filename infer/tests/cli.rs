//! The `kiln` binary driven as a user drives it, on the shipped `models/seed-lstm.onnx` and on
//! a model written by `torch.onnx.export` from the seed lecture's own code.

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;

use assert_cmd::Command;
use predicates::prelude::*;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn seed_model() -> PathBuf {
    repo("models/seed-lstm.onnx")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn kiln() -> Command {
    Command::cargo_bin("kiln").unwrap()
}

/// Runs `kiln` expecting failure: one `error:` line, no panic, no backtrace.
fn fails(args: &[&str], message: &str) {
    kiln()
        .args(args)
        .assert()
        .failure()
        .stderr(predicate::str::starts_with("error: "))
        .stderr(predicate::str::contains(message))
        .stderr(predicate::str::contains("panicked").not());
}

#[test]
fn shipped_seed_model_predicts_the_lecture_targets() {
    let m = seed_model();
    let m = m.to_str().unwrap();
    for (prompt, want) in [
        ("i like", "dog"),
        ("i love", "coffee"),
        ("i hate", "milk"),
        ("you like", "cat"),
        ("you love", "milk"),
        ("you hate", "coffee"),
    ] {
        let out = kiln().args(["predict", m, prompt, "-k", "3"]).assert().success();
        let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        assert_eq!(lines[0].split_whitespace().next(), Some(want), "{prompt}: {stdout}");
    }
}

#[test]
fn predict_json_reports_probabilities_and_truncation() {
    let m = seed_model();
    let out =
        kiln().args(["predict", m.to_str().unwrap(), "You, I LIKE", "-k", "9", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 9);
    let probs: Vec<f64> = top.iter().map(|t| t["probability"].as_f64().unwrap()).collect();
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{probs:?}");
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "not sorted: {probs:?}");
    assert_eq!(top[0]["word"], "dog");
    // Lower-cased and cut at spaces, the prompt is "you," "i" "like": the model reads the last two.
    assert_eq!(v["context"]["truncated"], true);
    assert_eq!(v["context"]["words"], serde_json::json!(["i", "like"]));
}

#[test]
fn generate_is_reproducible_and_greedy_at_temperature_zero() {
    let m = seed_model();
    let m = m.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = kiln().args(["generate", m, "i"]).args(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    };
    let a = run(&["-n", "6", "--seed", "7"]);
    assert_eq!(a, run(&["-n", "6", "--seed", "7"]));
    assert_eq!(a.split_whitespace().count(), 6);
    let greedy = run(&["-n", "1", "--temperature", "0"]);
    let out = kiln().args(["predict", m, "i", "-k", "1"]).assert().success();
    let top = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(greedy.trim(), top.split_whitespace().next().unwrap());
    let json = kiln().args(["generate", m, "you", "-n", "3", "--top-k", "2", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!(v["words"].as_array().unwrap().len(), 3);
}

#[test]
fn info_describes_the_model() {
    kiln()
        .args(["info", seed_model().to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("vocabulary: 9 words"))
        .stdout(predicate::str::contains("context:    2 words"))
        .stdout(predicate::str::contains("token ids, LSTM state carried (1 layer(s), hidden 5)"));
}

#[test]
fn user_errors_are_one_clear_line() {
    let m = seed_model();
    let m = m.to_str().unwrap();
    fails(&["predict", m, "i adore"], "\"adore\" is not in the model's vocabulary");
    fails(&["predict", m, "  "], "the prompt is empty");
    fails(&["predict", m, "i like", "-k", "0"], "-k must be at least 1");
    fails(&["generate", m, "i", "--temperature", "-1"], "--temperature");
    fails(&["generate", m, "i", "--top-k", "0"], "--top-k");
    fails(&["predict", "no/such/model.onnx", "i"], "cannot read no/such/model.onnx");
    fails(&["predict", m, "i", "--vocab", fixture("vocab.json").to_str().unwrap()], "drop --vocab");
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"this is not a protobuf").unwrap();
    fails(&["info", junk.path().to_str().unwrap()], "is not a model tract can load");
}

#[test]
fn runs_the_seed_lectures_own_torch_export_given_its_vocabulary() {
    let m = fixture("seed_lstm_torch.onnx");
    let m = m.to_str().unwrap();
    let vocab = fixture("vocab.json");
    let vocab = vocab.to_str().unwrap();
    for (prompt, want) in [("i like", "dog"), ("you hate", "coffee"), ("you love", "milk")] {
        let out = kiln().args(["predict", m, prompt, "-k", "1", "--vocab", vocab]).assert().success();
        let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert_eq!(stdout.split_whitespace().next(), Some(want), "{prompt}");
    }
    kiln()
        .args(["info", m, "--vocab", vocab])
        .assert()
        .success()
        .stdout(predicate::str::contains("one-hot input, fixed window of 2 words"));
    kiln().args(["generate", m, "i like", "-n", "3", "--vocab", vocab]).assert().success();
    fails(&["predict", m, "i like"], "pass --vocab FILE");
    fails(&["predict", m, "like", "--vocab", vocab], "exactly 2 words of context");
    let short = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(short.path(), r#"["a", "b"]"#).unwrap();
    fails(
        &["predict", m, "i like", "--vocab", short.path().to_str().unwrap()],
        "the vocabulary has 2 words but the model has 9",
    );
}

/// A word LM made and exported as PyTorch's word_language_model does
/// (`tests/fixtures/word_lm_torch.py`): token ids `[seq, batch]`, `h0`/`c0` in, log-probabilities
/// `[seq·batch, vocab]` and `hn`/`cn` out, shapes fixed at the export's `[12, 8]`. kiln must run
/// it at any length, the state carried, and score a text as PyTorch itself did.
#[test]
fn runs_a_word_lm_exported_by_pytorch_at_any_length_with_its_state_carried() {
    let m = fixture("word_lm_torch.onnx");
    let m = m.to_str().unwrap();
    let vocab = fixture("word_lm_torch.vocab.json");
    let vocab = vocab.to_str().unwrap();
    let valid = fixture("word_lm_torch.valid.txt");
    let valid = valid.to_str().unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("word_lm_torch.expected.json")).unwrap())
            .unwrap();

    // The held-out text, 643 tokens read as one stream: torch's cross-entropy, to float precision.
    let scored = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&stdout_of(&[&["score", "--json"], args].concat())).unwrap()
    };
    let got = scored(&[m, valid, "--vocab", vocab]);
    assert_eq!(got["predictions"], expected["valid_predictions"]);
    assert_eq!(got["unknown"], 0);
    let (got_ce, want_ce) =
        (got["cross_entropy"].as_f64().unwrap(), expected["valid_cross_entropy"].as_f64().unwrap());
    assert!((got_ce - want_ce).abs() <= 1e-5 * want_ce, "kiln {got_ce} vs torch {want_ce}");

    let prompt = expected["prompt"].as_str().unwrap();
    let top = stdout_of(&["predict", m, prompt, "-k", "1", "--vocab", vocab]);
    assert_eq!(top.split_whitespace().next(), expected["prompt_top_word"].as_str(), "{top}");

    let info = stdout_of(&["info", m, "--vocab", vocab]);
    assert!(info.contains("token ids [seq, batch]") && info.contains("scores for every position"), "{info}");
    // Generation stops at <eos> (the vocabulary has one) and speaks the vocabulary's words.
    let words: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixture("word_lm_torch.vocab.json")).unwrap()).unwrap();
    let text = stdout_of(&["generate", m, "the cat", "-n", "30", "--seed", "2", "--vocab", vocab]);
    assert!(
        !text.trim().is_empty() && text.split_whitespace().all(|w| words.iter().any(|v| v == w)),
        "{text}"
    );

    fails(&["score", m, valid], "pass --vocab FILE");
    // Exported at seq = batch = 6: the graph cannot tell the layout, the user can.
    let square = fixture("word_lm_torch_square.onnx");
    let square = square.to_str().unwrap();
    fails(&["score", square, valid, "--vocab", vocab], "--layout seq-first or --layout batch-first");
    let got = scored(&[square, valid, "--vocab", vocab, "--layout", "seq-first"]);
    assert!((got["cross_entropy"].as_f64().unwrap() - want_ce).abs() <= 1e-5 * want_ce, "{got}");
    fails(&["score", square, valid, "--vocab", vocab, "--layout", "batch-first"], "check --layout");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .args(["generate", seed_model().to_str().unwrap(), "i", "-n", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The reader is dropped here: kiln's next write hits a closed pipe.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

// ---- generators (fixtures written by the exporter: export/tests/fixtures.rs) ----

fn stdout_of(args: &[&str]) -> String {
    let out = kiln().args(args).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

#[test]
fn sample_writes_csv_npy_and_png_reproducibly() {
    let points = fixture("tiny-points-generator.onnx");
    let points = points.to_str().unwrap();
    let csv = stdout_of(&["sample", points, "-n", "5", "--seed", "3"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "x,y");
    assert_eq!(lines.len(), 6);
    assert_eq!(csv, stdout_of(&["sample", points, "-n", "5", "--seed", "3"]));
    assert_ne!(csv, stdout_of(&["sample", points, "-n", "5", "--seed", "4"]));

    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("s.npy");
    kiln().args(["sample", points, "-n", "5", "--seed", "3", "-o", npy.to_str().unwrap()]).assert().success();
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(bytes.len(), 10 + header_len + 5 * 2 * 4);
    // The .npy holds the same numbers as the CSV.
    let first_x = f32::from_le_bytes(bytes[10 + header_len..14 + header_len].try_into().unwrap());
    assert_eq!(first_x.to_string(), lines[1].split(',').next().unwrap());

    let images = fixture("tiny-image-generator.onnx");
    let png = dir.path().join("grid.png");
    kiln()
        .args(["sample", images.to_str().unwrap(), "-n", "4", "-o", png.to_str().unwrap()])
        .assert()
        .success();
    let (w, h) = image_size(&png);
    assert_eq!((w, h), (2 * (8 + 2) + 2, 2 * (8 + 2) + 2), "a 2×2 grid of 8×8 images with 2-pixel gutters");
}

/// Samples cut across threads are the samples of one thread, row for row; `bench` says how many
/// threads a call used (a next-word model: one).
#[test]
fn sample_and_bench_split_a_generators_batch_across_threads() {
    let ring = repo("models/ring8-gan.onnx");
    let ring = ring.to_str().unwrap();
    let values = |csv: &str| -> Vec<f32> {
        csv.lines().skip(1).flat_map(|l| l.split(',').map(|v| v.parse::<f32>().unwrap())).collect()
    };
    let one = values(&stdout_of(&["sample", ring, "-n", "50", "--seed", "9", "--threads", "1"]));
    let three = values(&stdout_of(&["sample", ring, "-n", "50", "--seed", "9", "--threads", "3"]));
    assert_eq!(one.len(), 100);
    let diff = one.iter().zip(&three).map(|(a, b)| (a - b).abs()).fold(0f32, |m, d| {
        if d.is_nan() {
            f32::NAN
        } else {
            m.max(d)
        }
    });
    assert!(three.len() == one.len() && diff <= 1e-5, "samples on 3 threads differ by {diff}");

    let threads = |model: &str| -> u64 {
        let out = stdout_of(&[
            "bench",
            model,
            "--batch",
            "4",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--threads",
            "2",
            "--json",
        ]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["threads"].as_u64().unwrap()
    };
    assert_eq!(threads(ring), 2);
    assert_eq!(threads(seed_model().to_str().unwrap()), 1);
    kiln()
        .args(["sample", ring, "--threads", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--threads"));
}

fn image_size(path: &std::path::Path) -> (u32, u32) {
    // PNG: the IHDR chunk's width and height follow the 16-byte signature and chunk header.
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

#[test]
fn interpolate_runs_from_one_seeds_noise_to_the_others() {
    let points = fixture("tiny-points-generator.onnx");
    let points = points.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let strip = dir.path().join("strip.csv");
    kiln()
        .args([
            "interpolate",
            points,
            "--from",
            "1",
            "--to",
            "2",
            "--steps",
            "5",
            "-o",
            strip.to_str().unwrap(),
        ])
        .assert()
        .success();
    let rows: Vec<String> = std::fs::read_to_string(&strip).unwrap().lines().map(String::from).collect();
    assert_eq!(rows.len(), 6);
    let first = stdout_of(&["sample", points, "-n", "1", "--seed", "1"]);
    let last = stdout_of(&["sample", points, "-n", "1", "--seed", "2"]);
    // The same noise in a batch of 5 and a batch of 1: tract runs each batch size with a plan of
    // its own, whose sums may round differently in the last bit.
    let values = |line: &str| -> Vec<f32> { line.split(',').map(|v| v.parse().unwrap()).collect() };
    for (row, sample) in [(&rows[1], &first), (&rows[5], &last)] {
        let (a, b) = (values(row), values(sample.lines().nth(1).unwrap()));
        let diff = kiln_infer::numeric::max_abs_diff(&a, &b);
        assert!(diff <= 1e-6, "{row} vs {sample}: {diff}");
    }
    let images = fixture("tiny-image-generator.onnx");
    let png = dir.path().join("strip.png");
    kiln()
        .args([
            "interpolate",
            images.to_str().unwrap(),
            "--from",
            "1",
            "--to",
            "2",
            "-o",
            png.to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(image_size(&png), (10 * (8 + 2) + 2, 8 + 2 + 2), "one row of 10 steps");
}

#[test]
fn generator_errors_are_one_clear_line() {
    let points = fixture("tiny-points-generator.onnx");
    let points = points.to_str().unwrap();
    let images = fixture("tiny-image-generator.onnx");
    let images = images.to_str().unwrap();
    let seed = seed_model();
    let seed = seed.to_str().unwrap();
    fails(&["sample", points, "-n", "0"], "-n must be at least 1");
    fails(&["sample", images], "these samples are images: write them with -o FILE.png");
    fails(&["sample", points, "-o", "no/such/dir/s.csv"], "cannot write no/such/dir/s.csv");
    fails(&["sample", points, "-o", "s.txt"], "must end in .png, .csv or .npy");
    fails(&["sample", points, "-o", "s.png"], "are not images: write .csv or .npy");
    fails(
        &["interpolate", points, "--from", "1", "--to", "2", "--steps", "1", "-o", "s.csv"],
        "--steps must be at least 2",
    );
    fails(&["sample", seed], "it is a next-word model, and this needs a generator model");
    fails(&["predict", points, "i"], "it is a generator model, and this needs a next-word model");
    fails(&["generate", images, "i"], "it is a generator model");
    assert!(!std::path::Path::new("s.png").exists() && !std::path::Path::new("s.txt").exists());
    kiln()
        .args(["info", images, "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"output_shape\": [\n    1,\n    8,\n    8\n  ]"));
}

#[test]
fn sample_saves_the_noise_it_fed_to_the_generator() {
    let points = fixture("tiny-points-generator.onnx");
    let points = points.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (z3, z2) = (dir.path().join("z3.csv"), dir.path().join("z2.csv"));
    let s3 = stdout_of(&["sample", points, "-n", "3", "--seed", "3", "--save-noise", z3.to_str().unwrap()]);
    let s2 = stdout_of(&["sample", points, "-n", "2", "--seed", "3", "--save-noise", z2.to_str().unwrap()]);
    let (z3, z2) = (std::fs::read_to_string(z3).unwrap(), std::fs::read_to_string(z2).unwrap());
    let latent = z3.lines().nth(1).unwrap().split(',').count();
    assert_eq!(z3.lines().count(), 1 + 3, "a header and one row per sample: {z3}");
    assert!(z3.lines().skip(1).all(|row| row.split(',').count() == latent));
    // Fewer samples from the same seed: the same first noise rows and the same first samples
    // (up to rounding: tract's kernels for other batch sizes, or for a batch cut across
    // threads, may round the last bit otherwise).
    assert!(z3.starts_with(&z2), "{z2} / {z3}");
    let values = |csv: &str| -> Vec<f32> {
        csv.lines().skip(1).flat_map(|l| l.split(',').map(|v| v.parse::<f32>().unwrap())).collect::<Vec<_>>()
    };
    let (v3, v2) = (values(&s3), values(&s2));
    assert!(v2.len() == 4 && v2.iter().zip(&v3).all(|(a, b)| (a - b).abs() <= 1e-6), "{s2} / {s3}");
    // The stream is kiln_infer::noise::normal's: its golden first values for seed 3
    // (infer/src/noise.rs, computed on x86_64 when that module was written).
    let first: Vec<f32> = z3.lines().nth(1).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(first[..2], [0.84869134, 0.4756522]);
    fails(
        &["sample", points, "--save-noise", "z.png"],
        "--save-noise writes vectors: give a .npy or .csv file",
    );
    assert!(!std::path::Path::new("z.png").exists());
    // A command that fails on its samples leaves no noise file either.
    let z = dir.path().join("z.npy");
    fails(
        &["sample", points, "-o", "s.txt", "--save-noise", z.to_str().unwrap()],
        "must end in .png, .csv or .npy",
    );
    assert!(!z.exists());
}

#[test]
fn bench_times_as_many_calls_as_asked_and_reports_consistent_figures() {
    let seed = seed_model();
    let points = fixture("tiny-points-generator.onnx");
    for (model, batch, kind, unit) in [
        (seed.to_str().unwrap(), 3, "next-word", "predictions"),
        (points.to_str().unwrap(), 5, "generator", "samples"),
    ] {
        let out = stdout_of(&[
            "bench",
            model,
            "--batch",
            &batch.to_string(),
            "--iters",
            "7",
            "--warmup",
            "2",
            "--json",
        ]);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!((r["kind"].as_str(), r["unit"].as_str()), (Some(kind), Some(unit)), "{r}");
        assert_eq!(
            (r["iters"].as_u64(), r["batch"].as_u64(), r["warmup"].as_u64()),
            (Some(7), Some(batch), Some(2))
        );
        let l = &r["latency"];
        let f = |k: &str| l[k].as_f64().unwrap();
        assert!(0.0 < f("min_ms") && f("min_ms") <= f("p50_ms") && f("p50_ms") <= f("p99_ms"), "{l}");
        assert!(
            f("p99_ms") <= f("max_ms") && f("min_ms") <= f("mean_ms") && f("mean_ms") <= f("max_ms"),
            "{l}"
        );
        // Throughput is the batch over the mean call time.
        let expected = batch as f64 / (f("mean_ms") / 1e3);
        let per_second = r["per_second"].as_f64().unwrap();
        assert!((per_second / expected - 1.0).abs() < 1e-6, "{per_second} vs {expected}");
        assert!(r["load_ms"].as_f64().unwrap() > 0.0);
        assert!(r["first_call_ms"].as_f64().unwrap() > 0.0);
    }
    let text = stdout_of(&["bench", seed.to_str().unwrap(), "--iters", "5"]);
    assert!(text.contains("latency:    p50 ") && text.contains("throughput: "), "{text}");
    fails(&["bench", seed.to_str().unwrap(), "--iters", "0"], "--iters must be at least 1");
    fails(&["bench", seed.to_str().unwrap(), "--batch", "0"], "--batch must be at least 1");
    fails(&["bench", "no-such-model.onnx"], "cannot read no-such-model.onnx");
    // A next-word call predicts the next word; --every-position times scoring every position
    // instead, for the models whose files score every position.
    let next = stdout_of(&["bench", &coin(), "--iters", "3"]);
    assert!(next.contains("→ next-word logits over"), "{next}");
    let every = stdout_of(&["bench", &coin(), "--iters", "3", "--every-position"]);
    assert!(every.contains("→ logits at every position over"), "{every}");
    fails(
        &["bench", seed.to_str().unwrap(), "--every-position"],
        "--every-position is for models that score every position; this one scores the last position only",
    );
    fails(
        &["bench", points.to_str().unwrap(), "--every-position"],
        "--every-position is for next-word models",
    );
}

/// The coin fixture predicts `<eos>` 0.4, "la" 0.4, "fa" 0.2 after anything (its LSTM is zero).
fn coin() -> String {
    fixture("tiny-coin-stream.onnx").to_str().unwrap().to_string()
}

#[test]
fn score_reads_a_text_as_one_stream_with_line_ends() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    // Read as <eos> la la fa <eos> la <eos> (the empty line is skipped): six predictions.
    std::fs::write(&text, "La la fa\n\nla\n").unwrap();
    let out = kiln().args(["score", &coin(), text.to_str().unwrap(), "--json"]).assert().success();
    let s: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        (s["predictions"].as_u64(), s["line_ends"].as_u64(), s["unknown"].as_u64()),
        (Some(6), Some(2), Some(0))
    );
    let want = -(5.0 * 0.4f64.ln() + 0.2f64.ln()) / 6.0;
    let got = s["cross_entropy"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-6, "cross-entropy {got}, want {want}");
    assert!((s["perplexity"].as_f64().unwrap() - want.exp()).abs() < 1e-5);
    // A word the vocabulary lacks is scored as <unk> and counted.
    std::fs::write(&text, "la zebra").unwrap();
    let out = kiln().args(["score", &coin(), text.to_str().unwrap()]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("predictions:   3 (2 words, 1 line ends); 1 words read as <unk>"), "{stdout}");
    fails(&["score", &coin(), "no/such.txt"], "cannot read no/such.txt");
    std::fs::write(&text, "\n\n").unwrap();
    fails(&["score", &coin(), text.to_str().unwrap()], "nothing to predict");
    fails(&["score", seed_model().to_str().unwrap(), "no/such.txt"], "cannot read no/such.txt");
}

#[test]
fn generate_ends_at_the_end_of_the_line_unless_told_not_to() {
    // P(no <eos> in 1000 draws) = 0.6^1000: the line ends long before -n runs out.
    let out = kiln().args(["generate", &coin(), "la", "-n", "1000", "--seed", "5"]).assert().success();
    let line = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(line.lines().count(), 1, "{line:?}");
    assert!(line.split_whitespace().count() < 1000, "{line:?}");
    assert!(line.split_whitespace().all(|w| w == "la" || w == "fa"), "{line:?}");
    // --no-stop: 200 words, line ends printed as line breaks.
    let out =
        kiln().args(["generate", &coin(), "la", "-n", "200", "--seed", "5", "--no-stop"]).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let words = stdout.split_whitespace().count();
    let breaks = stdout.matches('\n').count() - 1; // the last newline ends the output
    assert_eq!(words + breaks, 200, "{stdout:?}");
    assert!(breaks > 40, "{breaks} line ends in 200 draws at p = 0.4");
    // The library stops the same way, on the same words.
    let m = kiln_infer::NextWordModel::load(coin(), &Default::default()).unwrap();
    let options = kiln_infer::next_word::GenerateOptions { words: 1000, seed: 5, ..Default::default() };
    assert_eq!(m.generate("la", &options).unwrap().words.join(" "), line.trim_end());
}

#[test]
fn a_file_whose_length_says_nothing_is_read_as_a_pipe() {
    // `/proc` files are regular files of length 0 that give bytes when read.
    if std::path::Path::new("/proc/self/status").exists() {
        fails(
            &["info", "/proc/self/status"],
            "/proc/self/status is not a model tract can load: failed to decode",
        );
    }
}

#[test]
fn files_beyond_the_size_limit_are_refused_without_reading_them_whole() {
    let start = std::time::Instant::now();
    fails(&["info", "/dev/zero"], "/dev/zero has more than 100000000 bytes");
    assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
    fails(&["info", "/dev/zero", "--max-model-mb", "1"], "more than 1000000 bytes, the most a model may have unless the limit is raised (--max-model-mb raises it)");
    let seed = seed_model();
    fails(&["predict", seed.to_str().unwrap(), "i", "--max-nodes", "3"], "more than 3 graph nodes");
    fails(&["sample", &coin(), "--max-model-mb", "0"], "more than 0 bytes");
    // A text to score and a vocabulary are bounded too (both were read until memory ran out).
    let start = std::time::Instant::now();
    fails(
        &["score", seed.to_str().unwrap(), "/dev/zero"],
        "/dev/zero holds more than the 1000 MB of text kiln scores at once",
    );
    let torch = fixture("seed_lstm_torch.onnx");
    fails(
        &["predict", torch.to_str().unwrap(), "i like", "--vocab", "/dev/zero", "--max-model-mb", "1"],
        "cannot read /dev/zero: it holds more than 1 MB, the most a model file may hold",
    );
    assert!(start.elapsed().as_secs_f64() < 20.0, "{:?}", start.elapsed());
}

#[test]
fn files_without_logits_all_are_scored_a_word_at_a_time() {
    // The shipped seed model predates logits_all; from a zero state, its first two predictions
    // are what `predict` gives for "i" and "i like".
    let m = kiln_infer::NextWordModel::load(seed_model(), &Default::default()).unwrap();
    let p = |prompt: &str, word: &str| {
        let top = m.predict(prompt, 9).unwrap().top;
        top.iter().find(|w| w.word == word).unwrap().probability as f64
    };
    let want = -(p("i", "like").ln() + p("i like", "dog").ln()) / 2.0;
    let s = m.score("i like dog").unwrap();
    assert_eq!((s.predictions, s.line_ends), (2, 0));
    assert!((s.cross_entropy - want).abs() < 1e-5, "{} vs {want}", s.cross_entropy);
}

#[test]
fn calls_too_large_for_memory_are_refused_before_anything_is_allocated() {
    // 10^8 noise vectors, or windows, would take gigabytes: refused at once, with the limit.
    let start = std::time::Instant::now();
    let points = fixture("tiny-points-generator.onnx");
    let points = points.to_str().unwrap();
    let too_large = "more than the 1000 MB a call may use unless the limit is raised: use a smaller batch (--max-call-mb raises it)";
    fails(&["bench", points, "--batch", "100000000"], too_large);
    fails(&["bench", &coin(), "--batch", "100000000"], too_large);
    assert!(start.elapsed().as_secs_f64() < 5.0, "{:?}", start.elapsed());
    // The limit is the flag's: a small batch passes by default and is refused under 0 MB.
    kiln().args(["bench", points, "--batch", "64", "--iters", "2"]).assert().success();
    fails(&["bench", points, "--batch", "64", "--max-call-mb", "0"], "more than the 0 MB a call may use");
    fails(&["sample", points, "-n", "3", "--max-call-mb", "0"], "more than the 0 MB a call may use");
}

#[test]
fn noise_is_never_written_over_the_samples() {
    let dir = tempfile::tempdir().unwrap();
    let points = fixture("tiny-points-generator.onnx");
    let points = points.to_str().unwrap();
    let out = dir.path().join("x.csv");
    let out = out.to_str().unwrap();
    let same = "--save-noise and -o name the same file";
    fails(&["sample", points, "-n", "3", "-o", out, "--save-noise", out], same);
    // The same file under another spelling, before it exists…
    let dotted = format!("{}/./x.csv", dir.path().display());
    fails(&["sample", points, "-n", "3", "-o", out, "--save-noise", &dotted], same);
    assert!(!std::path::Path::new(out).exists(), "a refused command wrote {out}");
    // …and after.
    kiln().args(["sample", points, "-n", "3", "-o", out]).assert().success();
    fails(&["interpolate", points, "--from", "1", "--to", "2", "-o", &dotted, "--save-noise", out], same);
}

#[test]
fn generating_no_words_is_refused_as_sampling_none_is() {
    let seed = seed_model();
    fails(&["generate", seed.to_str().unwrap(), "i", "-n", "0"], "invalid option: -n must be at least 1");
    // Collected for JSON, the words are bounded; as text they stream (checked by the other tests).
    fails(
        &["generate", seed.to_str().unwrap(), "i", "-n", "100000000", "--json"],
        "invalid option: -n must be at most 100000 when the words are collected",
    );
}

#[test]
fn a_failing_command_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let points = fixture("tiny-points-generator.onnx");
    let points = points.to_str().unwrap();
    let out = dir.path().join("x.npy");
    let out = out.to_str().unwrap();
    // The noise cannot be written: the samples must not be either.
    let nowhere = dir.path().join("no/such/folder/z.npy");
    fails(
        &["sample", points, "-n", "300", "-o", out, "--save-noise", nowhere.to_str().unwrap()],
        "cannot write",
    );
    // A grid too large for a PNG is refused before anything runs.
    let image = fixture("tiny-image-generator.onnx");
    let png = dir.path().join("x.png");
    fails(
        &["sample", image.to_str().unwrap(), "-n", "1000000", "-o", png.to_str().unwrap()],
        "more than the 4096×4096 a grid may be: write .npy or .csv",
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "files were left behind");
}

#[test]
fn samples_stream_to_their_file_in_chunks_as_one_draw() {
    // 600 samples are written 256 at a time; the file must hold the same values as 600 drawn
    // at once, and the first 3 must be what `-n 3` gives.
    let dir = tempfile::tempdir().unwrap();
    let points = fixture("tiny-points-generator.onnx");
    let points = points.to_str().unwrap();
    let (many, few) = (dir.path().join("many.csv"), dir.path().join("few.csv"));
    kiln()
        .args(["sample", points, "-n", "600", "--seed", "4", "-o", many.to_str().unwrap()])
        .assert()
        .success();
    kiln().args(["sample", points, "-n", "3", "--seed", "4", "-o", few.to_str().unwrap()]).assert().success();
    let many = std::fs::read_to_string(many).unwrap();
    let few = std::fs::read_to_string(few).unwrap();
    assert_eq!(many.lines().count(), 601);
    let head: Vec<&str> = many.lines().take(4).collect();
    assert_eq!(head, few.lines().collect::<Vec<_>>());
    // The same noise through the generator in one call of 600.
    let g = kiln_infer::GeneratorModel::load(fixture("tiny-points-generator.onnx")).unwrap();
    let latent = g.meta().latent;
    let z = kiln_infer::ndarray::Array2::from_shape_vec(
        (600, latent),
        kiln_infer::noise::normal(4, 600 * latent),
    )
    .unwrap();
    let whole = kiln_infer::samples::Samples::new(g.generate(z.view()).unwrap()).to_csv();
    assert_eq!(many, whole);
}

#[test]
fn an_interrupted_sample_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let fashion = repo("models/fashion-dcgan.onnx");
    let out = dir.path().join("x.npy");
    let noise = dir.path().join("z.csv");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("sample")
        .arg(&fashion)
        .args(["-n", "1000000", "-o"])
        .arg(&out)
        .arg("--save-noise")
        .arg(&noise)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is writing (its temporary files exist), then interrupt it.
    let start = std::time::Instant::now();
    while std::fs::read_dir(dir.path()).unwrap().count() < 2 {
        assert!(start.elapsed().as_secs() < 60, "kiln never started writing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
