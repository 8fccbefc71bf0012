//! The run's record: one JSON line per epoch, and a PNG of the curves redrawn after each epoch.

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// What one epoch measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Mean training loss (the combined A-FAN loss for `method = "afan"`).
    pub train_loss: f64,
    /// Mean clean cross-entropy on the training batches.
    pub train_clean_loss: f64,
    /// Training top-1 on the clean forward pass, in percent.
    pub train_top1: f64,
    /// Evaluation loss.
    pub eval_loss: f64,
    /// Evaluation top-1, percent.
    pub eval_top1: f64,
    /// Evaluation top-5, percent.
    pub eval_top5: f64,
    /// `test` or `val`.
    pub eval_split: String,
    /// Mean per-sample L2 norm of the feature perturbation (A-FAN only).
    pub pgd_l2: Option<f64>,
    /// Mean per-sample L-inf norm of the feature perturbation (A-FAN only).
    pub pgd_linf: Option<f64>,
    /// Mean loss of each strength point, point 0 clean (A-FAN only).
    pub point_losses: Option<Vec<f64>>,
    /// Median seconds per training step.
    pub step_seconds: f64,
    /// Wall seconds of the epoch including evaluation.
    pub epoch_seconds: f64,
}

/// Appends one line to `metrics.jsonl`.
pub fn append(path: &Path, m: &EpochMetrics) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(m)?)?;
    Ok(())
}

/// Reads `metrics.jsonl`, keeping only epochs up to `max_epoch` (a resumed run rewrites the
/// epochs after its checkpoint).
pub fn read(path: &Path, max_epoch: usize) -> Result<Vec<EpochMetrics>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let m: EpochMetrics = serde_json::from_str(line).with_context(|| {
            format!("{} line {} is not a metrics record", path.display(), i + 1)
        })?;
        if m.epoch <= max_epoch {
            out.push(m);
        }
    }
    Ok(out)
}

/// Rewrites `metrics.jsonl` with exactly `rows`.
pub fn rewrite(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in rows {
        text.push_str(&serde_json::to_string(m)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws loss and accuracy curves to `path` (PNG).
///
/// Drawn into a buffer and encoded by the `image` crate the data loaders already use, not by
/// plotters' own encoder, which would build a second, older `image` (about 30 s of every clean
/// build on 2 cores).
pub fn plot(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    register_font();
    let (w, h) = (1000u32, 420u32);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let draw = |rgb: &mut [u8]| -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(500);
        let n = rows.len().max(1) as f64;
        let max_loss = rows
            .iter()
            .flat_map(|r| [r.train_loss, r.eval_loss])
            .filter(|v| v.is_finite())
            .fold(0.1f64, f64::max);
        let mut c = ChartBuilder::on(&left)
            .caption("loss", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.5..n + 0.5, 0.0..max_loss * 1.05)?;
        c.configure_mesh().x_desc("epoch").draw()?;
        let series = |f: fn(&EpochMetrics) -> f64| rows.iter().map(move |r| (r.epoch as f64, f(r)));
        c.draw_series(LineSeries::new(series(|r| r.train_loss), &BLUE))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        c.draw_series(LineSeries::new(series(|r| r.eval_loss), &RED))?
            .label("eval")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        let mut c = ChartBuilder::on(&right)
            .caption("top-1 accuracy (%)", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.5..n + 0.5, 0.0..100.0)?;
        c.configure_mesh().x_desc("epoch").draw()?;
        c.draw_series(LineSeries::new(series(|r| r.train_top1), &BLUE))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        c.draw_series(LineSeries::new(series(|r| r.eval_top1), &RED))?
            .label("eval")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw(&mut rgb).map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    image::save_buffer(path, &rgb, w, h, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("cannot write {}", path.display()))
}
