//! Latency of next-word prediction on the shipped seed model, through the `kiln-infer` library
//! (what `kiln predict` does after loading), beside a generation step with carried state and a
//! re-run of the context window, the alternative it saves; and scoring a stream of words on the
//! Shakespeare LSTM (`kiln score`: one tract call per 256 words, then a log-sum-exp over the
//! vocabulary per word in kiln's own code).
//!
//!     cargo bench --bench predict

use criterion::{criterion_group, criterion_main, Criterion};
use kiln_infer::ndarray::array;
use kiln_infer::next_word::GenerateOptions;
use kiln_infer::{LoadOptions, NextWordModel};

fn bench(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/seed-lstm.onnx");
    let model = NextWordModel::load(path, &LoadOptions::default()).expect("the shipped model loads");
    c.bench_function("predict seed 'i like' (top 5)", |b| b.iter(|| model.predict("i like", 5).unwrap()));
    c.bench_function("load + optimise seed model", |b| {
        b.iter(|| NextWordModel::load(path, &LoadOptions::default()).unwrap())
    });
    let out = model.run(array![[4i64, 5]].view(), None).unwrap();
    let word = array![[2i64]];
    c.bench_function("one LSTM step with carried state", |b| {
        b.iter(|| model.run(word.view(), out.state.as_ref()).unwrap())
    });
    let options = GenerateOptions { words: 100, seed: 1, ..Default::default() };
    c.bench_function("generate 100 words", |b| b.iter(|| model.generate("you", &options).unwrap()));

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-lstm.onnx");
    let lm = NextWordModel::load(path, &LoadOptions::default()).expect("the shipped model loads");
    let options = GenerateOptions { words: 1000, seed: 7, ..Default::default() };
    let text = lm.generate("the king", &options).expect("the model generates").words.join(" ");
    let mut group = c.benchmark_group("shakespeare");
    group.sample_size(10);
    group.bench_function("score 1,000 words", |b| b.iter(|| lm.score(&text).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
