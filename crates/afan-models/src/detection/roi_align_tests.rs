//! RoIAlign / RoIPool against torchvision.ops: values and input gradients from
//! `tests/fixtures/roi_align.safetensors` (written by `xtask/reference/roi_align.py`), on the
//! test device (afan's gather kernel on flex, the weight-matrix product on the GPU backends).

use super::*;
use crate::StateDict;
use burn::tensor::{Device, Tolerance};
use std::path::Path;

fn fixture() -> StateDict {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/roi_align.safetensors");
    StateDict::from_safetensors(&path).unwrap()
}

fn tensor<const D: usize>(dict: &StateDict, key: &str, device: &Device) -> Tensor<D> {
    let (values, shape) = dict
        .get(key)
        .unwrap_or_else(|| panic!("fixture lacks {key}"));
    Tensor::from_data(TensorData::new(values.to_vec(), shape.to_vec()), device)
}

fn rois(dict: &StateDict, key: &str) -> Vec<Roi> {
    let (values, _) = dict.get(key).unwrap();
    values
        .chunks(5)
        .map(|r| (r[0] as usize, [r[1], r[2], r[3], r[4]]))
        .collect()
}

fn check(case: &str, config: RoiPoolConfig) {
    check_on(case, config, "")
}

/// `prefix` picks the fixture's features and boxes (`""` or `"big."`).
fn check_on(case: &str, config: RoiPoolConfig, prefix: &str) {
    let dict = fixture();
    let dev = afan_core::device::test_device().autodiff();
    let x = tensor::<4>(&dict, &format!("{prefix}x"), &dev).require_grad();
    let out = config.forward(x.clone(), &rois(&dict, &format!("{prefix}rois")));
    let expected = tensor::<4>(&dict, &format!("{case}.out"), &dev);
    out.clone()
        .into_data()
        .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
    let r = tensor::<4>(&dict, &format!("{case}.r"), &dev);
    let grads = (out * r).sum().backward();
    let grad = x.grad(&grads).unwrap();
    let expected = tensor::<4>(
        &dict,
        &format!("{case}.grad"),
        &afan_core::device::test_device(),
    );
    grad.into_data()
        .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
}

fn config(sampling_ratio: usize, aligned: bool, mode: RoiPoolMode) -> RoiPoolConfig {
    RoiPoolConfig {
        output_size: [3, 2],
        spatial_scale: 0.5,
        sampling_ratio,
        aligned,
        mode,
    }
}

#[test]
fn roi_align_unaligned_adaptive_matches_torchvision() {
    check("align0", config(0, false, RoiPoolMode::Align));
}

#[test]
fn roi_align_aligned_fixed_sampling_matches_torchvision() {
    check("align1", config(2, true, RoiPoolMode::Align));
}

/// The release's head: 14x14 on a stride-16 map with adaptive sampling (boxes of 20 to 260
/// pixels, one past the map's edge).
#[test]
fn roi_align_14x14_on_a_stride_16_map_matches_torchvision() {
    let config = RoiPoolConfig {
        output_size: [14, 14],
        ..RoiPoolConfig::default()
    };
    check_on("align14", config, "big.");
}

#[test]
fn roi_align_7x7_two_samples_aligned_matches_torchvision() {
    let config = RoiPoolConfig {
        output_size: [7, 7],
        sampling_ratio: 2,
        aligned: true,
        ..RoiPoolConfig::default()
    };
    check_on("align7r2", config, "big.");
}

#[test]
fn roi_pool_matches_torchvision() {
    check("pool", config(0, false, RoiPoolMode::MaxPool));
}

#[test]
fn a_box_on_one_cell_centre_reads_that_cell() {
    // aligned=True, 1x1 output, one sample: the box [2, 1, 3, 2] (scale 1) is centred on cell
    // (1, 2) after the half-cell shift, so the output is exactly that cell.
    let dev = afan_core::device::test_device();
    let x = Tensor::<4>::from_data(
        TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [1, 1, 3, 4]),
        &dev,
    );
    let cfg = RoiPoolConfig {
        output_size: [1, 1],
        spatial_scale: 1.0,
        sampling_ratio: 1,
        aligned: true,
        mode: RoiPoolMode::Align,
    };
    let out = cfg.forward(x, &[(0, [2.0, 1.0, 3.0, 2.0])]);
    assert_eq!(out.into_data().try_to_vec::<f32>().unwrap(), vec![6.0]);
}
