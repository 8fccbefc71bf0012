//! Times afan's kernels for the detection and segmentation steps against flex's own ops on the
//! same data (median of ITERS runs after a warm-up, default 5), one line per op and shape:
//!
//! ```sh
//! cargo run --release -p afan-models --example detseg_kernels_bench -- [FAMILY] [ITERS]
//! ```
//!
//! Families (default `all`):
//! - `detect-backbone`: ResNet-18 to `layer3` on one 600x800 image (the stem and `layer1` are
//!   frozen: forward only in a step);
//! - `roi-head`: the convolutions of ResNet-18's `layer4` on 128 pooled 7x7 regions (Faster R-CNN
//!   C4's RoI head), the RPN's 3x3 conv on a 600x800 image's `layer3`;
//! - `depthwise`: MobileNetV2's depthwise convolutions of a DeepLabV3+ step (129x129, batch 2,
//!   output stride 16);
//! - `dilated`: DeepLabV3+'s dilated convolutions (ASPP rates 6/12/18 on ResNet-50's 2048
//!   channels, ResNet-50 `layer4` at dilation 2), 129x129, batch 2;
//! - `roi-align`: RoIAlign of 128 regions to 7x7 (and 14x14) from 256x38x50: afan's gather and
//!   scatter against the weight-matrix product the other backends run (`[R*49, H*W] x [H*W, C]`);
//! - `upsample`: DeepLabV3+'s bilinear resizes (ASPP output to stride 4, logits to the input).
//! - `max-pool`: the ResNet stem's 3x3/2 pool on a 600x800 image (64x300x400) and the RoI head's
//!   2x2 pool of 128 regions (256x14x14), without and with the picks (forward only).
//!
//! Each line: flex's forward / input gradient / weight gradient, then afan's. A third argument
//! `afan-only` skips flex's convolutions (to compare afan builds or `AFAN_CONV_BLOCK_COLUMNS`).

mod common;

use afan_models::conv::kernel::{ConvGeom, conv2d_backward, conv2d_forward};
use afan_models::detection::roi_align::kernel::{
    AlignParams, RoiSamples, roi_align_backward, roi_align_forward,
};
use afan_models::pool::Pool2d;
use afan_models::pool::kernel::max_pool2d_forward;
use afan_models::upsample::kernel::{Resize, bilinear_backward, bilinear_forward};
use burn::backend::Flex;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::tensor::IntDType;
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use common::{data, tensor, time};

fn ms(t: f64) -> String {
    format!("{:>9.2}ms", t * 1e3)
}

/// One convolution: name, geometry, and how many a step runs.
struct Conv {
    name: &'static str,
    g: ConvGeom,
}

fn conv(
    name: &'static str,
    [n, c, k]: [usize; 3],
    hw: impl Into<Hw>,
    kernel: usize,
    [s, p, d, groups]: [usize; 4],
) -> Conv {
    Conv {
        name,
        g: ConvGeom {
            dilation: [d; 2],
            groups,
            ..ConvGeom::dense([n, c, k], hw.into().0, [kernel; 2], [s; 2], [p; 2])
        },
    }
}

/// An input size: one number for a square.
struct Hw([usize; 2]);

impl From<usize> for Hw {
    fn from(s: usize) -> Self {
        Hw([s, s])
    }
}

impl From<[usize; 2]> for Hw {
    fn from(hw: [usize; 2]) -> Self {
        Hw(hw)
    }
}

