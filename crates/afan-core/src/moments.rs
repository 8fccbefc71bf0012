//! Moment exchange: clean content carrying the adversarial feature's first and second moments.
//!
//! `out = (a - mean(a)) / std(a) * std(b) + mean(b)` with `std = sqrt(var + eps)`. The release
//! takes the moments over the channels at each spatial position (positional normalization, as in
//! MoEx/PONO); the paper's abstract speaks of batch-normalization statistics, i.e. per channel over
//! batch and space. Both are offered; positional is the default because it is what the published
//! numbers were produced with.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The variance floor of the release.
pub const MOMENT_EPSILON: f64 = 1e-5;

/// Over which axes the moments are taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MomentStats {
    /// Over channels at each (sample, y, x): shape `[B, 1, H, W]` (release).
    #[default]
    Positional,
    /// Per channel over (batch, y, x): shape `[1, C, 1, 1]` (the abstract's reading).
    Batch,
}

/// Mean and standard deviation (`sqrt(unbiased var + eps)`) under the chosen statistics.
pub fn moments(x: Tensor<4>, stats: MomentStats, eps: f64) -> (Tensor<4>, Tensor<4>) {
    match stats {
        MomentStats::Positional => {
            let mean = x.clone().mean_dim(1);
            let var = x.var(1);
            (mean, var.add_scalar(eps).sqrt())
        }
        MomentStats::Batch => {
            let [b, c, h, w] = x.dims();
            let n = (b * h * w) as f64;
            let mean = x.clone().mean_dim(0).mean_dim(2).mean_dim(3);
            let centered = x - mean.clone();
            // Unbiased, like the positional variant, so the two differ only in their axes.
            let var = centered
                .square()
                .sum_dim(0)
                .sum_dim(2)
                .sum_dim(3)
                .div_scalar((n - 1.0).max(1.0));
            debug_assert_eq!(var.dims(), [1, c, 1, 1]);
            (mean, var.add_scalar(eps).sqrt())
        }
    }
}

/// Clean content `a` re-normalized to the moments of `b`.
pub fn moment_exchange(a: Tensor<4>, b: Tensor<4>, stats: MomentStats, eps: f64) -> Tensor<4> {
    let (mean_a, std_a) = moments(a.clone(), stats, eps);
    let (mean_b, std_b) = moments(b, stats, eps);
    (a - mean_a) / std_a * std_b + mean_b
}

/// Which strength points get their moments exchanged (release flag `mix_layer`).
///
/// Written as a string of `0`/`1`, one character per augmented point `1..N-1` (the clean point 0
/// is never exchanged): `0011` with five points exchanges points 3 and 4.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExchangeMask(Vec<bool>);

/// A mask string with a character other than `0` or `1`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid moment-exchange mask `{0}`: expected only the characters 0 and 1, e.g. `0011`")]
pub struct MaskParseError(pub String);

impl ExchangeMask {
    /// A mask of `len` points, all off.
    pub fn none(len: usize) -> Self {
        Self(vec![false; len])
    }

    /// Whether augmented point `i` (1-based, as in the release) is exchanged.
    pub fn applies_to(&self, point: usize) -> bool {
        point >= 1 && self.0.get(point - 1).copied().unwrap_or(false)
    }

