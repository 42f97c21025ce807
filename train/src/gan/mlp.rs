//! The seed lecture's GAN, fully connected: generator G(z), discriminator D(x), top to bottom.
//!
//! Parameter paths (`g.l0.weight`, `g.bn0.running_mean`, `g.out.weight`, `d.l0.weight`, …) are
//! part of the export contract: [`MlpGanConfig::generator_stack`] reads them.

use kiln_export::layers::{Activation, Linear};
use kiln_export::GenLayer;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, nn::ModuleT, Tensor};

use crate::weights::Params;

/// The shape of an MLP GAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpGanConfig {
    /// Noise size.
    pub latent: i64,
    /// Width of every hidden layer (G and D).
    pub hidden: i64,
    /// Hidden layers of G and of D.
    pub g_layers: i64,
    pub d_layers: i64,
    /// Size of one sample.
    pub dim: i64,
    /// Batch normalisation after each hidden layer of G.
    pub batch_norm: bool,
    /// PacGAN packing: D judges `pack` samples at once (1 = a plain GAN).
    pub pack: i64,
    /// D's hidden units: maxout over this many linear pieces (Goodfellow et al. 2013, the
    /// discriminator of the VEEGAN and PacGAN 2-D experiments); 1 = LeakyReLU(0.2).
    #[serde(default = "crate::checkpoint::one")]
    pub maxout: i64,
}

impl MlpGanConfig {
    /// Trainable values of G and D together (an upper bound: BatchNorm and maxout counted
    /// generously), in wide integers so absurd sizes cannot overflow.
    pub fn parameters(&self) -> u128 {
        let w = |x: i64| x.max(0) as u128;
        let layer = |i: u128, o: u128| i.saturating_mul(o).saturating_add(o);
        let (h, m) = (w(self.hidden), w(self.maxout).max(1));
        let g = layer(w(self.latent), h)
            .saturating_add(layer(h, h).saturating_mul(w(self.g_layers).saturating_sub(1)))
            .saturating_add(layer(h, w(self.dim)))
            .saturating_add(h.saturating_mul(4).saturating_mul(w(self.g_layers)));
        let d = layer(w(self.dim).saturating_mul(w(self.pack)), h.saturating_mul(m))
            .saturating_add(layer(h, h.saturating_mul(m)).saturating_mul(w(self.d_layers).saturating_sub(1)))
            .saturating_add(layer(h, 1));
        g.saturating_add(d)
    }

    /// Floats one sample holds in a training step (an upper estimate): G's layers (linear,
    /// normalised and activated outputs), then D's on a real and on a generated sample, kept for
    /// the backward pass. Measured on ring8's defaults at a batch of 200,000: estimated 3.1 GB,
    /// peak resident 2.5 GB.
    pub fn sample_floats(&self) -> u128 {
        let w = |x: i64| x.max(0) as u128;
        let (h, m) = (w(self.hidden), w(self.maxout).max(1));
        let g = w(self.latent)
            .saturating_add(w(self.g_layers).saturating_mul(h).saturating_mul(4))
            .saturating_add(w(self.dim));
        let d = w(self.dim)
            .saturating_add(w(self.d_layers).saturating_mul(h).saturating_mul(m).saturating_mul(3))
            .saturating_add(1);
        g.saturating_add(d.saturating_mul(2))
    }

    /// The exporter's view of a [`Generator`] held in `vs` (BatchNorm with its running
    /// statistics).
    pub fn generator_stack(&self, vs: &nn::VarStore) -> anyhow::Result<Vec<GenLayer>> {
        let mut p = Params::new(vs);
        let mut stack = Vec::new();
        let mut width = self.latent as usize;
        let h = self.hidden as usize;
        for i in 0..self.g_layers {
            stack.push(GenLayer::Linear(Linear {
                inputs: width,
                outputs: h,
                weight: p.take(&format!("g.l{i}.weight"))?,
                bias: p.take(&format!("g.l{i}.bias"))?,
            }));
            if self.batch_norm {
                stack.push(GenLayer::BatchNorm(p.batch_norm(&format!("g.bn{i}"), h)?));
            }
            stack.push(GenLayer::Activation(Activation::Relu));
            width = h;
        }
        stack.push(GenLayer::Linear(Linear {
            inputs: width,
            outputs: self.dim as usize,
            weight: p.take("g.out.weight")?,
            bias: p.take("g.out.bias")?,
        }));
        p.finish()?;
        Ok(stack)
    }
}

