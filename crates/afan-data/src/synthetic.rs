//! `shapes10`: the embedded default dataset, drawn in-process.
//!
//! The command line must be able to train and evaluate without any download
//! (tests, demos, machines without network), so this module draws a
//! CIFAR-shaped task (32x32 RGB, 10 classes) from a seed. Each class is a
//! family of patterns — filled circle, square, triangle, ring, cross,
//! horizontal/vertical/diagonal stripes, checkerboard, dot grid — with random
//! colours, position, size, thickness and phase, anti-aliased and overlaid
//! with per-pixel noise. The nuisance factors make raw-pixel template
//! matching weak (a nearest-class-mean classifier is far from perfect) while
//! a small convolutional network learns the shapes quickly.
//!
//! The foreground is always brighter than the background (by at least
//! [`MIN_CONTRAST`] in luminance) so the pattern stays visible under noise.
//! Every image has its own generator seeded by `(seed, split, index)`, so the
//! bytes do not depend on the number of threads.

use std::f32::consts::FRAC_1_SQRT_2;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::dataset::ImageDataset;
use crate::seed::{rng_for, tag};

/// Class names of `shapes10`, in label order.
pub const SHAPES10_CLASSES: [&str; 10] = [
    "circle",
    "square",
    "triangle",
    "ring",
    "cross",
    "horizontal_stripes",
    "vertical_stripes",
    "diagonal_stripes",
    "checkerboard",
    "dot_grid",
];

/// Minimum luminance difference between foreground and background (0..255).
pub const MIN_CONTRAST: f32 = 60.0;

const SIDE: usize = 32;
const CHANNELS: usize = 3;
const IMAGE_BYTES: usize = CHANNELS * SIDE * SIDE;

/// Draws `num_train` training and `num_test` test images; image `i` of either
/// split has label `i % 10`, so every prefix is class-balanced. The two splits
/// use independent random streams. Same `seed`, same bytes.
pub fn shapes10(num_train: usize, num_test: usize, seed: u64) -> (ImageDataset, ImageDataset) {
    (
        generate(num_train, seed, tag::SHAPES_TRAIN),
        generate(num_test, seed, tag::SHAPES_TEST),
    )
}

fn generate(n: usize, seed: u64, stream: u64) -> ImageDataset {
    let mut images = vec![0u8; n * IMAGE_BYTES];
    images
        .par_chunks_exact_mut(IMAGE_BYTES)
        .enumerate()
        .for_each(|(i, out)| draw(i % 10, &mut rng_for(&[stream, seed, i as u64]), out));
    ImageDataset {
        images,
        labels: (0..n).map(|i| (i % 10) as u16).collect(),
        num_classes: 10,
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        class_names: SHAPES10_CLASSES.iter().map(|s| s.to_string()).collect(),
    }
}

/// A rectangle `[x0, x0 + w) x [y0, y0 + h)` in pixel coordinates.
#[derive(Clone, Copy)]
struct Window {
    x0: f32,
    y0: f32,
    w: f32,
    h: f32,
}

impl Window {
    fn sample(rng: &mut ChaCha8Rng) -> Self {
        let w = rng.random_range(14..=SIDE) as f32;
        let h = rng.random_range(14..=SIDE) as f32;
        Window {
            x0: rng.random_range(0.0..=SIDE as f32 - w),
            y0: rng.random_range(0.0..=SIDE as f32 - h),
            w,
            h,
        }
    }

    fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x0 && x < self.x0 + self.w && y >= self.y0 && y < self.y0 + self.h
    }
}

/// One drawn pattern, with all its random parameters fixed.
enum Pattern {
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
    },
    Square {
        cx: f32,
        cy: f32,
        h: f32,
    },
    /// Isosceles triangle; `swap`/`flip` choose one of four orientations.
    Triangle {
        cx: f32,
        cy: f32,
        h: f32,
        swap: bool,
        flip: bool,
    },
    Ring {
        cx: f32,
        cy: f32,
        r: f32,
        inner: f32,
    },
    Cross {
        cx: f32,
        cy: f32,
        r: f32,
        t: f32,
    },
    /// Stripes across the unit direction `(dx, dy)`.
    Stripes {
        win: Window,
        dx: f32,
        dy: f32,
        period: f32,
        duty: f32,
        phase: f32,
    },
    Checker {
        win: Window,
        cell: f32,
        px: f32,
        py: f32,
    },
    Dots {
        win: Window,
        period: f32,
        radius: f32,
        px: f32,
        py: f32,
    },
}

/// A centre that keeps a shape of half-extent `r` inside the image.
fn centre(rng: &mut ChaCha8Rng, r: f32) -> (f32, f32) {
    let lo = r + 0.5;
    let hi = (SIDE as f32 - r - 0.5).max(lo);
    (rng.random_range(lo..=hi), rng.random_range(lo..=hi))
}

