//! Optimisation shared by every training loop: Adam (Kingma & Ba 2015) with PyTorch's defaults
//! and update rule, plain SGD, gradient clipping by global norm, and learning-rate schedules.
//!
//! The optimiser is written here rather than taken from tch's so that Adam's moments can be saved
//! in checkpoints: `--resume` then continues exactly where training stopped.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The same rate throughout (the seed lecture).
    #[default]
    Constant,
    /// Cosine decay from `lr` to `lr / 100` over all steps (Loshchilov & Hutter 2017, no
    /// restarts): large steps early, fine ones at the end.
    Cosine,
    /// The rate divided by 4 after each epoch whose held-out loss is no lower than the best
    /// before it (PyTorch's word_language_model); needs held-out data.
    Plateau,
}

impl Schedule {
    /// The rate for step `step` (0-based) of `total`, from the epoch's base rate
    /// ([`Schedule::epoch_base`]).
    pub fn lr(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            Schedule::Constant | Schedule::Plateau => base,
            Schedule::Cosine => {
                let min = base / 100.0;
                let t = step as f64 / total.max(1) as f64;
                min + 0.5 * (base - min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }

    /// The base rate of the epoch that follows epochs whose held-out losses were `held_out`:
    /// `base` but under [`Schedule::Plateau`], which divides it by 4 for each epoch that did not
    /// beat the best loss before it. A resumed run recomputes it from its saved history.
    pub fn epoch_base(self, base: f64, held_out: impl IntoIterator<Item = f64>) -> f64 {
        if self != Schedule::Plateau {
            return base;
        }
        let mut best = f64::INFINITY;
        let mut rate = base;
        for loss in held_out {
            if loss < best {
                best = loss;
            } else {
                rate /= 4.0;
            }
        }
        rate
    }
}

/// How the parameters move on each step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Adam, β = (0.9, 0.999), ε = 1e-8: each weight's step scaled by its gradients' history.
    #[default]
    Adam,
    /// Plain stochastic gradient descent, `p -= lr · g`, no momentum (PyTorch's
    /// word_language_model: large rates, 20, with tight clipping).
    Sgd,
}

/// One trainable tensor and, for Adam, its two moments.
#[derive(Debug)]
struct Param {
    name: String,
    value: Tensor,
    moments: Option<(Tensor, Tensor)>,
}

#[derive(Debug)]
pub struct Optimizer {
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Steps taken so far (Adam's bias correction counts them).
    pub step: i64,
    /// In name order.
    params: Vec<Param>,
}

impl Optimizer {
    /// `method` over every trainable variable of `vs` (Adam with β = (0.9, 0.999)).
    pub fn new(vs: &nn::VarStore, method: Method, lr: f64) -> Self {
        Self::build(vs, method, lr, 0.9, 0.999)
    }

    /// Adam with β = (0.9, 0.999) and ε = 1e-8.
    pub fn adam(vs: &nn::VarStore, lr: f64) -> Self {
        Self::new(vs, Method::Adam, lr)
    }

    /// Adam with other β (GANs use β1 = 0.5, after Radford et al. 2015).
    pub fn adam_with_betas(vs: &nn::VarStore, lr: f64, beta1: f64, beta2: f64) -> Self {
        Self::build(vs, Method::Adam, lr, beta1, beta2)
    }

    fn build(vs: &nn::VarStore, method: Method, lr: f64, beta1: f64, beta2: f64) -> Self {
        let mut vars: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(name, value)| {
                let moments = (method == Method::Adam).then(|| (value.zeros_like(), value.zeros_like()));
                Param { name, value, moments }
            })
            .collect();
        Optimizer { lr, beta1, beta2, eps: 1e-8, step: 0, params }
    }

    /// The first parameter whose value or moments hold NaN or ±inf: (its name, which of the
    /// three). A step taken on an exploded loss leaves them there, and every later step too.
    pub fn first_non_finite(&self) -> Option<(String, &'static str)> {
        let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) != 0;
        self.params.iter().find_map(|p| {
            let which = if !finite(&p.value) {
                "the weights"
            } else if p.moments.as_ref().is_some_and(|(m, v)| !finite(m) || !finite(v)) {
                "the optimiser's moments"
            } else {
                return None;
            };
            Some((p.name.clone(), which))
        })
    }

