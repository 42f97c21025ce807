//! GAN training: alternate `d_steps` discriminator steps and one generator step on fresh data
//! and noise, log the losses and the means of D(x) and D(G(z)), draw plots, save checkpoints,
//! export G.
//!
//! A run is a [`Trainer`] (the networks, their optimisers and the weight average) driven epoch
//! by epoch: [`Trainer::d_step`], [`Trainer::g_step`], then at the end of each epoch
//! [`Trainer::draw`] and [`Trainer::save`]; after the last, [`GanOutcome`] and the checked export.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use kiln_infer::contract::GeneratorMeta;
use kiln_infer::ndarray::Array2;
use kiln_infer::samples::Samples;
use kiln_infer::GeneratorModel;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Reduction, Tensor};

use super::config::{check_arch, check_ema, check_outputs, validate, GanLoss, GanRun, GanTrainConfig};
use super::data::TrainData;
use super::ema::Ema;
use super::{Discriminator, GanArch, Generator};
use crate::checkpoint;
use crate::optim::Optimizer;
use crate::plots::{self, CurvePoint};
use crate::run::{self, LogStyle, Progress};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GanEpoch {
    pub epoch: usize,
    pub d_loss: f64,
    pub g_loss: f64,
    /// Mean D(x) on real data and D(G(z)) on generated data (probabilities).
    pub d_real: f64,
    pub d_fake: f64,
    /// Wall-clock seconds the epoch took.
    #[serde(default)]
    pub seconds: f64,
}

pub struct GanOutcome {
    pub g_vs: nn::VarStore,
    pub d_vs: nn::VarStore,
    pub g: Generator,
    pub d: Discriminator,
    /// The averaged generator, when `--ema` is on (the one exported).
    pub ema: Option<Ema>,
    pub history: Vec<GanEpoch>,
    pub meta: GeneratorMeta,
}

impl GanOutcome {
    /// The generator that is exported: the average when there is one, else G.
    pub fn exported(&self) -> (&nn::VarStore, &Generator) {
        match &self.ema {
            Some(e) => (&e.vs, &e.g),
            None => (&self.g_vs, &self.g),
        }
    }

    /// The exported generator in evaluation mode (BatchNorm with its running statistics).
    pub fn generate(&self, z: &Tensor) -> Tensor {
        tch::no_grad(|| self.exported().1.forward_t(z, false))
    }
}

/// The checkpoint's JSON (its kind and format are [`checkpoint::GAN`]'s).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointInfo {
    epochs_done: usize,
    g_step: i64,
    d_step: i64,
    model: GanArch,
    train: GanTrainConfig,
    history: Vec<GanEpoch>,
    curve: Vec<CurvePoint>,
}

/// Trains from scratch, loading the data the run names.
pub fn train(run: &GanRun) -> anyhow::Result<GanOutcome> {
    let data = TrainData::load(&run.train.data, run.train.folder)?;
    train_from(run, &data, None)
}

/// Trains from scratch on data already loaded (from `run.train.data`, or made by the caller).
pub fn train_on(run: &GanRun, data: &TrainData) -> anyhow::Result<GanOutcome> {
    train_from(run, data, None)
}

/// How to continue a saved run.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The checkpoint to continue from (and to keep saving to).
    pub checkpoint: PathBuf,
    /// Epochs in all (default: as saved).
    pub epochs: Option<usize>,
    /// Switch the weight average on (from the saved weights), off, or change its decay.
    pub ema: Option<f64>,
    pub device: Device,
    pub out: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
    pub log: LogStyle,
}

/// Continues the run saved in a checkpoint.
pub fn resume(r: &Resume) -> anyhow::Result<GanOutcome> {
    check_outputs(&r.out, &None)?;
    if r.epochs == Some(0) {
        bail!("--epochs must be at least 1");
    }
    if let Some(decay) = r.ema {
        check_ema(decay)?;
    }
    let loaded = checkpoint::load(&r.checkpoint, checkpoint::GAN)?;
    let info: CheckpointInfo = serde_json::from_value(loaded.info.clone())
        .with_context(|| format!("{} is not a GAN checkpoint", r.checkpoint.display()))?;
    let mut train = info.train.clone();
    if let Some(e) = r.epochs {
        train.epochs = e;
    }
    if !train.data.starts_with("images:") {
        train.folder = None; // only picture folders are cropped and resized
    }
    if let Some(decay) = r.ema {
        train.ema = decay;
    }
    checkpoint::check_epochs_left(info.epochs_done, train.epochs)?;
    let run = GanRun {
        model: info.model.clone(),
        train,
        device: r.device,
        out: r.out.clone(),
        checkpoint: Some(r.checkpoint.clone()),
        log_dir: r.log_dir.clone(),
        log: r.log,
    };
    let data = TrainData::load(&run.train.data, run.train.folder)?;
    train_from(&run, &data, Some((info, loaded.tensors)))
}

