//! How well a generator covers a 2-D mixture, after VEEGAN (Srivastava et al. 2017) and PacGAN
//! (Lin et al. 2018, Table 1): a sample is *high quality* when it lies within 3σ of its nearest
//! mode's centre; a mode is *covered* when at least one high-quality sample is nearest to it; the
//! *reverse KL* is KL(p̂ ‖ uniform), p̂ being the histogram of the high-quality samples over the
//! modes.

use anyhow::bail;
use kiln_infer::ndarray::{ArrayView2, Ix2};
use kiln_infer::GeneratorModel;
use serde::Serialize;

use crate::gan::data::mixtures::Mixture;

/// Samples drawn when none is said: PacGAN's tables use 2,500.
pub const DEFAULT_SAMPLES: usize = 2500;

/// The metrics of `n` samples of generator `g` (named `model` in messages), drawn from the
/// noise of `seed`, against `mixture`.
pub fn evaluate(
    g: &GeneratorModel,
    model: &str,
    mixture: &Mixture,
    n: usize,
    seed: u64,
) -> anyhow::Result<ModeMetrics> {
    if n == 0 {
        bail!("--samples must be at least 1");
    }
    if g.meta().output_shape != [2] {
        bail!(
            "{model} makes samples of shape {:?}; --data {} needs 2-D points",
            g.meta().output_shape,
            mixture.name
        );
    }
    let samples = g.sample(n, seed)?;
    let points = samples.data.view().into_dimensionality::<Ix2>()?;
    Ok(mode_metrics(mixture, points))
}

/// Mode coverage and sample quality, as the PacGAN tables report them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeMetrics {
    pub data: String,
    pub samples: usize,
    pub modes: usize,
    pub modes_covered: usize,
    /// Fraction of samples within 3σ of their nearest mode.
    pub high_quality: f64,
    pub reverse_kl: f64,
    /// High-quality samples nearest to each mode.
    pub per_mode: Vec<usize>,
}

/// The metrics of `points` `[n, 2]` against the modes of `mixture`.
pub fn mode_metrics(mixture: &Mixture, points: ArrayView2<f32>) -> ModeMetrics {
    let k = mixture.means.len();
    let mut counts = vec![0usize; k];
    let mut hq = 0;
    let n = points.nrows();
    for p in points.rows() {
        let (best, d2) = mixture
            .means
            .iter()
            .enumerate()
            .map(|(i, m)| (i, (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2)))
            .fold((0, f32::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        if d2.sqrt() <= 3.0 * mixture.sigma {
            hq += 1;
            counts[best] += 1;
        }
    }
    let covered = counts.iter().filter(|&&c| c > 0).count();
    let reverse_kl = if hq == 0 {
        f64::INFINITY
    } else {
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / hq as f64;
                p * (p * k as f64).ln()
            })
            .sum()
    };
    ModeMetrics {
        data: mixture.name.to_string(),
        samples: n,
        modes: k,
        modes_covered: covered,
        high_quality: if n == 0 { 0.0 } else { hq as f64 / n as f64 },
        reverse_kl,
        per_mode: counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_infer::ndarray::Array2;

    fn points(p: impl Iterator<Item = [f32; 2]>) -> Array2<f32> {
        let flat: Vec<f32> = p.flatten().collect();
        Array2::from_shape_vec((flat.len() / 2, 2), flat).unwrap()
    }

    #[test]
    fn perfect_samples_score_perfectly_and_collapse_is_caught() {
        let ring = Mixture::ring8();
        let perfect = points((0..800).map(|i| ring.means[i % 8]));
        let m = mode_metrics(&ring, perfect.view());
        assert_eq!((m.modes_covered, m.high_quality), (8, 1.0));
        assert!(m.reverse_kl.abs() < 1e-12);
        // All on two modes: 2 covered, KL = ln 4.
        let collapsed = points((0..800).map(|i| ring.means[i % 2]));
        let m = mode_metrics(&ring, collapsed.view());
        assert_eq!(m.modes_covered, 2);
        assert!((m.reverse_kl - 4f64.ln()).abs() < 1e-9);
        // Off by 4σ: not high quality.
        let off = points([[1.04, 0.0]].into_iter());
        assert_eq!(mode_metrics(&ring, off.view()).high_quality, 0.0);
    }
}
