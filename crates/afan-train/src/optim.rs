//! Stochastic gradient descent with PyTorch's semantics made explicit: the release trains every
//! task with `torch.optim.SGD`, whose dampening is 0 where Burn's default is 0.1.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

/// `[optim]` of every task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Base learning rate (classification release: 0.1; detection 0.008 VOC / 0.01 COCO;
    /// segmentation 0.01).
    pub lr: f64,
    /// Momentum (release: 0.9).
    pub momentum: f64,
    /// Momentum dampening. PyTorch's default is 0; Burn's is 0.1, so it is set here explicitly.
    pub dampening: f64,
    /// L2 weight decay added to the gradient, as `torch.optim.SGD(weight_decay=...)`.
    pub weight_decay: f64,
    /// Nesterov momentum (release: off).
    pub nesterov: bool,
}

impl Default for OptimConfig {
    /// The classification release: lr 0.1, momentum 0.9, weight decay 5e-4.
    fn default() -> Self {
        Self {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 5e-4,
            nesterov: false,
        }
    }
}

impl OptimConfig {
    /// The optimizer (its learning rate is given at each step by the schedule): `crate::sgd`'s,
    /// which equals [`Self::build_burn`]'s bit for bit and is one in-place pass per parameter on
    /// flex.
    pub fn build(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(crate::sgd::Sgd {
            weight_decay: (self.weight_decay > 0.0).then_some(self.weight_decay as f32),
            momentum: (self.momentum > 0.0).then_some(crate::sgd::Momentum {
                momentum: self.momentum as f32,
                dampening: self.dampening,
                nesterov: self.nesterov,
            }),
        })
    }

    /// The same optimizer as Burn's `Sgd` (seven element-wise tensor ops per parameter): for
    /// comparisons (`afan bench` times it with `AFAN_BENCH_SGD=burn`).
    pub fn build_burn(&self) -> ModuleOptimizer {
        let momentum = (self.momentum > 0.0).then_some(MomentumConfig {
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
        });
        let decay = (self.weight_decay > 0.0).then_some(WeightDecayConfig {
            penalty: self.weight_decay as f32,
        });
        SgdConfig::new()
            .with_momentum(momentum)
            .with_weight_decay(decay)
            .init()
    }

    /// Rejects values that would fail later, naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(crate::config_error!(
                "optim.lr = {} must be a positive number",
                self.lr
            ));
        }
        for (name, v) in [
            ("momentum", self.momentum),
            ("dampening", self.dampening),
            ("weight_decay", self.weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(crate::config_error!(
                    "optim.{name} = {v} must be a number of at least 0"
                ));
            }
        }
        Ok(())
    }
}
