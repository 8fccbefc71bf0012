//! Times the detection A-FAN step of the library (`detection_afan_objective`, the release's VOC
//! preset) against its pass-count floor, on Faster R-CNN C4 with a ResNet-18 (the release's VOC
//! recipe otherwise; frozen batch norm, frozen stem and `layer1`), one image:
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release -p afan-models --example detect_step_bench \
//!     [-- ITERS HEIGHT WIDTH]          # defaults 3, 600, 800
//! ```
//!
//! The floor is what the method needs on top of a baseline step (one forward and backward): the
//! FGSM pass at `layer2` (the tail from `layer2`, backward to the feature only) and four strength
//! points (the tail with parameter gradients), each drawing its own anchor and RoI samples as the
//! release does; the RoI point's two passes through the predictors are left out (well under 1%).
//! Each part is timed on its own in the same rounds, interleaved with the steps. Forward and
//! backward only, no optimizer step; the A-FAN step in a flipped-weight scope, as the engine runs
//! it. Wall-clock and CPU seconds, as `segment_step_bench`.

mod common;

use afan_core::{SplitModel, attack_copy, materialize};
use afan_models::conv::with_flipped_weights;
use afan_models::detection::step::Sampling;
use afan_models::{
    DetectionAfanConfig, DetectionInput, DetectionTarget, DetectorStep, FasterRcnnConfig, StepPlan,
    detection_afan_objective,
};
use burn::tensor::{Device, Distribution, Tensor};
use common::interleaved_medians;

fn arg(i: usize, default: usize) -> usize {
    std::env::args().nth(i).map_or(default, |a| {
        a.parse().expect("ITERS HEIGHT WIDTH are numbers")
    })
}

/// Everything on one worker of rayon's pool, as the engine runs its steps
/// (`afan_models::on_pool`): the floor is measured where the step runs.
fn main() {
    afan_models::on_pool(run);
}

fn run() {
    let (iters, h, w) = (arg(1, 3), arg(2, 600), arg(3, 800));
    let device = Device::default().autodiff();
    device.seed(0);
    let config = FasterRcnnConfig {
        backbone: "resnet18".into(),
        ..FasterRcnnConfig::voc()
    };
    let model = materialize(config.init(&device).expect("the VOC recipe is valid"));
    let afan = DetectionAfanConfig::voc();
    let attacker = attack_copy(&model, afan.backbone.attack_bn);
    let images = Tensor::<4>::random([1, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
    // Three fixed objects, as `afan bench --task detect`.
    let target = DetectionTarget {
        boxes: vec![
            [40.0, 60.0, 300.0, 380.0],
            [350.0, 100.0, 520.0, 260.0],
            [500.0, 300.0, 760.0, 560.0],
        ],
        labels: vec![3, 7, 12],
    };
    let input = DetectionInput::new(images, vec![[h, w]], vec![target], 20).unwrap();

    // The tails start from the clean `layer2` feature; the plan keeps the image sizes and
    // targets and redraws per pass.
    let plan = StepPlan::new(1);
    plan.set_sampling(Sampling::PerPass);
    let (bound, attack) = (
        DetectorStep::new(&model, &plan),
        DetectorStep::new(&attacker, &plan),
    );
    let point = bound.split_point(&afan.backbone.split).unwrap();
    let feature = bound.forward_to(input.clone(), &point).detach();

    let baseline = || {
        let plan = StepPlan::new(2);
        plan.set_sampling(Sampling::PerPass);
        let _ = DetectorStep::new(&model, &plan)
            .forward(input.clone())
            .total()
            .backward();
    };
    // In a flipped-weight scope, as the engine's step: the objective's backward passes share
    // each convolution's flipped weight (afan_models::conv::FlippedWeights).
    let step = || {
        with_flipped_weights(|| {
            let plan = StepPlan::new(3);
            let (m, a) = (
                DetectorStep::new(&model, &plan),
                DetectorStep::new(&attacker, &plan),
            );
            let out = detection_afan_objective(&m, &a, input.clone(), &afan).unwrap();
            let _ = out.loss.backward();
        })
    };
    let attack_pass = || {
        let f = feature.clone().require_grad();
        let _ = attack.forward_from(f, &point).total().backward();
    };
    let point_pass = || {
        let _ = bound
            .forward_from(feature.clone(), &point)
            .total()
            .backward();
    };
    let (wall, cpu) = interleaved_medians(iters, &[&baseline, &step, &attack_pass, &point_pass]);
    println!(
        "Faster R-CNN C4 R-18, {h}x{w}, batch 1, {} threads, median of {iters} (1 warm-up)",
        rayon::current_num_threads()
    );
    println!(
        "{:<6} {:>9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8}",
        "clock", "baseline", "afan", "attack", "point", "floor/b", "afan/b", "afan/fl"
    );
    for (clock, m) in [("wall", wall), ("cpu", cpu)] {
        let floor = m[0] + m[2] + 4.0 * m[3];
        println!(
            "{clock:<6} {:>8.3}s {:>8.3}s {:>8.3}s {:>8.3}s | {:>8.2} {:>8.2} {:>8.2}",
            m[0],
            m[1],
            m[2],
            m[3],
            floor / m[0],
            m[1] / m[0],
            m[1] / floor
        );
    }
}
