//! Which anchors / proposals train which head: IoU matching against the ground truth and the
//! balanced foreground/background subsampling that both the RPN (256 per image, half foreground)
//! and the RoI head (128 per image, a quarter foreground) use, drawn per batch (the release) or
//! per image ([`SamplingScope`]).

use super::boxes::{BBox, iou_matrix};
use rand::Rng;
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

/// Whether the balanced sample is drawn over the whole batch or image by image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingScope {
    /// The release: one draw over the batch's candidates, at most `batch * fg_fraction * B`
    /// foreground and `batch * B` in all, so one image may take more than its share
    /// (`rpn/region_proposal_network.py` L84-90: 128·B of 256·B; `model.py` L271-277: 32·B of
    /// 128·B).
    #[default]
    PerBatch,
    /// torchvision and py-faster-rcnn: `batch` per image (afan before issue 17).
    PerImage,
}

/// [`balanced_sample`] over the candidates of every image of a batch, per `scope`: the
/// (foreground, background) indices of each image, each in increasing order.
pub fn balanced_sample_batch(
    matches: &[Vec<Match>],
    batch: usize,
    fg_fraction: f32,
    scope: SamplingScope,
    rng: &mut impl Rng,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    match scope {
        SamplingScope::PerImage => matches
            .iter()
            .map(|m| balanced_sample(m, batch, fg_fraction, rng))
            .collect(),
        SamplingScope::PerBatch => {
            let images = matches.len();
            let flat: Vec<(usize, usize)> = matches
                .iter()
                .enumerate()
                .flat_map(|(i, m)| (0..m.len()).map(move |k| (i, k)))
                .collect();
            let of = |role: fn(&Match) -> bool| -> Vec<usize> {
                (0..flat.len())
                    .filter(|&j| role(&matches[flat[j].0][flat[j].1]))
                    .collect()
            };
            let fg = of(|m| matches!(m, Match::Foreground(_)));
            let bg = of(|m| *m == Match::Background);
            // The release caps the foreground at `32 * batch_size` (`128 * batch_size` in the
            // RPN): the per-image cap times the images.
            let num_fg = fg.len().min((batch as f32 * fg_fraction) as usize * images);
            let num_bg = bg.len().min(batch * images - num_fg);
            let mut out = vec![(Vec::new(), Vec::new()); images];
            for j in pick(&fg, num_fg, rng) {
                out[flat[j].0].0.push(flat[j].1);
            }
            for j in pick(&bg, num_bg, rng) {
                out[flat[j].0].1.push(flat[j].1);
            }
            out
        }
    }
}

/// The role of one candidate box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Foreground, regressing towards this ground-truth box.
    Foreground(usize),
    /// Background.
    Background,
    /// Neither (IoU between the thresholds): never sampled.
    Ignore,
}

/// IoU thresholds of a matcher.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Matcher {
    /// IoU at or above which a candidate is foreground.
    pub fg_iou: f32,
    /// Background is IoU in `[bg_low, bg_high)`.
    pub bg_high: f32,
    /// Lower end of the background range (0 in the release: everything below `bg_high`).
    pub bg_low: f32,
    /// Also make foreground the candidates that have the highest IoU with some ground-truth box
    /// (ties included), so every object gets an anchor however odd its shape (RPN only).
    pub best_per_gt: bool,
}

impl Matcher {
    /// Labels `candidates` against `gts`. Without ground truth everything in the background range
    /// is background.
    pub fn assign(&self, candidates: &[BBox], gts: &[BBox]) -> Vec<Match> {
        let ious = iou_matrix(candidates, gts);
        let mut out: Vec<Match> = ious
            .iter()
            .map(|row| {
                let (best, value) = argmax(row);
                if value >= self.fg_iou && !gts.is_empty() {
                    Match::Foreground(best)
                } else if value < self.bg_high && value >= self.bg_low {
                    Match::Background
                } else {
                    Match::Ignore
                }
            })
            .collect();
        if self.best_per_gt {
            for g in 0..gts.len() {
                let best = ious.iter().map(|row| row[g]).fold(0.0f32, f32::max);
                if best <= 0.0 {
                    continue;
                }
                for (c, row) in ious.iter().enumerate() {
                    if row[g] == best {
                        out[c] = Match::Foreground(argmax(row).0);
                    }
                }
            }
        }
        out
    }
}

/// The best ground truth of a candidate and its IoU; `(0, 0.0)` without ground truth, which
/// makes every candidate of an image without objects background.
fn argmax(row: &[f32]) -> (usize, f32) {
    row.iter().enumerate().fold(
        (0, 0.0),
        |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
    )
}

/// Draws at most `batch` candidates, at most `fg_fraction` of them foreground, the rest
/// background, uniformly without replacement. Returns (foreground, background) indices, each
/// in increasing order.
pub fn balanced_sample(
    matches: &[Match],
    batch: usize,
    fg_fraction: f32,
    rng: &mut impl Rng,
) -> (Vec<usize>, Vec<usize>) {
    let fg: Vec<usize> = (0..matches.len())
        .filter(|&i| matches!(matches[i], Match::Foreground(_)))
        .collect();
    let bg: Vec<usize> = (0..matches.len())
        .filter(|&i| matches[i] == Match::Background)
        .collect();
    let num_fg = fg.len().min((batch as f32 * fg_fraction) as usize);
    let num_bg = bg.len().min(batch - num_fg);
    (pick(&fg, num_fg, rng), pick(&bg, num_bg, rng))
}

