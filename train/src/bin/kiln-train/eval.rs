//! `kiln-train eval`: flags onto `kiln_train::eval`, and the report as text or JSON.

use std::path::PathBuf;

use kiln_infer::GeneratorModel;
use kiln_train::eval::fashion::{self, FashionEval};
use kiln_train::eval::modes;
use kiln_train::gan::data::mixtures::Mixture;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The exported generator.
    model: PathBuf,
    /// The data it should reproduce: ring8, grid25 (PacGAN's mode metrics) or fashion-mnist
    /// (Inception Score, Fréchet distance and class histogram with a Fashion-MNIST classifier).
    #[arg(long, value_parser = ["ring8", "grid25", "fashion-mnist"])]
    data: String,
    /// How many samples to draw [default: 2500 for 2-D data, 10000 for fashion-mnist].
    #[arg(long)]
    samples: Option<usize>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// fashion-mnist: the classifier's cache file (trained on first use) [default:
    /// ~/.cache/kiln/fashion-mnist-classifier.safetensors].
    #[arg(long, value_name = "FILE")]
    classifier: Option<PathBuf>,
    /// fashion-mnist: epochs to train the classifier when it is not cached [default: 3].
    #[arg(long)]
    classifier_epochs: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let g = GeneratorModel::load(&a.model)?;
    let name = a.model.display().to_string();
    if a.data == "fashion-mnist" {
        let d = FashionEval::default();
        let e = FashionEval {
            samples: a.samples.unwrap_or(d.samples),
            seed: a.seed,
            classifier: a.classifier.clone(),
            classifier_epochs: a.classifier_epochs.unwrap_or(d.classifier_epochs),
            log: !a.json,
        };
        return print_fashion(&fashion::evaluate(&g, &name, &e)?, a.json);
    }
    let mixture = Mixture::by_name(&a.data).expect("clap checked the name");
    let m = modes::evaluate(&g, &name, &mixture, a.samples.unwrap_or(modes::DEFAULT_SAMPLES), a.seed)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        println!(
            "{}: {}/{} modes covered, {:.1}% high quality, reverse KL {:.4} ({} samples, seed {})",
            m.data,
            m.modes_covered,
            m.modes,
            100.0 * m.high_quality,
            m.reverse_kl,
            m.samples,
            a.seed
        );
    }
    Ok(())
}

fn print_fashion(r: &fashion::FashionReport, json: bool) -> anyhow::Result<()> {
    if json {
        // Through a JSON value: keys in alphabetical order.
        println!("{}", serde_json::to_string_pretty(&serde_json::to_value(r)?)?);
        return Ok(());
    }
    let (generated, real) = (&r.generated, &r.real);
    println!(
        "classifier: {:.2}% accuracy on the {} test images{}",
        100.0 * r.classifier.test_accuracy,
        r.test_images,
        if r.classifier.cached { " (cached)" } else { "" }
    );
    println!("{:<28} {:>10} {:>10}", "", "generated", "real");
    println!("{:<28} {:>10} {:>10}", "images", generated.images, real.images);
    println!("{:<28} {:>10.3} {:>10.3}", "Inception Score", generated.inception_score, real.inception_score);
    println!(
        "{:<28} {:>10.3} {:>10.3}",
        "Fréchet distance to test", generated.frechet_distance, real.frechet_distance
    );
    for (i, name) in r.classes.iter().enumerate() {
        println!(
            "{:<28} {:>9.1}% {:>9.1}%",
            format!("class {i} {name}"),
            100.0 * generated.class_histogram[i],
            100.0 * real.class_histogram[i]
        );
    }
    println!(
        "IS ratio {:.3} (generated / real test set); every class between 5% and 15%: {}",
        r.is_ratio,
        if r.classes_within_5_to_15_percent { "yes" } else { "no" }
    );
    println!("(real Fréchet distance: {} training images vs the test set)", r.reference_images);
    Ok(())
}
