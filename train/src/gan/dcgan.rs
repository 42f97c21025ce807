//! DCGAN (Radford, Metz & Chintala 2015) for 28×28, 32×32 and 64×64 images.
//!
//! ```text
//! G: z [b, latent] → view [b, latent, 1, 1]
//!    → ConvTranspose(k = s0, stride 1) → [b, w·2^(n−1), s0, s0] → BatchNorm → ReLU
//!    → n × { ConvTranspose(k 4, stride 2, pad 1): side ×2 } (BatchNorm + ReLU; the last: Tanh)
//! D: x [b, C, H, W] → n × { Conv(k 4, stride 2, pad 1): side ÷2, LeakyReLU 0.2 } (BatchNorm on
//!    all but the first) → Conv(k = s0) → one logit per image
//! ```
//!
//! with s0 = 7 and n = 2 for 28×28 (Fashion-MNIST), s0 = 4 and n = 3 or 4 for 32×32 and 64×64.
//! Convolutions have no bias (BatchNorm follows them, as in the paper's reference code); weights
//! are drawn from N(0, 0.02), BatchNorm scales from N(1, 0.02).
//!
//! Parameter paths (`g.convt0.weight`, `g.bn0.running_mean`, …, `d.conv0.weight`, …) are part of
//! the export contract: [`DcganConfig::generator_stack`] reads them.

use kiln_export::layers::{Activation, ConvTranspose2d};
use kiln_export::GenLayer;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, nn::ModuleT, Tensor};

/// The shape of a DCGAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DcganConfig {
    pub latent: i64,
    /// Image channels (1 or 3).
    pub channels: i64,
    /// Image side: 28, 32 or 64.
    pub size: i64,
    /// Channels of G's last hidden layer (doubling towards the input), and of D's first layer.
    pub g_width: i64,
    pub d_width: i64,
}

impl DcganConfig {
    /// The first feature map's side and the number of stride-2 layers, for an image side.
    pub fn plan(size: i64) -> Option<(i64, usize)> {
        match size {
            28 => Some((7, 2)),
            32 => Some((4, 3)),
            64 => Some((4, 4)),
            _ => None,
        }
    }

    fn checked_plan(&self) -> (i64, usize) {
        Self::plan(self.size).expect("DcganConfig::size is 28, 32 or 64 (checked by the caller)")
    }

    /// Trainable values of G and D together, counted from the layer shapes (an upper bound
    /// within BatchNorm's few per channel), in wide integers so absurd sizes cannot overflow.
    pub fn parameters(&self) -> u128 {
        let Some((s0, n)) = Self::plan(self.size) else { return 0 };
        let w = |x: i64| x.max(0) as u128;
        let mut total = 0u128;
        let mut inputs = w(self.latent);
        for i in 0..=n {
            let out = if i < n { w(self.g_width) << (n - 1 - i).min(64) } else { w(self.channels) };
            let k = if i == 0 { w(s0) } else { 4 };
            total = total
                .saturating_add(inputs.saturating_mul(out).saturating_mul(k * k))
                .saturating_add(2 * out);
            inputs = out;
        }
        let mut inputs = w(self.channels);
        for i in 0..n {
            let out = w(self.d_width) << i.min(64);
            total =
                total.saturating_add(inputs.saturating_mul(out).saturating_mul(16)).saturating_add(2 * out);
            inputs = out;
        }
        total.saturating_add(inputs.saturating_mul(w(s0) * w(s0)))
    }

    /// Floats one sample holds in a training step (an upper estimate): every feature map of G,
    /// then of D on a real and on a generated image, each with its normalised and activated
    /// copies, kept for the backward pass. Measured on the Fashion-MNIST defaults at a batch of
    /// 2048: estimated 1.9 GB, peak resident 1.6 GB (the data set included).
    pub fn sample_floats(&self) -> u128 {
        let Some((s0, n)) = Self::plan(self.size) else { return 0 };
        let w = |x: i64| x.max(0) as u128;
        let mut g = w(self.latent);
        for i in 0..=n {
            let channels = if i < n { w(self.g_width) << (n - 1 - i).min(64) } else { w(self.channels) };
            let side = w(s0) << i;
            g = g.saturating_add(channels.saturating_mul(side * side).saturating_mul(4));
        }
        let side = w(self.size);
        let mut d = w(self.channels).saturating_mul(side * side);
        for i in 0..n {
            let side = side >> (i + 1);
            d = d
                .saturating_add((w(self.d_width) << i.min(64)).saturating_mul(side * side).saturating_mul(4));
        }
        g.saturating_add(d.saturating_mul(2))
    }

    /// G's channel widths: the first feature map's, then after each stride-2 layer.
    fn g_channels(&self) -> Vec<i64> {
        let (_, n) = self.checked_plan();
        let mut c: Vec<i64> = (0..n).map(|i| self.g_width << (n - 1 - i)).collect();
        c.push(self.channels);
        c
    }

