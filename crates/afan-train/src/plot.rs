//! `curves.png`: the losses and the headline figure of every record, redrawn after each
//! evaluation, for every task.
//!
//! Drawn by plotters into a buffer and encoded by the `image` crate the data loaders already
//! use, not by plotters' own encoder, which would build a second, older `image` (about 30 s of
//! every clean build on 2 cores).

use crate::error::{Result, TrainError};
use crate::records::Record;
use plotters::prelude::*;
use std::path::Path;

/// The plot's file in a run directory.
pub const PLOT: &str = "curves.png";

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

/// Registers the embedded font as plotters' `sans-serif` (once per process).
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One curve: a label, a colour, its points.
type Curve = (&'static str, RGBColor, Vec<(f64, f64)>);

fn series(rows: &[Record], x_key: &str, key: &str) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| Some((r.get(x_key)?.as_f64()?, r.get(key)?.as_f64()?)))
        .filter(|(_, y)| y.is_finite())
        .collect()
}

/// Draws the train and evaluation losses (left) and the headline figure `headline` (right,
/// `eval_<headline>` and `train_<headline>` where recorded) against epochs where the records
/// have them, iterations otherwise.
pub fn plot(path: &Path, rows: &[Record], headline: &str) -> Result<()> {
    register_font();
    let x_key = if rows.iter().all(|r| r.contains_key("epoch")) {
        "epoch"
    } else {
        "iteration"
    };
    let losses: Vec<Curve> = vec![
        ("train", BLUE, series(rows, x_key, "train_loss")),
        ("eval", RED, series(rows, x_key, "eval_loss")),
    ];
    let figures: Vec<Curve> = vec![
        (
            "train",
            BLUE,
            series(rows, x_key, &format!("train_{headline}")),
        ),
        (
            "eval",
            RED,
            series(rows, x_key, &format!("eval_{headline}")),
        ),
    ];
    let (w, h) = (1000u32, 420u32);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let draw = |rgb: &mut [u8]| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(500);
        for (area, caption, curves) in [
            (&left, "loss".to_string(), &losses),
            (&right, headline.to_string(), &figures),
        ] {
            panel(area, &caption, x_key, curves)?;
        }
        root.present()?;
        Ok(())
    };
    draw(&mut rgb)
        .map_err(|e| TrainError::Config(format!("cannot draw {}: {e}", path.display())))?;
    image::save_buffer(path, &rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| TrainError::Config(format!("cannot write {}: {e}", path.display())))
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    caption: &str,
    x_desc: &str,
    curves: &[Curve],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let points = curves.iter().flat_map(|c| c.2.iter());
    let (mut x_max, mut y_max) = (1.0f64, 0.1f64);
    let mut x_min = f64::INFINITY;
    for &(x, y) in points {
        x_max = x_max.max(x);
        x_min = x_min.min(x);
        y_max = y_max.max(y);
    }
    let x_min = if x_min.is_finite() {
        x_min.min(x_max - 1.0)
    } else {
        0.0
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(x_min..x_max, 0.0..y_max * 1.05)?;
    chart.configure_mesh().x_desc(x_desc).draw()?;
    for (label, colour, pts) in curves.iter().filter(|c| !c.2.is_empty()) {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), &colour))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    Ok(())
}
