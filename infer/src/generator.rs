//! Sampling from an exported generator: noise `z [batch, latent]` in, samples out.

use std::path::Path;
use std::sync::{mpsc, Arc};

use crate::ndarray::{Array2, ArrayD, ArrayView2, Axis};
use tract_onnx::prelude::*;

use crate::contract::GeneratorMeta;
use crate::error::{run_err, Error, Result};
use crate::noise;
use crate::read::{self, LoadOptions, ModelFile};
use crate::samples::Samples;

/// A loaded generator, optimised at the first call of each batch size it is called with (up to
/// four; further sizes share a plan for any batch, made at the first of them).
///
/// A call runs on one thread unless [`GeneratorModel::with_threads`] says otherwise: then its
/// batch is cut into that many parts of equal size (the last one smaller), run at once on the
/// calling thread and on worker threads that share the plans and live as long as the model, and
/// put back together in order; the samples are those of one call on the whole batch, up to the
/// last bit (tract's kernels for other batch sizes may round otherwise). Clones share the plans
/// and the workers.
///
/// A batch larger than the smallest image a convolution layer multiplies (7 × 7 = 49 positions
/// in the Fashion-MNIST DCGAN's second layer) is cut into parts no larger than that, whatever the
/// threads: tract lays out a convolution's product along the larger of the batch and the image
/// positions, and along the batch every value it stores lands in a cache line of its own (the
/// Fashion generator: 0.21 ms a sample in parts of up to 49, 0.54 ms in one batch of 64).
#[derive(Debug, Clone)]
pub struct GeneratorModel {
    plan: Arc<read::Runner>,
    meta: GeneratorMeta,
    workers: Arc<Workers>,
    /// The most rows one tract call takes (see above); `usize::MAX` for a model without
    /// convolutions over images.
    part_rows: usize,
}

