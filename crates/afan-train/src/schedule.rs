//! The learning rate as a pure function of the iteration, so a resumed run continues on the same
//! curve: multi-step decay (PyTorch's `MultiStepLR` stepped per epoch, or Detectron's
//! `WarmupMultiStepLR` per iteration), the poly decay of DeepLab, and a linear warm-up in front
//! of either.

use serde::{Deserialize, Serialize};

/// The decay after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The rate is multiplied by `gamma` at each of `milestones`.
    MultiStep,
    /// `lr * (1 - iteration / iterations) ^ power` (DeepLab's `PolyLR`).
    Poly,
    /// The base rate throughout.
    Constant,
}

/// What `milestones` and `warmup` count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleUnit {
    /// Epochs (the classification release).
    Epochs,
    /// Iterations (detection and segmentation).
    Iterations,
}

/// How the warm-up reaches the base rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupRule {
    /// `lr * (start + (1 - start) * t / T)` for `t < T`: the base rate at step `T`, as
    /// PyTorch's `LinearLR` and Detectron's `WarmupMultiStepLR`.
    Linear,
    /// `lr * (start + (1 - start) * t / (T - 1))`: the base rate already at the warm-up's last
    /// step, as `warmup_lr` in the release's `Classification/main_perturb.py`
    /// (`lr = step * max_lr / (warm_up_steps - 1)`, with `warmup_start = 0`).
    Release,
}

/// `[schedule]` of every task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The decay.
    pub kind: ScheduleKind,
    /// What `milestones` and `warmup` count.
    pub unit: ScheduleUnit,
    /// Multi-step: where the rate is multiplied by `gamma` (classification release: epochs 50
    /// and 150 of 200).
    pub milestones: Vec<usize>,
    /// Multi-step decay factor (release: 0.1).
    pub gamma: f64,
    /// Poly exponent (release: 0.9).
    pub power: f64,
    /// Length of the linear warm-up, in `unit` (0: none).
    pub warmup: usize,
    /// The warm-up's first rate, as a fraction of the rate it rises to.
    pub warmup_start: f64,
    /// Where the warm-up reaches the rate.
    pub warmup_rule: WarmupRule,
}

impl Default for ScheduleConfig {
    /// The classification default: ×0.1 at epochs 50 and 150, one warm-up epoch from lr / 10.
    fn default() -> Self {
        Self {
            kind: ScheduleKind::MultiStep,
            unit: ScheduleUnit::Epochs,
            milestones: vec![50, 150],
            gamma: 0.1,
            power: 0.9,
            warmup: 1,
            warmup_start: 0.1,
            warmup_rule: WarmupRule::Linear,
        }
    }
}

impl ScheduleConfig {
    /// The rate of iteration `it` (0-based) of a run of `total` iterations with `per_epoch`
    /// iterations per epoch.
    pub fn learning_rate(&self, base: f64, it: usize, total: usize, per_epoch: usize) -> f64 {
        let in_units = |n: usize| match self.unit {
            ScheduleUnit::Epochs => n * per_epoch.max(1),
            ScheduleUnit::Iterations => n,
        };
        let lr = match self.kind {
            ScheduleKind::MultiStep => {
                let passed = self
                    .milestones
                    .iter()
                    .filter(|&&m| it >= in_units(m))
                    .count();
                base * self.gamma.powi(passed as i32)
            }
            ScheduleKind::Poly => {
                base * (1.0 - it as f64 / total.max(1) as f64)
                    .max(0.0)
                    .powf(self.power)
            }
            ScheduleKind::Constant => base,
        };
        let warm = in_units(self.warmup);
        if it >= warm {
            return lr;
        }
        let span = match self.warmup_rule {
            WarmupRule::Linear => warm,
            WarmupRule::Release => warm.saturating_sub(1).max(1),
        };
        let t = (it as f64 / span as f64).min(1.0);
        lr * (self.warmup_start + (1.0 - self.warmup_start) * t)
    }

    /// Rejects values that would fail later, naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(crate::config_error!(
                "schedule.gamma = {} must be a positive number",
                self.gamma
            ));
        }
        if !(self.power.is_finite() && self.power >= 0.0) {
            return Err(crate::config_error!(
                "schedule.power = {} must be a number of at least 0",
                self.power
            ));
        }
        if !(0.0..=1.0).contains(&self.warmup_start) {
            return Err(crate::config_error!(
                "schedule.warmup_start = {} must be between 0 and 1 (a fraction of the rate)",
                self.warmup_start
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn epoch_milestones_after_a_warmup_from_a_tenth() {
        let s = ScheduleConfig {
            milestones: vec![2, 4],
            ..ScheduleConfig::default()
        };
        let lr = |it| s.learning_rate(0.1, it, 60, 10);
        close(lr(0), 0.01);
        close(lr(5), 0.055);
        close(lr(10), 0.1);
        close(lr(23), 0.01);
        close(lr(50), 0.001);
    }

    #[test]
    fn iteration_steps_after_detectrons_warmup_from_a_third() {
        let s = ScheduleConfig {
            unit: ScheduleUnit::Iterations,
            milestones: vec![1000, 2000],
            warmup: 500,
            warmup_start: 1.0 / 3.0,
            ..ScheduleConfig::default()
        };
        let lr = |it| s.learning_rate(0.009, it, 3000, 7);
        close(lr(0), 0.003);
        close(lr(250), 0.006);
        close(lr(500), 0.009);
        close(lr(1500), 0.0009);
        close(lr(2000), 0.00009);
    }

    /// The release's `warmup_lr(step, warm_up_steps=wp, max_lr)`: `step * max_lr / (wp - 1)`
    /// over epoch 0, so 0 at the first step and `max_lr` at the last.
    #[test]
    fn the_release_warmup_starts_at_zero_and_ends_on_the_last_step() {
        let s = ScheduleConfig {
            warmup_start: 0.0,
            warmup_rule: WarmupRule::Release,
            ..ScheduleConfig::default()
        };
        let lr = |it| s.learning_rate(0.1, it, 2000, 391);
        close(lr(0), 0.0);
        close(lr(1), 0.1 / 390.0);
        close(lr(195), 195.0 * 0.1 / 390.0);
        close(lr(390), 0.1);
        close(lr(391), 0.1);
    }

    #[test]
    fn poly_decays_to_zero_at_the_end() {
        let s = ScheduleConfig {
            kind: ScheduleKind::Poly,
            warmup: 0,
            ..ScheduleConfig::default()
        };
        close(s.learning_rate(0.01, 0, 100, 10), 0.01);
        close(s.learning_rate(0.01, 50, 100, 10), 0.01 * 0.5f64.powf(0.9));
        close(s.learning_rate(0.01, 100, 100, 10), 0.0);
    }
}
