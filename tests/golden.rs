//! The golden tests against PyTorch and torchvision, compiled as one test binary: one link of
//! the workspace instead of three (CI time), and one file to carry to a GPU machine, where each
//! test binary statically links LLVM for the `cuda` backend (xtask/gpu/build.sh).
//!
//! `cargo test -p afan-models --test golden cifar::` (or `attacks::`, `torchvision::`,
//! `release_classification::`, `release_detection::`, `release_segmentation::`) runs a part.

#[path = "support/golden.rs"]
mod golden;
#[path = "support/hash_weights.rs"]
mod hash_weights;

#[path = "golden_attacks.rs"]
mod attacks;
#[path = "golden_cifar.rs"]
mod cifar;
#[path = "golden_release_classification.rs"]
mod release_classification;
#[path = "golden_release_detection.rs"]
mod release_detection;
#[path = "golden_release_segmentation.rs"]
mod release_segmentation;
#[path = "golden_torchvision.rs"]
mod torchvision;