impl GeneratorModel {
    /// Loads a generator file (within the default [`Limits`](crate::Limits)) and checks it
    /// against its metadata; the plan for a batch size is optimised at its first call and reused
    /// by the calls after it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Like [`GeneratorModel::load`], within `options.limits`.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        Self::from_file(ModelFile::read(path.as_ref(), options)?)
    }

    /// Like [`GeneratorModel::load`], from the file's bytes; `name` names it in messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        Self::from_file(ModelFile::parse(bytes, name.to_string(), &LoadOptions::default())?)
    }

    pub(crate) fn from_file(file: ModelFile) -> Result<Self> {
        let path = file.name.clone();
        crate::error::catching(&path, "loading the model", move || Self::build(file))
    }

    fn build(file: ModelFile) -> Result<Self> {
        let ModelFile { name, graph, props, limits, many_rows, .. } = file;
        let meta = GeneratorMeta::from_props(&props)
            .map_err(|source| Error::Contract { path: name.clone(), source })?;
        let typed = ModelFile::typed(&name, graph)?;
        // z in; samples [batch, …output_shape] out.
        let check = read::Checker { name: &name, graph: &typed };
        check.counts(1, (1, 1))?;
        check.axis(false, 0, 1, meta.latent, crate::contract::key::LATENT, "noise")?;
        let out =
            typed.output_fact(0).map_err(|e| Error::BadModel { path: name.clone(), source: e.into() })?;
        let shape: Vec<Option<i64>> = (1..out.rank()).map(|a| read::Checker::dim(out, a)).collect();
        if shape != meta.output_shape.iter().map(|&d| Some(d as i64)).collect::<Vec<_>>() {
            return Err(Error::Disagrees {
                path: name,
                key: crate::contract::key::OUTPUT_SHAPE,
                file: format!("{:?}", meta.output_shape),
                graph: format!("samples of shape {shape:?}"),
            });
        }
        let part_rows = smallest_image(&typed).unwrap_or(usize::MAX);
        let plan = read::Runner::new(&name, typed, true, limits.max_call_bytes)?;
        let plan = Arc::new(plan.with_many_rows_form(many_rows));
        Ok(GeneratorModel { plan, meta, workers: Arc::new(Workers::start(0)), part_rows })
    }

    pub fn meta(&self) -> &GeneratorMeta {
        &self.meta
    }

    /// Splits each call's batch across up to `threads` threads (at least 1; a batch smaller
    /// than `threads` gets one thread a row). [`crate::default_threads`] is the machine's cores.
    /// Workers that cannot be started (the system refuses a thread) leave fewer threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.workers = Arc::new(Workers::start(threads.max(1) - 1));
        self
    }

    /// The threads a call may use: this one and the workers.
    pub fn threads(&self) -> usize {
        1 + self.workers.0.len()
    }

    /// Checks that a call on `batch` noise vectors stays within
    /// [`Limits::max_call_bytes`](crate::Limits), before anything is allocated for it.
    pub fn check_batch(&self, batch: usize) -> Result<()> {
        self.plan.check_call(&[&[batch, self.meta.latent]])
    }

    /// Values in one sample.
    pub fn sample_len(&self) -> usize {
        self.meta.output_shape.iter().product()
    }

    /// Runs the generator on noise `z` `[batch, latent]`; returns the samples
    /// `[batch, …sample shape]`.
    pub fn generate(&self, z: ArrayView2<f32>) -> Result<ArrayD<f32>> {
        let latent = self.meta.latent;
        let (batch, width) = z.dim();
        if batch == 0 || width != latent {
            return Err(Error::Input(format!(
                "noise of shape [{batch}, {width}] is not [batch ≥ 1, {latent}]"
            )));
        }
        let parts = self.threads().min(batch).max(batch.div_ceil(self.part_rows));
        let samples = if parts <= 1 { self.run(z)? } else { self.run_parts(z, parts)? };
        read::finite(&samples, "samples")?;
        Ok(samples)
    }

    fn run(&self, z: ArrayView2<f32>) -> Result<ArrayD<f32>> {
        run(&self.plan, z)
    }

    /// `z` cut into `parts` row blocks, dealt in turn to this thread and each worker (block `i`
    /// to thread `i` modulo the threads; this thread is thread 0).
    fn run_parts(&self, z: ArrayView2<f32>, parts: usize) -> Result<ArrayD<f32>> {
        let rows = z.nrows().div_ceil(parts);
        let blocks: Vec<ArrayView2<f32>> = z.axis_chunks_iter(Axis(0), rows).collect();
        let threads = self.threads();
        let sent: Vec<_> = (0..blocks.len())
            .map(|i| {
                let worker = self.workers.0.get((i % threads).checked_sub(1)?)?;
                let (plan, block) = (self.plan.clone(), blocks[i].to_owned());
                let (answer, result) = mpsc::channel();
                let job: Job = Box::new(move || {
                    let _ = answer.send(run(&plan, block.view()));
                });
                worker.send(job).ok().map(|()| result)
            })
            .collect();
        let mine: Vec<_> =
            (0..blocks.len()).map(|i| (sent[i].is_none()).then(|| self.run(blocks[i]))).collect();
        let mut outs = Vec::with_capacity(blocks.len());
        for ((block, result), mine) in blocks.iter().zip(sent).zip(mine) {
            // A worker gone (it cannot be, short of a panic) leaves its block to this thread.
            let out = mine.or_else(|| result.and_then(|r| recv_soon(&r)));
            outs.push(out.unwrap_or_else(|| self.run(*block)));
        }
        let outs = outs.into_iter().collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
        tract_ndarray::concatenate(Axis(0), &views).map_err(run_err)
    }

    /// `n` samples from the noise of `seed` ([`crate::noise::normal`]: the same on every platform).
    pub fn sample(&self, n: usize, seed: u64) -> Result<Samples> {
        Ok(self.sample_with_noise(n, seed)?.1)
    }

    /// Like [`GeneratorModel::sample`], returning the noise vectors too (`n` rows of `latent`).
    pub fn sample_with_noise(&self, n: usize, seed: u64) -> Result<(Samples, Samples)> {
        collect(self.sample_chunks(n, seed)?)
    }

    /// Like [`GeneratorModel::sample_with_noise`], a chunk of at most [`CHUNK`] samples at a
    /// time: (noise `[rows, latent]`, samples `[rows, …sample shape]`). Memory stays flat in `n`.
    pub fn sample_chunks(&self, n: usize, seed: u64) -> Result<Chunks<'_, impl FnMut(usize) -> Array2<f32>>> {
        if n == 0 {
            return Err(Error::argument("n", "must be at least 1"));
        }
        let latent = self.meta.latent;
        let mut normal = noise::Normal::new(seed);
        self.chunks(n, move |rows| Array2::from_shape_fn((rows, latent), |_| normal.next().unwrap_or(0.0)))
    }

    /// Samples along the great circle from the noise of seed `from` to that of seed `to`
    /// (spherical interpolation, "slerp": White 2016, *Sampling Generative Networks* — it keeps
    /// the interpolated noise at the norm Gaussian noise has, where a straight line would pass
    /// through atypically short vectors). `steps` samples, both ends included.
    pub fn interpolate(&self, from: u64, to: u64, steps: usize) -> Result<Samples> {
        Ok(self.interpolate_with_noise(from, to, steps)?.1)
    }

    /// Like [`GeneratorModel::interpolate`], returning the noise vectors too.
    pub fn interpolate_with_noise(&self, from: u64, to: u64, steps: usize) -> Result<(Samples, Samples)> {
        collect(self.interpolate_chunks(from, to, steps)?)
    }

    /// Like [`GeneratorModel::interpolate_with_noise`], a chunk of at most [`CHUNK`] samples at
    /// a time.
    pub fn interpolate_chunks(
        &self,
        from: u64,
        to: u64,
        steps: usize,
    ) -> Result<Chunks<'_, impl FnMut(usize) -> Array2<f32>>> {
        if steps < 2 {
            return Err(Error::argument("steps", "must be at least 2"));
        }
        let latent = self.meta.latent;
        let (a, b) = (noise::normal(from, latent), noise::normal(to, latent));
        let mut done = 0;
        self.chunks(steps, move |rows| {
            let z: Vec<Vec<f32>> =
                (done..done + rows).map(|i| slerp(&a, &b, i as f64 / (steps - 1) as f64)).collect();
            done += rows;
            Array2::from_shape_fn((rows, latent), |(r, c)| z[r][c])
        })
    }

    fn chunks<F: FnMut(usize) -> Array2<f32>>(&self, n: usize, noise: F) -> Result<Chunks<'_, F>> {
        self.check_batch(n.min(CHUNK))?;
        Ok(Chunks { model: self, left: n, noise })
    }
}

