//! Choosing words from a model's scores: softmax with a temperature, the top k, and drawing one
//! word at random among them.

use rand::Rng;

/// How the next word is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 always takes the most likely word.
    pub temperature: f32,
    /// Draw only among the `k` most likely words.
    pub top_k: Option<usize>,
}

impl Sampling {
    /// Checks the settings: a finite temperature ≥ 0, and `top_k` ≥ 1.
    pub fn check(&self) -> crate::Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(crate::Error::argument("temperature", "must be a finite number >= 0"));
        }
        if self.top_k == Some(0) {
            return Err(crate::Error::argument("top_k", "must be at least 1"));
        }
        Ok(())
    }

    /// Chooses an index of `logits`. `skip` (a stand-in such as `<unk>`) is never chosen
    /// unless it is the only word with any probability.
    pub fn choose(&self, logits: &[f32], skip: Option<usize>, rng: &mut impl Rng) -> usize {
        let mut probs = softmax(logits, self.temperature.max(f32::MIN_POSITIVE));
        if let Some(s) = skip {
            if probs.iter().enumerate().any(|(i, &p)| i != s && p > 0.0) {
                probs[s] = 0.0;
            }
        }
        if self.temperature == 0.0 {
            return top_k(&probs, 1)[0];
        }
        let candidates = top_k(&probs, self.top_k.unwrap_or(probs.len()));
        let total: f32 = candidates.iter().map(|&i| probs[i]).sum();
        let mut x = rng.random::<f32>() * total;
        for &i in &candidates {
            x -= probs[i];
            if x <= 0.0 {
                return i;
            }
        }
        candidates[candidates.len() - 1]
    }
}

/// Softmax of `logits / temperature`, computed in f64 for stability.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = temperature as f64;
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let exps: Vec<f64> = logits.iter().map(|&x| ((x as f64 - max) / t).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0], 1.0);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(top_k(&p, 3), [1, 2, 0]);
        // A low temperature sharpens the distribution.
        assert!(softmax(&[1.0, 3.0, 2.0], 0.1)[1] > p[1]);
    }

    #[test]
    fn choices_respect_temperature_top_k_and_skip() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let greedy = Sampling { temperature: 0.0, top_k: None };
        assert_eq!(greedy.choose(&[1.0, 3.0, 2.0], None, &mut rng), 1);
        let top2 = Sampling { temperature: 1.0, top_k: Some(2) };
        let all = Sampling { temperature: 1.0, top_k: None };
        for _ in 0..200 {
            assert_ne!(top2.choose(&[1.0, 3.0, 2.0], None, &mut rng), 0);
            assert_ne!(all.choose(&[1.0, 3.0, 2.0], Some(1), &mut rng), 1);
        }
        assert!(Sampling { temperature: -1.0, top_k: None }.check().is_err());
        assert!(Sampling { temperature: 1.0, top_k: Some(0) }.check().is_err());
    }
}
