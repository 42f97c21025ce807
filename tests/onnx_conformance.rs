//! Conformance with tools we did not write: every exported file passes
//! `onnx.checker.check_model(full_check=True)`, and onnxruntime's outputs match tch's.

mod common;

use std::path::Path;
use std::process::Command;

use kiln_train::lm::{train, LmOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// Runs `onnx.checker` (full check) and onnxruntime on `model`; returns the outputs by name.
fn onnxruntime(model: &Path, inputs: serde_json::Value) -> serde_json::Value {
    let file = model.with_extension("inputs.json");
    std::fs::write(&file, inputs.to_string()).unwrap();
    let out = Command::new(common::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onnx_conformance.py"))
        .arg(model)
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}: onnx checker or onnxruntime failed:\n{}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(outcome: &LmOutcome, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join(format!("{name}.onnx"));
    let cfg = &outcome.model.config;
    kiln_train::lm::export::write_onnx(&outcome.vs, cfg, &outcome.meta, &model).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (batch, seq) in [(1i64, 2i64), (7, 13)] {
        let tokens: Vec<i64> = (0..batch * seq).map(|_| rng.random_range(0..cfg.vocab)).collect();
        let h0 = Tensor::randn([cfg.layers, batch, cfg.hidden], (Kind::Float, tch::Device::Cpu)) * 0.5;
        let c0 = Tensor::randn([cfg.layers, batch, cfg.hidden], (Kind::Float, tch::Device::Cpu)) * 0.5;
        let state = [cfg.layers, batch, cfg.hidden];
        let ort = onnxruntime(
            &model,
            serde_json::json!({
                "tokens": {"dtype": "int64", "shape": [batch, seq], "data": tokens},
                "h0": {"dtype": "float32", "shape": state, "data": common::to_vec(&h0)},
                "c0": {"dtype": "float32", "shape": state, "data": common::to_vec(&c0)},
            }),
        );
        let x = Tensor::from_slice(&tokens).view([batch, seq]);
        let (every, _) =
            tch::no_grad(|| outcome.model.forward_all(&x, &(h0.shallow_clone(), c0.shallow_clone()), false));
        let (logits, (hn, cn)) = tch::no_grad(|| outcome.model.forward(&x, Some(&(h0, c0)), false));
        for (what, t) in [("logits", &logits), ("hn", &hn), ("cn", &cn), ("logits_all", &every)] {
            let got: Vec<f32> = serde_json::from_value(ort[what].clone()).unwrap();
            let d = common::max_diff(&got, &common::to_vec(t));
            assert!(
                d <= 1e-4,
                "{name}: onnxruntime's {what} differ from tch's by {d} (batch {batch}, seq {seq})"
            );
        }
    }
}

#[test]
fn seed_model_passes_onnx_checker_and_matches_onnxruntime() {
    let mut run = common::seed_run(1);
    run.train.epochs = 100;
    check(&train(&run).unwrap(), "seed");
}

#[test]
fn two_layer_stream_models_pass_onnx_checker_and_match_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, common::random_corpus(9, 25, 150)).unwrap();
    check(&train(&common::corpus_run(corpus.clone(), 6, 12, 2, 4, 1)).unwrap(), "two-layer");
    check(&train(&common::corpus_run(corpus, 12, 12, 2, 4, 1)).unwrap(), "two-layer-tied");
}

/// Generators: random weights, checked by onnx and onnxruntime
/// against tract's answers for the same file.
#[test]
fn generators_pass_onnx_checker_and_onnxruntime_agrees_with_tract() {
    use kiln_export::layers::{Activation, BatchNorm, ConvTranspose2d, Linear};
    use kiln_export::GenLayer;
    use kiln_infer::contract::GeneratorMeta;
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut v = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-0.5f32..0.5)).collect() };
    let bn = |c: usize, v: &mut dyn FnMut(usize) -> Vec<f32>| BatchNorm {
        channels: c,
        gamma: v(c).iter().map(|x| 1.0 + x).collect(),
        beta: v(c),
        running_mean: v(c),
        running_var: v(c).iter().map(|x| 1.0 + x).collect(),
        eps: 1e-5,
    };
    let stack = vec![
        GenLayer::Linear(Linear { inputs: 5, outputs: 3 * 4 * 4, weight: v(5 * 48), bias: v(48) }),
        GenLayer::BatchNorm(bn(48, &mut v)),
        GenLayer::Activation(Activation::LeakyRelu { alpha: 0.2 }),
        GenLayer::Reshape(vec![3, 4, 4]),
        GenLayer::ConvTranspose(ConvTranspose2d {
            in_channels: 3,
            out_channels: 2,
            kernel: 4,
            stride: 2,
            padding: 1,
            weight: v(3 * 2 * 16),
            bias: Some(v(2)),
        }),
        GenLayer::BatchNorm(bn(2, &mut v)),
        GenLayer::Activation(Activation::Relu),
        GenLayer::ConvTranspose(ConvTranspose2d {
            in_channels: 2,
            out_channels: 1,
            kernel: 4,
            stride: 2,
            padding: 1,
            weight: v(2 * 16),
            bias: None,
        }),
        GenLayer::Activation(Activation::Tanh),
    ];
    let meta = GeneratorMeta {
        latent: 5,
        output_shape: vec![1, 16, 16],
        value_range: [-1.0, 1.0],
        dataset: "test".into(),
        train_config: serde_json::Value::Null,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.onnx");
    kiln_export::write_model(&kiln_export::generator_model(&stack, &meta).unwrap(), &path).unwrap();
    let g = kiln_infer::GeneratorModel::load(&path).unwrap();
    for batch in [1usize, 16] {
        let z = v(batch * 5);
        let ort = onnxruntime(
            &path,
            serde_json::json!({"z": {"dtype": "float32", "shape": [batch, 5], "data": z}}),
        );
        let got: Vec<f32> = serde_json::from_value(ort["samples"].clone()).unwrap();
        let z = kiln_infer::ndarray::Array2::from_shape_vec((batch, 5), z).unwrap();
        let d = common::max_diff(&got, &g.generate(z.view()).unwrap().iter().copied().collect::<Vec<_>>());
        assert!(d <= 1e-4, "batch {batch}: onnxruntime and tract differ by {d}");
    }
}

/// A trained DCGAN's exported generator: onnx's full check, and onnxruntime agrees with tch
/// (BatchNorm in eval mode) at batch 1 and 16.
#[test]
fn dcgan_generator_passes_onnx_checker_and_matches_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dcgan.onnx");
    let outcome = common::tiny_dcgan(28, 1, path.clone());
    for batch in [1i64, 16] {
        let z = Tensor::randn([batch, 8], (Kind::Float, tch::Device::Cpu));
        let ort = onnxruntime(
            &path,
            serde_json::json!({"z": {"dtype": "float32", "shape": [batch, 8], "data": common::to_vec(&z)}}),
        );
        let got: Vec<f32> = serde_json::from_value(ort["samples"].clone()).unwrap();
        let d = common::max_diff(&got, &common::to_vec(&outcome.generate(&z)));
        assert!(d <= 1e-4, "batch {batch}: onnxruntime and tch differ by {d}");
    }
}