/// The fewest image positions a convolution layer of `model` multiplies by its weight: the
/// input's height × width for a transposed convolution, the output's for a convolution. Only
/// images of more than one position count; `None` when there are none.
fn smallest_image(model: &TypedModel) -> Option<usize> {
    use tract_onnx::tract_core::ops::cnn::{Conv, Deconv};
    // [batch, channels, height, width, …]: the product of the known dimensions after the second.
    let positions = |fact: &TypedFact| -> Option<usize> {
        let dims = fact.shape.iter().skip(2).map(|d| d.as_i64()).collect::<Option<Vec<i64>>>()?;
        (!dims.is_empty()).then(|| dims.iter().product::<i64>().max(0) as usize)
    };
    model
        .nodes()
        .iter()
        .filter_map(|node| {
            let fact = if node.op_is::<Deconv>() {
                model.outlet_fact(*node.inputs.first()?).ok()?
            } else if node.op_is::<Conv>() {
                model.outlet_fact(node.id.into()).ok()?
            } else {
                return None;
            };
            positions(fact)
        })
        .filter(|&n| n > 1)
        .min()
}

fn run(plan: &read::Runner, z: ArrayView2<f32>) -> Result<ArrayD<f32>> {
    let out = plan.run(tvec!(read::input(z)))?;
    read::array(&out[0])
}

type Job = Box<dyn FnOnce() + Send>;

