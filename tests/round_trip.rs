//! tch → our ONNX export → tract: the same numbers (last-position logits, every position's
//! logits, the state) for the seed model and stream-trained 2-layer embedding models (tied and
//! untied), on random token batches and random initial states.

mod common;

use kiln_infer::ndarray::{Array2, Array3};
use kiln_infer::next_word::State;
use kiln_infer::{LoadOptions, NextWordModel};
use kiln_train::lm::{train, LmOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

const TOL: f32 = 1e-4;

fn compare(outcome: &LmOutcome, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    let cfg = &outcome.model.config;
    kiln_train::lm::export::write_onnx(&outcome.vs, cfg, &outcome.meta, &path).unwrap();
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
            let (every, _) = tch::no_grad(|| {
                outcome.model.forward_all(&x, &(h0.shallow_clone(), c0.shallow_clone()), false)
            });
            let dims = (layers as usize, batch as usize, hidden as usize);
            let state0 = State {
                h: Array3::from_shape_vec(dims, common::to_vec(&h0)).unwrap(),
                c: Array3::from_shape_vec(dims, common::to_vec(&c0)).unwrap(),
            };
            let ids = Array2::from_shape_vec((batch as usize, seq as usize), tokens.clone()).unwrap();
            let got = tract.run(ids.view(), Some(&state0)).unwrap();
            let got_state = got.state.clone().unwrap();
            let flat = |a: &[f32]| a.to_vec();
            for (what, a, b) in [
                ("logits", got.logits.as_slice().unwrap(), &logits),
                ("hn", got_state.h.as_slice().unwrap(), &hn),
                ("cn", got_state.c.as_slice().unwrap(), &cn),
            ] {
                let d = common::max_diff(&flat(a), &common::to_vec(b));
                assert!(d <= TOL, "{name}: {what} differ by {d} at batch {batch}, seq {seq}");
            }
            let all = got.logits_all.as_ref().expect("kiln's export writes logits_all");
            let d = common::max_diff(all.view().as_slice().unwrap(), &common::to_vec(&every));
            assert!(d <= TOL, "{name}: logits_all differ by {d} at batch {batch}, seq {seq}");

            // Word by word with the state carried gives the full sequence's answer.
            let mut state = state0;
            let mut last = None;
            for t in 0..seq as usize {
                let col = ids.column(t).to_owned().into_shape_with_order((batch as usize, 1)).unwrap();
                let out = tract.run(col.view(), Some(&state)).unwrap();
                state = out.state.clone().unwrap();
                last = Some(out);
            }
            let stepped = last.unwrap();
            let d = common::max_diff(stepped.logits.as_slice().unwrap(), got.logits.as_slice().unwrap());
            assert!(d <= TOL, "{name}: stepping differs from the full run by {d} (batch {batch}, seq {seq})");
            assert!(common::max_diff(state.h.as_slice().unwrap(), got_state.h.as_slice().unwrap()) <= TOL);
        }
    }
}

#[test]
fn seed_model_round_trips() {
    let mut run = common::seed_run(0);
    run.train.epochs = 200;
    compare(&train(&run).unwrap(), "seed");
}

#[test]
fn two_layer_stream_models_round_trip_tied_and_untied() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, common::random_corpus(3, 30, 200)).unwrap();
    for (embed, name) in [(8, "two-layer"), (16, "two-layer-tied")] {
        let outcome = train(&common::corpus_run(corpus.clone(), embed, 16, 2, 5, 2)).unwrap();
        assert_eq!(outcome.model.config.layers, 2);
        assert_eq!(outcome.model.config.tie_weights, embed == 16);
        assert!(outcome.meta.stream && outcome.meta.vocab[..2] == ["<unk>", "<eos>"]);
        compare(&outcome, name);
    }
}
