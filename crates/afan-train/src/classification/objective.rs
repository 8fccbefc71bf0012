//! The loss of one classification step for each method — cross-entropy, the A-FAN objective at
//! a split point, or pixel-level PGD adversarial training — shared by training and `afan bench`
//! so the benchmark times exactly what training runs.

use afan_core::{
    AfanConfig, AttackBatchNorm, PgdOutcome, PixelPgdConfig, SplitModel, SplitPoint,
    afan_objective, attack_copy, cross_entropy, pixel_pgd,
};
use afan_models::Classifier;
use burn::tensor::{Int, Tensor};

/// What the attack produced, for the metrics.
pub struct AttackReport {
    /// Perturbation norms.
    pub pgd: PgdOutcome,
    /// Loss of each strength point, point 0 clean.
    pub point_losses: Vec<Tensor<1>>,
}

/// What one training step optimises.
pub enum Objective<'a> {
    /// Cross-entropy of the plain forward.
    Baseline,
    /// The A-FAN objective at a split point.
    Afan(&'a SplitPoint, &'a AfanConfig),
    /// Cross-entropy on images attacked by input-space PGD through the whole network (batch norm
    /// of the attack passes as chosen for A-FAN's).
    PixelPgd(&'a PixelPgdConfig, AttackBatchNorm),
}

/// The loss to back-propagate, the logits the accuracy is read from (of the clean images, or of
/// the attacked ones for pixel PGD), and the attack's report.
pub fn training_loss(
    model: &Classifier,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    objective: &Objective,
) -> (Tensor<1>, Tensor<2>, Option<AttackReport>) {
    match objective {
        Objective::Afan(point, afan) => {
            let attacker = attack_copy(model, afan.attack_bn);
            let out = afan_objective(model, &attacker, x, point, afan, |o| {
                cross_entropy(o.clone(), y.clone())
            });
            let report = AttackReport {
                pgd: out.pgd,
                point_losses: out.point_losses,
            };
            (out.loss, out.clean_output, Some(report))
        }
        Objective::PixelPgd(config, bn) => {
            let attacker = attack_copy(model, *bn);
            let pgd = pixel_pgd(x, config, |xa| {
                cross_entropy(attacker.forward(xa), y.clone())
            });
            let logits = model.forward(pgd.adversarial.clone());
            let loss = cross_entropy(logits.clone(), y);
            let report = AttackReport {
                point_losses: vec![loss.clone().detach()],
                pgd,
            };
            (loss, logits, Some(report))
        }
        Objective::Baseline => {
            let logits = model.forward(x);
            (cross_entropy(logits.clone(), y), logits, None)
        }
    }
}