/// How long a thread waiting on another (a worker for its next job, the caller for a worker's
/// part) polls before it sleeps. Waking a sleeping thread took 22–32 µs on this project's 2-core
/// machine (a virtual one), against 0.3 µs for a polling one: for a call whose parts take tens
/// of microseconds (ring8's 128 rows: 71 µs), the two wakes a call paid cost the second thread
/// its gain. A worker busy with a stream of calls (`kiln sample`, a bench) never sleeps between
/// them; one left idle polls this long, then sleeps.
const POLL: std::time::Duration = std::time::Duration::from_micros(200);

/// The next message of `from`, polled for up to [`POLL`] before waiting asleep; `None` when the
/// sender is gone.
fn recv_soon<T>(from: &mpsc::Receiver<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        match from.try_recv() {
            Ok(message) => return Some(message),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if start.elapsed() >= POLL => return from.recv().ok(),
            Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
}

/// Threads that run jobs sent to them until the senders are dropped (with the last clone of the
/// model that started them).
struct Workers(Vec<mpsc::Sender<Job>>);

impl Workers {
    fn start(n: usize) -> Self {
        let senders = (0..n).map_while(|i| {
            let (send, jobs) = mpsc::channel::<Job>();
            let worker = std::thread::Builder::new().name(format!("kiln-sample-{i}"));
            let work = move || {
                while let Some(job) = recv_soon(&jobs) {
                    job();
                }
            };
            worker.spawn(work).ok().map(|_| send)
        });
        Workers(senders.collect())
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workers({})", self.0.len())
    }
}

/// Samples are generated this many at a time.
pub const CHUNK: usize = 256;

/// Noise and samples, a chunk at a time: `(z [rows, latent], samples [rows, …sample shape])`.
pub struct Chunks<'m, F> {
    model: &'m GeneratorModel,
    left: usize,
    noise: F,
}

impl<F: FnMut(usize) -> Array2<f32>> Iterator for Chunks<'_, F> {
    type Item = Result<(Array2<f32>, ArrayD<f32>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let rows = self.left.min(CHUNK);
        self.left -= rows;
        let z = (self.noise)(rows);
        Some(self.model.generate(z.view()).map(|samples| (z, samples)))
    }
}

/// Every chunk in one (noise, samples) pair.
fn collect(chunks: impl Iterator<Item = Result<(Array2<f32>, ArrayD<f32>)>>) -> Result<(Samples, Samples)> {
    let (z, samples): (Vec<_>, Vec<_>) = chunks.collect::<Result<Vec<_>>>()?.into_iter().unzip();
    let z: Vec<_> = z.iter().map(|p| p.view()).collect();
    let samples: Vec<_> = samples.iter().map(|p| p.view()).collect();
    let z = tract_ndarray::concatenate(Axis(0), &z).map_err(run_err)?;
    let data = tract_ndarray::concatenate(Axis(0), &samples).map_err(run_err)?;
    Ok((Samples::new(z.into_dyn()), Samples::new(data)))
}

