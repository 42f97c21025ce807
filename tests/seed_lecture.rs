//! The seed lecture reproduced: `kiln-train lm --preset seed` learns all six sentences.

mod common;

use kiln_train::lm::train;

#[test]
fn seed_preset_predicts_all_six_targets_for_three_seeds() {
    for seed in [0, 1, 2] {
        let outcome = train(&common::seed_run(seed)).expect("training runs");
        let w = outcome.data.train_windows().expect("the seed trains on windows");
        assert_eq!(w.len(), 6);
        assert_eq!(outcome.data.vocab.len(), 9);
        let x = tch::Tensor::from_slice(&w.inputs).view([6, 2]);
        let predicted: Vec<i64> = Vec::try_from(&outcome.logits(&x).argmax(-1, false)).unwrap();
        let words = |ids: &[i64]| {
            ids.iter().map(|&i| outcome.data.vocab.word(i as usize).to_string()).collect::<Vec<_>>()
        };
        assert_eq!(words(&predicted), ["dog", "coffee", "milk", "cat", "milk", "coffee"], "seed {seed}");
        let final_loss = outcome.history.last().unwrap().train_loss;
        assert!(final_loss < 0.05, "seed {seed}: final loss {final_loss}");
        assert_eq!(outcome.history.len(), 500);
    }
}
