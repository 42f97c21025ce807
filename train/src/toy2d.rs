//! The 2-D mixtures of Gaussians that GAN papers measure mode collapse on, and their metrics.
//!
//! - `ring8`: 8 Gaussians with means on the unit circle, σ = 0.01.
//! - `grid25`: 25 Gaussians at (−4 + 2i, −4 + 2j), i, j = 0..4, σ = 0.05.
//!
//! Metrics follow VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018, Table 1): a
//! sample is *high quality* when it lies within 3σ of its nearest mode's centre; a mode is
//! *covered* when at least one high-quality sample is nearest to it; the *reverse KL* is
//! KL(p̂ ‖ uniform), p̂ being the histogram of the high-quality samples over the modes.

use serde::Serialize;

/// A mixture of equally weighted isotropic Gaussians.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    pub name: &'static str,
    pub means: Vec<[f32; 2]>,
    pub sigma: f32,
}

impl Mixture {
    pub fn ring8() -> Self {
        let means = (0..8)
            .map(|k| {
                let a = 2.0 * std::f32::consts::PI * k as f32 / 8.0;
                [a.cos(), a.sin()]
            })
            .collect();
        Mixture { name: "ring8", means, sigma: 0.01 }
    }

    pub fn grid25() -> Self {
        let means = (0..25).map(|k| [-4.0 + 2.0 * (k / 5) as f32, -4.0 + 2.0 * (k % 5) as f32]).collect();
        Mixture { name: "grid25", means, sigma: 0.05 }
    }

    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "ring8" => Some(Self::ring8()),
            "grid25" => Some(Self::grid25()),
            _ => None,
        }
    }

    /// The box the data lives in: every mean ± 4σ.
    pub fn value_range(&self) -> [f32; 2] {
        let m = self.means.iter().flat_map(|p| p.iter()).fold(0f32, |a, &v| a.max(v.abs()));
        [-(m + 4.0 * self.sigma), m + 4.0 * self.sigma]
    }

    /// `n` points `[n, 2]` on `device`, drawn with libtorch's generator.
    pub fn sample(&self, n: i64, device: tch::Device) -> tch::Tensor {
        let means: Vec<f32> = self.means.iter().flatten().copied().collect();
        let means = tch::Tensor::from_slice(&means).view([-1, 2]).to_device(device);
        let idx = tch::Tensor::randint(self.means.len() as i64, [n], (tch::Kind::Int64, device));
        means.index_select(0, &idx)
            + tch::Tensor::randn([n, 2], (tch::Kind::Float, device)) * self.sigma as f64
    }

    /// The metrics of `points` (`[x, y]` pairs).
    pub fn evaluate(&self, points: &[f32]) -> ModeMetrics {
        let k = self.means.len();
        let mut counts = vec![0usize; k];
        let mut hq = 0;
        let n = points.len() / 2;
        for p in points.chunks_exact(2) {
            let (best, d2) = self
                .means
                .iter()
                .enumerate()
                .map(|(i, m)| (i, (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2)))
                .fold((0, f32::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            if d2.sqrt() <= 3.0 * self.sigma {
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
            data: self.name.to_string(),
            samples: n,
            modes: k,
            modes_covered: covered,
            high_quality: if n == 0 { 0.0 } else { hq as f64 / n as f64 },
            reverse_kl,
            per_mode: counts,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_samples_score_perfectly_and_collapse_is_caught() {
        let ring = Mixture::ring8();
        let perfect: Vec<f32> = (0..800).flat_map(|i| ring.means[i % 8]).collect();
        let m = ring.evaluate(&perfect);
        assert_eq!((m.modes_covered, m.high_quality), (8, 1.0));
        assert!(m.reverse_kl.abs() < 1e-12);
        // All on two modes: 2 covered, KL = ln 4.
        let collapsed: Vec<f32> = (0..800).flat_map(|i| ring.means[i % 2]).collect();
        let m = ring.evaluate(&collapsed);
        assert_eq!(m.modes_covered, 2);
        assert!((m.reverse_kl - 4f64.ln()).abs() < 1e-9);
        // Off by 4σ: not high quality.
        let off: Vec<f32> = vec![1.04, 0.0];
        assert_eq!(ring.evaluate(&off).high_quality, 0.0);
    }

    #[test]
    fn grid_has_25_modes_two_apart() {
        let g = Mixture::grid25();
        assert_eq!(g.means.len(), 25);
        assert_eq!(g.means[0], [-4.0, -4.0]);
        assert_eq!(g.means[24], [4.0, 4.0]);
        assert_eq!(g.means[1], [-4.0, -2.0]);
    }
}
