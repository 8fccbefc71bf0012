//! afan's convolution against a hand-computed case, against Burn's own `conv2d` (forward, input
//! gradient, weight gradient) on the shapes the ResNets use, in miniature, and against PyTorch's
//! `F.conv2d` on the depthwise, grouped and dilated shapes of MobileNetV2, EfficientNet and
//! DeepLab (`tests/fixtures/conv_kernels.safetensors`, written by
//! `xtask/reference/conv_kernels.py`).

use super::*;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, TensorData, Tolerance};

/// Within 1e-4, or 1e-5 relative where values are large: the weight gradient of `sum(y^2)` reaches
/// ~340, where 1e-4 is 3 ulps, and afan sums in another order than Burn (the transposed weight
/// gradient differed by 3.6e-7 relative, 1.2e-4 absolute there). A misplaced term is off by O(1).
fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
    let (a, b) = (a.into_data(), b.into_data());
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    a.assert_approx_eq::<f32>(&b, Tolerance::rel_abs(1e-5, 1e-4));
}

/// A 1x1x3x3 image of 1..9, the all-ones 3x3 kernel, padding 1: every output is the sum of the
/// inputs in its 3x3 neighbourhood (worked by hand); stride 2 keeps the four corners.
#[test]
fn ones_kernel_sums_neighbourhoods() {
    let dev = Device::flex();
    let x = Tensor::<4>::from_data(
        TensorData::new((1..=9).map(|v| v as f32).collect(), [1, 1, 3, 3]),
        &dev,
    );
    let w = Tensor::<4>::ones([1, 1, 3, 3], &dev);
    let y = fast_conv2d(x.clone(), w.clone(), [1, 1], [1, 1], [1, 1], 1);
    let expected = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0];
    y.into_data()
        .assert_eq(&TensorData::new(expected.to_vec(), [1, 1, 3, 3]), false);
    let y = fast_conv2d(x, w, [2, 2], [1, 1], [1, 1], 1);
    y.into_data().assert_eq(
        &TensorData::new(vec![12.0f32, 16.0, 24.0, 28.0], [1, 1, 2, 2]),
        false,
    );
}

/// Input gradient of the same case under a loss of `sum(y)`: each input is counted once per
/// output whose window covers it (4 at corners, 6 on edges, 9 in the centre); the weight
/// gradient at kernel offset (i, j) is the sum of the inputs that offset reaches.
#[test]
fn ones_kernel_gradients_count_window_coverage() {
    let dev = Device::flex().autodiff();
    let x = Tensor::<4>::from_data(
        TensorData::new((1..=9).map(|v| v as f32).collect(), [1, 1, 3, 3]),
        &dev,
    )
    .require_grad();
    let w = Tensor::<4>::ones([1, 1, 3, 3], &dev).require_grad();
    let grads = fast_conv2d(x.clone(), w.clone(), [1, 1], [1, 1], [1, 1], 1)
        .sum()
        .backward();
    let dx = x.grad(&grads).unwrap();
    let dw = w.grad(&grads).unwrap();
    let coverage = [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0];
    dx.into_data()
        .assert_eq(&TensorData::new(coverage.to_vec(), [1, 1, 3, 3]), false);
    // Offset (0, 0) sees inputs at rows 0..2, cols 0..2 of the padded grid shifted: 1+2+4+5 = 12.
    let reach = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0];
    dw.into_data()
        .assert_eq(&TensorData::new(reach.to_vec(), [1, 1, 3, 3]), false);
}

/// (batch, in, out, size, kernel, stride, padding) — the ResNet shapes in miniature.
const CASES: [(usize, usize, usize, usize, usize, usize, usize); 9] = [
    (3, 4, 5, 8, 3, 1, 1), // 3x3, same size, K > C: col2im input gradient
    (3, 6, 4, 8, 3, 1, 1), // 3x3, same size, K < C: convolution input gradient
    (3, 4, 4, 6, 3, 1, 1), // K = C (every ResNet block)
    (3, 4, 6, 8, 3, 2, 1), // 3x3 stride 2 (stage transitions)
    (2, 3, 4, 7, 3, 2, 1), // odd size, stride 2
    (2, 5, 3, 6, 1, 1, 0), // 1x1 (bottlenecks): no patch matrix
    (2, 4, 6, 7, 1, 2, 0), // 1x1 stride 2 (downsample)
    (2, 3, 4, 9, 7, 2, 3), // the torchvision stem
    (1, 2, 3, 5, 3, 1, 0), // no padding
];

