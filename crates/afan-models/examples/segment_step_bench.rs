//! Times the segmentation A-FAN step of the library (`segmentation_afan_objective`, the
//! release's VOC preset) against its pass-count floor, on DeepLabV3+ at output stride 16:
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p afan-models --example segment_step_bench \
//!     [-- ITERS SIZE BATCH]          # defaults 5, 129, 2; MobileNetV2 and ResNet-50
//! ```
//!
//! The floor is what the method needs on top of a baseline step (one forward and backward): the
//! se attack (a tail pass from the se point, backward to the feature only), the decoder attack
//! (the same from the ASPP output), two se strength points and the decoder point (tail passes
//! with parameter gradients). Each part is timed on its own in the same rounds, interleaved with
//! the step, and the floor is their sum; the release additionally runs two head passes (the se
//! and sd head passes), which afan shares with the clean pass (timed here as "shared head").
//! Forward and backward only: no optimizer step, on either side; the A-FAN step in a
//! flipped-weight scope, as the engine runs it.
//!
//! Two lines per backbone: wall-clock seconds, and the process's CPU seconds (all threads, 10 ms
//! ticks), which a loaded machine disturbs far less; with one thread (no idle spinning) the CPU
//! time is the work done.

mod common;

use afan_core::{SplitModel, attack_copy, materialize};
use afan_models::conv::with_flipped_weights;
use afan_models::deeplab::{SegmentationAfanConfig, segmentation_afan_objective};
use afan_models::{DeepLabBackbone, DeepLabConfig, DeepLabV3Plus};
use burn::tensor::{Device, Distribution, Int, Tensor};
use common::interleaved_medians;

/// The engine's segmentation loss (`afan_train::segmentation::loss`, which this crate cannot
/// depend on): the logits upsampled to the labels, then the mean cross-entropy.
fn loss(logits: &Tensor<4>, labels: &Tensor<3, Int>) -> Tensor<1> {
    let [_, h, w] = labels.dims();
    let logits = afan_models::deeplab::upsample_bilinear(logits.clone(), [h, w]);
    afan_models::cross_entropy::pixel_cross_entropy(logits, labels.clone(), 255)
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args().nth(i).map_or(default, |a| {
        a.parse().expect("ITERS SIZE BATCH are numbers")
    })
}

/// Everything on one worker of rayon's pool, its dropout masks drawn from a step's scope, as the
/// engine runs its steps (`afan_models::step_passes`): the floor is measured where the step runs.
fn main() {
    afan_models::on_pool(|| {
        let _draws = afan_core::DrawScope::enter(0);
        run()
    });
}

fn run() {
    let (iters, size, batch) = (arg(1, 5), arg(2, 129), arg(3, 2));
    let device = Device::default().autodiff();
    println!(
        "DeepLabV3+ os16, {size}x{size} crop, batch {batch}, {} threads, median of {iters} (1 warm-up)",
        rayon::current_num_threads()
    );
    println!(
        "{:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8}",
        "backbone",
        "baseline",
        "afan",
        "se att",
        "se point",
        "sd att",
        "sd point",
        "head 2x",
        "floor/b",
        "afan/b",
        "afan/fl"
    );
    for (name, backbone, split) in [
        (
            "mobilenet_v2",
            DeepLabBackbone::MobilenetV2 { width_mult: 1.0 },
            "features.13",
        ),
        ("resnet50", DeepLabBackbone::Resnet50, "layer3"),
    ] {
        let model = materialize(
            DeepLabConfig {
                backbone,
                num_classes: 21,
                output_stride: 16,
                aspp_channels: 256,
            }
            .init(&device),
        );
        let mut config = SegmentationAfanConfig::voc();
        config.backbone.split = split.into();
        let attacker = attack_copy(&model, config.backbone.attack_bn);
        let x = Tensor::<4>::random([batch, 3, size, size], Distribution::Default, &device);
        let y = Tensor::<3, Int>::random(
            [batch, size, size],
            Distribution::Uniform(0.0, 21.0),
            &device,
        );
        let se = model.split_point(split).unwrap();
        let sd = model.split_point("aspp").unwrap();
        let (f_se, low) = model.forward_to_parts(x.clone(), &se);
        let (f_sd, _) = model.forward_to_parts(x.clone(), &sd);
        let (f_se, f_sd, low) = (f_se.detach(), f_sd.detach(), low.detach());
        let tail = |m: &DeepLabV3Plus, f: &Tensor<4>, point, grad_of_input: bool| {
            let f = if grad_of_input {
                f.clone().require_grad()
            } else {
                f.clone()
            };
            let _ = loss(&m.forward_from_parts(f, low.clone(), point), &y).backward();
        };
        let baseline = || {
            let _ = loss(&model.forward(x.clone()), &y).backward();
        };
        // In a flipped-weight scope, as the engine's step: the objective's backward passes
        // share each convolution's flipped weight (afan_models::conv::FlippedWeights).
        let afan = || {
            with_flipped_weights(|| {
                let out = segmentation_afan_objective(&model, &attacker, x.clone(), &config, |o| {
                    loss(o, &y)
                })
                .unwrap();
                let _ = out.loss.backward();
            })
        };
        let head_twice = || {
            let _ = model.forward_to_parts(x.clone(), &se);
            let _ = model.forward_to_parts(x.clone(), &sd);
        };
        let (times, cpu) = interleaved_medians(
            iters,
            &[
                &baseline,
                &afan,
                &|| tail(&attacker, &f_se, &se, true),
                &|| tail(&model, &f_se, &se, false),
                &|| tail(&attacker, &f_sd, &sd, true),
                &|| tail(&model, &f_sd, &sd, false),
                &head_twice,
            ],
        );
        for (clock, m) in [("wall", times), ("cpu", cpu)] {
            // Two strength points at the se point, one at the decoder point.
            let floor = m[0] + m[2] + m[4] + 2.0 * m[3] + m[5];
            print!("{:<17}", format!("{name} {clock}"));
            for v in &m {
                print!(" {v:>8.3}s");
            }
            println!(
                " | {:>8.2} {:>8.2} {:>8.2}",
                floor / m[0],
                m[1] / m[0],
                m[1] / floor
            );
        }
    }
}