fn conv_line(c: &Conv, iters: usize) {
    let g = &c.g;
    let [oh, ow] = g.out_hw();
    let (x, w) = (
        data(g.batch * g.in_ch * g.in_hw[0] * g.in_hw[1], 1),
        data(g.out_ch * g.patch(), 2),
    );
    let dy = data(g.batch * g.out_ch * oh * ow, 3);
    let xt = tensor(x.clone(), [g.batch, g.in_ch, g.in_hw[0], g.in_hw[1]]);
    let wt = tensor(
        w.clone(),
        [g.out_ch, g.group_in(), g.kernel[0], g.kernel[1]],
    );
    let dyt = tensor(dy.clone(), [g.batch, g.out_ch, oh, ow]);
    let opts = ConvOptions::new(g.stride, g.padding, g.dilation, g.groups);
    let flex = if std::env::args().any(|a| a == "afan-only") {
        [f64::NAN; 3]
    } else {
        [
            time(iters, || {
                Flex::conv2d(xt.clone(), wt.clone(), None, opts.clone())
            }),
            time(iters, || {
                Flex::conv2d_x_backward(xt.clone(), wt.clone(), dyt.clone(), opts.clone())
            }),
            time(iters, || {
                Flex::conv2d_weight_backward(xt.clone(), wt.clone(), dyt.clone(), opts.clone())
            }),
        ]
    };
    let afan = [
        time(iters, || conv2d_forward(g, &x, &w)),
        time(iters, || conv2d_backward(g, &x, &w, &dy, [true, false])),
        time(iters, || conv2d_backward(g, &x, &w, &dy, [false, true])),
    ];
    let total = |t: &[f64; 3]| t.iter().sum::<f64>();
    println!(
        "{:<34} | {} {} {} | {} {} {} | {:>5.2}x",
        c.name,
        ms(flex[0]),
        ms(flex[1]),
        ms(flex[2]),
        ms(afan[0]),
        ms(afan[1]),
        ms(afan[2]),
        total(&flex) / total(&afan)
    );
}

fn header(what: &str) {
    println!(
        "{what:<34} | {:>11} {:>11} {:>11} | {:>11} {:>11} {:>11} | flex/afan",
        "flex fwd", "flex dx", "flex dw", "afan fwd", "afan dx", "afan dw"
    );
}

fn roi_head(iters: usize) {
    header("Faster R-CNN C4 R-18, 128 regions");
    for c in [
        conv(
            "layer4.0.conv1 256->512 7x7 s2",
            [128, 256, 512],
            7,
            3,
            [2, 1, 1, 1],
        ),
        conv(
            "layer4.0.downsample 1x1 s2",
            [128, 256, 512],
            7,
            1,
            [2, 0, 1, 1],
        ),
        conv(
            "layer4.*.conv 512->512 4x4 (x3)",
            [128, 512, 512],
            4,
            3,
            [1, 1, 1, 1],
        ),
        conv(
            "rpn.conv 256->512 38x50",
            [1, 256, 512],
            38,
            3,
            [1, 1, 1, 1],
        ),
    ] {
        conv_line(&c, iters);
    }
}

fn detect_backbone(iters: usize) {
    header("Faster R-CNN C4 R-18, 600x800, batch 1");
    for c in [
        conv(
            "conv1 7x7 s2 3->64 (fwd only)",
            [1, 3, 64],
            [600, 800],
            7,
            [2, 3, 1, 1],
        ),
        conv(
            "layer1 64 @150x200 (x4, fwd only)",
            [1, 64, 64],
            [150, 200],
            3,
            [1, 1, 1, 1],
        ),
        conv(
            "layer2.0.conv1 64->128 s2",
            [1, 64, 128],
            [150, 200],
            3,
            [2, 1, 1, 1],
        ),
        conv(
            "layer2.0.downsample 1x1 s2",
            [1, 64, 128],
            [150, 200],
            1,
            [2, 0, 1, 1],
        ),
        conv(
            "layer2 128 @75x100 (x3)",
            [1, 128, 128],
            [75, 100],
            3,
            [1, 1, 1, 1],
        ),
        conv(
            "layer3.0.conv1 128->256 s2",
            [1, 128, 256],
            [75, 100],
            3,
            [2, 1, 1, 1],
        ),
        conv(
            "layer3.0.downsample 1x1 s2",
            [1, 128, 256],
            [75, 100],
            1,
            [2, 0, 1, 1],
        ),
        conv(
            "layer3 256 @38x50 (x3)",
            [1, 256, 256],
            [38, 50],
            3,
            [1, 1, 1, 1],
        ),
    ] {
        conv_line(&c, iters);
    }
}