/// G: `[batch, latent]` → `[batch, dim]`; Linear (+ BatchNorm) + ReLU per hidden layer.
#[derive(Debug)]
pub struct Generator {
    hidden: Vec<(nn::Linear, Option<nn::BatchNorm>)>,
    out: nn::Linear,
}

impl Generator {
    pub fn new(vs: &nn::Path, c: &MlpGanConfig) -> Self {
        let mut width = c.latent;
        let hidden = (0..c.g_layers)
            .map(|i| {
                let l = nn::linear(vs / format!("l{i}"), width, c.hidden, Default::default());
                let bn = c
                    .batch_norm
                    .then(|| nn::batch_norm1d(vs / format!("bn{i}"), c.hidden, Default::default()));
                width = c.hidden;
                (l, bn)
            })
            .collect();
        Generator { hidden, out: nn::linear(vs / "out", width, c.dim, Default::default()) }
    }

    pub fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        let mut x = z.shallow_clone();
        for (l, bn) in &self.hidden {
            x = l.forward(&x);
            if let Some(bn) = bn {
                x = bn.forward_t(&x, train);
            }
            x = x.relu();
        }
        self.out.forward(&x)
    }
}

/// D: `pack` samples `[batch·pack, dim]` → one logit per pack `[batch]`; LeakyReLU(0.2) or
/// maxout units.
#[derive(Debug)]
pub struct Discriminator {
    hidden: Vec<nn::Linear>,
    out: nn::Linear,
    pack: i64,
    dim: i64,
    maxout: i64,
}

impl Discriminator {
    pub fn new(vs: &nn::Path, c: &MlpGanConfig) -> Self {
        let mut width = c.dim * c.pack;
        let hidden = (0..c.d_layers)
            .map(|i| {
                let l = nn::linear(vs / format!("l{i}"), width, c.hidden * c.maxout, Default::default());
                width = c.hidden;
                l
            })
            .collect();
        Discriminator {
            hidden,
            out: nn::linear(vs / "out", width, 1, Default::default()),
            pack: c.pack,
            dim: c.dim,
            maxout: c.maxout,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.view([-1, self.pack * self.dim]); // [batch, pack·dim]
        for l in &self.hidden {
            let a = l.forward(&h);
            h = if self.maxout > 1 {
                // Unit j is the largest of its pieces: columns j·maxout … (j+1)·maxout − 1.
                let rows = a.size()[0];
                a.view([rows, -1, self.maxout]).amax([2], false)
            } else {
                a.maximum(&(&a * 0.2)) // LeakyReLU(0.2)
            };
        }
        self.out.forward(&h).view([-1]) // [batch]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A maxout unit is the largest of its `maxout` consecutive pieces of the layer's output.
    #[test]
    fn maxout_units_take_the_largest_piece() {
        tch::manual_seed(0);
        let c = MlpGanConfig {
            latent: 2,
            hidden: 4,
            g_layers: 1,
            d_layers: 1,
            dim: 2,
            batch_norm: false,
            pack: 1,
            maxout: 3,
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let d = Discriminator::new(&(vs.root() / "d"), &c);
        let x = Tensor::randn([5, 2], tch::kind::FLOAT_CPU);
        let pieces = d.hidden[0].forward(&x); // [5, 12]
        assert_eq!(pieces.size(), [5, 12]);
        let mut units = Vec::new();
        for j in 0..4 {
            units.push(pieces.narrow(1, j * 3, 3).amax([1], true)); // [5, 1]
        }
        let expected = d.out.forward(&Tensor::cat(&units, 1)).view([-1]);
        let got = d.forward(&x);
        assert!((got - expected).abs().max().double_value(&[]) < 1e-6);
    }

    /// Models saved before `maxout` existed read as LeakyReLU discriminators.
    #[test]
    fn configs_without_maxout_read_as_one_piece() {
        let old = r#"{"latent":2,"hidden":8,"g_layers":1,"d_layers":1,"dim":2,"batch_norm":false,"pack":2}"#;
        let c: MlpGanConfig = serde_json::from_str(old).unwrap();
        assert_eq!((c.maxout, c.pack), (1, 2));
    }
}