fn values(t: &Tensor<4>) -> Vec<f32> {
    t.to_data().try_to_vec::<f32>().unwrap()
}

/// Forward and both gradients through autodiff (which picks the input-gradient route by
/// `InputRoute::choose`) against Burn's; then each route that applies, run directly on the same
/// output gradient, against Burn's autodiff gradients.
#[test]
fn matches_burn_forward_input_grad_and_weight_grad() {
    use kernel::{ConvGeom, InputRoute, conv2d_backward_by};
    let dev = Device::flex().autodiff();
    for (b, c, k, size, kernel, stride, pad) in CASES {
        let case = format!("b{b} c{c} k{k} {size}x{size} k{kernel} s{stride} p{pad}");
        let x = Tensor::<4>::random([b, c, size, size], Distribution::Normal(0.0, 1.0), &dev);
        let w = Tensor::<4>::random([k, c, kernel, kernel], Distribution::Normal(0.0, 1.0), &dev);
        let mut dy = None;
        let mut run = |fast: bool| {
            let (x, w) = (x.clone().require_grad(), w.clone().require_grad());
            let y = if fast {
                fast_conv2d(x.clone(), w.clone(), [stride; 2], [pad; 2], [1, 1], 1)
            } else {
                let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
                conv2d(x.clone(), w.clone(), None, options)
            };
            // A loss whose output gradient differs per element, so misplaced gradients show.
            let r = Tensor::<4>::ones(y.dims(), &dev).cumsum(3).cumsum(1) / 10.0;
            dy = Some(values(&r));
            let grads = (y.clone() * r).sum().backward();
            (y, x.grad(&grads).unwrap(), w.grad(&grads).unwrap())
        };
        let (y, dx, dw) = run(true);
        let (y_ref, dx_ref, dw_ref) = run(false);
        close(y, y_ref, &format!("{case}: forward"));
        close(dx, dx_ref.clone(), &format!("{case}: input grad"));
        close(dw, dw_ref.clone(), &format!("{case}: weight grad"));

        let g = ConvGeom::dense([b, c, k], [size; 2], [kernel; 2], [stride; 2], [pad; 2]);
        let (xs, ws, dy) = (values(&x), values(&w), dy.unwrap());
        let conv = g.input_grad_conv().is_some();
        for route in [InputRoute::Col2im, InputRoute::Conv] {
            if route == InputRoute::Conv && !conv {
                continue;
            }
            let (gx, gw) = conv2d_backward_by(&g, route, &xs, &ws, &dy, [true, true]);
            let as_tensor = |v: Vec<f32>, t: &Tensor<4>| {
                Tensor::<4>::from_data(TensorData::new(v, t.dims()), &Device::flex())
            };
            let what = format!("{case}: {route:?}");
            close(
                as_tensor(gx.unwrap(), &x),
                dx_ref.clone(),
                &format!("{what} dx"),
            );
            close(
                as_tensor(gw.unwrap(), &w),
                dw_ref.clone(),
                &format!("{what} dw"),
            );
        }
    }
}

/// Only the gradient that is asked for is computed, and it is the right one: a constant input
/// (no gradient) with a trained weight, and a trained input with a constant weight.
#[test]
fn one_sided_gradients_match_burn() {
    let dev = Device::flex().autodiff();
    let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 1.0), &dev);
    let w = Tensor::<4>::random([4, 3, 3, 3], Distribution::Normal(0.0, 1.0), &dev);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let (xg, wg) = (x.clone().require_grad(), w.clone().require_grad());
    let g = fast_conv2d(x.clone(), wg.clone(), [1, 1], [1, 1], [1, 1], 1)
        .powf_scalar(2.0)
        .sum()
        .backward();
    let g_ref = conv2d(x.clone(), wg.clone(), None, options.clone())
        .powf_scalar(2.0)
        .sum()
        .backward();
    close(
        wg.grad(&g).unwrap(),
        wg.grad(&g_ref).unwrap(),
        "weight only",
    );
    let g = fast_conv2d(xg.clone(), w.clone(), [1, 1], [1, 1], [1, 1], 1)
        .powf_scalar(2.0)
        .sum()
        .backward();
    let g_ref = conv2d(xg.clone(), w, None, options)
        .powf_scalar(2.0)
        .sum()
        .backward();
    close(xg.grad(&g).unwrap(), xg.grad(&g_ref).unwrap(), "input only");
}

