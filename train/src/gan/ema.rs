//! An exponential moving average of G's variables (Yazıcı et al. 2019): the averaged generator
//! is the one exported, its samples free of the last steps' oscillation.

use anyhow::Context as _;
use tch::{nn, Tensor};

use super::{GanArch, Generator};

/// The averaged generator, updated after every G step.
pub struct Ema {
    pub vs: nn::VarStore,
    pub g: Generator,
    decay: f64,
    /// (average, live) pairs.
    pairs: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// An average of the generator in `live`, starting from its current weights.
    pub fn new(arch: &GanArch, live: &nn::VarStore, decay: f64) -> anyhow::Result<Self> {
        let vs = nn::VarStore::new(live.device());
        let g = Generator::new(arch, &(vs.root() / "g"));
        let live_vars = live.variables();
        let mut pairs = Vec::new();
        for (name, avg) in vs.variables() {
            let l = live_vars.get(&name).with_context(|| format!("no live `{name}` to average"))?;
            pairs.push((avg, l.shallow_clone()));
        }
        let ema = Ema { vs, g, decay, pairs };
        ema.copy_live();
        Ok(ema)
    }

    fn copy_live(&self) {
        tch::no_grad(|| {
            for (avg, live) in &self.pairs {
                avg.shallow_clone().copy_(live);
            }
        });
    }

    /// average ← decay · average + (1 − decay) · live.
    pub fn update(&self) {
        tch::no_grad(|| {
            for (avg, live) in &self.pairs {
                let _ = avg.shallow_clone().lerp_(live, 1.0 - self.decay);
            }
        });
    }
}
