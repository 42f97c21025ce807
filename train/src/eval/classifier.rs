//! Sample quality for Fashion-MNIST generators, measured with a classifier trained on the data
//! set itself (the Inception network of the published scores does not know clothes):
//!
//! - **Inception Score** (Salimans et al. 2016) with this classifier: exp(E_x KL(p(y|x) ‖ p(y))),
//!   over all samples at once (no splits). 1 for samples the classifier cannot tell apart, 10 at
//!   most for ten classes, each confidently recognised and equally frequent.
//! - **Fréchet distance** (Heusel et al. 2017, "FID") between Gaussians fitted to the
//!   classifier's 128 penultimate features of the samples and of the test set:
//!   ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½).
//! - The **class histogram**: the fraction of samples the classifier puts in each class.
//!
//! The classifier: two 3×3 convolutions (32, 64 channels) with ReLU and 2×2 max pooling, a
//! 128-unit ReLU layer (the features), a linear layer to 10 classes; Adam lr 1e-3, batch 128.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Kind, Tensor};

use crate::checkpoint;
use crate::gan::data::images::ImageSet;
use crate::optim::Optimizer;
use crate::run;
/// Feature size (the penultimate layer).
pub const FEATURES: i64 = 128;

#[derive(Debug)]
pub struct Classifier {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Classifier {
    pub fn new(vs: &nn::Path) -> Self {
        let pad = nn::ConvConfig { padding: 1, ..Default::default() };
        Classifier {
            conv1: nn::conv2d(vs / "conv1", 1, 32, 3, pad),
            conv2: nn::conv2d(vs / "conv2", 32, 64, 3, pad),
            fc1: nn::linear(vs / "fc1", 64 * 7 * 7, FEATURES, Default::default()),
            fc2: nn::linear(vs / "fc2", FEATURES, 10, Default::default()),
        }
    }

    /// `[n, 1, 28, 28]` in [−1, 1] → `[n, 128]`.
    pub fn features(&self, x: &Tensor) -> Tensor {
        let h = self.conv1.forward(x).relu().max_pool2d_default(2);
        let h = self.conv2.forward(&h).relu().max_pool2d_default(2);
        self.fc1.forward(&h.flatten(1, -1)).relu()
    }

    pub fn logits(&self, features: &Tensor) -> Tensor {
        self.fc2.forward(features)
    }

    /// Features and class probabilities of many images, in batches, without gradients.
    pub fn run(&self, images: &Tensor) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        let (mut feats, mut probs) = (Vec::new(), Vec::new());
        let n = images.size()[0];
        for start in (0..n).step_by(1000) {
            let x = images.narrow(0, start, (n - start).min(1000));
            let f = self.features(&x);
            probs.push(self.logits(&f).softmax(-1, Kind::Float));
            feats.push(f);
        }
        (Tensor::cat(&feats, 0), Tensor::cat(&probs, 0))
    }

    /// Fraction of `set` classified correctly.
    pub fn accuracy(&self, set: &ImageSet) -> anyhow::Result<f64> {
        let labels = set.labels.as_ref().context("the data set has no labels")?;
        let (_, probs) = self.run(&set.images);
        Ok(probs
            .argmax(-1, false)
            .eq_tensor(labels)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]))
    }
}

/// What the cached classifier's file says about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierInfo {
    pub epochs: usize,
    pub seed: u64,
    pub test_accuracy: f64,
}

/// A trained classifier and where it came from.
pub struct Trained {
    pub vs: nn::VarStore,
    pub model: Classifier,
    pub info: ClassifierInfo,
    /// Whether it was loaded from the cache (false: trained in this run).
    pub cached: bool,
}

/// The default cache file: `$XDG_CACHE_HOME/kiln/…` or `~/.cache/kiln/…`.
pub fn default_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("kiln").join("fashion-mnist-classifier.safetensors"))
}

