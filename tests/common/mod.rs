//! Helpers shared by the cross-crate tests.
#![allow(dead_code)]

use std::path::PathBuf;

use kiln_infer::contract::TokenizerSpec;
use kiln_train::corpus::VocabOptions;
use kiln_train::lm::{InputKind, LmConfig};
use kiln_train::train_lm::{LmRun, LogStyle, Schedule, Source, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The seed preset, as `kiln-train lm --preset seed` sets it up.
pub fn seed_run(seed: u64) -> LmRun {
    LmRun {
        model: LmConfig {
            vocab: 0,
            input: InputKind::OneHot,
            hidden: 5,
            layers: 1,
            dropout: 0.0,
            context: 2,
        },
        train: TrainConfig {
            source: Source::Seed,
            tokenizer: TokenizerSpec { lowercase: true, split_punctuation: false },
            vocab: VocabOptions { min_count: 1, max_vocab: None },
            lr: 0.01,
            epochs: 500,
            batch_size: None,
            clip: None,
            valid_fraction: 0.0,
            schedule: Schedule::Constant,
            seed,
        },
        device: tch::Device::Cpu,
        out: None,
        checkpoint: None,
        checkpoint_every: 1,
        log: LogStyle::Quiet,
    }
}

/// A general run on `corpus` (embedding input).
pub fn corpus_run(
    corpus: PathBuf,
    embed: i64,
    hidden: i64,
    layers: i64,
    context: i64,
    epochs: usize,
) -> LmRun {
    LmRun {
        model: LmConfig {
            vocab: 0,
            input: InputKind::Embedding { dim: embed },
            hidden,
            layers,
            dropout: 0.0,
            context,
        },
        train: TrainConfig {
            source: Source::Corpus(corpus),
            tokenizer: TokenizerSpec::default(),
            vocab: VocabOptions { min_count: 1, max_vocab: None },
            lr: 0.005,
            epochs,
            batch_size: Some(128),
            clip: Some(5.0),
            valid_fraction: 0.1,
            schedule: Schedule::Cosine,
            seed: 1,
        },
        device: tch::Device::Cpu,
        out: None,
        checkpoint: None,
        checkpoint_every: 1,
        log: LogStyle::Quiet,
    }
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

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
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
pub fn tiny_dcgan(size: i64, channels: i64, out: PathBuf) -> kiln_train::train_gan::GanOutcome {
    use kiln_train::dcgan::DcganConfig;
    use kiln_train::image_data::ImageSet;
    use kiln_train::train_gan::{
        train_from_loaded, GanArch, GanLog, GanLoss, GanRun, GanTrainConfig, TrainData,
    };
    tch::manual_seed(size * 10 + channels);
    let images =
        tch::Tensor::rand([40, channels, size, size], (tch::Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
    let data = TrainData::Images(ImageSet { images, labels: None, skipped: 0 });
    let run = GanRun {
        model: GanArch::Dcgan(DcganConfig { latent: 8, channels, size, g_width: 4, d_width: 4 }),
        train: GanTrainConfig {
            data: "random".into(),
            folder: None,
            loss: GanLoss::NonSaturating,
            lr: 2e-4,
            d_lr: None,
            beta1: 0.5,
            batch: 8,
            steps_per_epoch: Some(5),
            epochs: 1,
            schedule: kiln_train::train_lm::Schedule::Constant,
            r1: 0.0,
            d_steps: 1,
            ema: 0.0,
            seed: 1,
        },
        device: tch::Device::Cpu,
        out: Some(out),
        checkpoint: None,
        log_dir: None,
        log: GanLog::Quiet,
    };
    train_from_loaded(&run, &data).unwrap()
}
