//! Optimisation shared by every training loop: Adam (Kingma & Ba 2015) with PyTorch's defaults
//! and update rule, gradient clipping by global norm, and learning-rate schedules.
//!
//! Adam is written here rather than taken from tch's optimizer so that its moments can be saved
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
}

impl Schedule {
    /// The rate for step `step` (0-based) of `total`.
    pub fn lr(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let min = base / 100.0;
                let t = step as f64 / total.max(1) as f64;
                min + 0.5 * (base - min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Steps taken so far (for bias correction).
    pub step: i64,
    /// (name, parameter, first moment, second moment), in name order.
    params: Vec<(String, Tensor, Tensor, Tensor)>,
}

impl Adam {
    /// Adam over every trainable variable of `vs`, with β = (0.9, 0.999) and ε = 1e-8.
    pub fn new(vs: &nn::VarStore, lr: f64) -> Self {
        Self::with_betas(vs, lr, 0.9, 0.999)
    }

    /// Adam with other β (GANs use β1 = 0.5, after Radford et al. 2015).
    pub fn with_betas(vs: &nn::VarStore, lr: f64, beta1: f64, beta2: f64) -> Self {
        let mut vars: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(n, p)| {
                let (m, v) = (p.zeros_like(), p.zeros_like());
                (n, p, m, v)
            })
            .collect();
        Adam { lr, beta1, beta2, eps: 1e-8, step: 0, params }
    }

    /// The first parameter whose value or moments hold NaN or ±inf: (its name, which of the
    /// three). A step taken on an exploded loss leaves them there, and every later step too.
    pub fn first_non_finite(&self) -> Option<(String, &'static str)> {
        let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) != 0;
        self.params.iter().find_map(|(name, p, m, v)| {
            let which = if !finite(p) {
                "the weights"
            } else if !finite(m) || !finite(v) {
                "the optimiser's moments"
            } else {
                return None;
            };
            Some((name.clone(), which))
        })
    }

    /// Back-propagates `loss`, clips the gradients' global norm to `clip` if given, and takes one
    /// step.
    pub fn backward_step(&mut self, loss: &Tensor, clip: Option<f64>) {
        for (_, p, _, _) in &mut self.params {
            p.zero_grad();
        }
        loss.backward();
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p, _, _)| p.grad()).collect();
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
        for ((_, p, m, v), g) in self.params.iter_mut().zip(grads) {
            if !g.defined() {
                continue;
            }
            let g = if scale < 1.0 { g * scale } else { g };
            m.copy_(&(&*m * self.beta1 + &g * (1.0 - self.beta1)));
            v.copy_(&(&*v * self.beta2 + g.square() * (1.0 - self.beta2)));
            // PyTorch: p -= lr/bc1 · m / (√v/√bc2 + ε)
            let denom = v.sqrt() / bc2.sqrt() + self.eps;
            let update = &*m / denom * (self.lr / bc1);
            let _ = p.f_sub_(&update);
        }
    }

    /// The moments, named `adam.m.<param>` and `adam.v.<param>`, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .flat_map(|(n, _, m, v)| {
                [(format!("adam.m.{n}"), m.shallow_clone()), (format!("adam.v.{n}"), v.shallow_clone())]
            })
            .collect()
    }

    /// Restores moments saved by [`Adam::state`]; `get` looks a tensor up by name.
    pub fn load_state(
        &mut self,
        step: i64,
        mut get: impl FnMut(&str) -> Option<Tensor>,
    ) -> Result<(), String> {
        let _guard = tch::no_grad_guard();
        for (n, p, m, v) in &mut self.params {
            for (slot, key) in [(&mut *m, format!("adam.m.{n}")), (&mut *v, format!("adam.v.{n}"))] {
                let t = get(&key).ok_or_else(|| format!("the checkpoint lacks `{key}`"))?;
                if t.size() != p.size() {
                    return Err(format!("`{key}` has shape {:?}, expected {:?}", t.size(), p.size()));
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
    fn a_finite_loss_can_leave_the_moments_infinite_and_that_is_found() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut adam = Adam::new(&vs, 1e-3);
        adam.backward_step(&(&w * 2.0).sum(tch::Kind::Float), None);
        assert_eq!(adam.first_non_finite(), None);
        // A loss of 2e38 is a finite f32; its gradient squared is not.
        let loss = (&w * 1e38).sum(tch::Kind::Float);
        assert!(loss.double_value(&[]).is_finite());
        adam.backward_step(&loss, None);
        assert_eq!(adam.first_non_finite(), Some(("w".to_string(), "the optimiser's moments")));
    }
}
