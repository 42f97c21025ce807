//! The exported graph, run by tract through `kiln-infer`, against a plain-Rust LSTM written from
//! PyTorch's documented equations (torch.nn.LSTM): no libtorch needed.

use kiln_export::layers::{Embedding, Linear, LstmLayer};
use kiln_export::{next_word_model, write_model, NextWordWeights};
use kiln_infer::contract::{NextWordMeta, TokenizerSpec};
use kiln_infer::ndarray::{Array2, Array3};
use kiln_infer::next_word::State;
use kiln_infer::{LoadOptions, NextWordModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-0.8f32..0.8)).collect()
}

fn weights(
    rng: &mut ChaCha8Rng,
    vocab: usize,
    embed: Option<usize>,
    layers: usize,
    h: usize,
) -> NextWordWeights {
    let embedding = match embed {
        Some(dim) => Embedding { vocab, dim, weight: randn(rng, vocab * dim) },
        None => Embedding::one_hot(vocab),
    };
    let mut width = embedding.dim;
    let lstm = (0..layers)
        .map(|_| {
            let l = LstmLayer {
                inputs: width,
                hidden: h,
                w_ih: randn(rng, 4 * h * width),
                w_hh: randn(rng, 4 * h * h),
                b_ih: randn(rng, 4 * h),
                b_hh: randn(rng, 4 * h),
            };
            width = h;
            l
        })
        .collect();
    let head = Linear { inputs: h, outputs: vocab, weight: randn(rng, vocab * h), bias: randn(rng, vocab) };
    NextWordWeights { embedding, lstm, head, tied: false }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// torch.nn.LSTM: i,f,g,o = σ,σ,tanh,σ of W_ih x + b_ih + W_hh h + b_hh; c' = f c + i g;
/// h' = o tanh(c'). Returns logits [batch, vocab], hn, cn [layers, batch, H].
fn reference(
    w: &NextWordWeights,
    tokens: &[i64],
    batch: usize,
    seq: usize,
    h0: &[f32],
    c0: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let h = w.lstm[0].hidden;
    let layers = w.lstm.len();
    let (mut logits, mut hn, mut cn) = (vec![], vec![0f32; h0.len()], vec![0f32; c0.len()]);
    for b in 0..batch {
        let e = &w.embedding;
        let mut xs: Vec<Vec<f32>> = (0..seq)
            .map(|t| {
                let id = tokens[b * seq + t] as usize;
                e.weight[id * e.dim..(id + 1) * e.dim].to_vec()
            })
            .collect();
        for (l, layer) in w.lstm.iter().enumerate() {
            let off = (l * batch + b) * h;
            let (mut hh, mut cc) = (h0[off..off + h].to_vec(), c0[off..off + h].to_vec());
            for x in xs.iter_mut() {
                let mut gates = vec![0f32; 4 * h];
                for (r, gate) in gates.iter_mut().enumerate() {
                    let wi = &layer.w_ih[r * layer.inputs..(r + 1) * layer.inputs];
                    let wh = &layer.w_hh[r * h..(r + 1) * h];
                    *gate = layer.b_ih[r]
                        + layer.b_hh[r]
                        + wi.iter().zip(x.iter()).map(|(a, b)| a * b).sum::<f32>()
                        + wh.iter().zip(hh.iter()).map(|(a, b)| a * b).sum::<f32>();
                }
                for k in 0..h {
                    let (i, f, g, o) = (
                        sigmoid(gates[k]),
                        sigmoid(gates[h + k]),
                        gates[2 * h + k].tanh(),
                        sigmoid(gates[3 * h + k]),
                    );
                    cc[k] = f * cc[k] + i * g;
                    hh[k] = o * cc[k].tanh();
                }
                *x = hh.clone();
            }
            hn[off..off + h].copy_from_slice(&hh);
            cn[off..off + h].copy_from_slice(&cc);
        }
        let top = &hn[((layers - 1) * batch + b) * h..][..h];
        for v in 0..w.head.outputs {
            let row = &w.head.weight[v * h..(v + 1) * h];
            logits.push(w.head.bias[v] + row.iter().zip(top).map(|(a, b)| a * b).sum::<f32>());
        }
    }
    (logits, hn, cn)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    kiln_infer::numeric::max_abs_diff(a, b)
}

fn check(embed: Option<usize>, layers: usize, tied: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(7 + layers as u64);
    let (vocab, h) = (11, 6);
    let mut w = weights(&mut rng, vocab, embed, layers, h);
    if tied {
        // The reference reads the head's weight: make it the embedding's, as tying does.
        w.head.weight = w.embedding.weight.clone();
        w.tied = true;
    }
    let meta = NextWordMeta {
        vocab: (0..vocab).map(|i| format!("w{i}")).collect(),
        tokenizer: TokenizerSpec::default(),
        context: 3,
        layers,
        hidden: h,
        stream: false,
        train_config: serde_json::json!({"test": true}),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let proto = next_word_model(&w, &meta).unwrap();
    let names: Vec<&str> =
        proto.graph.as_ref().unwrap().initializer.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.contains(&"head.weight"), !tied, "{names:?}");
    write_model(&proto, &path).unwrap();
    let model = NextWordModel::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(model.meta(), &meta);
    for (batch, seq) in [(1, 1), (3, 4), (2, 9)] {
        let tokens: Vec<i64> = (0..batch * seq).map(|_| rng.random_range(0..vocab as i64)).collect();
        let h0 = randn(&mut rng, layers * batch * h);
        let c0 = randn(&mut rng, layers * batch * h);
        let state = State {
            h: Array3::from_shape_vec((layers, batch, h), h0.clone()).unwrap(),
            c: Array3::from_shape_vec((layers, batch, h), c0.clone()).unwrap(),
        };
        let ids = Array2::from_shape_vec((batch, seq), tokens.clone()).unwrap();
        let got = model.run(ids.view(), Some(&state)).unwrap();
        let got_state = got.state.unwrap();
        let (logits, hn, cn) = reference(&w, &tokens, batch, seq, &h0, &c0);
        let (got_logits, got_hn, got_cn) = (
            got.logits.iter().copied().collect::<Vec<_>>(),
            got_state.h.iter().copied().collect::<Vec<_>>(),
            got_state.c.iter().copied().collect::<Vec<_>>(),
        );
        for (name, a, b) in [("logits", &got_logits, &logits), ("hn", &got_hn, &hn), ("cn", &got_cn, &cn)] {
            let d = max_diff(a, b);
            assert!(d < 1e-5, "{name} differs by {d} (batch {batch}, seq {seq})");
        }
        // logits_all at position t: the reference's logits after the first t + 1 tokens.
        let all = got.logits_all.expect("kiln's export writes logits_all");
        let all = all.view();
        assert_eq!(all.dim(), (batch, seq, vocab));
        for t in 0..seq {
            let prefix: Vec<i64> =
                (0..batch).flat_map(|b| tokens[b * seq..b * seq + t + 1].to_vec()).collect();
            let (want, _, _) = reference(&w, &prefix, batch, t + 1, &h0, &c0);
            let got_t: Vec<f32> = all.slice(kiln_infer::ndarray::s![.., t, ..]).iter().copied().collect();
            let d = max_diff(&got_t, &want);
            assert!(d < 1e-5, "logits_all at position {t} differs by {d} (batch {batch}, seq {seq})");
        }
    }
}

#[test]
fn one_hot_single_layer_matches_reference_lstm() {
    check(None, 1, false);
}

#[test]
fn embedding_two_layers_matches_reference_lstm() {
    check(Some(4), 2, false);
}

#[test]
fn tied_head_matches_reference_and_stores_the_matrix_once() {
    check(Some(6), 2, true);
}

#[test]
fn mismatched_metadata_is_refused() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let w = weights(&mut rng, 5, Some(3), 1, 2);
    let meta = NextWordMeta {
        vocab: vec!["a".into(); 4].into(),
        tokenizer: TokenizerSpec::default(),
        context: 2,
        layers: 1,
        hidden: 2,
        stream: false,
        train_config: serde_json::Value::Null,
    };
    assert!(next_word_model(&w, &meta).is_err());
}
