//! One detection training step's loss, baseline or A-FAN (afan-models' detection objective),
//! shared by training and the benchmark so both run the same computation.

use crate::error::Result;
use afan_core::{SplitModel, attack_copy};
use afan_models::{
    DetectionAfanConfig, DetectionInput, DetectorStep, FasterRcnn, StepPlan,
    detection_afan_objective,
};
use burn::tensor::Tensor;

/// A step's loss to back-propagate and its parts for the log.
pub struct StepLoss {
    /// The objective (baseline: the four-term detector loss).
    pub loss: Tensor<1>,
    /// RPN objectness, RPN box, RoI class, RoI box of the clean pass.
    pub parts: [f32; 4],
    /// A-FAN: the loss of each point (L0 clean .. L4, then the RoI point L5).
    pub point_losses: Option<Vec<f32>>,
}

/// The loss of one step. `seed` draws the step's anchor and RoI samples; `afan = None` is the
/// baseline.
pub fn detection_loss(
    model: &FasterRcnn,
    input: DetectionInput,
    afan: Option<&DetectionAfanConfig>,
    seed: u64,
) -> Result<StepLoss> {
    let plan = StepPlan::new(seed);
    let bound = DetectorStep::new(model, &plan);
    Ok(match afan {
        None => {
            let losses = bound.forward(input);
            StepLoss {
                loss: losses.total(),
                parts: losses.values(),
                point_losses: None,
            }
        }
        Some(cfg) => {
            let attacker = attack_copy(model, cfg.backbone.attack_bn);
            let attack = DetectorStep::new(&attacker, &plan);
            let out = detection_afan_objective(&bound, &attack, input, cfg)?;
            StepLoss {
                loss: out.loss,
                parts: out.clean_output.values(),
                point_losses: Some(
                    out.point_losses
                        .into_iter()
                        .map(|l| l.into_scalar::<f32>())
                        .collect(),
                ),
            }
        }
    })
}
