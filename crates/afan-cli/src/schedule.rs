//! Learning rate as a pure function of (epoch, step), so a resumed run continues on the same curve.

use crate::config::ScheduleConfig;

/// The rate at step `step` (0-based) of epoch `epoch` (0-based) with `steps` steps per epoch.
///
/// Warm-up rises linearly per iteration from `lr / warmup_start_div` to `lr` over the first
/// `warmup_epochs`; afterwards the rate is `lr * gamma^k`, k the number of milestones passed
/// (PyTorch's `MultiStepLR`, stepped once per epoch).
pub fn learning_rate(
    base: f64,
    s: &ScheduleConfig,
    epoch: usize,
    step: usize,
    steps: usize,
) -> f64 {
    let decays = s.milestones.iter().filter(|&&m| epoch >= m).count();
    let lr = base * s.gamma.powi(decays as i32);
    let warm_total = s.warmup_epochs * steps;
    let it = epoch * steps + step;
    if it < warm_total {
        let start = lr / s.warmup_start_div.max(1.0);
        start + (lr - start) * it as f64 / warm_total as f64
    } else {
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_milestones() {
        let s = ScheduleConfig {
            milestones: vec![2, 4],
            gamma: 0.1,
            warmup_epochs: 1,
            warmup_start_div: 10.0,
        };
        assert!((learning_rate(0.1, &s, 0, 0, 10) - 0.01).abs() < 1e-12);
        assert!((learning_rate(0.1, &s, 0, 5, 10) - 0.055).abs() < 1e-12);
        assert!((learning_rate(0.1, &s, 1, 0, 10) - 0.1).abs() < 1e-12);
        assert!((learning_rate(0.1, &s, 2, 3, 10) - 0.01).abs() < 1e-12);
        assert!((learning_rate(0.1, &s, 5, 0, 10) - 0.001).abs() < 1e-12);
    }
}
