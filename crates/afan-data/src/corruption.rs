//! Corrupted copies of test images, for the paper's generalisation claim: a model trained with
//! A-FAN should lose less accuracy than its baseline when the test images are noisy, blurred or
//! low in contrast.
//!
//! The three corruptions and their default strengths are CIFAR-10-C's (Hendrycks & Dietterich,
//! ICLR 2019, `make_cifar_c.py`), severity 3, restated on afan's channel-major `[C, H, W]` images
//! with values in [0, 1]:
//! - `noise`: `clip(x + N(0, σ²), 0, 1)`, σ = 0.08, one draw per value from a seeded generator;
//! - `blur`: scikit-image's `gaussian(x, sigma=σ)` per channel, σ = 0.7 (its defaults: the kernel
//!   truncated at 4σ, edges extended with the nearest pixel), then clipped;
//! - `contrast`: `clip((x − m)·c + m, 0, 1)` with `m` each channel's mean, c = 0.4.
//!
//! Written here rather than taken from a crate because it must equal those formulas on afan's
//! buffers exactly (imageproc's blur works on 8-bit images and pads differently).

use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::seed::{mix, tag};

/// One corruption and its strength.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Corruption {
    /// Additive Gaussian noise of this standard deviation.
    Noise(f32),
    /// Gaussian blur of this standard deviation, in pixels.
    Blur(f32),
    /// Contrast scaled by this factor around each channel's mean.
    Contrast(f32),
}

impl Corruption {
    /// The names [`Corruption::parse`] takes.
    pub const NAMES: [&'static str; 3] = ["noise", "blur", "contrast"];

    /// `noise`, `blur`, `contrast` (CIFAR-10-C severity 3), or `NAME:STRENGTH`.
    pub fn parse(text: &str) -> Result<Corruption, String> {
        let (name, strength) = match text.split_once(':') {
            Some((name, value)) => {
                let v: f32 = value
                    .parse()
                    .map_err(|_| format!("corruption {text:?}: {value:?} is not a number"))?;
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("corruption {text:?}: the strength must be >= 0"));
                }
                (name, Some(v))
            }
            None => (text, None),
        };
        match name {
            "noise" => Ok(Corruption::Noise(strength.unwrap_or(0.08))),
            "blur" => Ok(Corruption::Blur(strength.unwrap_or(0.7))),
            "contrast" => Ok(Corruption::Contrast(strength.unwrap_or(0.4))),
            _ => Err(format!(
                "unknown corruption {name:?}; expected one of {}, optionally NAME:STRENGTH",
                Corruption::NAMES.join(", ")
            )),
        }
    }

    /// Corrupts one `[channels, height, width]` image in place; `seed` draws the noise (the
    /// same seed and image give the same corrupted copy).
    pub fn apply(
        &self,
        image: &mut [f32],
        channels: usize,
        height: usize,
        width: usize,
        seed: u64,
    ) {
        assert_eq!(image.len(), channels * height * width, "image size");
        match *self {
            Corruption::Noise(sigma) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                for v in image.iter_mut() {
                    *v += sigma * standard_normal(&mut rng);
                }
            }
            Corruption::Blur(sigma) => {
                let kernel = gaussian_kernel(sigma);
                for plane in image.chunks_exact_mut(height * width) {
                    blur_plane(plane, height, width, &kernel);
                }
            }
            Corruption::Contrast(factor) => {
                for plane in image.chunks_exact_mut(height * width) {
                    let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / plane.len() as f64;
                    let mean = mean as f32;
                    for v in plane.iter_mut() {
                        *v = (*v - mean) * factor + mean;
                    }
                }
            }
        }
        for v in image.iter_mut() {
            *v = v.clamp(0.0, 1.0);
        }
    }
}

impl Corruption {
    /// Corrupts image `index` of an evaluation set: its noise is drawn from a generator seeded by
    /// the index alone, so every model evaluated on the set sees the same corrupted copy (as
    /// CIFAR-10-C is one fixed set of files) and two runs give the same numbers.
    pub fn apply_to_image(
        &self,
        image: &mut [f32],
        (channels, height, width): (usize, usize, usize),
        index: usize,
    ) {
        let seed = mix(&[tag::CORRUPTION, index as u64]);
        self.apply(image, channels, height, width, seed);
    }

    /// Corrupts a batch of equal-sized `[channels, height, width]` images in place, image `i`
    /// being `indices[i]` of its set (see [`Corruption::apply_to_image`]).
    pub fn apply_to_batch(
        &self,
        images: &mut [f32],
        shape: (usize, usize, usize),
        indices: &[usize],
    ) {
        let n = shape.0 * shape.1 * shape.2;
        assert_eq!(images.len(), n * indices.len(), "batch size");
        images
            .par_chunks_exact_mut(n)
            .zip(indices)
            .for_each(|(image, &i)| self.apply_to_image(image, shape, i));
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::Noise(s) => write!(f, "noise:{s}"),
            Corruption::Blur(s) => write!(f, "blur:{s}"),
            Corruption::Contrast(c) => write!(f, "contrast:{c}"),
        }
    }
}

/// One N(0, 1) draw (Box-Muller; rand_distr is not a dependency for this one use).
fn standard_normal(rng: &mut impl Rng) -> f32 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// scipy's `gaussian_filter1d` weights: radius `int(4σ + 0.5)`, normalised to sum 1.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    if sigma == 0.0 {
        return vec![1.0];
    }
    let radius = (4.0 * sigma as f64 + 0.5) as i64;
    let weights: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 * (x as f64 / sigma as f64).powi(2)).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| (w / total) as f32).collect()
}

/// Separable blur of one plane, rows then columns, edges extended (scipy's mode `nearest`).
fn blur_plane(plane: &mut [f32], height: usize, width: usize, kernel: &[f32]) {
    let radius = (kernel.len() / 2) as i64;
    let pass = |plane: &mut [f32], lines: usize, len: usize, at: &dyn Fn(usize, usize) -> usize| {
        let mut line = vec![0f32; len];
        for l in 0..lines {
            for (i, out) in line.iter_mut().enumerate() {
                *out = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, w)| {
                        let j = (i as i64 + k as i64 - radius).clamp(0, len as i64 - 1) as usize;
                        w * plane[at(l, j)]
                    })
                    .sum();
            }
            for (i, v) in line.iter().enumerate() {
                plane[at(l, i)] = *v;
            }
        }
    };
    pass(plane, height, width, &|row, x| row * width + x);
    pass(plane, width, height, &|col, y| y * width + col);
}

#[cfg(test)]
#[path = "corruption_tests.rs"]
mod tests;