type Saved = (CheckpointInfo, HashMap<String, Tensor>);

/// The networks of a run in training, their optimisers and the weight average.
struct Trainer<'a> {
    run: &'a GanRun,
    data: &'a TrainData,
    g_vs: nn::VarStore,
    d_vs: nn::VarStore,
    g: Generator,
    d: Discriminator,
    g_opt: Optimizer,
    d_opt: Optimizer,
    ema: Option<Ema>,
    /// Samples per step: `batch` packs of `pack`.
    n: i64,
    ones: Tensor,
    zeros: Tensor,
}

/// One step's figures: D's and G's losses, D's logits on real and generated data.
struct StepLosses {
    d_loss: Tensor,
    g_loss: Tensor,
    d_real: Tensor,
    d_fake: Tensor,
}

impl<'a> Trainer<'a> {
    fn new(run: &'a GanRun, data: &'a TrainData) -> anyhow::Result<Self> {
        let (arch, t, device) = (&run.model, &run.train, run.device);
        run::check_fits(&run::Footprint {
            parameters: arch.parameters(),
            step_floats: arch.sample_floats().saturating_mul(t.batch.max(0) as u128),
            sizes: "--latent, --hidden, --g-width, --d-width or layer counts",
            step_flags: "--batch",
        })?;
        tch::manual_seed(t.seed as i64);
        let g_vs = nn::VarStore::new(device);
        let d_vs = nn::VarStore::new(device);
        let g = Generator::new(arch, &(g_vs.root() / "g"));
        let d = Discriminator::new(arch, &(d_vs.root() / "d"));
        let g_opt = Optimizer::adam_with_betas(&g_vs, t.lr, t.beta1, 0.999);
        let d_opt = Optimizer::adam_with_betas(&d_vs, t.d_lr.unwrap_or(t.lr), t.beta1, 0.999);
        Ok(Trainer {
            run,
            data,
            g_vs,
            d_vs,
            g,
            d,
            g_opt,
            d_opt,
            ema: None,
            n: t.batch * arch.pack(),
            ones: Tensor::ones([t.batch], (Kind::Float, device)),
            zeros: Tensor::zeros([t.batch], (Kind::Float, device)),
        })
    }

    /// Restores G, D and both optimisers from a checkpoint; returns what the checkpoint saved
    /// of the run so far.
    fn restore(&mut self, info: &CheckpointInfo, tensors: &HashMap<String, Tensor>) -> anyhow::Result<()> {
        if info.model != self.run.model {
            bail!("the checkpoint's model differs from this run's");
        }
        checkpoint::restore(&self.g_vs, tensors, "")?;
        checkpoint::restore(&self.d_vs, tensors, "")?;
        let device = self.run.device;
        let get = |k: &str| tensors.get(k).map(|t| t.to_device(device));
        self.g_opt.load_state(info.g_step, get).map_err(anyhow::Error::msg)?;
        self.d_opt.load_state(info.d_step, get).map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// Switches the weight average on, from a checkpoint's average when it has one, else from
    /// G's weights.
    fn start_ema(&mut self, saved: Option<&HashMap<String, Tensor>>) -> anyhow::Result<()> {
        let t = &self.run.train;
        if t.ema > 0.0 {
            let ema = Ema::new(&self.run.model, &self.g_vs, t.ema)?;
            if let Some(tensors) = saved.filter(|t| t.keys().any(|k| k.starts_with("ema."))) {
                checkpoint::restore(&ema.vs, tensors, "ema.")?;
            }
            self.ema = Some(ema);
        }
        Ok(())
    }

    /// Sets both learning rates for step `at` of `total`.
    fn schedule(&mut self, at: usize, total: usize) {
        let t = &self.run.train;
        self.g_opt.lr = t.schedule.lr(t.lr, at, total);
        self.d_opt.lr = t.schedule.lr(t.d_lr.unwrap_or(t.lr), at, total);
    }

    fn bce(logits: &Tensor, target: &Tensor) -> Tensor {
        logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::Mean)
    }

