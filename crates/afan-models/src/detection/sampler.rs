//! Which anchors / proposals train which head: IoU matching against the ground truth and the
//! balanced foreground/background subsampling that both the RPN (256 per image, half foreground)
//! and the RoI head (128 per image, a quarter foreground) use.

use super::boxes::{BBox, iou_matrix};
use rand::Rng;
use rand::seq::index::sample;

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
