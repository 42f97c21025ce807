//! tch → our ONNX export → tract: the same numbers, for the seed model and a 2-layer embedding
//! model, on random token batches and random initial states.

mod common;

use kiln_infer::next_word::{LoadOptions, NextWordModel};
use kiln_train::train_lm::{train_lm, LmOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

const TOL: f32 = 1e-4;

fn compare(outcome: &LmOutcome, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    let cfg = &outcome.model.config;
    kiln_train::export::export_next_word(&outcome.vs, cfg, &outcome.meta, &path).unwrap();
    let tract = NextWordModel::load(&path, &LoadOptions::default()).unwrap();
    let (layers, hidden, vocab) = (cfg.layers, cfg.hidden, cfg.vocab);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for batch in [1i64, 7] {
        for seq in [1i64, 2, 13] {
            let tokens: Vec<i64> = (0..batch * seq).map(|_| rng.random_range(0..vocab)).collect();
            let h0 = Tensor::randn([layers, batch, hidden], (Kind::Float, tch::Device::Cpu)) * 0.5;
            let c0 = Tensor::randn([layers, batch, hidden], (Kind::Float, tch::Device::Cpu)) * 0.5;
            let x = Tensor::from_slice(&tokens).view([batch, seq]);
            let (logits, (hn, cn)) = tch::no_grad(|| {
                outcome.model.forward(&x, Some(&(h0.shallow_clone(), c0.shallow_clone())), false)
            });
            let (h0v, c0v) = (common::to_vec(&h0), common::to_vec(&c0));
            let got = tract.run_ids(&tokens, batch as usize, seq as usize, Some((&h0v, &c0v))).unwrap();
            for (what, a, b) in [("logits", &got.logits, &logits), ("hn", &got.hn, &hn), ("cn", &got.cn, &cn)]
            {
                let d = common::max_diff(a, &common::to_vec(b));
                assert!(d <= TOL, "{name}: {what} differ by {d} at batch {batch}, seq {seq}");
            }

            // Word by word with the state carried gives the full sequence's answer.
            let mut state = (h0v.clone(), c0v.clone());
            let mut last = None;
            for t in 0..seq as usize {
                let col: Vec<i64> = (0..batch as usize).map(|b| tokens[b * seq as usize + t]).collect();
                let out = tract.run_ids(&col, batch as usize, 1, Some((&state.0, &state.1))).unwrap();
                state = (out.hn.clone(), out.cn.clone());
                last = Some(out);
            }
            let stepped = last.unwrap();
            let d = common::max_diff(&stepped.logits, &got.logits);
            assert!(d <= TOL, "{name}: stepping differs from the full run by {d} (batch {batch}, seq {seq})");
            assert!(common::max_diff(&stepped.hn, &got.hn) <= TOL);
        }
    }
}

#[test]
fn seed_model_round_trips() {
    let mut run = common::seed_run(0);
    run.train.epochs = 200;
    compare(&train_lm(&run).unwrap(), "seed");
}

#[test]
fn two_layer_embedding_model_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, common::random_corpus(3, 30, 200)).unwrap();
    let run = common::corpus_run(corpus, 8, 16, 2, 3, 2);
    let outcome = train_lm(&run).unwrap();
    assert_eq!(outcome.model.config.layers, 2);
    compare(&outcome, "two-layer");
}
