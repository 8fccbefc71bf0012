//! `afan bench` arguments, shared by the per-task benchmarks, and the median they report.

use crate::task_arg::TaskArg;
use anyhow::{Result, bail};

/// `afan bench` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// classification (clean, A-FAN and pixel-PGD steps of --model), detection (Faster R-CNN C4
    /// ResNet-18 at the VOC preset, baseline vs A-FAN, peak memory per method) or segmentation
    /// (DeepLabV3+ MobileNetV2 and ResNet-50, baseline vs A-FAN, peak memory per row).
    #[arg(long, value_enum, default_value = "classification")]
    pub task: TaskArg,
    /// Classification: the model to time.
    #[arg(long)]
    pub model: Option<String>,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Classification: PGD steps of the A-FAN step (default 3).
    #[arg(long)]
    pub pgd_steps: Option<usize>,
    /// Classification: PGD steps of the pixel-level adversarial step (0 skips it; default 7).
    #[arg(long)]
    pub pixel_steps: Option<usize>,
    /// Classification: split point of the A-FAN step (default layer1).
    #[arg(long)]
    pub split: Option<String>,
    /// Classification: classes of the model (default 10).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Image size: a side (classification default 32; segmentation: the crop, default 32) or
    /// HEIGHTxWIDTH (detection default 600x800, a 500x375 VOC image at the preset's short side
    /// 600). `--det-image` is the same flag (the PyTorch reference script's name).
    #[arg(long, alias = "det-image")]
    pub size: Option<String>,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Internal: the one configuration a child process times.
    #[arg(long, hide = true)]
    pub child: Option<String>,
    /// Internal: print every row's `--child` value, one per line, and exit (`cargo xtask bench
    /// --rounds` times the rows one at a time, each interleaved with PyTorch's same row).
    #[arg(long, hide = true)]
    pub list_children: bool,
}

impl BenchArgs {
    /// `--size` as `[height, width]`, `default` when not given; at least `min` pixels a side.
    pub fn size(&self, default: [usize; 2], min: usize) -> Result<[usize; 2]> {
        let Some(text) = &self.size else {
            return Ok(default);
        };
        let parsed = match text.split_once('x') {
            Some((h, w)) => h.parse().ok().zip(w.parse().ok()).map(|(h, w)| [h, w]),
            None => text.parse().ok().map(|s| [s, s]),
        };
        match parsed {
            Some([h, w]) if h >= min && w >= min => Ok([h, w]),
            _ => bail!("--size {text:?}: expected a side or HEIGHTxWIDTH of at least {min} pixels"),
        }
    }

    /// Refuses the classification-only flags for another task.
    pub fn only_classification(&self, task: &str) -> Result<()> {
        for (flag, given) in [
            ("--model", self.model.is_some()),
            ("--pgd-steps", self.pgd_steps.is_some()),
            ("--pixel-steps", self.pixel_steps.is_some()),
            ("--split", self.split.is_some()),
            ("--num-classes", self.num_classes.is_some()),
        ] {
            if given {
                bail!("{flag} does not apply to afan bench --task {task}");
            }
        }
        if self.batch == 0 || self.iters == 0 {
            bail!("--batch and --iters must be at least 1");
        }
        Ok(())
    }

    /// Refuses the detection and segmentation flags for classification, whose rows run in one
    /// process.
    pub fn no_children(&self) -> Result<()> {
        if self.child.is_some() || self.list_children {
            bail!("--child and --list-children apply to afan bench --task detection|segmentation");
        }
        Ok(())
    }

    /// With `--list-children`, prints each of `specs` on its own line and says so (the caller
    /// returns); otherwise does nothing.
    pub fn listed_children<'a>(&self, specs: impl IntoIterator<Item = &'a str>) -> bool {
        if self.list_children {
            specs.into_iter().for_each(|s| println!("{s}"));
        }
        self.list_children
    }
}

/// The median of step times (the upper one of an even count; `None` when there are none).
pub fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_is_the_middle_or_upper_middle_and_none_when_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(median(&mut [f64::NAN, 1.0, 2.0]), Some(2.0)); // NaN sorts last
        assert_eq!(median(&mut []), None);
    }
}