    /// One update of D: maximise log D(x) + log(1 − D(G(z))) (with the R1 penalty when set).
    /// Returns D's loss and its logits on the real samples.
    fn d_step(&mut self) -> (Tensor, Tensor) {
        let (t, device) = (&self.run.train, self.run.device);
        let x = self.data.sample(self.n, device).set_requires_grad(t.r1 > 0.0);
        let z = Tensor::randn([self.n, self.run.model.latent()], (Kind::Float, device));
        let fake = self.g.forward_t(&z, true).detach();
        let (dr, df) = (self.d.forward(&x), self.d.forward(&fake));
        let mut d_loss = Self::bce(&dr, &self.ones) + Self::bce(&df, &self.zeros);
        if t.r1 > 0.0 {
            let grad = Tensor::run_backward(&[dr.sum(Kind::Float)], &[&x], true, true).remove(0);
            let sq = grad.square().flatten(1, -1).sum_dim_intlist(1, false, Kind::Float);
            d_loss += sq.mean(Kind::Float) * (t.r1 / 2.0);
        }
        self.d_opt.backward_step(&d_loss, None);
        (d_loss, dr)
    }

    /// One update of G on its objective, then of the weight average. Returns G's loss and D's
    /// logits on the generated samples.
    fn g_step(&mut self) -> (Tensor, Tensor) {
        let device = self.run.device;
        let z = Tensor::randn([self.n, self.run.model.latent()], (Kind::Float, device));
        let df = self.d.forward(&self.g.forward_t(&z, true));
        let g_loss = match self.run.train.loss {
            GanLoss::NonSaturating => Self::bce(&df, &self.ones),
            GanLoss::Minimax => -Self::bce(&df, &self.zeros),
        };
        self.g_opt.backward_step(&g_loss, None);
        if let Some(ema) = &self.ema {
            ema.update();
        }
        (g_loss, df)
    }

    /// One training step: `d_steps` updates of D, one of G.
    fn step(&mut self) -> StepLosses {
        let (mut d_loss, mut d_real) = self.d_step();
        for _ in 1..self.run.train.d_steps {
            (d_loss, d_real) = self.d_step();
        }
        let (g_loss, d_fake) = self.g_step();
        StepLosses { d_loss, g_loss, d_real, d_fake }
    }

    /// The generator shown and exported: the average when there is one.
    fn shown(&self) -> &Generator {
        self.ema.as_ref().map_or(&self.g, |e| &e.g)
    }

    /// The end-of-epoch pictures: samples from the fixed noise (an image grid, or a scatter over
    /// the modes) and the loss curve so far.
    fn draw(&self, dir: &Path, e: &GanEpoch, fixed_z: &Tensor, curve: &[CurvePoint]) -> anyhow::Result<()> {
        let device = self.run.device;
        let fixed =
            tch::no_grad(|| self.shown().forward_t(&fixed_z.to_device(device), false)).to_device(Device::Cpu);
        let fixed_n = fixed_z.size()[0] as usize;
        let values: Vec<f32> = Vec::try_from(&fixed.view(-1))?;
        match self.data {
            TrainData::Points(m) => plots::scatter(
                &dir.join(format!("scatter-epoch-{:03}.png", e.epoch)),
                &values,
                &m.means,
                m.sigma,
                &format!("{}: {fixed_n} samples after epoch {}", m.name, e.epoch),
            )?,
            TrainData::Images(_) => Samples::from_flat(self.data.sample_shape(), fixed_n, values)?.write(
                &dir.join(format!("samples-epoch-{:03}.png", e.epoch)),
                [-1.0, 1.0],
                Some(8),
            )?,
        }
        plots::loss_curve(&dir.join("losses.png"), curve, &format!("GAN losses on {}", self.run.train.data))
    }

