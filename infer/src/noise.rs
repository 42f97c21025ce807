//! Portable seeded noise: the same seed gives the same `z`, bit for bit, on x86_64 and on ARM.
//!
//! The uniform bits come from ChaCha8 (`rand_chacha`, specified to be identical on every
//! platform). They become normal deviates by the Box–Muller transform computed in f64 with the
//! `libm` crate — a pure-Rust port of musl's libm, so the same code runs everywhere — instead of
//! the platform's C library, whose `log`/`cos` may round differently. Rust never fuses `a * b + c`
//! into an FMA on its own, so the basic arithmetic is IEEE-exact and the same too.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` standard normal values from `seed`.
pub fn normal(seed: u64, n: usize) -> Vec<f32> {
    Normal::new(seed).take(n).collect()
}

/// The standard normal values of `seed`, without end: the first `n` are [`normal`]`(seed, n)`,
/// so a long draw can be taken a piece at a time.
pub struct Normal {
    rng: ChaCha8Rng,
    /// The second value of the last Box–Muller pair, not yet taken.
    spare: Option<f32>,
}

impl Normal {
    pub fn new(seed: u64) -> Self {
        Normal { rng: ChaCha8Rng::seed_from_u64(seed), spare: None }
    }
}

impl Iterator for Normal {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        if let Some(v) = self.spare.take() {
            return Some(v);
        }
        // u1 in (0, 1], u2 in [0, 1): 53 random bits each.
        let u1 = ((self.rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let u2 = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let r = libm::sqrt(-2.0 * libm::log(u1));
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some((r * libm::sin(theta)) as f32);
        Some((r * libm::cos(theta)) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_reproducible_and_standard_normal() {
        assert_eq!(normal(3, 1000), normal(3, 1000));
        assert_ne!(normal(3, 10), normal(4, 10));
        // A prefix of a longer draw is the shorter draw.
        assert_eq!(normal(3, 7), normal(3, 8)[..7]);
        // Taken in pieces of odd length, the stream is the same.
        let mut stream = Normal::new(3);
        let pieces: Vec<f32> = (0..3).flat_map(|_| stream.by_ref().take(3).collect::<Vec<_>>()).collect();
        assert_eq!(pieces, normal(3, 9));
        let x = normal(1, 200_000);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        // Standard errors: 1/√n ≈ 0.0022 for the mean, √(2/n) ≈ 0.0032 for the variance.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.015, "variance {var}");
        let within_1sd = x.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
        assert!((within_1sd - 0.6827).abs() < 0.005, "P(|z| < 1) = {within_1sd}");
    }

    #[test]
    fn golden_values_pin_the_stream() {
        // The first values for seed 3, as this code computed them on x86_64 when written; the
        // cross-platform tests (tests/edge.rs) compare the aarch64 and armv7 builds against them.
        let golden: [u32; 4] = GOLDEN_SEED3;
        let got: Vec<u32> = normal(3, 4).iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, golden, "as floats: {:?}", normal(3, 4));
    }

    // 0.84869134, 0.4756522, 1.300887, 0.75438887
    const GOLDEN_SEED3: [u32; 4] = [1062814678, 1056147631, 1067877239, 1061232545];
}
