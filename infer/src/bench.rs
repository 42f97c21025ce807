//! `kiln bench`: how fast a model runs on the machine at hand — a Raspberry Pi, where criterion
//! and cargo are not — measured through the same calls `kiln predict` and `kiln sample` make.
//!
//! One call is one forward pass over a batch: `batch` context windows of a next-word model (the
//! model's own context length, token ids drawn from a seeded stream), or `batch` noise vectors
//! of a generator. A next-word call predicts the next word, as `kiln predict` and `kiln generate`
//! do; with [`BenchOptions::every_position`] it scores every position, as `kiln score` does.
//!
//! The report gives the start-up a one-shot command pays: the time to load the model and that
//! of the first call, which makes the plan for its shape where the model plans per shape
//! ([`crate::GeneratorModel`]); then the latency of a call (p50, p99, mean, min, max, after
//! `warmup` calls that are not counted) and the throughput in predictions or samples a second.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::ndarray::Array2;

use crate::contract::{KIND_GENERATOR, KIND_NEXT_WORD};
use crate::error::{run_err, Error, Result};
use crate::read::LoadOptions;
use crate::Model;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Predictions or samples per call.
    pub batch: usize,
    /// Timed calls.
    pub iters: usize,
    /// Calls run first and not timed (caches, allocator, CPU frequency).
    pub warmup: usize,
    /// Threads a generator's batch is split across ([`GeneratorModel::with_threads`]); a
    /// next-word model runs on one.
    ///
    /// [`GeneratorModel::with_threads`]: crate::GeneratorModel::with_threads
    pub threads: usize,
    /// For a next-word model: time the call that scores every position of the windows (what
    /// `kiln score` runs) rather than the one that predicts the next word.
    pub every_position: bool,
    /// For a model without kiln metadata: its vocabulary file.
    pub load: LoadOptions,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            batch: 1,
            iters: 100,
            warmup: 10,
            threads: 1,
            every_position: false,
            load: LoadOptions::default(),
        }
    }
}

/// Latency statistics of the timed calls, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// The result of [`bench`].
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `next-word` or `generator`.
    pub kind: String,
    /// What one call computes, in words.
    pub call: String,
    /// What the throughput counts: `predictions` or `samples`.
    pub unit: String,
    /// Read, parse, check against the metadata and, for a model whose calls all share one plan,
    /// optimise that plan.
    pub load_ms: f64,
    /// The first call, before the warm-up: it optimises the plan for its shape when the model
    /// makes one per shape.
    pub first_call_ms: f64,
    pub batch: usize,
    pub iters: usize,
    pub warmup: usize,
    /// Threads a call ran on.
    pub threads: usize,
    /// Per call (one batch).
    pub latency: Latency,
    /// `batch × iters` over the timed calls' total time.
    pub per_second: f64,
}

/// Loads `path` and times `options.iters` calls on it.
pub fn bench(path: impl AsRef<Path>, options: &BenchOptions) -> Result<BenchReport> {
    let path = path.as_ref();
    if options.batch == 0 {
        return Err(Error::argument("batch", "must be at least 1"));
    }
    if options.iters == 0 {
        return Err(Error::argument("iters", "must be at least 1"));
    }
    let batch = options.batch;
    if options.threads == 0 {
        return Err(Error::argument("threads", "must be at least 1"));
    }
    let start = Instant::now();
    let model = crate::load(path, &options.load)?;
    if let (Model::Generator(_), true) = (&model, options.every_position) {
        return Err(Error::argument("every_position", "is for next-word models; this is a generator"));
    }
    if let (Model::NextWord(m), true) = (&model, options.every_position) {
        if !m.scores_every_position() {
            return Err(Error::argument(
                "every_position",
                "is for models that score every position; this one scores the last position only",
            ));
        }
        // The plan that scores every position is made at its first use: part of the start-up.
        m.prepare_scoring()?;
    }
    let load = start.elapsed();
    let mut threads = 1;
    let (kind, call, unit, times) = match model {
        Model::Generator(g) => {
            let g = g.with_threads(options.threads);
            threads = g.threads().min(batch);
            g.check_batch(batch)?;
            let latent = g.meta().latent;
            let z = Array2::from_shape_vec((batch, latent), crate::noise::normal(0, batch * latent))
                .map_err(run_err)?;
            let call = format!(
                "{batch} noise vector(s) of {} → sample(s) of shape {:?}",
                g.meta().latent,
                g.meta().output_shape
            );
            let times = time_calls(options, || g.generate(z.view()).map(drop))?;
            (KIND_GENERATOR, call, "samples", times)
        }
        Model::NextWord(m) => {
            let seq = m.meta().context.max(1);
            m.check_batch(batch, seq, options.every_position)?;
            let vocab = m.vocab().len() as i64;
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let tokens = Array2::from_shape_simple_fn((batch, seq), || rng.random_range(0..vocab));
            let (call, times) = if options.every_position {
                let call = format!(
                    "{batch} window(s) of {seq} word(s) → logits at every position over {vocab} words"
                );
                (call, time_calls(options, || m.run(tokens.view(), None).map(drop))?)
            } else {
                let call =
                    format!("{batch} window(s) of {seq} word(s) → next-word logits over {vocab} words");
                (call, time_calls(options, || m.step(tokens.view(), None).map(drop))?)
            };
            (KIND_NEXT_WORD, call, "predictions", times)
        }
    };
    let (first, mut times) = times;
    let total: Duration = times.iter().sum();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(BenchReport {
        kind: kind.into(),
        call,
        unit: unit.into(),
        load_ms: ms(load),
        first_call_ms: ms(first),
        batch,
        iters: options.iters,
        warmup: options.warmup,
        threads,
        latency: Latency {
            p50_ms: ms(percentile(&times, 0.50)),
            p99_ms: ms(percentile(&times, 0.99)),
            mean_ms: ms(total) / times.len() as f64,
            min_ms: ms(times[0]),
            max_ms: ms(times[times.len() - 1]),
        },
        per_second: (batch * options.iters) as f64 / total.as_secs_f64().max(1e-12),
    })
}

/// The first call's time, and those of `options.iters` calls after `options.warmup` more.
fn time_calls(
    options: &BenchOptions,
    mut call: impl FnMut() -> Result<()>,
) -> Result<(Duration, Vec<Duration>)> {
    let start = Instant::now();
    call()?;
    let first = start.elapsed();
    for _ in 0..options.warmup {
        call()?;
    }
    let mut times = Vec::with_capacity(options.iters);
    for _ in 0..options.iters {
        let start = Instant::now();
        call()?;
        times.push(start.elapsed());
    }
    Ok((first, times))
}

/// The nearest-rank percentile of sorted `values`: the smallest value with at least a
/// fraction `q` of the values at or below it.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> T {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        // Ten values: p99 is the largest, p50 the fifth.
        let v: Vec<u32> = (1..=10).collect();
        assert_eq!(percentile(&v, 0.99), 10);
        assert_eq!(percentile(&v, 0.50), 5);
        assert_eq!(percentile(&[7], 0.5), 7);
    }
}