/// The module gives Burn's module's output for the configurations it accelerates (bias, groups,
/// dilation) and for those it hands back to Burn ("same" and asymmetric padding), and keeps its
/// record layout.
#[test]
fn module_matches_burn_module() {
    let dev = Device::flex();
    let configs = [
        Conv2dConfig::new([4, 6], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
        Conv2dConfig::new([4, 6], [3, 3])
            .with_stride([2, 2])
            .with_bias(false),
        Conv2dConfig::new([4, 6], [1, 1]),
        Conv2dConfig::new([4, 6], [3, 3])
            .with_groups(2)
            .with_padding(PaddingConfig2d::Same),
        Conv2dConfig::new([4, 6], [3, 3]).with_dilation([2, 2]),
        Conv2dConfig::new([4, 6], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 0, 0, 1)),
        Conv2dConfig::new([4, 4], [3, 3])
            .with_groups(4)
            .with_dilation([2, 2])
            .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2)),
        Conv2dConfig::new([4, 6], [3, 3])
            .with_groups(2)
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
    ];
    let x = Tensor::<4>::random([2, 4, 9, 9], Distribution::Normal(0.0, 1.0), &dev);
    // "Same" and asymmetric padding run Burn's convolution, the others afan's kernels.
    for (i, config) in configs.into_iter().enumerate() {
        let reference = config.init(&dev);
        let fast = Conv2d::from(reference.clone());
        assert_eq!(
            fast.fast_padding(&x).is_some(),
            i != 3 && i != 5,
            "{config:?}"
        );
        close(
            fast.forward(x.clone()),
            reference.forward(x.clone()),
            &format!("{config:?}"),
        );
        assert_eq!(fast.num_params(), reference.num_params());
    }
}

/// Forward, input gradient and weight gradient through autodiff against PyTorch's `F.conv2d`
/// (computed in float64) on depthwise (stride 1 and 2, dilated, 5x5), grouped and dilated
/// (ASPP-like, most taps in the padding) shapes.
#[test]
fn depthwise_grouped_and_dilated_match_pytorch() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/conv_kernels.safetensors");
    let dict = crate::StateDict::from_safetensors(&path).unwrap();
    let dev = Device::flex().autodiff();
    let tensor = |key: &str| {
        let (values, shape) = dict
            .get(key)
            .unwrap_or_else(|| panic!("fixture lacks {key}"));
        Tensor::<4>::from_data(TensorData::new(values.to_vec(), shape.to_vec()), &dev)
    };
    let cases = [
        "dw_s1", "dw_s2", "dw_d2", "dw_k5s2", "grouped", "dil6", "dil2_s1", "dil2_p0",
    ];
    for case in cases {
        let (meta, _) = dict.get(&format!("{case}.meta")).unwrap();
        let [stride, pad, dil, groups] = [0, 1, 2, 3].map(|i| meta[i] as usize);
        let x = tensor(&format!("{case}.x")).require_grad();
        let w = tensor(&format!("{case}.w")).require_grad();
        let y = fast_conv2d(
            x.clone(),
            w.clone(),
            [stride; 2],
            [pad; 2],
            [dil; 2],
            groups,
        );
        let grads = (y.clone() * tensor(&format!("{case}.r"))).sum().backward();
        let (dx, dw) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap());
        let want = |name: &str| tensor(&format!("{case}.{name}")).inner();
        close(y.inner(), want("y"), &format!("{case}: forward"));
        close(dx, want("dx"), &format!("{case}: input grad"));
        close(dw, want("dw"), &format!("{case}: weight grad"));
    }
}
