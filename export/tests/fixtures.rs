//! The fixtures that `kiln-infer`'s CLI tests use (`infer/tests/fixtures/tiny-*.onnx`) are made
//! here, from seeded random (or chosen) weights, by the exporter itself: this test fails if the
//! committed files differ from what the exporter writes now. `KILN_BLESS=1 cargo test -p
//! kiln-export --test fixtures` rewrites them.

use std::path::PathBuf;

use kiln_export::layers::{Activation, ConvTranspose2d, Embedding, Linear, LstmLayer};
use kiln_export::{generator_model, next_word_model, GenLayer, NextWordWeights};
use kiln_infer::contract::{GeneratorMeta, NextWordMeta, TokenizerSpec};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn weights(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn meta(latent: usize, shape: Vec<usize>, dataset: &str) -> GeneratorMeta {
    GeneratorMeta {
        latent,
        output_shape: shape,
        value_range: [-1.0, 1.0],
        dataset: dataset.into(),
        train_config: serde_json::json!({"untrained": "seeded random weights, export/tests/fixtures.rs"}),
    }
}

fn points(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let stack = vec![
        GenLayer::Linear(Linear {
            inputs: 4,
            outputs: 16,
            weight: weights(rng, 64, 0.5),
            bias: weights(rng, 16, 0.1),
        }),
        GenLayer::Activation(Activation::Relu),
        GenLayer::Linear(Linear {
            inputs: 16,
            outputs: 2,
            weight: weights(rng, 32, 0.5),
            bias: weights(rng, 2, 0.1),
        }),
    ];
    generator_model(&stack, &meta(4, vec![2], "ring8")).unwrap().encode_to_vec()
}

fn images(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let stack = vec![
        GenLayer::Linear(Linear {
            inputs: 8,
            outputs: 4 * 4 * 4,
            weight: weights(rng, 8 * 64, 0.4),
            bias: weights(rng, 64, 0.1),
        }),
        GenLayer::Activation(Activation::Relu),
        GenLayer::Reshape(vec![4, 4, 4]),
        GenLayer::ConvTranspose(ConvTranspose2d {
            in_channels: 4,
            out_channels: 1,
            kernel: 4,
            stride: 2,
            padding: 1,
            weight: weights(rng, 64, 0.5),
            bias: None,
        }),
        GenLayer::Activation(Activation::Tanh),
    ];
    generator_model(&stack, &meta(8, vec![1, 8, 8], "images")).unwrap().encode_to_vec()
}

/// A stream model whose LSTM weights are all zero, so its state stays zero and every next-word
/// distribution is softmax(head bias) whatever came before: `<eos>` and "la" each 0.4, "fa"
/// 0.2, `<unk>` never (−20). What it generates is a fair coin between ending the line and going
/// on; the probabilities are known exactly for scoring.
fn coin_stream(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let (vocab, h) = (4, 3);
    let embedding = Embedding { vocab, dim: h, weight: weights(rng, vocab * h, 0.5) };
    let zero_layer = |inputs: usize| LstmLayer {
        inputs,
        hidden: h,
        w_ih: vec![0.0; 4 * h * inputs],
        w_hh: vec![0.0; 4 * h * h],
        b_ih: vec![0.0; 4 * h],
        b_hh: vec![0.0; 4 * h],
    };
    let (p_eos, p_la, p_fa) = (0.4f32, 0.4f32, 0.2f32);
    let head = Linear {
        inputs: h,
        outputs: vocab,
        weight: vec![0.0; vocab * h],
        bias: vec![-20.0, p_eos.ln(), p_la.ln(), p_fa.ln()],
    };
    let w = NextWordWeights { embedding, lstm: vec![zero_layer(h)], head, tied: false };
    let meta = NextWordMeta {
        vocab: ["<unk>", "<eos>", "la", "fa"].map(String::from).into(),
        tokenizer: TokenizerSpec::default(),
        context: 35,
        layers: 1,
        hidden: h,
        stream: true,
        train_config: serde_json::json!({"untrained": "chosen weights, export/tests/fixtures.rs"}),
    };
    next_word_model(&w, &meta).unwrap().encode_to_vec()
}

#[test]
fn committed_generator_fixtures_are_what_the_exporter_writes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infer/tests/fixtures");
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    for (name, bytes) in [
        ("tiny-points-generator.onnx", points(&mut rng)),
        ("tiny-image-generator.onnx", images(&mut rng)),
        ("tiny-coin-stream.onnx", coin_stream(&mut rng)),
    ] {
        let path = dir.join(name);
        if std::env::var_os("KILN_BLESS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(committed == bytes, "{name} differs from the exporter's output: rerun with KILN_BLESS=1");
    }
}
