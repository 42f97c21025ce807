//! What a GAN trains on: the built-in 2-D mixtures ([`mixtures`]) or a set of images
//! ([`images`]: Fashion-MNIST, IDX folders, picture folders).

pub mod images;
pub mod mixtures;

use std::path::Path;

use anyhow::bail;
use tch::{Device, Kind, Tensor};

use images::{FolderOptions, ImageSet, Split};
use mixtures::Mixture;

/// The data a run trains on.
pub enum TrainData {
    Points(Mixture),
    Images(ImageSet),
}

impl TrainData {
    /// Loads the data named by `spec` (see [`super::GanTrainConfig::data`]).
    pub fn load(spec: &str, folder: Option<FolderOptions>) -> anyhow::Result<Self> {
        if let Some(m) = Mixture::by_name(spec) {
            return Ok(TrainData::Points(m));
        }
        let set = if spec == "fashion-mnist" {
            images::load_fashion_mnist(Split::Train)?
        } else if let Some(dir) = spec.strip_prefix("idx:") {
            images::load_idx_dir(Path::new(dir), Split::Train)?
        } else if let Some(dir) = spec.strip_prefix("images:") {
            let opts = folder.unwrap_or(FolderOptions { size: 64, channels: 3 });
            images::load_image_folder(Path::new(dir), opts)?
        } else {
            bail!("--data {spec}: expected ring8, grid25, fashion-mnist, idx:FOLDER or images:FOLDER")
        };
        Ok(TrainData::Images(set))
    }

    /// Whether the samples are images (else 2-D points).
    pub fn is_images(&self) -> bool {
        matches!(self, TrainData::Images(_))
    }

    pub fn sample_shape(&self) -> Vec<usize> {
        match self {
            TrainData::Points(_) => vec![2],
            TrainData::Images(s) => s.sample_shape(),
        }
    }

    /// `n` real samples on `device` (images drawn with replacement).
    pub fn sample(&self, n: i64, device: Device) -> Tensor {
        match self {
            TrainData::Points(m) => m.sample(n, device),
            TrainData::Images(s) => {
                let idx = Tensor::randint(s.len() as i64, [n], (Kind::Int64, Device::Cpu));
                s.images.index_select(0, &idx).to_device(device)
            }
        }
    }

    /// The range the samples lie in.
    pub fn value_range(&self) -> [f32; 2] {
        match self {
            TrainData::Points(m) => m.value_range(),
            TrainData::Images(_) => [-1.0, 1.0],
        }
    }
}