/// Loads the classifier from `cache` when it holds one, otherwise trains it on `train` (reporting
/// its accuracy on `test`) and saves it there.
pub fn load_or_train(
    cache: Option<&Path>,
    train: &ImageSet,
    test: &ImageSet,
    epochs: usize,
    seed: u64,
    log: bool,
) -> anyhow::Result<Trained> {
    if let Some(path) = cache.filter(|p| p.is_file()) {
        let retrain =
            || format!("{} is not a kiln Fashion-MNIST classifier: delete it to retrain", path.display());
        let loaded = checkpoint::load(path, checkpoint::FASHION_CLASSIFIER).with_context(retrain)?;
        let info: ClassifierInfo = serde_json::from_value(loaded.info).with_context(retrain)?;
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = Classifier::new(&vs.root());
        checkpoint::restore(&vs, &loaded.tensors, "").with_context(|| format!("{}", path.display()))?;
        vs.freeze();
        return Ok(Trained { vs, model, info, cached: true });
    }
    let labels = train.labels.as_ref().context("the training images have no labels")?;
    tch::manual_seed(seed as i64);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Classifier::new(&vs.root());
    let mut adam = Optimizer::adam(&vs, 1e-3);
    let n = train.len() as i64;
    let batch = 128;
    for epoch in 0..epochs {
        let t0 = std::time::Instant::now();
        tch::manual_seed(run::epoch_seed(seed, epoch));
        let order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let mut loss_sum = 0.0;
        for start in (0..n).step_by(batch) {
            let idx = order.narrow(0, start, (n - start).min(batch as i64));
            let x = train.images.index_select(0, &idx);
            let y = labels.index_select(0, &idx);
            let loss = model.logits(&model.features(&x)).cross_entropy_for_logits(&y);
            loss_sum += loss.double_value(&[]) * idx.size()[0] as f64;
            adam.backward_step(&loss, None);
        }
        if log {
            println!(
                "classifier epoch {}/{epochs}: training loss {:.4} ({:.0} s)",
                epoch + 1,
                loss_sum / n as f64,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    vs.freeze();
    let test_accuracy = model.accuracy(test)?;
    let info = ClassifierInfo { epochs, seed, test_accuracy };
    if let Some(path) = cache {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        checkpoint::save(path, checkpoint::FASHION_CLASSIFIER, &tensors, &info)?;
    }
    Ok(Trained { vs, model, info, cached: false })
}

/// Mean and covariance (`[d]`, `[d, d]`, float64) of feature rows.
pub fn gaussian(features: &Tensor) -> (Tensor, Tensor) {
    let f = features.to_kind(Kind::Double);
    let mu = f.mean_dim(0, false, Kind::Double);
    let c = &f - &mu;
    let cov = c.tr().matmul(&c) / (f.size()[0] - 1) as f64;
    (mu, cov)
}

/// The Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂); tr (Σ₁Σ₂)^½ is computed as
/// tr (S Σ₂ S)^½ with S = Σ₁^½, both by symmetric eigendecomposition (negative rounding-error
/// eigenvalues clamped to 0).
pub fn frechet_distance(a: &(Tensor, Tensor), b: &(Tensor, Tensor)) -> f64 {
    let sqrt_psd = |m: &Tensor| {
        let (l, v) = m.linalg_eigh("L");
        v.matmul(&Tensor::diag_embed(&l.clamp_min(0.0).sqrt(), 0, -2, -1)).matmul(&v.tr())
    };
    let s = sqrt_psd(&a.1);
    let m = s.matmul(&b.1).matmul(&s);
    let (l, _) = m.linalg_eigh("L");
    let tr_sqrt = l.clamp_min(0.0).sqrt().sum(Kind::Double).double_value(&[]);
    let d = (&a.0 - &b.0).square().sum(Kind::Double).double_value(&[]);
    d + a.1.trace().double_value(&[]) + b.1.trace().double_value(&[]) - 2.0 * tr_sqrt
}

/// The Inception Score of class probabilities `[n, classes]`.
pub fn inception_score(probs: &Tensor) -> f64 {
    let p = probs.to_kind(Kind::Double).clamp_min(1e-12);
    let marginal = p.mean_dim(0, true, Kind::Double);
    let kl = (&p * (p.log() - marginal.log())).sum_dim_intlist(1, false, Kind::Double);
    kl.mean(Kind::Double).double_value(&[]).exp()
}

/// Fraction of rows whose most probable class is each class.
pub fn class_histogram(probs: &Tensor) -> Vec<f64> {
    let classes = probs.size()[1];
    let counts = probs.argmax(-1, false).bincount::<Tensor>(None, classes);
    let n = probs.size()[0] as f64;
    Vec::<i64>::try_from(&counts).unwrap_or_default().iter().map(|&c| c as f64 / n).collect()
}

/// One row of the quality report.
#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    pub images: usize,
    pub inception_score: f64,
    /// Against the test set's features.
    pub frechet_distance: f64,
    pub class_histogram: Vec<f64>,
}

/// The quality figures of `images` `[n, 1, 28, 28]` against the test set's feature Gaussian.
pub fn quality(model: &Classifier, images: &Tensor, test: &(Tensor, Tensor)) -> anyhow::Result<Quality> {
    let size = images.size();
    if size.len() != 4 || size[1..] != [1, 28, 28] {
        bail!("the Fashion-MNIST classifier takes 1×28×28 images, got {:?}", &size[1..]);
    }
    let (features, probs) = model.run(images);
    Ok(Quality {
        images: size[0] as usize,
        inception_score: inception_score(&probs),
        frechet_distance: frechet_distance(&gaussian(&features), test),
        class_histogram: class_histogram(&probs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inception_score_spans_one_to_the_number_of_classes() {
        // Every image one confident class, classes equally frequent: IS = number of classes.
        let confident = Tensor::eye(4, (Kind::Float, Device::Cpu)).repeat([5, 1]);
        assert!((inception_score(&confident) - 4.0).abs() < 1e-6);
        // All images the same confident class (mode collapse), or all uniform: IS = 1.
        let collapsed =
            Tensor::zeros([10, 4], (Kind::Float, Device::Cpu)).index_fill(1, &Tensor::from(0i64), 1.0);
        assert!((inception_score(&collapsed) - 1.0).abs() < 1e-6);
        assert!(
            (inception_score(&Tensor::full([10, 4], 0.25, (Kind::Float, Device::Cpu))) - 1.0).abs() < 1e-6
        );
        assert_eq!(class_histogram(&confident), vec![0.25; 4]);
    }

    #[test]
    fn frechet_distance_matches_the_closed_form_for_diagonal_gaussians() {
        // Diagonal Σ: FD = ‖μ₁ − μ₂‖² + Σᵢ (σ₁ᵢ − σ₂ᵢ)², σ the standard deviations.
        let opts = (Kind::Double, Device::Cpu);
        let a = (
            Tensor::from_slice(&[0.0, 1.0, 2.0]),
            Tensor::diag_embed(&Tensor::from_slice(&[1.0, 4.0, 9.0]), 0, -2, -1),
        );
        let b = (
            Tensor::from_slice(&[1.0, 1.0, 0.0]),
            Tensor::diag_embed(&Tensor::from_slice(&[4.0, 4.0, 1.0]), 0, -2, -1),
        );
        let want = (1.0 + 0.0 + 4.0) + (1.0 + 0.0 + 4.0);
        assert!((frechet_distance(&a, &b) - want).abs() < 1e-9, "{}", frechet_distance(&a, &b));
        // A full covariance against itself: 0.
        let r = Tensor::randn([5, 5], opts);
        let full = (Tensor::zeros([5], opts), r.matmul(&r.tr()) + Tensor::eye(5, opts));
        assert!(frechet_distance(&full, &(full.0.shallow_clone(), full.1.shallow_clone())).abs() < 1e-8);
        // The fitted Gaussian of rows: mean and unbiased covariance.
        let rows = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 6.0]).view([2, 2]);
        let (mu, cov) = gaussian(&rows);
        assert_eq!(Vec::<f64>::try_from(&mu).unwrap(), [2.0, 4.0]);
        assert_eq!(Vec::<f64>::try_from(&cov.view(-1)).unwrap(), [2.0, 4.0, 4.0, 8.0]);
    }
}