/// Spherical interpolation between `a` and `b` at `t` in [0, 1]; linear when they are
/// (anti)parallel and the great circle is undefined.
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = (dot / (na * nb)).clamp(-1.0, 1.0);
    let omega = cos.acos();
    let (wa, wb) = if omega.sin().abs() < 1e-6 {
        (1.0 - t, t)
    } else {
        (((1.0 - t) * omega).sin() / omega.sin(), (t * omega).sin() / omega.sin())
    };
    a.iter().zip(b).map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path of a shipped model file.
    fn shipped(name: &str) -> String {
        format!("{}/../models/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// `rows` noise vectors of `model`'s latent size from `seed`.
    fn noise_rows(model: &GeneratorModel, seed: u64, rows: usize) -> Array2<f32> {
        let latent = model.meta().latent;
        Array2::from_shape_vec((rows, latent), noise::normal(seed, rows * latent)).unwrap()
    }

    /// A message that comes while the receiver polls, one that comes after it has gone to sleep
    /// and the end of the sender all reach it, in order.
    #[test]
    fn a_waiting_thread_gets_each_message_whether_it_polls_or_sleeps_and_stops_when_the_sender_goes() {
        let (send, receive) = mpsc::channel();
        let (go, wait) = mpsc::channel();
        // The second message comes 20 polling windows after the receiver started waiting for it:
        // it has gone to sleep by then.
        let sender = std::thread::spawn(move || {
            send.send(1).unwrap();
            wait.recv().unwrap();
            std::thread::sleep(POLL * 20);
            send.send(2).unwrap();
        });
        assert_eq!(recv_soon(&receive), Some(1));
        go.send(()).unwrap();
        assert_eq!(recv_soon(&receive), Some(2));
        sender.join().unwrap();
        assert_eq!(recv_soon(&receive), None);
    }

    #[test]
    fn slerp_ends_at_its_endpoints_and_keeps_the_norm_between_orthogonal_unit_vectors() {
        let (a, b) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        assert_eq!(slerp(&a, &b, 0.0), [1.0, 0.0]);
        let end = slerp(&a, &b, 1.0);
        assert!(end[0].abs() < 1e-6 && (end[1] - 1.0).abs() < 1e-6);
        let mid = slerp(&a, &b, 0.5);
        assert!(((mid[0].powi(2) + mid[1].powi(2)).sqrt() - 1.0).abs() < 1e-6, "{mid:?}");
    }

    /// Each hidden layer of the MLP generators is a product whose `m`, the axis tract's kernels
    /// hold in vector registers, is the output's innermost axis (the layer's 128 or 256
    /// features), so a tile is stored as whole vectors; with `m` along the batch, each of a
    /// tile's values was stored on its own (ring8 at 256 samples: 0.20 → 0.16 ms a call).
    #[test]
    fn the_mlp_generators_products_hold_their_outputs_rows_in_vectors() {
        use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
        for name in ["ring8-gan.onnx", "grid25-gan.onnx"] {
            let model = GeneratorModel::load(shipped(name)).unwrap().with_threads(1);
            let z = noise_rows(&model, 1, 256);
            model.generate(z.view()).unwrap();
            let plans = model.plan.shape_plans();
            assert_eq!(plans.len(), 1, "{name}: one plan, for 256 rows");
            let graph = plans[0].model();
            let mut wide = 0;
            for node in graph.nodes() {
                let Some(op) = node.op_as::<OptMatMul>() else { continue };
                let shape = &node.outputs[0].fact.shape;
                let innermost = (0..shape.rank()).rev().find(|&a| !shape[a].is_one()).unwrap();
                if shape[innermost].to_i64().unwrap() >= 64 {
                    assert_eq!(
                        op.c_m_axis,
                        Some(innermost),
                        "{name}: {} holds the batch in vectors",
                        node.name
                    );
                    wide += 1;
                }
            }
            assert!(wide >= 3, "{name}: {wide} products with wide rows");
        }
    }

    /// A call of many rows on an MLP generator runs its feature-major form: the form is made at
    /// the first such call, not before, and in its plan every product but the first packs an
    /// input whose panels are contiguous runs (`mn` its innermost axis), where the file's own
    /// form transposes each activation into them. Its samples are the rows of the same noise run
    /// a few rows at a time, in the file's own form.
    #[test]
    fn many_rows_run_an_mlp_generator_feature_major_with_the_same_samples() {
        for name in ["ring8-gan.onnx", "grid25-gan.onnx"] {
            let model = GeneratorModel::load(shipped(name)).unwrap().with_threads(1);
            // Not the 128 or 256 features of a hidden layer, so that an axis of this size is
            // the batch.
            let rows = 320;
            let z = noise_rows(&model, 2, rows);
            let small: Vec<ArrayD<f32>> =
                z.axis_chunks_iter(Axis(0), 16).map(|block| model.generate(block).unwrap()).collect();
            assert!(!model.plan.made_many_rows(), "{name}: made for 16 rows");
            let all = model.generate(z.view()).unwrap();
            assert!(model.plan.made_many_rows(), "{name}: not made for {rows} rows");
            let small =
                tract_ndarray::concatenate(Axis(0), &small.iter().map(|t| t.view()).collect::<Vec<_>>())
                    .unwrap();
            let diff = crate::numeric::max_abs_diff(all.as_slice().unwrap(), small.as_slice().unwrap());
            assert!(diff <= 1e-5, "{name}: {rows} rows differ from 16 at a time by {diff}");
            let plans = model.plan.shape_plans();
            let graph = plans.last().unwrap().model();
            let mut packs = 0;
            for node in graph.nodes() {
                if node.op.name() != "OptMatMulPack" {
                    continue;
                }
                let fact = graph.outlet_fact(node.inputs[0]).unwrap();
                if graph.inputs.contains(&node.inputs[0]) || fact.konst.is_some() {
                    continue;
                }
                // tract's description of the op: "… k axis: K, mn axis: MN".
                let info = node.op.info().unwrap().join(" ");
                let innermost = fact.rank() - 1;
                let batch_innermost = fact.shape[innermost].to_i64().ok() == Some(rows as i64);
                let contiguous = info.ends_with(&format!("mn axis: {innermost}"));
                assert!(batch_innermost && contiguous, "{name}: {} transposes {fact:?}: {info}", node.name);
                packs += 1;
            }
            assert!(packs >= 3, "{name}: {packs} packs of activations");
        }
    }

    /// A form for many rows that tract cannot make (here a file without a graph) leaves such
    /// calls on the file's own form, with its samples.
    #[test]
    fn many_rows_run_the_files_own_form_when_the_second_cannot_be_made() {
        let path = shipped("ring8-gan.onnx");
        let options = LoadOptions::default();
        let mut file = ModelFile::read(path.as_ref(), &options).unwrap();
        assert!(file.many_rows.is_some());
        file.many_rows = Some(tract_onnx::pb::ModelProto::default());
        let broken = GeneratorModel::from_file(file).unwrap().with_threads(1);
        let model = GeneratorModel::load(&path).unwrap().with_threads(1);
        let rows = 70;
        let z = noise_rows(&model, 4, rows);
        let got = broken.generate(z.view()).unwrap();
        assert!(!broken.plan.made_many_rows());
        let want = model.generate(z.view()).unwrap();
        assert!(model.plan.made_many_rows());
        let diff = crate::numeric::max_abs_diff(got.as_slice().unwrap(), want.as_slice().unwrap());
        assert!(diff <= 1e-5, "the file's own form differs by {diff}");
    }

    /// Batches of 1 to 9 rows: the first shapes get plans of their own, the later ones run on
    /// the plan for any batch, which is made only then. Every row must match the same noise run
    /// in one batch of 9.
    #[test]
    fn every_batch_size_gives_the_rows_of_one_big_batch() {
        for name in ["fashion-dcgan.onnx", "grid25-gan.onnx"] {
            let model = GeneratorModel::load(shipped(name)).unwrap();
            assert!(!model.plan.made_any(), "{name}: planned for any batch at load");
            let z = noise_rows(&model, 11, 9);
            let all = model.generate(z.view()).unwrap();
            let all = all.as_slice().unwrap();
            let per = model.sample_len();
            for batch in 1..=9 {
                let got = model.generate(z.slice(crate::ndarray::s![..batch, ..])).unwrap();
                let diff = crate::numeric::max_abs_diff(got.as_slice().unwrap(), &all[..batch * per]);
                assert!(diff <= 1e-5, "{name}, batch {batch}: rows differ by {diff}");
                // Batches of 9, 1, 2 and 3 have plans of their own.
                assert_eq!(model.plan.made_any(), batch > 3, "{name}, batch {batch}");
            }
        }
    }

    /// A batch over the fewest positions a convolution layer multiplies (the Fashion
    /// generator's second layer reads 7 × 7 images) runs in parts no larger: 130 rows in parts
    /// of 44, 44 and 42, on one thread, or on two taking turns. The rows are those of the same
    /// noise run ten rows at a time, in order. A generator without convolutions is not cut.
    #[test]
    fn a_batch_over_the_smallest_image_runs_in_parts_in_order() {
        let ring = GeneratorModel::load(shipped("ring8-gan.onnx")).unwrap();
        assert_eq!(ring.part_rows, usize::MAX);
        let model = GeneratorModel::load(shipped("fashion-dcgan.onnx")).unwrap();
        assert_eq!(model.part_rows, 49);
        let rows = 130;
        let z = noise_rows(&model, 3, rows);
        let tens: Vec<ArrayD<f32>> =
            z.axis_chunks_iter(Axis(0), 10).map(|block| model.generate(block).unwrap()).collect();
        let want =
            tract_ndarray::concatenate(Axis(0), &tens.iter().map(|t| t.view()).collect::<Vec<_>>()).unwrap();
        for threads in [1, 2] {
            let got = model.clone().with_threads(threads).generate(z.view()).unwrap();
            assert_eq!(got.shape(), want.shape());
            let diff = crate::numeric::max_abs_diff(got.as_slice().unwrap(), want.as_slice().unwrap());
            assert!(diff <= 1e-5, "{rows} rows on {threads} thread(s): rows differ by {diff}");
        }
    }

    /// A batch split across threads (7 rows on 3 threads: blocks of 3, 3 and 1; 2 rows on 4
    /// threads: one row each) gives the rows of the same batch run on one thread, in order.
    #[test]
    fn a_batch_split_across_threads_gives_the_rows_of_one_call() {
        for name in ["fashion-dcgan.onnx", "ring8-gan.onnx"] {
            let model = GeneratorModel::load(shipped(name)).unwrap();
            for (rows, threads) in [(7, 3), (2, 4)] {
                let z = noise_rows(&model, 5, rows);
                let one = model.generate(z.view()).unwrap();
                let split = model.clone().with_threads(threads).generate(z.view()).unwrap();
                assert_eq!(split.shape(), one.shape(), "{name}");
                let diff = crate::numeric::max_abs_diff(split.as_slice().unwrap(), one.as_slice().unwrap());
                assert!(diff <= 1e-5, "{name}, {rows} rows on {threads} threads: rows differ by {diff}");
                // The rows are not all alike, so a block out of place would show.
                let per = model.sample_len();
                let first = &one.as_slice().unwrap()[..per];
                assert!(crate::numeric::max_abs_diff(first, &one.as_slice().unwrap()[per..2 * per]) > 1e-3);
            }
        }
    }

    /// A generator's calls run in a state an earlier call of the same plan left, and give the
    /// samples a state of their own gives, whatever ran in that state before (other noise,
    /// another batch size).
    #[test]
    fn a_generators_calls_run_in_a_kept_state_with_a_fresh_states_samples() {
        for name in ["ring8-gan.onnx", "fashion-dcgan.onnx"] {
            let model = GeneratorModel::load(shipped(name)).unwrap().with_threads(1);
            let latent = model.meta().latent;
            let z = |seed, rows| noise_rows(&model, seed, rows);
            let first = model.generate(z(1, 3).view()).unwrap();
            assert_eq!(model.plan.idle_states(), 1, "{name}: the call's state was not kept");
            let other = model.generate(z(2, 3).view()).unwrap();
            model.generate(z(3, 5).view()).unwrap();
            let again = model.generate(z(1, 3).view()).unwrap();
            assert_eq!(model.plan.idle_states(), 2, "{name}: one state for each plan");
            assert_eq!(first, again, "{name}: the same noise gave other samples");
            // The plan for 3 rows, run in a state of its own (tract's `run` makes one).
            let plan = model
                .plan
                .shape_plans()
                .into_iter()
                .find(|p| p.model().input_fact(0).unwrap().shape.as_concrete() == Some(&[3, latent][..]))
                .unwrap();
            let fresh = plan.run(tvec![read::input(z(2, 3).view())]).unwrap();
            let fresh = fresh[0].to_plain_array_view::<f32>().unwrap();
            assert_eq!(fresh.as_slice().unwrap(), other.as_slice().unwrap(), "{name}");
        }
    }
}
