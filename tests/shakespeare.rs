//! The shipped real-text model, `models/shakespeare-lstm.onnx`, measured as a user measures it:
//! `kiln score` on the held-out plays of the Shakespeare split (`cargo xtask bootstrap` fetches
//! it into `.deps/shakespeare/`) gives the held-out figure the trainer reported in the file.

use std::path::PathBuf;

use kiln_infer::next_word::GenerateOptions;
use kiln_infer::NextWordModel;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn shipped_shakespeare_model_scores_the_held_out_plays_as_its_trainer_did() {
    let m = NextWordModel::load(repo("models/shakespeare-lstm.onnx"), &Default::default()).unwrap();
    assert!(m.meta().stream, "a stream model");
    let size = std::fs::metadata(repo("models/shakespeare-lstm.onnx")).unwrap().len();
    assert!(size <= 10_000_000, "the file is {size} bytes, over its 10 MB budget");
    let valid = repo(".deps/shakespeare/valid.txt");
    let text = std::fs::read_to_string(&valid)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask bootstrap`)", valid.display()));
    let s = m.score(&text).unwrap();
    let trainer =
        m.meta().train_config["final"]["valid_loss"].as_f64().expect("the trainer's held-out figure");
    eprintln!(
        "kiln score: {:.4} nats, perplexity {:.2}; trainer: {trainer:.4}",
        s.cross_entropy, s.perplexity
    );
    assert!((s.cross_entropy - trainer).abs() <= 0.01 * trainer, "{} vs {trainer}", s.cross_entropy);
    assert_eq!(s.predictions, 135_197, "the held-out plays are read as the trainer read them");

    // Generation from the opening of Hamlet's soliloquy stops at the end of a line.
    let options = GenerateOptions { words: 500, temperature: 0.8, seed: 3, ..Default::default() };
    let g = m.generate("to be or", &options).unwrap();
    assert!(!g.words.is_empty() && g.words.len() < 500, "{:?}", g.words);
    assert!(g.words.iter().all(|w| w != "<eos>"));
}
