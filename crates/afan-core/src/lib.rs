//! A-FAN — adversarial feature augmentation and normalization — as backend-independent building
//! blocks.
//!
//! The crate knows nothing about datasets or concrete networks. A network takes part by
//! implementing [`SplitModel`]: it can be run up to a named point and resumed from there. Everything
//! else — the feature attack ([`pgd`]), the strength points ([`strength`]), the moment exchange
//! ([`moments`]), the loss weights ([`loss`]) and the training objective that ties them together
//! ([`objective`]) — works on the feature at that point, on whatever Burn device it lives.
//!
//! Defaults equal the authors' public release; see `docs/method.md` for every choice this crate
//! makes where the release and the paper differ.

pub mod config;
pub mod device;
pub mod draw;
pub mod learnable;
pub mod loss;
pub mod moments;
pub mod objective;
pub mod pgd;
pub mod pixel;
pub mod routing;
pub mod split;
pub mod strength;

pub use config::{AfanConfig, AttackBatchNorm};
pub use draw::DrawScope;
pub use learnable::{
    LearnableConfig, LearnableOutput, PointWeights, WeightProjection, learnable_objective,
};
pub use loss::{LossPreset, LossWeights, cross_entropy};
pub use moments::{ExchangeMask, MomentStats, moment_exchange};
pub use objective::{
    AfanOutput, afan_objective, attack_copy, augmented_features, augmented_losses, materialize,
};
pub use pgd::{FeaturePgdConfig, PgdOutcome, Projection, feature_pgd};
pub use pixel::{PixelPgdConfig, pixel_pgd};
pub use routing::{CleanPass, GradientRouting};
pub use split::{SplitError, SplitModel, SplitPoint};
pub use strength::strength_points;

#[cfg(test)]
pub(crate) mod test_util;