    /// The exporter's view of a [`Generator`] held in `vs`: Reshape, ConvTranspose, BatchNorm
    /// (running statistics), ReLU, Tanh.
    pub fn generator_stack(&self, vs: &nn::VarStore) -> anyhow::Result<Vec<GenLayer>> {
        let mut p = crate::weights::Params::new(vs);
        let (s0, n) = self.checked_plan();
        let ch = self.g_channels();
        let mut stack = vec![GenLayer::Reshape(vec![self.latent as usize, 1, 1])];
        let mut inputs = self.latent as usize;
        for (i, &out) in ch.iter().enumerate() {
            let (kernel, stride, padding) = if i == 0 { (s0 as usize, 1, 0) } else { (4, 2, 1) };
            let out = out as usize;
            stack.push(GenLayer::ConvTranspose(ConvTranspose2d {
                in_channels: inputs,
                out_channels: out,
                kernel,
                stride,
                padding,
                weight: p.take(&format!("g.convt{i}.weight"))?,
                bias: None,
            }));
            if i < n {
                stack.push(GenLayer::BatchNorm(p.batch_norm(&format!("g.bn{i}"), out)?));
                stack.push(GenLayer::Activation(Activation::Relu));
            } else {
                stack.push(GenLayer::Activation(Activation::Tanh));
            }
            inputs = out;
        }
        p.finish()?;
        Ok(stack)
    }
}

fn normal_init() -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev: 0.02 }
}

fn bn_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        ws_init: nn::Init::Randn { mean: 1.0, stdev: 0.02 },
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    }
}

/// G: `[batch, latent]` → `[batch, C, size, size]` in (−1, 1).
#[derive(Debug)]
pub struct Generator {
    layers: Vec<(nn::ConvTranspose2D, Option<nn::BatchNorm>)>,
    latent: i64,
}

impl Generator {
    pub fn new(vs: &nn::Path, c: &DcganConfig) -> Self {
        let (s0, n) = c.checked_plan();
        let ch = c.g_channels();
        let mut inputs = c.latent;
        let layers = (0..=n)
            .map(|i| {
                let (k, stride, padding) = if i == 0 { (s0, 1, 0) } else { (4, 2, 1) };
                let cfg = nn::ConvTransposeConfig {
                    stride,
                    padding,
                    bias: false,
                    ws_init: normal_init(),
                    ..Default::default()
                };
                let conv = nn::conv_transpose2d(vs / format!("convt{i}"), inputs, ch[i], k, cfg);
                let bn = (i < n).then(|| nn::batch_norm2d(vs / format!("bn{i}"), ch[i], bn_config()));
                inputs = ch[i];
                (conv, bn)
            })
            .collect();
        Generator { layers, latent: c.latent }
    }

    pub fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        let mut x = z.view([-1, self.latent, 1, 1]);
        for (conv, bn) in &self.layers {
            x = conv.forward(&x);
            x = match bn {
                Some(bn) => bn.forward_t(&x, train).relu(),
                None => x.tanh(),
            };
        }
        x
    }
}

/// D: `[batch, C, size, size]` → one logit per image `[batch]`.
#[derive(Debug)]
pub struct Discriminator {
    layers: Vec<(nn::Conv2D, Option<nn::BatchNorm>)>,
    out: nn::Conv2D,
}

impl Discriminator {
    pub fn new(vs: &nn::Path, c: &DcganConfig) -> Self {
        let (s0, n) = c.checked_plan();
        let mut inputs = c.channels;
        let layers = (0..n)
            .map(|i| {
                let width = c.d_width << i;
                let cfg = nn::ConvConfig {
                    stride: 2,
                    padding: 1,
                    bias: false,
                    ws_init: normal_init(),
                    ..Default::default()
                };
                let conv = nn::conv2d(vs / format!("conv{i}"), inputs, width, 4, cfg);
                // No BatchNorm on D's input layer (Radford et al.).
                let bn = (i > 0).then(|| nn::batch_norm2d(vs / format!("bn{i}"), width, bn_config()));
                inputs = width;
                (conv, bn)
            })
            .collect();
        let cfg = nn::ConvConfig { bias: false, ws_init: normal_init(), ..Default::default() };
        Discriminator { layers, out: nn::conv2d(vs / format!("conv{n}"), inputs, 1, s0, cfg) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for (conv, bn) in &self.layers {
            h = conv.forward(&h);
            if let Some(bn) = bn {
                h = bn.forward_t(&h, true);
            }
            h = h.maximum(&(&h * 0.2)); // LeakyReLU(0.2)
        }
        self.out.forward(&h).view([-1])
    }
}