impl Pattern {
    fn sample(label: usize, rng: &mut ChaCha8Rng) -> Self {
        match label {
            0 => {
                let r = rng.random_range(5.0..12.0);
                let (cx, cy) = centre(rng, r);
                Pattern::Circle { cx, cy, r }
            }
            1 => {
                let h = rng.random_range(4.0..11.0);
                let (cx, cy) = centre(rng, h);
                Pattern::Square { cx, cy, h }
            }
            2 => {
                let h = rng.random_range(5.0..12.0);
                let (cx, cy) = centre(rng, h);
                Pattern::Triangle {
                    cx,
                    cy,
                    h,
                    swap: rng.random(),
                    flip: rng.random(),
                }
            }
            3 => {
                let r = rng.random_range(6.0..13.0);
                let (cx, cy) = centre(rng, r);
                let t = rng.random_range(1.5..(0.45 * r));
                Pattern::Ring {
                    cx,
                    cy,
                    r,
                    inner: r - t,
                }
            }
            4 => {
                let r = rng.random_range(6.0..13.0);
                let (cx, cy) = centre(rng, r);
                Pattern::Cross {
                    cx,
                    cy,
                    r,
                    t: rng.random_range(1.0..3.0),
                }
            }
            5..=7 => {
                let (dx, dy) = match label {
                    5 => (0.0, 1.0),
                    6 => (1.0, 0.0),
                    _ if rng.random() => (FRAC_1_SQRT_2, FRAC_1_SQRT_2),
                    _ => (FRAC_1_SQRT_2, -FRAC_1_SQRT_2),
                };
                let period = rng.random_range(3.5..8.0);
                Pattern::Stripes {
                    win: Window::sample(rng),
                    dx,
                    dy,
                    period,
                    duty: rng.random_range(0.35..0.65),
                    phase: rng.random_range(0.0..period),
                }
            }
            8 => {
                let cell = rng.random_range(2.5..6.0);
                Pattern::Checker {
                    win: Window::sample(rng),
                    cell,
                    px: rng.random_range(0.0..2.0 * cell),
                    py: rng.random_range(0.0..2.0 * cell),
                }
            }
            _ => {
                let period = rng.random_range(5.0..8.0);
                Pattern::Dots {
                    win: Window::sample(rng),
                    period,
                    radius: rng.random_range(1.0..(0.3 * period).min(2.2)),
                    px: rng.random_range(0.0..period),
                    py: rng.random_range(0.0..period),
                }
            }
        }
    }

    /// Whether the point `(x, y)` (continuous pixel coordinates) is foreground.
    fn inside(&self, x: f32, y: f32) -> bool {
        match *self {
            Pattern::Circle { cx, cy, r } => (x - cx).powi(2) + (y - cy).powi(2) <= r * r,
            Pattern::Square { cx, cy, h } => (x - cx).abs() <= h && (y - cy).abs() <= h,
            Pattern::Triangle {
                cx,
                cy,
                h,
                swap,
                flip,
            } => {
                let (mut u, mut v) = (x - cx, y - cy);
                if swap {
                    std::mem::swap(&mut u, &mut v);
                }
                if flip {
                    v = -v;
                }
                // Apex at v = -h, base of half-width h at v = +h.
                v.abs() <= h && u.abs() <= 0.5 * (v + h)
            }
            Pattern::Ring { cx, cy, r, inner } => {
                let d2 = (x - cx).powi(2) + (y - cy).powi(2);
                d2 <= r * r && d2 > inner * inner
            }
            Pattern::Cross { cx, cy, r, t } => {
                let (u, v) = ((x - cx).abs(), (y - cy).abs());
                (u <= t && v <= r) || (v <= t && u <= r)
            }
            Pattern::Stripes {
                win,
                dx,
                dy,
                period,
                duty,
                phase,
            } => win.contains(x, y) && (x * dx + y * dy + phase).rem_euclid(period) < duty * period,
            Pattern::Checker { win, cell, px, py } => {
                let a = ((x + px) / cell).floor() as i64 + ((y + py) / cell).floor() as i64;
                win.contains(x, y) && a.rem_euclid(2) == 0
            }
            Pattern::Dots {
                win,
                period,
                radius,
                px,
                py,
            } => {
                let u = (x + px).rem_euclid(period) - 0.5 * period;
                let v = (y + py).rem_euclid(period) - 0.5 * period;
                win.contains(x, y) && u * u + v * v <= radius * radius
            }
        }
    }

