//! The Fashion-MNIST report of a generator (`kiln-train eval --data fashion-mnist`): Inception
//! Score, Fréchet distance and class histogram of its samples, beside the same figures for real
//! images, all through the classifier of [`super::classifier`].

use std::path::PathBuf;

use anyhow::bail;
use kiln_infer::GeneratorModel;
use serde::Serialize;
use tch::Tensor;

use super::classifier::{self, Quality};
use crate::gan::data::images::{self, Split, FASHION_CLASSES};

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct FashionEval {
    /// Samples to draw.
    pub samples: usize,
    /// Seed of the noise.
    pub seed: u64,
    /// The classifier's cache file (trained and saved there on first use); `None`: the default
    /// cache ([`classifier::default_cache`]).
    pub classifier: Option<PathBuf>,
    /// Epochs to train the classifier when it is not cached.
    pub classifier_epochs: usize,
    /// Print what is being trained on stdout.
    pub log: bool,
}

/// The classifier behind a report.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifierSummary {
    pub test_accuracy: f64,
    pub epochs: usize,
    /// Loaded from the cache (false: trained for this report).
    pub cached: bool,
}

/// Generated against real figures.
#[derive(Debug, Clone, Serialize)]
pub struct FashionReport {
    pub model: String,
    pub seed: u64,
    pub classifier: ClassifierSummary,
    pub classes: [&'static str; 10],
    pub generated: Quality,
    /// IS and class histogram of the test set; the Fréchet distance of as many training images
    /// (a fixed random subset) to the test set, the floor a generator can reach.
    pub real: Quality,
    pub real_frechet_reference: String,
    /// Generated IS / real IS.
    pub is_ratio: f64,
    /// Every class holds between 5% and 15% of the samples.
    pub classes_within_5_to_15_percent: bool,
    /// The test set's size (the real IS and histogram are over it).
    #[serde(skip)]
    pub test_images: usize,
    /// Training images in the real Fréchet distance.
    #[serde(skip)]
    pub reference_images: usize,
}

impl Default for FashionEval {
    /// 10,000 samples from noise seed 0 (as many as the test set), the default cache, a
    /// classifier of 3 epochs, quiet.
    fn default() -> Self {
        FashionEval { samples: 10_000, seed: 0, classifier: None, classifier_epochs: 3, log: false }
    }
}

/// Measures generator `g` (named `model` in the report) on Fashion-MNIST.
pub fn evaluate(g: &GeneratorModel, model: &str, e: &FashionEval) -> anyhow::Result<FashionReport> {
    if e.samples == 0 {
        bail!("--samples must be at least 1");
    }
    if g.meta().output_shape != [1, 28, 28] {
        bail!(
            "{model} makes samples of shape {:?}; --data fashion-mnist needs 1×28×28 images",
            g.meta().output_shape
        );
    }
    let train = images::load_fashion_mnist(Split::Train)?;
    let test = images::load_fashion_mnist(Split::Test)?;
    let cache = e.classifier.clone().or_else(classifier::default_cache);
    if e.log && !cache.as_ref().is_some_and(|c| c.is_file()) {
        println!("training the Fashion-MNIST classifier ({} epochs; cached afterwards)", e.classifier_epochs);
    }
    let cls = classifier::load_or_train(cache.as_deref(), &train, &test, e.classifier_epochs, 0, e.log)?;
    let n = e.samples;
    let samples = g.sample(n, e.seed)?;
    let flat: Vec<f32> = samples.data.iter().copied().collect();
    let images = Tensor::from_slice(&flat).view([n as i64, 1, 28, 28]);
    let (test_features, test_probs) = cls.model.run(&test.images);
    let test_gauss = classifier::gaussian(&test_features);
    let generated = classifier::quality(&cls.model, &images, &test_gauss)?;
    tch::manual_seed(0);
    let pick = Tensor::randperm(train.len() as i64, (tch::Kind::Int64, tch::Device::Cpu)).narrow(
        0,
        0,
        (n.min(train.len())) as i64,
    );
    let real_train = classifier::quality(&cls.model, &train.images.index_select(0, &pick), &test_gauss)?;
    let real = Quality {
        images: test.len(),
        inception_score: classifier::inception_score(&test_probs),
        frechet_distance: real_train.frechet_distance,
        class_histogram: classifier::class_histogram(&test_probs),
    };
    Ok(FashionReport {
        model: model.to_string(),
        seed: e.seed,
        classifier: ClassifierSummary {
            test_accuracy: cls.info.test_accuracy,
            epochs: cls.info.epochs,
            cached: cls.cached,
        },
        classes: FASHION_CLASSES,
        is_ratio: generated.inception_score / real.inception_score,
        classes_within_5_to_15_percent: generated.class_histogram.iter().all(|&f| (0.05..=0.15).contains(&f)),
        generated,
        real,
        real_frechet_reference: format!("{} training images vs the test set", real_train.images),
        test_images: test.len(),
        reference_images: real_train.images,
    })
}