fn pick(from: &[usize], n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut chosen: Vec<usize> = sample(rng, from.len(), n)
        .into_iter()
        .map(|k| from[k])
        .collect();
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn thresholds_and_best_anchor_per_object() {
        let gts = [[0.0, 0.0, 10.0, 10.0]];
        let candidates = [
            [0.0, 0.0, 10.0, 10.0],   // IoU 1
            [0.0, 0.0, 10.0, 5.0],    // 0.5: between 0.3 and 0.7
            [0.0, 0.0, 10.0, 2.0],    // 0.2
            [20.0, 20.0, 30.0, 30.0], // 0
        ];
        let rpn = Matcher {
            fg_iou: 0.7,
            bg_high: 0.3,
            bg_low: 0.0,
            best_per_gt: true,
        };
        use Match::*;
        assert_eq!(
            rpn.assign(&candidates, &gts),
            vec![Foreground(0), Ignore, Background, Background]
        );
        // Without the perfect box, the 0.5 box is the object's best anchor and becomes foreground.
        assert_eq!(
            rpn.assign(&candidates[1..], &gts),
            vec![Foreground(0), Background, Background]
        );
        let roi = Matcher {
            fg_iou: 0.5,
            bg_high: 0.5,
            bg_low: 0.1,
            best_per_gt: false,
        };
        assert_eq!(
            roi.assign(&candidates, &gts),
            vec![Foreground(0), Foreground(0), Background, Ignore]
        );
        assert_eq!(roi.assign(&candidates, &[]), vec![Ignore; 4]);
        let all_bg = Matcher { bg_low: 0.0, ..roi };
        assert_eq!(all_bg.assign(&candidates, &[]), vec![Background; 4]);
    }

    #[test]
    fn batch_sampling_shares_the_caps_across_images() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Image 0: 10 foreground, 100 background; image 1: 1 foreground, 5 background.
        let image = |fg: usize, bg: usize| -> Vec<Match> {
            (0..fg + bg)
                .map(|i| {
                    if i < fg {
                        Match::Foreground(0)
                    } else {
                        Match::Background
                    }
                })
                .collect()
        };
        let matches = vec![image(10, 100), image(1, 5)];
        // Per batch, 8 per image at a quarter foreground: 4 foreground, 16 in all.
        let got = balanced_sample_batch(&matches, 8, 0.25, SamplingScope::PerBatch, &mut rng);
        let fg: usize = got.iter().map(|(f, _)| f.len()).sum();
        let all: usize = got.iter().map(|(f, b)| f.len() + b.len()).sum();
        assert_eq!((fg, all), (4, 16));
        for (k, (f, b)) in got.iter().enumerate() {
            assert!(f.windows(2).all(|w| w[0] < w[1]) && b.windows(2).all(|w| w[0] < w[1]));
            let n_fg = [10, 1][k];
            assert!(f.iter().all(|&i| i < n_fg) && b.iter().all(|&i| i >= n_fg));
        }
        // Per image the small image keeps its own share.
        let got = balanced_sample_batch(&matches, 8, 0.25, SamplingScope::PerImage, &mut rng);
        assert_eq!((got[0].0.len(), got[0].1.len()), (2, 6));
        assert_eq!((got[1].0.len(), got[1].1.len()), (1, 5));
        // Fewer candidates than the caps: everything, whatever the draw.
        let small = vec![image(2, 3), image(1, 1)];
        let got = balanced_sample_batch(&small, 8, 0.25, SamplingScope::PerBatch, &mut rng);
        assert_eq!(got, vec![(vec![0, 1], vec![2, 3, 4]), (vec![0], vec![1])]);
    }

    #[test]
    fn sampler_caps_foreground_and_fills_with_background() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut matches = vec![Match::Background; 1000];
        for m in matches.iter_mut().take(300) {
            *m = Match::Foreground(0);
        }
        matches[999] = Match::Ignore;
        // RPN: 256 with half foreground.
        let (fg, bg) = balanced_sample(&matches, 256, 0.5, &mut rng);
        assert_eq!((fg.len(), bg.len()), (128, 128));
        assert!(fg.iter().all(|&i| i < 300) && bg.iter().all(|&i| (300..999).contains(&i)));
        // RoI head: 128 with a quarter foreground.
        let (fg, bg) = balanced_sample(&matches, 128, 0.25, &mut rng);
        assert_eq!((fg.len(), bg.len()), (32, 96));
        // Few foreground: the background fills up the batch.
        let few: Vec<Match> = (0..200)
            .map(|i| {
                if i < 5 {
                    Match::Foreground(0)
                } else {
                    Match::Background
                }
            })
            .collect();
        let (fg, bg) = balanced_sample(&few, 128, 0.25, &mut rng);
        assert_eq!((fg.len(), bg.len()), (5, 123));
        // Too few candidates: everything is taken once.
        let (fg, bg) = balanced_sample(&few[..10], 128, 0.25, &mut rng);
        assert_eq!(
            (fg, bg),
            ((0..5).collect::<Vec<_>>(), (5..10).collect::<Vec<_>>())
        );
    }
}