    /// Saves G, D, both optimisers and the average, with the run's progress.
    fn save(
        &self,
        path: &Path,
        epochs_done: usize,
        history: &[GanEpoch],
        curve: &[CurvePoint],
    ) -> anyhow::Result<()> {
        let info = CheckpointInfo {
            epochs_done,
            g_step: self.g_opt.step,
            d_step: self.d_opt.step,
            model: self.run.model.clone(),
            train: self.run.train.clone(),
            history: history.to_vec(),
            curve: curve.to_vec(),
        };
        let mut tensors: Vec<(String, Tensor)> = self.g_vs.variables().into_iter().collect();
        tensors.extend(self.d_vs.variables());
        tensors.extend(self.g_opt.state());
        tensors.extend(self.d_opt.state());
        if let Some(ema) = &self.ema {
            tensors.extend(ema.vs.variables().into_iter().map(|(k, v)| (format!("ema.{k}"), v)));
        }
        checkpoint::save(path, checkpoint::GAN, &tensors, &info)?;
        Ok(())
    }
}

/// Running sums of one epoch's step figures, and the loss curve's window.
#[derive(Default)]
struct EpochSums {
    d_loss: f64,
    g_loss: f64,
    d_real: f64,
    d_fake: f64,
    window: [f64; 2],
}

