//! `shapes-seg`: a generated segmentation set, so training and evaluation run without downloads.
//!
//! Each image is a textured background (a random colour, a random-phase sinusoidal pattern and
//! per-pixel noise) with one to three shapes — disc, square, triangle — of random size, position
//! and colour, later shapes covering earlier ones. The label of a pixel is the class of the shape
//! covering its centre, 0 for background. The background is a near-gray of random brightness and
//! each class draws a saturated colour around its own primary (discs reddish, squares greenish,
//! triangles bluish), so a small network finds a first cue within tens of steps — fast enough for
//! a learning test — while exact boundaries under texture and noise, and overlaps, need more.
//! Every image has its own generator seeded by `(seed, split, index)`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{SegDataset, SegSample};
use crate::seed::{rng_for, tag};

/// Class names of `shapes-seg`, in label order.
pub const SHAPES_SEG_CLASSES: [&str; 4] = ["background", "disc", "square", "triangle"];

/// Draws `num_train` and `num_test` images of `side x side` pixels; same seed, same bytes.
pub fn shapes_seg(
    num_train: usize,
    num_test: usize,
    side: usize,
    seed: u64,
) -> (SegDataset, SegDataset) {
    let make = |n: usize, stream: u64| {
        let samples = (0..n)
            .into_par_iter()
            .map(|i| draw(side, &mut rng_for(&[stream, seed, side as u64, i as u64])))
            .collect();
        let names = SHAPES_SEG_CLASSES.iter().map(|s| s.to_string()).collect();
        SegDataset::in_memory(samples, names).expect("generated samples are consistent")
    };
    (
        make(num_train, tag::SEG_TRAIN),
        make(num_test, tag::SEG_TEST),
    )
}

struct Shape {
    class: u8,
    cx: f32,
    cy: f32,
    r: f32,
    colour: [f32; 3],
}

impl Shape {
    fn covers(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        match self.class {
            1 => dx * dx + dy * dy <= self.r * self.r,
            2 => dx.abs() <= self.r && dy.abs() <= self.r,
            // Apex up, base at cy + r: the half-width grows linearly from the apex.
            _ => dy >= -self.r && dy <= self.r && dx.abs() <= (dy + self.r) * 0.5,
        }
    }
}

fn draw(side: usize, rng: &mut ChaCha8Rng) -> SegSample {
    let s = side as f32;
    let gray = rng.random_range(30.0..225.0);
    let background = [0; 3].map(|_| gray + rng.random_range(-15.0..15.0));
    let (fx, fy, phase) = (
        rng.random_range(0.05..0.5),
        rng.random_range(0.05..0.5),
        rng.random_range(0.0..6.3),
    );
    let shapes: Vec<Shape> = (0..rng.random_range(1..=3))
        .map(|_| {
            let r = rng.random_range(0.15 * s..0.35 * s);
            let class: u8 = rng.random_range(1..=3);
            let mut c = [0; 3].map(|_| rng.random_range(0.0..80.0));
            c[usize::from(class - 1)] = rng.random_range(170.0..255.0);
            Shape {
                class,
                cx: rng.random_range(0.1 * s..0.9 * s),
                cy: rng.random_range(0.1 * s..0.9 * s),
                r,
                colour: c,
            }
        })
        .collect();
    let mut rgb = Vec::with_capacity(side * side * 3);
    let mut mask = Vec::with_capacity(side * side);
    for y in 0..side {
        for x in 0..side {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let top = shapes.iter().rev().find(|sh| sh.covers(px, py));
            let texture = 25.0 * (fx * px + fy * py + phase).sin();
            let base = top.map_or(background, |sh| sh.colour);
            mask.push(top.map_or(0, |sh| sh.class));
            for v in base {
                let noise = rng.random_range(-12.0..12.0);
                rgb.push((v + texture + noise).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    SegSample {
        width: side,
        height: side,
        rgb,
        mask,
    }
}