fn depthwise(iters: usize) {
    header("MobileNetV2 depthwise, 129x129 b2");
    for c in [
        conv("features.1 32 @65", [2, 32, 32], 65, 3, [1, 1, 1, 32]),
        conv("features.2 96 @65 s2", [2, 96, 96], 65, 3, [2, 1, 1, 96]),
        conv("features.3 144 @33", [2, 144, 144], 33, 3, [1, 1, 1, 144]),
        conv(
            "features.7 192 @17 s2",
            [2, 192, 192],
            17,
            3,
            [2, 1, 1, 192],
        ),
        conv("features.8 384 @9", [2, 384, 384], 9, 3, [1, 1, 1, 384]),
        conv("features.15 960 @9 d2", [2, 960, 960], 9, 3, [1, 2, 2, 960]),
    ] {
        conv_line(&c, iters);
    }
}

fn dilated(iters: usize) {
    header("DeepLabV3+ R-50 OS16, 129x129 b2");
    for c in [
        conv(
            "aspp rate 6 2048->256 @9",
            [2, 2048, 256],
            9,
            3,
            [1, 6, 6, 1],
        ),
        conv(
            "aspp rate 12 2048->256 @9",
            [2, 2048, 256],
            9,
            3,
            [1, 12, 12, 1],
        ),
        conv(
            "aspp rate 18 2048->256 @9",
            [2, 2048, 256],
            9,
            3,
            [1, 18, 18, 1],
        ),
        conv(
            "layer4.*.conv2 512 @9 d2",
            [2, 512, 512],
            9,
            3,
            [1, 2, 2, 1],
        ),
        conv(
            "decoder fuse 304->256 @33",
            [2, 304, 256],
            33,
            3,
            [1, 1, 1, 1],
        ),
    ] {
        conv_line(&c, iters);
    }
}

/// 128 regions of 64 to 512 pixels on a 600x800 image, as a training step samples them.
fn regions() -> Vec<(usize, [f32; 4])> {
    let v = data(128 * 4, 7);
    v.chunks(4)
        .map(|r| {
            let side = |t: f32| 64.0 + (t + 0.5) * 448.0;
            let (bw, bh) = (side(r[0]), side(r[1]));
            let x0 = (r[2] + 0.5) * (800.0 - bw);
            let y0 = (r[3] + 0.5) * (600.0 - bh);
            (0, [x0, y0, x0 + bw, y0 + bh])
        })
        .collect()
}

fn roi_align(iters: usize) {
    println!(
        "{:<34} | {:>11} {:>11} | {:>11} {:>11} {:>11} | matrix/afan",
        "RoIAlign 128 regions, 256x38x50",
        "matrix fwd",
        "matrix bwd",
        "afan plan",
        "afan fwd",
        "afan bwd"
    );
    let (c, h, w) = (256, 38, 50);
    let x = data(c * h * w, 1);
    let xt = tensor(x.clone(), [c, h * w]);
    for size in [7, 14] {
        let p = AlignParams {
            output_size: [size, size],
            spatial_scale: 1.0 / 16.0,
            sampling_ratio: 0,
            aligned: false,
        };
        let rois = regions();
        let s = RoiSamples::new(&p, &rois, [1, h, w]);
        let bins = s.bins();
        let dy = data(s.len() * c * bins, 3);
        // The other backends' product: weights [R*bins, H*W] times features^T [H*W, C], and its
        // backward (weights^T times the gradient).
        let m = tensor(data(s.len() * bins * h * w, 5), [s.len() * bins, h * w]);
        let dyt = tensor(dy.clone(), [s.len() * bins, c]);
        let matrix = [
            time(iters, || {
                Flex::float_matmul(m.clone(), Flex::float_transpose(xt.clone()))
            }),
            time(iters, || {
                Flex::float_matmul(Flex::float_transpose(m.clone()), dyt.clone())
            }),
        ];
        let afan = [
            time(iters, || RoiSamples::new(&p, &rois, [1, h, w])),
            time(iters, || roi_align_forward(&s, &x, c)),
            time(iters, || roi_align_backward(&s, &dy, c)),
        ];
        println!(
            "{:<34} | {} {} | {} {} {} | {:>5.1}x",
            format!("{size}x{size}, adaptive sampling"),
            ms(matrix[0]),
            ms(matrix[1]),
            ms(afan[0]),
            ms(afan[1]),
            ms(afan[2]),
            (matrix[0] + matrix[1]) / afan.iter().sum::<f64>()
        );
    }
}

