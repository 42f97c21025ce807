//! GANs: two families of generator G and discriminator D, their training run and its data.
//!
//! - [`mlp`]: the seed lecture's fully connected GAN, for the 2-D mixtures.
//! - [`dcgan`]: Radford et al.'s convolutional GAN, for 28×28, 32×32 and 64×64 images.
//! - [`ema`]: the exponential moving average of G's weights that can be exported instead of G.
//! - [`config`]: what a run is made of, its defaults (from the data and the family), the checks.
//! - [`train`]: the training loop — D steps, G step, end of epoch, checkpoint, export.
//! - [`data`]: the built-in 2-D mixtures and image sets (Fashion-MNIST, IDX, picture folders).
//!
//! [`GanArch`], [`Generator`] and [`Discriminator`] dispatch to the family.

pub mod config;
pub mod data;
pub mod dcgan;
pub mod ema;
pub mod mlp;
pub mod train;

use kiln_export::GenLayer;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub use config::{GanLoss, GanOptions, GanRun, GanTrainConfig};
pub use data::TrainData;
pub use train::{resume, train, train_on, GanEpoch, GanOutcome, Resume};

/// The network family and its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum GanArch {
    Mlp(mlp::MlpGanConfig),
    Dcgan(dcgan::DcganConfig),
}

impl GanArch {
    /// Trainable values of G and D together (an upper bound).
    pub fn parameters(&self) -> u128 {
        match self {
            GanArch::Mlp(c) => c.parameters(),
            GanArch::Dcgan(c) => c.parameters(),
        }
    }

    /// Floats one sample holds in a training step (an upper estimate).
    pub fn sample_floats(&self) -> u128 {
        match self {
            GanArch::Mlp(c) => c.sample_floats(),
            GanArch::Dcgan(c) => c.sample_floats(),
        }
    }

    pub fn latent(&self) -> i64 {
        match self {
            GanArch::Mlp(c) => c.latent,
            GanArch::Dcgan(c) => c.latent,
        }
    }

    /// Samples D judges at once (PacGAN; 1 for DCGAN).
    pub fn pack(&self) -> i64 {
        match self {
            GanArch::Mlp(c) => c.pack,
            GanArch::Dcgan(_) => 1,
        }
    }

    /// The exporter's view of the generator held in `vs`.
    pub fn generator_stack(&self, vs: &nn::VarStore) -> anyhow::Result<Vec<GenLayer>> {
        match self {
            GanArch::Mlp(c) => c.generator_stack(vs),
            GanArch::Dcgan(c) => c.generator_stack(vs),
        }
    }
}

/// G of either family.
pub enum Generator {
    Mlp(mlp::Generator),
    Dcgan(dcgan::Generator),
}

impl Generator {
    pub fn new(arch: &GanArch, vs: &nn::Path) -> Self {
        match arch {
            GanArch::Mlp(c) => Generator::Mlp(mlp::Generator::new(vs, c)),
            GanArch::Dcgan(c) => Generator::Dcgan(dcgan::Generator::new(vs, c)),
        }
    }

    pub fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        match self {
            Generator::Mlp(g) => g.forward_t(z, train),
            Generator::Dcgan(g) => g.forward_t(z, train),
        }
    }
}

/// D of either family.
pub enum Discriminator {
    Mlp(mlp::Discriminator),
    Dcgan(dcgan::Discriminator),
}

impl Discriminator {
    pub fn new(arch: &GanArch, vs: &nn::Path) -> Self {
        match arch {
            GanArch::Mlp(c) => Discriminator::Mlp(mlp::Discriminator::new(vs, c)),
            GanArch::Dcgan(c) => Discriminator::Dcgan(dcgan::Discriminator::new(vs, c)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Discriminator::Mlp(d) => d.forward(x),
            Discriminator::Dcgan(d) => d.forward(x),
        }
    }
}

#[cfg(test)]
mod parameter_tests {
    use super::*;

    /// The bound from the configuration is at least what G and D hold, and not far above it.
    #[test]
    fn parameters_bound_what_g_and_d_hold() {
        let mlp = mlp::MlpGanConfig {
            latent: 3,
            hidden: 16,
            g_layers: 3,
            d_layers: 2,
            dim: 2,
            batch_norm: true,
            pack: 2,
            maxout: 3,
        };
        let dcgan = dcgan::DcganConfig { latent: 10, channels: 1, size: 28, g_width: 8, d_width: 8 };
        for arch in [GanArch::Mlp(mlp), GanArch::Dcgan(dcgan)] {
            let (g_vs, d_vs) = (nn::VarStore::new(tch::Device::Cpu), nn::VarStore::new(tch::Device::Cpu));
            let _g = Generator::new(&arch, &(g_vs.root() / "g"));
            let _d = Discriminator::new(&arch, &(d_vs.root() / "d"));
            let held: usize =
                [&g_vs, &d_vs].iter().flat_map(|vs| vs.trainable_variables()).map(|t| t.numel()).sum();
            let bound = arch.parameters();
            assert!(bound >= held as u128 && bound <= held as u128 * 11 / 10, "{arch:?}: {bound} for {held}");
        }
    }
}