fn train_from(run: &GanRun, data: &TrainData, resume: Option<Saved>) -> anyhow::Result<GanOutcome> {
    let created = run.log_dir.as_ref().filter(|d| !d.exists());
    let result = train_epochs(run, data, resume);
    // A run that fails leaves no empty log folder of its own behind (plots it drew stay).
    if let (Err(_), Some(dir)) = (&result, created) {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

fn train_epochs(run: &GanRun, data: &TrainData, resume: Option<Saved>) -> anyhow::Result<GanOutcome> {
    let (arch, t) = (&run.model, &run.train);
    validate(t)?;
    let shape = data.sample_shape();
    check_arch(arch, &shape, &t.data)?;
    if let TrainData::Images(set) = data {
        if set.skipped > 0 && run.log == LogStyle::Progress {
            println!("{}: {} images, {} unreadable files skipped", t.data, set.len(), set.skipped);
        }
    }
    let steps_per_epoch = match (t.steps_per_epoch, data) {
        (Some(s), _) => s,
        (None, TrainData::Images(s)) => s.len().div_ceil((t.batch * arch.pack()) as usize),
        (None, TrainData::Points(_)) => bail!("--steps-per-epoch is needed with built-in 2-D data"),
    };
    if steps_per_epoch == 0 {
        bail!("--steps-per-epoch must be at least 1");
    }
    let mut trainer = Trainer::new(run, data)?;
    let (mut history, mut curve, start, saved) = match resume {
        None => (Vec::new(), Vec::new(), 0, None),
        Some((info, tensors)) => {
            trainer.restore(&info, &tensors)?;
            (info.history, info.curve, info.epochs_done, Some(tensors))
        }
    };
    trainer.start_ema(saved.as_ref())?;

    // Fixed noise for the per-epoch pictures: the portable generator `kiln sample` uses, so
    // `kiln sample OUT.onnx -n 64 --seed S` redraws the last grid.
    let latent = arch.latent();
    let fixed_n = if shape.len() == 1 { 2000 } else { 64 };
    let fixed_z =
        Tensor::from_slice(&kiln_infer::noise::normal(t.seed, fixed_n * latent as usize)).view([-1, latent]);
    if let Some(dir) = &run.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let total = t.epochs * steps_per_epoch;
    let bar = Progress::new((t.epochs - start) * steps_per_epoch, run.log);
    let curve_every = (steps_per_epoch / 10).max(1);
    run::training_begins();
    for epoch in start..t.epochs {
        let t0 = std::time::Instant::now();
        tch::manual_seed(run::epoch_seed(t.seed, epoch));
        let mut sums = EpochSums::default();
        for step in 0..steps_per_epoch {
            if run::stop_requested() {
                bar.finish();
                return Err(run::interrupted(epoch + 1, run.checkpoint.as_deref()));
            }
            trainer.schedule(epoch * steps_per_epoch + step, total);
            let s = trainer.step();
            let (dl, gl) = (s.d_loss.double_value(&[]), s.g_loss.double_value(&[]));
            sums.d_loss += dl;
            sums.g_loss += gl;
            sums.d_real += s.d_real.sigmoid().mean(Kind::Float).double_value(&[]);
            sums.d_fake += s.d_fake.sigmoid().mean(Kind::Float).double_value(&[]);
            sums.window[0] += dl;
            sums.window[1] += gl;
            if (step + 1) % curve_every == 0 || step + 1 == steps_per_epoch {
                let k = ((step % curve_every) + 1) as f64;
                curve.push(CurvePoint {
                    epoch: epoch as f64 + (step + 1) as f64 / steps_per_epoch as f64,
                    d_loss: sums.window[0] / k,
                    g_loss: sums.window[1] / k,
                });
                sums.window = [0.0; 2];
            }
            bar.step();
        }
        let k = steps_per_epoch as f64;
        let e = GanEpoch {
            epoch: epoch + 1,
            d_loss: sums.d_loss / k,
            g_loss: sums.g_loss / k,
            d_real: sums.d_real / k,
            d_fake: sums.d_fake / k,
            seconds: t0.elapsed().as_secs_f64(),
        };
        // Losses can stay finite (1e31) while Adam's moments overflow: the state is checked too.
        let bad = if !(e.d_loss.is_finite() && e.g_loss.is_finite()) {
            Some("a loss is not a number".to_string())
        } else {
            trainer.g_opt.first_non_finite().or_else(|| trainer.d_opt.first_non_finite()).map(run::non_finite)
        };
        if let Some(what) = bad {
            bar.finish();
            return Err(run::diverged(e.epoch, &what, run.checkpoint.as_deref()));
        }
        history.push(e);
        bar.set_message(format!("D(x) {:.3}  D(G(z)) {:.3}", e.d_real, e.d_fake));
        bar.println(format!(
            "epoch {:>4}/{}  D loss {:.4}  G loss {:.4}  D(x) {:.3}  D(G(z)) {:.3}  ({:.1} s)",
            e.epoch, t.epochs, e.d_loss, e.g_loss, e.d_real, e.d_fake, e.seconds
        ));
        if let Some(dir) = &run.log_dir {
            trainer.draw(dir, &e, &fixed_z, &curve)?;
        }
        if let Some(path) = &run.checkpoint {
            trainer.save(path, epoch + 1, &history, &curve)?;
        }
    }
    bar.finish();

    let meta = GeneratorMeta {
        latent: latent as usize,
        output_shape: shape.clone(),
        value_range: data.value_range(),
        dataset: t.data.clone(),
        train_config: serde_json::json!({
            "model": arch,
            "train": t,
            "epochs_done": history.len(),
            "final": history.last(),
        }),
    };
    let Trainer { g_vs, d_vs, g, d, ema, .. } = trainer;
    let outcome = GanOutcome { g_vs, d_vs, g, d, ema, history, meta };
    if let Some(out) = &run.out {
        export(&outcome, arch, out, &fixed_z, run.log)?;
    }
    Ok(outcome)
}

/// Writes the exported generator to `out` and checks it with tract against the trained one on
/// up to 16 of the fixed noise vectors (see [`run::check_export`]).
fn export(o: &GanOutcome, arch: &GanArch, out: &Path, fixed_z: &Tensor, log: LogStyle) -> anyhow::Result<()> {
    let stack = arch.generator_stack(o.exported().0)?;
    let model = kiln_export::generator_model(&stack, &o.meta)?;
    kiln_export::write_model(&model, out).with_context(|| format!("cannot export to {}", out.display()))?;
    let g = GeneratorModel::load(out)?;
    let z = fixed_z.narrow(0, 0, fixed_z.size()[0].min(16));
    let (n, latent) = (z.size()[0] as usize, z.size()[1] as usize);
    let device = o.exported().0.device();
    let want: Vec<f32> = Vec::try_from(&o.generate(&z.to_device(device)).to_device(Device::Cpu).view(-1))?;
    let z = Array2::from_shape_vec((n, latent), Vec::<f32>::try_from(&z.view(-1))?)?;
    let got: Vec<f32> = g.generate(z.view())?.iter().copied().collect();
    let diff = run::check_export(out, &got, &want, 1e-3, "generator")?;
    if log == LogStyle::Progress {
        println!("exported {} (checked with tract: max |Δ| = {diff:.1e})", out.display());
    }
    Ok(())
}
