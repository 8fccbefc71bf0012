//! What a checkpoint must hold for a resumed run to continue exactly where the uninterrupted
//! one would be: the iteration, the best figure so far, the loss scaler, and the running means
//! of the training window since the last evaluation (so the next record is the same).

use crate::precision::{LossScaler, Precision};
use crate::task::{Measure, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Weighted sums of a step's measures since the last evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Window {
    /// Steps in the window.
    pub steps: usize,
    /// Sum of the step losses.
    pub loss: f64,
    /// Per measure: the weighted sum of its values and the sum of weights.
    pub sums: BTreeMap<String, (Value, f64)>,
    /// Seconds of each step (for the median).
    pub step_seconds: Vec<f64>,
    /// The rate of the last step.
    pub lr: f64,
}

impl Window {
    /// Adds one step.
    pub fn add(&mut self, loss: f64, measures: Vec<Measure>, seconds: f64, lr: f64) {
        self.steps += 1;
        self.loss += loss;
        self.step_seconds.push(seconds);
        self.lr = lr;
        for m in measures {
            let w = m.weight;
            let entry = self
                .sums
                .entry(m.name.to_string())
                .or_insert_with(|| (zero_like(&m.value), 0.0));
            entry.1 += w;
            match (&mut entry.0, m.value) {
                (Value::Scalar(s), Value::Scalar(v)) => *s += w * v,
                (Value::Vector(s), Value::Vector(v)) => {
                    s.resize(s.len().max(v.len()), 0.0);
                    for (a, b) in s.iter_mut().zip(v) {
                        *a += w * b;
                    }
                }
                // A measure that changed shape: keep the first shape's sums.
                _ => {}
            }
        }
    }

    /// The mean step loss.
    pub fn mean_loss(&self) -> f64 {
        self.loss / self.steps.max(1) as f64
    }

    /// The weighted mean of every measure.
    pub fn means(&self) -> Vec<(String, Value)> {
        self.sums
            .iter()
            .map(|(k, (v, w))| {
                let w = if *w > 0.0 { *w } else { 1.0 };
                let mean = match v {
                    Value::Scalar(s) => Value::Scalar(s / w),
                    Value::Vector(s) => Value::Vector(s.iter().map(|x| x / w).collect()),
                };
                (k.clone(), mean)
            })
            .collect()
    }

    /// The median step time (the upper one of an even count).
    pub fn median_seconds(&self) -> f64 {
        let mut v = self.step_seconds.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
}

fn zero_like(v: &Value) -> Value {
    match v {
        Value::Scalar(_) => Value::Scalar(0.0),
        Value::Vector(x) => Value::Vector(vec![0.0; x.len()]),
    }
}

/// The engine's state, saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct TrainState {
    /// Iterations completed.
    pub iteration: usize,
    /// The best evaluation headline so far.
    pub best: Option<f64>,
    /// Where it was reached.
    pub best_iteration: Option<usize>,
    /// The training window since the last evaluation.
    pub window: Window,
    /// The f16 loss scale.
    pub scaler: LossScaler,
    /// Seconds of training and evaluation so far.
    pub elapsed_seconds: f64,
    /// The learnable variant's point weights and their momentum (absent for other methods and
    /// in checkpoints written before the variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_weights: Option<afan_core::PointWeights>,
}

impl TrainState {
    /// The state before the first step.
    pub fn new(precision: Precision) -> Self {
        Self {
            iteration: 0,
            best: None,
            best_iteration: None,
            window: Window::default(),
            scaler: LossScaler::new(precision),
            elapsed_seconds: 0.0,
            point_weights: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_means_are_weighted_and_survive_a_json_round_trip() {
        let mut w = Window::default();
        let acc = |v: f64, n: f64| Measure {
            name: "top1",
            value: Value::Scalar(v),
            weight: n,
        };
        w.add(
            1.0,
            vec![acc(50.0, 2.0), Measure::vector("p", vec![1.0, 2.0])],
            0.1,
            0.5,
        );
        w.add(
            3.0,
            vec![acc(80.0, 8.0), Measure::vector("p", vec![3.0, 4.0])],
            0.3,
            0.4,
        );
        assert_eq!(w.mean_loss(), 2.0);
        let m = w.means();
        assert_eq!(m[0], ("p".into(), Value::Vector(vec![2.0, 3.0])));
        assert_eq!(m[1], ("top1".into(), Value::Scalar(74.0)));
        assert_eq!(w.median_seconds(), 0.3);
        let back: Window = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back, w);
    }
}