    /// Number of augmented points the mask describes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a mask of no points.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for ExchangeMask {
    type Err = MaskParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.chars()
            .map(|c| match c {
                '0' => Ok(false),
                '1' => Ok(true),
                _ => Err(MaskParseError(s.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl fmt::Display for ExchangeMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &on in &self.0 {
            f.write_str(if on { "1" } else { "0" })?;
        }
        Ok(())
    }
}

impl Serialize for ExchangeMask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ExchangeMask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{device, tensor4};
    use burn::tensor::{TensorData, Tolerance};

    /// Direct f64 loops over the definition, independent of any tensor op.
    fn reference(a: &[f32], b: &[f32], shape: [usize; 4], stats: MomentStats) -> Vec<f32> {
        let [bn, c, h, w] = shape;
        let idx = |n: usize, ch: usize, y: usize, x: usize| ((n * c + ch) * h + y) * w + x;
        let groups: Vec<Vec<usize>> = match stats {
            MomentStats::Positional => (0..bn)
                .flat_map(|n| (0..h).flat_map(move |y| (0..w).map(move |x| (n, y, x))))
                .map(|(n, y, x)| (0..c).map(|ch| idx(n, ch, y, x)).collect())
                .collect(),
            MomentStats::Batch => (0..c)
                .map(|ch| {
                    (0..bn)
                        .flat_map(|n| (0..h).flat_map(move |y| (0..w).map(move |x| (n, y, x))))
                        .map(|(n, y, x)| idx(n, ch, y, x))
                        .collect()
                })
                .collect(),
        };
        let stat = |v: &[f32], g: &[usize]| {
            let m = g.iter().map(|&i| v[i] as f64).sum::<f64>() / g.len() as f64;
            let var =
                g.iter().map(|&i| (v[i] as f64 - m).powi(2)).sum::<f64>() / (g.len() - 1) as f64;
            (m, (var + 1e-5).sqrt())
        };
        let mut out = vec![0.0f32; a.len()];
        for g in &groups {
            let (ma, sa) = stat(a, g);
            let (mb, sb) = stat(b, g);
            for &i in g {
                out[i] = (((a[i] as f64 - ma) / sa) * sb + mb) as f32;
            }
        }
        out
    }

    fn sample(shape: [usize; 4], seed: u32) -> Vec<f32> {
        let n: usize = shape.iter().product();
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    #[test]
    fn exchange_matches_the_definition_for_both_statistics() {
        let dev = device();
        let shape = [2, 3, 2, 2];
        let (a, b) = (sample(shape, 7), sample(shape, 99));
        for stats in [MomentStats::Positional, MomentStats::Batch] {
            let out = moment_exchange(
                tensor4(&dev, shape, &a),
                tensor4(&dev, shape, &b),
                stats,
                MOMENT_EPSILON,
            );
            let expected = TensorData::new(reference(&a, &b, shape, stats), shape);
            out.to_data()
                .assert_approx_eq::<f32>(&expected, Tolerance::rel_abs(1e-5, 1e-5));
        }
    }

    #[test]
    fn hand_computed_positional_case() {
        // One position, two channels: a = (1, 3), b = (10, 14).
        // mean_a = 2, var_a = 2 (unbiased), mean_b = 12, var_b = 8.
        // out = (a - 2) / sqrt(2 + 1e-5) * sqrt(8 + 1e-5) + 12 ≈ (8, 16).
        let dev = device();
        let a = tensor4(&dev, [1, 2, 1, 1], &[1.0, 3.0]);
        let b = tensor4(&dev, [1, 2, 1, 1], &[10.0, 14.0]);
        let out = moment_exchange(a, b, MomentStats::Positional, MOMENT_EPSILON);
        let s = ((8.0f64 + 1e-5) / (2.0 + 1e-5)).sqrt();
        let expected = [12.0 - s, 12.0 + s].map(|v| v as f32);
        out.to_data().assert_approx_eq::<f32>(
            &TensorData::new(expected.to_vec(), [1, 2, 1, 1]),
            Tolerance::default(),
        );
    }

    #[test]
    fn exchanging_with_itself_is_nearly_identity() {
        let dev = device();
        let shape = [2, 4, 3, 3];
        let a = sample(shape, 3);
        let out = moment_exchange(
            tensor4(&dev, shape, &a),
            tensor4(&dev, shape, &a),
            MomentStats::Batch,
            MOMENT_EPSILON,
        );
        out.to_data()
            .assert_approx_eq::<f32>(&TensorData::new(a, shape), Tolerance::rel_abs(1e-5, 1e-5));
    }

    #[test]
    fn mask_parsing() {
        let m: ExchangeMask = "0011".parse().unwrap();
        assert_eq!(m.len(), 4);
        assert!(!m.applies_to(0) && !m.applies_to(1) && !m.applies_to(2));
        assert!(m.applies_to(3) && m.applies_to(4) && !m.applies_to(5));
        assert_eq!(m.to_string(), "0011");
        let err = "01x1".parse::<ExchangeMask>().unwrap_err();
        assert!(err.to_string().contains("01x1"));
    }
}