fn upsample(iters: usize) {
    println!(
        "{:<34} | {:>11} {:>11} | {:>11} {:>11} | flex/afan",
        "bilinear, align_corners=False", "flex fwd", "flex bwd", "afan fwd", "afan bwd"
    );
    for (name, planes, input, output) in [
        ("ASPP out 256ch 9->33, b2", 512, [9, 9], [33, 33]),
        ("logits 21ch 33->129, b2", 42, [33, 33], [129, 129]),
        ("logits 21ch 129->513, b2", 42, [129, 129], [513, 513]),
    ] {
        let r = Resize {
            planes,
            input,
            output,
            align_corners: false,
        };
        let x = data(planes * input[0] * input[1], 1);
        let dy = data(planes * output[0] * output[1], 2);
        let xt = tensor(x.clone(), [1, planes, input[0], input[1]]);
        let dyt = tensor(dy.clone(), [1, planes, output[0], output[1]]);
        let opts = InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size(output);
        let flex = [
            time(iters, || {
                Flex::interpolate(xt.clone(), output, opts.clone())
            }),
            time(iters, || {
                Flex::interpolate_backward(xt.clone(), dyt.clone(), output, opts.clone())
            }),
        ];
        let afan = [
            time(iters, || bilinear_forward(&r, &x)),
            time(iters, || bilinear_backward(&r, &dy)),
        ];
        println!(
            "{:<34} | {} {} | {} {} | {:>5.2}x",
            name,
            ms(flex[0]),
            ms(flex[1]),
            ms(afan[0]),
            ms(afan[1]),
            (flex[0] + flex[1]) / (afan[0] + afan[1])
        );
    }
}

/// The max pools of a detector's step: flex's op, then afan's, without and with the picks.
fn max_pool(iters: usize) {
    for (name, dims, p) in [
        (
            "stem 3x3/2 64x300x400",
            [1, 64, 300, 400],
            Pool2d::square(3, 2, 1),
        ),
        (
            "RoI head 2x2 128x256x14x14",
            [128, 256, 14, 14],
            Pool2d::square(2, 2, 0),
        ),
    ] {
        let x = data(dims.iter().product(), 1);
        let t = tensor(x.clone(), dims);
        let (k, s, pad) = (p.kernel, p.stride, p.padding);
        let flex = time(iters, || {
            Flex::max_pool2d(t.clone(), k, s, pad, [1, 1], false)
        });
        let flex_picks = time(iters, || {
            Flex::max_pool2d_with_indices(t.clone(), k, s, pad, [1, 1], false, IntDType::I64)
        });
        let afan = time(iters, || max_pool2d_forward(&x, dims, &p, false));
        let afan_picks = time(iters, || max_pool2d_forward(&x, dims, &p, true));
        println!(
            "max pool {name:<28} flex {} / with picks {}   afan {} / with picks {}",
            ms(flex),
            ms(flex_picks),
            ms(afan),
            ms(afan_picks)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let family = args.first().map_or("all", String::as_str);
    let iters = args
        .get(1)
        .map_or(5, |i| i.parse().expect("ITERS: a number"));
    let all = family == "all";
    let run = |name: &str, f: fn(usize)| {
        if all || family == name {
            f(iters);
            println!();
        }
    };
    run("detect-backbone", detect_backbone);
    run("roi-head", roi_head);
    run("depthwise", depthwise);
    run("dilated", dilated);
    run("roi-align", roi_align);
    run("upsample", upsample);
    run("max-pool", max_pool);
    let families = [
        "detect-backbone",
        "roi-head",
        "depthwise",
        "dilated",
        "roi-align",
        "upsample",
        "max-pool",
    ];
    if !all && !families.contains(&family) {
        panic!("FAMILY: all, {}", families.join(", "));
    }
}