    /// Fraction of the pixel `(x, y)` covered, from 4x4 supersampling, so
    /// edges are anti-aliased like a downsampled photograph.
    fn coverage(&self, x: usize, y: usize) -> f32 {
        const S: usize = 4;
        let mut hits = 0;
        for sy in 0..S {
            for sx in 0..S {
                let px = x as f32 + (sx as f32 + 0.5) / S as f32;
                let py = y as f32 + (sy as f32 + 0.5) / S as f32;
                hits += usize::from(self.inside(px, py));
            }
        }
        hits as f32 / (S * S) as f32
    }
}

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// Random `(foreground, background)` colours with the foreground brighter by
/// at least [`MIN_CONTRAST`].
fn colours(rng: &mut ChaCha8Rng) -> ([f32; 3], [f32; 3]) {
    let colour =
        |rng: &mut ChaCha8Rng| -> [f32; 3] { [(); 3].map(|()| rng.random_range(0.0..=255.0)) };
    for _ in 0..256 {
        let (fg, bg) = (colour(rng), colour(rng));
        if luminance(fg) - luminance(bg) >= MIN_CONTRAST {
            return (fg, bg);
        }
    }
    ([220.0; 3], [30.0; 3]) // practically unreachable (p < 1e-20)
}

/// Draws one image of class `label` into `out` (CHW bytes).
fn draw(label: usize, rng: &mut ChaCha8Rng, out: &mut [u8]) {
    let (fg, bg) = colours(rng);
    let pattern = Pattern::sample(label, rng);
    let noise = rng.random_range(4.0..20.0f32);
    let plane = SIDE * SIDE;
    for y in 0..SIDE {
        for x in 0..SIDE {
            let m = pattern.coverage(x, y);
            for c in 0..CHANNELS {
                // Sum of three uniforms: roughly Gaussian with std `noise`.
                let n: f32 = (0..3).map(|_| rng.random_range(-1.0..1.0f32)).sum();
                let v = bg[c] + (fg[c] - bg[c]) * m + noise * n;
                out[c * plane + y * SIDE + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let (a_train, a_test) = shapes10(40, 20, 3);
        let (b_train, b_test) = shapes10(40, 20, 3);
        assert_eq!(a_train, b_train);
        assert_eq!(a_test, b_test);
        let (c_train, _) = shapes10(40, 20, 4);
        assert_ne!(a_train.images, c_train.images);
        assert_ne!(
            a_train.images[..IMAGE_BYTES * 10],
            a_test.images[..IMAGE_BYTES * 10]
        );
        // A longer run starts with the same images: per-image seeding.
        let (long, _) = shapes10(60, 0, 3);
        assert_eq!(long.images[..a_train.images.len()], a_train.images[..]);
        a_train.validate().unwrap();
        assert_eq!(a_train.class_names[9], "dot_grid");
    }

    #[test]
    fn balanced_labels() {
        let (train, test) = shapes10(100, 30, 0);
        assert_eq!(train.class_counts(), vec![10; 10]);
        assert_eq!(test.class_counts(), vec![3; 10]);
    }

    #[test]
    fn every_image_shows_contrast() {
        let (train, _) = shapes10(200, 0, 1);
        for i in 0..train.len() {
            let img = train.image(i);
            let mean = img.iter().map(|&v| f64::from(v)).sum::<f64>() / img.len() as f64;
            let var = img
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / img.len() as f64;
            assert!(
                var.sqrt() > 12.0,
                "image {i} (class {}) is nearly flat",
                train.labels[i]
            );
        }
    }

    /// Class means differ (the classes are distinct), yet nearest-class-mean
    /// on raw pixels is far from solving the task (it needs learning).
    #[test]
    fn nearest_class_mean_is_weak_but_above_chance() {
        let (train, test) = shapes10(2000, 1000, 11);
        let n = IMAGE_BYTES;
        let mut means = vec![vec![0f64; n]; 10];
        for i in 0..train.len() {
            let m = &mut means[usize::from(train.labels[i])];
            for (a, &v) in m.iter_mut().zip(train.image(i)) {
                *a += f64::from(v) / 200.0;
            }
        }
        let dist = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let mut min_gap = f64::INFINITY;
        for a in 0..10 {
            for b in a + 1..10 {
                min_gap = min_gap.min(dist(&means[a], &means[b]));
            }
        }
        let correct = (0..test.len())
            .filter(|&i| {
                let x: Vec<f64> = test.image(i).iter().map(|&v| f64::from(v)).collect();
                let best = (0..10)
                    .min_by(|&a, &b| dist(&x, &means[a]).total_cmp(&dist(&x, &means[b])))
                    .unwrap();
                best == usize::from(test.labels[i])
            })
            .count();
        let acc = correct as f64 / test.len() as f64;
        eprintln!("nearest-class-mean accuracy {acc:.3}, min mean gap {min_gap:.1}");
        assert!(min_gap > 100.0, "class means nearly identical: {min_gap}");
        assert!(
            acc < 0.6,
            "raw-pixel template matching solves the task: {acc}"
        );
        assert!(acc > 0.1, "classes look alike on average: {acc}");
    }
}
