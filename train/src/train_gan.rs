//! GAN training on the built-in 2-D mixtures: alternate one discriminator step and one generator
//! step on fresh data and noise, log the losses and the means of D(x) and D(G(z)), export G.

use std::path::PathBuf;

use anyhow::Context as _;
use kiln_export::layers::{Activation, BatchNorm, Linear};
use kiln_export::GenLayer;
use kiln_infer::contract::GeneratorMeta;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Reduction, Tensor};

use crate::adam::Adam;
use crate::gan::{Discriminator, Generator, MlpGanConfig};
use crate::toy2d::Mixture;

/// G's objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// The seed's objective as written: G minimises E[log(1 − D(G(z)))].
    Minimax,
    /// G maximises E[log D(G(z))] (Goodfellow et al. 2014): strong gradients early on.
    NonSaturating,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanTrainConfig {
    pub data: String,
    pub loss: GanLoss,
    pub lr: f64,
    pub beta1: f64,
    /// Packs per step (each of `pack` samples).
    pub batch: i64,
    pub steps_per_epoch: usize,
    pub epochs: usize,
    /// Learning-rate schedule over all steps (both networks).
    pub schedule: crate::train_lm::Schedule,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GanEpoch {
    pub epoch: usize,
    pub d_loss: f64,
    pub g_loss: f64,
    /// Mean D(x) on real data and D(G(z)) on generated data (probabilities).
    pub d_real: f64,
    pub d_fake: f64,
}

pub struct GanRun {
    pub model: MlpGanConfig,
    pub train: GanTrainConfig,
    pub device: Device,
    pub out: Option<PathBuf>,
    pub verbose: bool,
}

pub struct GanOutcome {
    pub g_vs: nn::VarStore,
    pub generator: Generator,
    pub history: Vec<GanEpoch>,
    pub meta: GeneratorMeta,
}

pub fn train_gan(run: &GanRun) -> anyhow::Result<GanOutcome> {
    let data = Mixture::by_name(&run.train.data)
        .with_context(|| format!("--data {}: expected ring8 or grid25", run.train.data))?;
    let (c, t, device) = (&run.model, &run.train, run.device);
    tch::manual_seed(t.seed as i64);
    let g_vs = nn::VarStore::new(device);
    let d_vs = nn::VarStore::new(device);
    let g = Generator::new(&(g_vs.root() / "g"), c);
    let d = Discriminator::new(&(d_vs.root() / "d"), c);
    let mut g_opt = Adam::with_betas(&g_vs, t.lr, t.beta1, 0.999);
    let mut d_opt = Adam::with_betas(&d_vs, t.lr, t.beta1, 0.999);
    let n = t.batch * c.pack;
    let ones = Tensor::ones([t.batch], (Kind::Float, device));
    let zeros = Tensor::zeros([t.batch], (Kind::Float, device));
    let bce = |logits: &Tensor, target: &Tensor| {
        logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::Mean)
    };
    let mut history = Vec::new();
    let total = t.epochs * t.steps_per_epoch;
    for epoch in 0..t.epochs {
        let mut sums = [0f64; 4];
        for step in 0..t.steps_per_epoch {
            let lr = t.schedule.lr(t.lr, epoch * t.steps_per_epoch + step, total);
            (g_opt.lr, d_opt.lr) = (lr, lr);
            // D: maximise log D(x) + log(1 − D(G(z))).
            let x = data.sample(n, device);
            let fake = g.forward_t(&Tensor::randn([n, c.latent], (Kind::Float, device)), true).detach();
            let (dr, df) = (d.forward(&x), d.forward(&fake));
            let d_loss = bce(&dr, &ones) + bce(&df, &zeros);
            d_opt.backward_step(&d_loss, None);
            // G: one of the two objectives.
            let df = d.forward(&g.forward_t(&Tensor::randn([n, c.latent], (Kind::Float, device)), true));
            let g_loss = match t.loss {
                GanLoss::NonSaturating => bce(&df, &ones),
                GanLoss::Minimax => -bce(&df, &zeros),
            };
            g_opt.backward_step(&g_loss, None);
            sums[0] += d_loss.double_value(&[]);
            sums[1] += g_loss.double_value(&[]);
            sums[2] += dr.sigmoid().mean(Kind::Float).double_value(&[]);
            sums[3] += df.sigmoid().mean(Kind::Float).double_value(&[]);
        }
        let k = t.steps_per_epoch as f64;
        let e = GanEpoch {
            epoch: epoch + 1,
            d_loss: sums[0] / k,
            g_loss: sums[1] / k,
            d_real: sums[2] / k,
            d_fake: sums[3] / k,
        };
        if run.verbose {
            println!(
                "epoch {:>4}/{}  D loss {:.4}  G loss {:.4}  D(x) {:.3}  D(G(z)) {:.3}",
                e.epoch, t.epochs, e.d_loss, e.g_loss, e.d_real, e.d_fake
            );
        }
        history.push(e);
    }
    let meta = GeneratorMeta {
        latent: c.latent as usize,
        output_shape: vec![c.dim as usize],
        value_range: data.value_range(),
        dataset: data.name.to_string(),
        train_config: serde_json::json!({"model": c, "train": t, "final": history.last()}),
    };
    let outcome = GanOutcome { g_vs, generator: g, history, meta };
    if let Some(out) = &run.out {
        let stack = generator_stack(&outcome.g_vs, c)?;
        let model = kiln_export::generator_model(&stack, &outcome.meta)?;
        kiln_export::write_model(&model, out)?;
    }
    Ok(outcome)
}

/// The exporter's view of a [`Generator`] held in `vs` (BatchNorm with its running statistics).
pub fn generator_stack(vs: &nn::VarStore, c: &MlpGanConfig) -> anyhow::Result<Vec<GenLayer>> {
    let mut p = crate::export::Params::new(vs);
    let mut stack = Vec::new();
    let mut width = c.latent as usize;
    let h = c.hidden as usize;
    for i in 0..c.g_layers {
        stack.push(GenLayer::Linear(Linear {
            inputs: width,
            outputs: h,
            weight: p.take(&format!("g.l{i}.weight"))?,
            bias: p.take(&format!("g.l{i}.bias"))?,
        }));
        if c.batch_norm {
            stack.push(GenLayer::BatchNorm(BatchNorm {
                channels: h,
                gamma: p.take(&format!("g.bn{i}.weight"))?,
                beta: p.take(&format!("g.bn{i}.bias"))?,
                running_mean: p.take(&format!("g.bn{i}.running_mean"))?,
                running_var: p.take(&format!("g.bn{i}.running_var"))?,
                eps: 1e-5,
            }));
        }
        stack.push(GenLayer::Activation(Activation::Relu));
        width = h;
    }
    stack.push(GenLayer::Linear(Linear {
        inputs: width,
        outputs: c.dim as usize,
        weight: p.take("g.out.weight")?,
        bias: p.take("g.out.bias")?,
    }));
    p.finish()?;
    Ok(stack)
}
