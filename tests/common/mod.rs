//! Helpers shared by the cross-crate tests.
#![allow(dead_code)]

use std::path::PathBuf;

use kiln_train::lm::{LmOptions, LmRun};
use kiln_train::optim::Schedule;
use kiln_train::run::LogStyle;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The seed preset, as `kiln-train lm --preset seed` sets it up, with training seed `seed` and
/// no output.
pub fn seed_run(seed: u64) -> LmRun {
    let mut run = LmRun::seed_preset();
    run.train.seed = seed;
    run.log = LogStyle::Quiet;
    run
}

/// A run on `corpus` with the corpus defaults (stream protocol) but for these: `bptt` words
/// per window, weights tied when `embed` = `hidden`, Adam at 0.005 (quick to learn a small text).
pub fn corpus_run(corpus: PathBuf, embed: i64, hidden: i64, layers: i64, bptt: i64, epochs: usize) -> LmRun {
    let options = LmOptions {
        corpus: Some(corpus),
        embed: Some(embed),
        hidden: Some(hidden),
        layers: Some(layers),
        bptt: Some(bptt),
        tie_weights: Some(embed == hidden),
        epochs: Some(epochs),
        optimizer: Some(kiln_train::optim::Method::Adam),
        lr: Some(0.005),
        batch_size: Some(8),
        schedule: Some(Schedule::Cosine),
        seed: Some(1),
        ..Default::default()
    };
    let mut run = options.resolve(tch::Device::Cpu).expect("a valid configuration");
    run.log = LogStyle::Quiet;
    run
}

/// A small text of random "sentences" over `words` words, one per line.
pub fn random_corpus(seed: u64, words: usize, lines: usize) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..lines)
        .map(|_| {
            let len = rng.random_range(4..20);
            (0..len).map(|_| format!("w{}", rng.random_range(0..words))).collect::<Vec<_>>().join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The largest absolute difference; NaN when either side holds one (see
/// [`kiln_infer::numeric::max_abs_diff`]), so `d <= tol` fails on NaN.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    kiln_infer::numeric::max_abs_diff(a, b)
}

pub fn to_vec(t: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_device(tch::Device::Cpu).contiguous().view(-1)).expect("float tensor")
}

/// The Python with onnx and onnxruntime that `cargo xtask bootstrap` installed.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".deps/venv/bin/python");
    assert!(
        p.exists(),
        "no Python with onnx/onnxruntime: run `cargo xtask bootstrap` (or `cargo xtask test`)"
    );
    p
}

/// A small DCGAN trained for a few steps on random `channels`×`size`×`size` images (enough for
/// BatchNorm's running statistics to move away from 0 and 1), exported to `out`.
pub fn tiny_dcgan(size: i64, channels: i64, out: PathBuf) -> kiln_train::gan::GanOutcome {
    use kiln_train::gan::data::images::ImageSet;
    use kiln_train::gan::{train_on, GanOptions, TrainData};
    tch::manual_seed(size * 10 + channels);
    let images =
        tch::Tensor::rand([40, channels, size, size], (tch::Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
    let data = TrainData::Images(ImageSet { images, labels: None, skipped: 0 });
    let options = GanOptions {
        data: "random".into(),
        latent: Some(8),
        g_width: Some(4),
        d_width: Some(4),
        batch: Some(8),
        steps_per_epoch: Some(5),
        epochs: Some(1),
        seed: Some(1),
        out: Some(out),
        ..Default::default()
    };
    let mut run = options.resolve(&data, tch::Device::Cpu).unwrap();
    (run.checkpoint, run.log_dir, run.log) = (None, None, LogStyle::Quiet);
    train_on(&run, &data).unwrap()
}
