//! The 2-D mixtures of Gaussians that GAN papers measure mode collapse on (their metrics are
//! in [`crate::eval::modes`]).
//!
//! - `ring8`: 8 Gaussians with means on the unit circle, σ = 0.01.
//! - `grid25`: 25 Gaussians at (−4 + 2i, −4 + 2j), i, j = 0..4, σ = 0.05.

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_25_modes_two_apart() {
        let g = Mixture::grid25();
        assert_eq!(g.means.len(), 25);
        assert_eq!(g.means[0], [-4.0, -4.0]);
        assert_eq!(g.means[24], [4.0, 4.0]);
        assert_eq!(g.means[1], [-4.0, -2.0]);
    }
}
