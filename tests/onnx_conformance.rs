//! Conformance with tools we did not write: every exported file passes
//! `onnx.checker.check_model(full_check=True)`, and onnxruntime's outputs match tch's.

mod common;

use std::process::Command;

use kiln_train::train_lm::{train_lm, LmOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

fn check(outcome: &LmOutcome, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join(format!("{name}.onnx"));
    let cfg = &outcome.model.config;
    kiln_train::export::export_next_word(&outcome.vs, cfg, &outcome.meta, &model).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (batch, seq) in [(1i64, 2i64), (7, 13)] {
        let tokens: Vec<i64> = (0..batch * seq).map(|_| rng.random_range(0..cfg.vocab)).collect();
        let h0 = Tensor::randn([cfg.layers, batch, cfg.hidden], (Kind::Float, tch::Device::Cpu)) * 0.5;
        let c0 = Tensor::randn([cfg.layers, batch, cfg.hidden], (Kind::Float, tch::Device::Cpu)) * 0.5;
        let inputs = dir.path().join("inputs.json");
        let json = serde_json::json!({
            "tokens": tokens, "batch": batch, "seq": seq, "layers": cfg.layers, "hidden": cfg.hidden,
            "h0": common::to_vec(&h0), "c0": common::to_vec(&c0),
        });
        std::fs::write(&inputs, json.to_string()).unwrap();
        let out = Command::new(common::python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onnx_conformance.py"))
            .arg(&model)
            .arg(&inputs)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "{name}: onnx checker or onnxruntime failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ort: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let x = Tensor::from_slice(&tokens).view([batch, seq]);
        let (logits, (hn, cn)) = tch::no_grad(|| outcome.model.forward(&x, Some(&(h0, c0)), false));
        for (what, t) in [("logits", &logits), ("hn", &hn), ("cn", &cn)] {
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
    check(&train_lm(&run).unwrap(), "seed");
}

#[test]
fn two_layer_embedding_model_passes_onnx_checker_and_matches_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, common::random_corpus(9, 25, 150)).unwrap();
    check(&train_lm(&common::corpus_run(corpus, 6, 12, 2, 4, 1)).unwrap(), "two-layer");
}
