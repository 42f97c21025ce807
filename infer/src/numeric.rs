//! Comparing model outputs: the one difference every equivalence check in kiln uses (the
//! trainer's export check, the round-trip, conformance and cross-platform tests).

/// The largest absolute difference between `a` and `b`; NaN when either holds a NaN or they
/// differ in length, so that a comparison built on it (`d <= tolerance`) fails instead of
/// passing by accident (a fold with `f32::max` would drop the NaN).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NAN;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, |m, d| {
        if d.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(d)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_see_nan_and_length() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert!(max_abs_diff(&[1.0, f32::NAN], &[1.0, 2.0]).is_nan());
        assert!(max_abs_diff(&[f32::NAN, 1.0], &[1.0, 1.0]).is_nan());
        assert!(max_abs_diff(&[1.0], &[1.0, 2.0]).is_nan());
        assert!(max_abs_diff(&[f32::INFINITY], &[f32::INFINITY]).is_nan(), "inf − inf is NaN");
    }
}