    /// Back-propagates `loss`, clips the gradients' global norm to `clip` if given, and takes one
    /// step.
    pub fn backward_step(&mut self, loss: &Tensor, clip: Option<f64>) {
        for p in &mut self.params {
            p.value.zero_grad();
        }
        loss.backward();
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.value.grad()).collect();
        // The norm costs a reduction (and a device sync) per parameter: only when clipping.
        let scale = match clip {
            Some(max) => {
                let norm = grads
                    .iter()
                    .filter(|g| g.defined())
                    .map(|g| g.pow_tensor_scalar(2).sum(tch::Kind::Double).double_value(&[]))
                    .sum::<f64>()
                    .sqrt();
                if norm > max {
                    max / (norm + 1e-6)
                } else {
                    1.0
                }
            }
            None => 1.0,
        };
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        for (p, g) in self.params.iter_mut().zip(grads) {
            if !g.defined() {
                continue;
            }
            match &mut p.moments {
                None => {
                    let _ = p.value.f_sub_(&(g * (self.lr * scale)));
                }
                Some((m, v)) => {
                    let g = if scale < 1.0 { g * scale } else { g };
                    m.copy_(&(&*m * self.beta1 + &g * (1.0 - self.beta1)));
                    v.copy_(&(&*v * self.beta2 + g.square() * (1.0 - self.beta2)));
                    // PyTorch: p -= lr/bc1 · m / (√v/√bc2 + ε)
                    let denom = v.sqrt() / bc2.sqrt() + self.eps;
                    let update = &*m / denom * (self.lr / bc1);
                    let _ = p.value.f_sub_(&update);
                }
            }
        }
    }

    /// Adam's moments, named `adam.m.<param>` and `adam.v.<param>`, for checkpoints (SGD has
    /// none).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .filter_map(|p| p.moments.as_ref().map(|(m, v)| (&p.name, m, v)))
            .flat_map(|(n, m, v)| {
                [(format!("adam.m.{n}"), m.shallow_clone()), (format!("adam.v.{n}"), v.shallow_clone())]
            })
            .collect()
    }

    /// Restores the step count and the moments saved by [`Optimizer::state`]; `get` looks a
    /// tensor up by name.
    pub fn load_state(
        &mut self,
        step: i64,
        mut get: impl FnMut(&str) -> Option<Tensor>,
    ) -> Result<(), String> {
        let _guard = tch::no_grad_guard();
        for p in &mut self.params {
            let Some((m, v)) = &mut p.moments else { continue };
            let n = &p.name;
            for (slot, key) in [(m, format!("adam.m.{n}")), (v, format!("adam.v.{n}"))] {
                let t = get(&key).ok_or_else(|| format!("the checkpoint lacks `{key}`"))?;
                if t.size() != p.value.size() {
                    return Err(format!("`{key}` has shape {:?}, expected {:?}", t.size(), p.value.size()));
                }
                slot.copy_(&t);
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plateau_schedule_quarters_the_rate_after_each_epoch_that_did_not_improve() {
        let p = Schedule::Plateau;
        assert_eq!(p.epoch_base(20.0, []), 20.0);
        assert_eq!(p.epoch_base(20.0, [5.0, 4.0, 3.5]), 20.0);
        assert_eq!(p.epoch_base(20.0, [5.0, 5.0]), 5.0, "equal is not better");
        // 4.2 is worse than 4.0, and 4.1 is still worse than the best (4.0): two quarters.
        assert_eq!(p.epoch_base(20.0, [5.0, 4.0, 4.2, 4.1, 3.9]), 1.25);
        assert_eq!(p.epoch_base(20.0, [f64::NAN]), 5.0, "NaN never improves");
        assert_eq!(Schedule::Cosine.epoch_base(20.0, [5.0, 6.0]), 20.0);
        assert_eq!(p.lr(5.0, 3, 10), 5.0);
    }

    #[test]
    fn sgd_steps_against_the_clipped_gradient_and_keeps_no_state() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut sgd = Optimizer::new(&vs, Method::Sgd, 0.5);
        // d/dw of 3·w0 + 4·w1 is (3, 4), norm 5.
        let loss = || (&w * Tensor::from_slice(&[3.0f32, 4.0])).sum(tch::Kind::Float);
        sgd.backward_step(&loss(), None);
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![1.0 - 1.5, 1.0 - 2.0]);
        // Clipped to norm 1: the gradient becomes (0.6, 0.8).
        sgd.backward_step(&loss(), Some(1.0));
        let got = Vec::<f32>::try_from(&w).unwrap();
        assert!((got[0] - (-0.5 - 0.3)).abs() < 1e-5 && (got[1] - (-1.0 - 0.4)).abs() < 1e-5, "{got:?}");
        assert!(sgd.state().is_empty());
        assert_eq!(sgd.step, 2);
    }

    #[test]
    fn a_finite_loss_can_leave_the_moments_infinite_and_that_is_found() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut adam = Optimizer::adam(&vs, 1e-3);
        adam.backward_step(&(&w * 2.0).sum(tch::Kind::Float), None);
        assert_eq!(adam.first_non_finite(), None);
        // A loss of 2e38 is a finite f32; its gradient squared is not.
        let loss = (&w * 1e38).sum(tch::Kind::Float);
        assert!(loss.double_value(&[]).is_finite());
        adam.backward_step(&loss, None);
        assert_eq!(adam.first_non_finite(), Some(("w".to_string(), "the optimiser's moments")));
    }
}
