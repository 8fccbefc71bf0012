//! The kernels on raw slices against Burn's own convolution ops on flex (`conv2d`,
//! `conv2d_x_backward`, `conv2d_weight_backward`, which Burn's autodiff runs), over tiny shapes
//! that reach every path: stride 1/2/3, padding 0/1/2, 1x1/3x3/5x5/non-square kernels, `K <= C`
//! and `K > C`, both input-gradient routes, dilation, groups, and the depthwise kernel (whose
//! shapes also run through the grouped im2col path, a second reference). Then what the reference cannot show: no element of an
//! output or scratch matrix is read before it is written, results do not depend on the thread
//! count, and large scratch buffers are given back.

use super::kernel::*;
use super::scratch::poison;
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, TensorData};
use std::mem::MaybeUninit;

/// (batch, in, out, [h, w], [kh, kw], stride, padding, dilation, groups).
type Case = (
    usize,
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    usize,
    [usize; 2],
    usize,
    usize,
);

const CASES: [Case; 30] = [
    (2, 3, 2, [1, 1], [3, 3], 1, [1, 1], 1, 1), // 1x1 image (a deep ResNet stage on a tiny input)
    (2, 2, 3, [2, 1], [3, 3], 1, [1, 1], 1, 1), // smaller than the kernel
    (3, 4, 2, [8, 8], [3, 3], 1, [1, 1], 1, 1), // K < C: the convolution route
    (3, 4, 4, [8, 8], [3, 3], 1, [1, 1], 1, 1), // K = C (ResNet blocks)
    (3, 2, 5, [8, 8], [3, 3], 1, [1, 1], 1, 1), // K > C: col2im chosen
    (2, 4, 3, [7, 7], [3, 3], 2, [1, 1], 1, 1), // stride 2, odd size
    (2, 3, 6, [8, 8], [3, 3], 2, [1, 1], 1, 1), // stride 2, even size (stage transitions)
    (2, 3, 4, [6, 5], [3, 3], 1, [0, 0], 1, 1), // no padding, non-square: rows one at a time
    (2, 5, 3, [6, 6], [1, 1], 1, [0, 0], 1, 1), // 1x1: no patch matrix
    (2, 4, 6, [7, 7], [1, 1], 2, [0, 0], 1, 1), // 1x1 stride 2 (downsample)
    (1, 2, 2, [4, 4], [1, 1], 1, [1, 1], 1, 1), // 1x1 padded: no input-gradient convolution
    (2, 3, 2, [5, 9], [1, 3], 1, [0, 1], 1, 1), // non-square kernel, shifted planes
    (2, 6, 3, [9, 9], [5, 5], 1, [2, 2], 1, 1), // 5x5 "same": shifts of two rows and columns
    (2, 3, 4, [9, 9], [7, 7], 2, [3, 3], 1, 1), // the torchvision stem
    (1, 2, 2, [10, 10], [3, 3], 3, [1, 1], 1, 1), // stride 3: the generic gather and scatter
    (17, 2, 2, [4, 4], [3, 3], 1, [1, 1], 1, 1), // more images than weight-gradient groups
    (2, 4, 3, [9, 9], [3, 3], 1, [2, 2], 2, 1), // dilated "same" (a dilated ResNet block)
    (2, 3, 4, [9, 7], [3, 3], 1, [6, 6], 6, 1), // ASPP: most taps in the padding
    (1, 3, 2, [9, 8], [3, 3], 2, [2, 2], 2, 1), // dilated, stride 2: rows one at a time
    (1, 2, 3, [9, 9], [3, 3], 1, [0, 0], 2, 1), // dilated, no padding
    (2, 6, 4, [7, 7], [3, 3], 1, [1, 1], 1, 2), // 2 groups
    (2, 6, 6, [7, 7], [3, 3], 2, [1, 1], 1, 3), // 3 groups, stride 2
    (2, 4, 8, [6, 6], [1, 1], 1, [0, 0], 1, 2), // grouped 1x1
    (2, 3, 6, [6, 6], [3, 3], 1, [1, 1], 1, 3), // depthwise with multiplier 2: grouped im2col
    (2, 5, 5, [8, 8], [3, 3], 1, [1, 1], 1, 5), // depthwise (MobileNetV2's stride-1 blocks)
    (2, 4, 4, [9, 9], [3, 3], 2, [1, 1], 1, 4), // depthwise, stride 2, odd size
    (2, 3, 3, [9, 9], [3, 3], 1, [2, 2], 2, 3), // depthwise, dilated (output stride 16)
    (1, 3, 3, [11, 10], [5, 5], 2, [2, 2], 1, 3), // depthwise 5x5 stride 2 (EfficientNet)
    (2, 3, 3, [7, 7], [3, 3], 3, [1, 1], 1, 3), // depthwise, stride 3: generic loops
    (17, 2, 2, [2, 1], [3, 3], 1, [1, 1], 1, 2), // depthwise, smaller than the kernel
];

fn geom((batch, c, k, hw, kernel, stride, padding, dilation, groups): Case) -> ConvGeom {
    ConvGeom {
        batch,
        in_ch: c,
        in_hw: hw,
        out_ch: k,
        kernel,
        stride: [stride; 2],
        padding,
        dilation: [dilation; 2],
        groups,
    }
}

/// Deterministic values in `[-1, 1]`, different for each `seed`.
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 211) as f32 / 105.0 - 1.0)
        .collect()
}

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
}

fn data(g: &ConvGeom) -> Data {
    let [oh, ow] = g.out_hw();
    Data {
        x: values(g.batch * g.in_ch * g.in_hw[0] * g.in_hw[1], 1),
        w: values(g.out_ch * g.patch(), 2),
        dy: values(g.batch * g.out_ch * oh * ow, 3),
    }
}

fn tensor(v: &[f32], shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v.to_vec(), Shape::from(shape)))
}

fn vec_of(t: FlexTensor) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Burn's output, input gradient and weight gradient.
fn reference(g: &ConvGeom, d: &Data) -> [Vec<f32>; 3] {
    let [oh, ow] = g.out_hw();
    let x = tensor(&d.x, [g.batch, g.in_ch, g.in_hw[0], g.in_hw[1]]);
    let w = tensor(&d.w, [g.out_ch, g.group_in(), g.kernel[0], g.kernel[1]]);
    let dy = tensor(&d.dy, [g.batch, g.out_ch, oh, ow]);
    let opts = ConvOptions::new(g.stride, g.padding, g.dilation, g.groups);
    [
        vec_of(Flex::conv2d(x.clone(), w.clone(), None, opts.clone())),
        vec_of(Flex::conv2d_x_backward(
            x.clone(),
            w.clone(),
            dy.clone(),
            opts.clone(),
        )),
        vec_of(Flex::conv2d_weight_backward(x, w, dy, opts)),
    ]
}

/// Equal within 1e-4 absolute (values are sums of at most 150 products of numbers in [-1, 1];
/// only the summation order differs from Burn's).
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-4, "{what}: element {i}: {a} vs {b}");
    }
}

/// The routes that apply to `g`.
fn routes(g: &ConvGeom) -> Vec<InputRoute> {
    let mut r = vec![InputRoute::Col2im];
    if g.input_grad_conv().is_some() {
        r.push(InputRoute::Conv);
    }
    r
}

#[test]
fn matches_burn_on_every_path() {
    for case in CASES {
        let g = geom(case);
        let d = data(&g);
        let [y, dx, dw] = reference(&g, &d);
        assert_close(
            &conv2d_forward(&g, &d.x, &d.w),
            &y,
            &format!("{g:?} forward"),
        );
        for route in routes(&g) {
            let what = format!("{g:?} {route:?}");
            let (gx, gw) = conv2d_backward_by(&g, route, &d.x, &d.w, &d.dy, [true, true]);
            assert_close(&gx.unwrap(), &dx, &format!("{what} input grad"));
            assert_close(&gw.unwrap(), &dw, &format!("{what} weight grad"));
            let (gx, gw) = conv2d_backward_by(&g, route, &d.x, &d.w, &d.dy, [true, false]);
            assert!(gw.is_none());
            assert_close(&gx.unwrap(), &dx, &format!("{what} input grad alone"));
        }
        let (gx, gw) = conv2d_backward(&g, &d.x, &d.w, &d.dy, [true, true]);
        assert_close(&gx.unwrap(), &dx, &format!("{g:?} chosen input grad"));
        assert_close(&gw.unwrap(), &dw, &format!("{g:?} chosen weight grad"));
        let (gx, gw) = conv2d_backward(&g, &d.x, &d.w, &d.dy, [false, true]);
        assert!(gx.is_none());
        assert_close(&gw.unwrap(), &dw, &format!("{g:?} weight grad alone"));
        let (gx, gw) = conv2d_backward(&g, &d.x, &d.w, &d.dy, [true, false]);
        assert!(gw.is_none());
        assert_close(&gx.unwrap(), &dx, &format!("{g:?} input grad alone"));
    }
}

/// The depthwise kernel takes exactly the depthwise shapes (one input and one output channel
/// per group); a channel multiplier goes through the grouped im2col path.
#[test]
fn depthwise_kernel_takes_one_channel_per_group() {
    use super::depthwise::is_depthwise;
    let taken: Vec<bool> = CASES.iter().map(|&c| is_depthwise(&geom(c))).collect();
    let expected: Vec<bool> = CASES
        .iter()
        .map(|c| c.8 > 1 && c.1 == c.8 && c.2 == c.8)
        .collect();
    assert_eq!(taken, expected);
    assert!(!is_depthwise(&geom(CASES[23])), "multiplier 2");
    assert!(is_depthwise(&geom(CASES[24])));
}

/// The convolution route for stride 1 and `K <= C`, col2im otherwise (and always for 1x1, where
/// both are the same product).
#[test]
fn route_choice_follows_channels_and_stride() {
    let route = |case| InputRoute::choose(&geom(case));
    assert_eq!(route(CASES[2]), InputRoute::Conv); // K < C
    assert_eq!(route(CASES[3]), InputRoute::Conv); // K = C
    assert_eq!(route(CASES[4]), InputRoute::Col2im); // K > C
    assert_eq!(route(CASES[5]), InputRoute::Col2im); // stride 2
    assert_eq!(route(CASES[8]), InputRoute::Col2im); // 1x1
    assert_eq!(route(CASES[10]), InputRoute::Col2im); // 1x1 padded
    assert_eq!(route(CASES[16]), InputRoute::Conv); // dilated "same", K < C
    assert_eq!(route(CASES[20]), InputRoute::Col2im); // grouped
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Outputs and scratch matrices start as NaN (a reused buffer holding garbage): an element a
/// kernel failed to write, or read before writing, would turn up as NaN or a wrong value.
#[test]
fn uninitialised_outputs_and_scratch_are_fully_written() {
    pool(2).install(|| {
        for case in CASES {
            let g = geom(case);
            let d = data(&g);
            let [y, dx, dw] = reference(&g, &d);
            let poisoned = |len| vec![MaybeUninit::new(f32::NAN); len];
            poison(1 << 16, f32::NAN);
            let mut out = poisoned(y.len());
            conv2d_forward_into(&g, &d.x, &d.w, &mut out);
            // SAFETY: initialised by `poisoned`, then (we check) overwritten.
            let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_close(&out, &y, &format!("{g:?} forward"));
            let layouts = [DwLayout::Transposed, DwLayout::Final];
            for (route, layout) in routes(&g).into_iter().flat_map(|r| layouts.map(|l| (r, l))) {
                poison(1 << 16, f32::NAN);
                let mut gx = poisoned(dx.len());
                let w_conv = match route {
                    InputRoute::Conv => super::layout::flip_transpose(&g, &d.w),
                    InputRoute::Col2im => Vec::new(),
                };
                let need = [true, true];
                let run = (route, layout, Band::chosen());
                let gw = backward_into(&g, run, &d.x, &d.w, &w_conv, &d.dy, need, &mut gx);
                // SAFETY: as above.
                let gx: Vec<f32> = gx.iter().map(|v| unsafe { v.assume_init() }).collect();
                let what = format!("{g:?} {route:?} {layout:?}");
                assert_close(&gx, &dx, &format!("{what} input grad"));
                // Transposed per group: group `grp`'s block is `[patch, K/G]`.
                let (patch, ko) = (g.patch(), g.group_out());
                let gw: Vec<f32> = match layout {
                    DwLayout::Final => gw,
                    DwLayout::Transposed => (0..dw.len())
                        .map(|i| {
                            let (grp, k, p) = (i / (ko * patch), (i / patch) % ko, i % patch);
                            gw[grp * ko * patch + p * ko + k]
                        })
                        .collect(),
                };
                assert_close(&gw, &dw, &format!("{what} weight grad"));
            }
            if super::depthwise::is_depthwise(&g) {
                let mut out = poisoned(y.len());
                super::depthwise::depthwise_forward_into(&g, &d.x, &d.w, &mut out);
                // SAFETY: as above.
                let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert_close(&out, &y, &format!("{g:?} depthwise forward"));
                let mut gx = poisoned(dx.len());
                super::depthwise::depthwise_input_grad_into(&g, &d.w, &d.dy, &mut gx);
                // SAFETY: as above.
                let gx: Vec<f32> = gx.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert_close(&gx, &dx, &format!("{g:?} depthwise input grad"));
            }
        }
    });
}

/// Bit-identical results with 1 and 3 threads, and from one run to the next: dense, dilated,
/// grouped and depthwise; blocks of small images; and one or two large images, whose products
/// use gemm's own threads when the pool has more threads than images.
#[test]
fn results_do_not_depend_on_thread_count() {
    for case in [
        (1, 32, 64, [32, 32], [3, 3], 1, [1, 1], 1, 1),
        (1, 16, 64, [32, 32], [3, 3], 2, [1, 1], 1, 1),
        (2, 64, 32, [24, 24], [3, 3], 1, [2, 2], 2, 2),
        (40, 6, 5, [9, 9], [3, 3], 1, [1, 1], 1, 1),
        (20, 6, 5, [9, 9], [3, 3], 1, [2, 2], 2, 1),
        // One block of 500 columns: padded to 512 when gemm gets the pool (3 threads), not
        // with 1 thread; the sums must not change.
        (20, 6, 4, [9, 9], [3, 3], 2, [1, 1], 1, 2),
        (20, 7, 7, [40, 40], [3, 3], 1, [2, 2], 2, 7),
        (20, 7, 7, [9, 9], [3, 3], 2, [1, 1], 1, 7),
        // One image in bands of 18, 18 and 4 rows (540, 540, 120 columns): padded to 544 and
        // 128 with 3 threads (the first two spill onto the next band, the last goes through
        // scratch), not with 1 thread. Both input-gradient routes run banded too.
        (1, 64, 64, [40, 30], [3, 3], 1, [1, 1], 1, 1),
        (1, 64, 96, [40, 30], [3, 3], 1, [1, 1], 1, 1),
        // Seven groups of blocks whose 36,864-weight partial sums are added chunk by chunk
        // over the pool.
        (40, 64, 64, [9, 9], [3, 3], 1, [1, 1], 1, 1),
    ] {
        let g = geom(case);
        let d = data(&g);
        let all = || {
            let y = conv2d_forward(&g, &d.x, &d.w);
            let mut all = vec![y];
            for route in routes(&g) {
                let (dx, dw) = conv2d_backward_by(&g, route, &d.x, &d.w, &d.dy, [true, true]);
                all.extend([dx.unwrap(), dw.unwrap()]);
            }
            let (dx, dw) = conv2d_backward(&g, &d.x, &d.w, &d.dy, [true, true]);
            all.extend([dx.unwrap(), dw.unwrap()]);
            all.concat()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<u32>>()
        };
        let run = |threads| pool(threads).install(all);
        let one = run(1);
        assert_eq!(one, run(3), "{g:?}");
        assert_eq!(one, run(1), "{g:?}");
        // Called from outside any pool (this test's thread, the global pool: 2 threads on a
        // 2-core machine), a large image's im2col splits its channels over the pool.
        assert_eq!(one, all(), "{g:?}, from outside the pool");
    }
}

/// A convolution whose patch matrix is over [`SCRATCH_KEEP_BYTES`] leaves no thread holding that
/// much; a small one keeps its buffer for the next layer.
#[test]
fn large_scratch_is_released_after_use() {
    pool(2).install(|| {
        let small = geom((2, 4, 4, [8, 8], [3, 3], 1, [1, 1], 1, 1));
        let d = data(&small);
        conv2d_forward(&small, &d.x, &d.w);
        assert!(held_bytes() >= small.patch() * 64 * size_of::<f32>());
        // 1152 x 4096 patch matrix: 18.9 MB.
        let large = geom((1, 128, 1, [64, 64], [3, 3], 1, [1, 1], 1, 1));
        assert!(large.patch() * 4096 * size_of::<f32>() > SCRATCH_KEEP_BYTES);
        let d = data(&large);
        let y = conv2d_forward(&large, &d.x, &d.w);
        assert!(held_bytes() <= SCRATCH_KEEP_BYTES, "{}", held_bytes());
        // Spot-check the large one too: output (1, 1) sums all 9 taps of all 128 channels.
        let want: f32 = (0..128)
            .flat_map(|c| (0..9).map(move |t| (c, t)))
            .map(|(c, t)| d.w[c * 9 + t] * d.x[c * 4096 + (t / 3) * 64 + t % 3])
            .sum();
        assert!((y[65] - want).abs() < 1e-3, "{} vs {want}", y[65]);
        let (dx, dw) = conv2d_backward(&large, &d.x, &d.w, &d.dy, [true, true]);
        assert_eq!(
            (dx.unwrap().len(), dw.unwrap().len()),
            (d.x.len(), d.w.len())
        );
        assert!(held_bytes() <= SCRATCH_KEEP_BYTES, "{}", held_bytes());
    });
}

/// Shapes whose single images go in bands of output rows when the budget is small: stride 1
/// "same" (shifted planes), stride 2, the 7x7 stem, groups, dilation, no padding, a non-square
/// kernel, and two images large enough (552 pixels) to go one per product.
const BANDED: [Case; 9] = [
    (1, 4, 3, [7, 9], [3, 3], 1, [1, 1], 1, 1), // K < C: the convolution route
    (1, 3, 5, [8, 8], [3, 3], 2, [1, 1], 1, 1), // stride 2, col2im
    (1, 3, 4, [9, 9], [7, 7], 2, [3, 3], 1, 1), // the torchvision stem
    (1, 6, 4, [7, 7], [3, 3], 1, [1, 1], 1, 2), // 2 groups
    (1, 4, 3, [10, 9], [3, 3], 1, [2, 2], 2, 1), // dilated "same"
    (1, 3, 4, [6, 5], [3, 3], 1, [0, 0], 1, 1), // no padding: rows one at a time
    (1, 3, 2, [5, 9], [1, 3], 1, [0, 1], 1, 1), // non-square kernel, shifted planes
    (1, 2, 3, [9, 9], [3, 3], 1, [0, 0], 2, 1), // dilated, no padding
    (2, 3, 4, [23, 24], [3, 3], 1, [1, 1], 1, 1), // two images, one per product
];

/// Band budgets for `g`: one output row per band, and three (a ragged last band: no case has
/// a multiple of 3 rows), by bytes of one group's patch matrix, and three rows by the minimum
/// width.
fn band_budgets(g: &ConvGeom) -> [Band; 3] {
    assert!(!g.out_hw()[0].is_multiple_of(3), "{g:?}: no ragged band");
    let ow = g.out_hw()[1];
    let rows = |rows: usize| Band {
        bytes: rows * g.patch() * ow * size_of::<f32>(),
        min_columns: 0,
    };
    let wide = Band {
        bytes: 1,
        min_columns: 2 * ow + 1,
    };
    [rows(1), rows(3), wide]
}

/// The output, input gradient (by `route`) and weight gradient (final layout) with band budget
/// `budget`, into NaN-poisoned outputs and scratch.
fn banded_run(g: &ConvGeom, d: &Data, route: InputRoute, budget: Band) -> [Vec<f32>; 3] {
    let poisoned = |len| vec![MaybeUninit::new(f32::NAN); len];
    // SAFETY (both reads below): initialised by `poisoned`, then (we check) overwritten.
    let read = |v: Vec<MaybeUninit<f32>>| v.iter().map(|v| unsafe { v.assume_init() }).collect();
    poison(1 << 16, f32::NAN);
    let mut y = poisoned(g.batch * g.out_ch * g.out_pixels());
    conv2d_forward_banded(g, &d.x, &d.w, &mut y, budget);
    poison(1 << 16, f32::NAN);
    let mut dx = poisoned(d.x.len());
    let w_conv = match route {
        InputRoute::Conv => super::layout::flip_transpose(g, &d.w),
        InputRoute::Col2im => Vec::new(),
    };
    let run = (route, DwLayout::Final, budget);
    let dw = backward_into(g, run, &d.x, &d.w, &w_conv, &d.dy, [true, true], &mut dx);
    [read(y), read(dx), dw]
}

/// Equal within 1e-4 relative to the value's size (at least 1): the two-image case sums 1,100
/// products per weight-gradient element, to values over 100, in another order than Burn.
fn assert_near(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{what}: element {i}: {a} vs {b}"
        );
    }
}

/// Bands of output rows (one row, and three with a ragged last band) against Burn and against
/// one band, into NaN-poisoned outputs and scratch, on both input-gradient routes; and the same
/// bits with 1 and 3 threads.
#[test]
fn banded_images_match_unbanded_and_burn() {
    for case in BANDED {
        let g = geom(case);
        let d = data(&g);
        let [y, dx, dw] = reference(&g, &d);
        for budget in band_budgets(&g) {
            assert!(
                band_rows(&g, budget) < g.out_hw()[0],
                "{g:?} {budget:?}: one band"
            );
            for route in routes(&g) {
                let what = format!("{g:?} {route:?} {budget:?}");
                let got = pool(2).install(|| banded_run(&g, &d, route, budget));
                let whole = pool(2).install(|| banded_run(&g, &d, route, Band::OFF));
                for (i, part) in ["forward", "input grad", "weight grad"].iter().enumerate() {
                    let want = [&y, &dx, &dw][i];
                    assert_near(&got[i], want, &format!("{what} {part} vs Burn"));
                    assert_near(&got[i], &whole[i], &format!("{what} {part} vs one band"));
                }
                let bits = |r: [Vec<f32>; 3]| -> Vec<u32> {
                    r.concat().iter().map(|v| v.to_bits()).collect()
                };
                let one = pool(1).install(|| banded_run(&g, &d, route, budget));
                let three = pool(3).install(|| banded_run(&g, &d, route, budget));
                assert_eq!(bits(one), bits(three), "{what}: threads");
            }
        }
    }
}

/// Band sizes: everything in one band when the patch matrix fits, when the budget is 0 or for a
/// pointwise convolution; otherwise as many rows as fit, at least one and the minimum width.
#[test]
fn band_rows_follow_the_budget() {
    // 64 channels, 3x3, 150x200 output: 576 x 200 x 4 = 460,800 bytes a row.
    let g = geom((1, 64, 64, [150, 200], [3, 3], 1, [1, 1], 1, 1));
    let row = 576 * 200 * 4;
    let band = |bytes, min_columns| Band { bytes, min_columns };
    assert_eq!(band_rows(&g, Band::OFF), 150);
    assert_eq!(band_rows(&g, band(0, 512)), 150);
    assert_eq!(band_rows(&g, band(150 * row, 0)), 150);
    assert_eq!(band_rows(&g, band(2 * row + 1, 0)), 2);
    assert_eq!(band_rows(&g, band(1, 0)), 1);
    assert_eq!(band_rows(&g, band(1, 512)), 3);
    assert_eq!(band_rows(&g, band(5 * row, 512)), 5);
    assert_eq!(band_rows(&g, band(1, 1 << 20)), 150);
    let pointwise = geom((1, 64, 64, [150, 200], [1, 1], 1, [0, 0], 1, 1));
    assert_eq!(band_rows(&pointwise, band(1, 0)), 150);
}

/// The weight gradient's partial sums added chunk by chunk: equal bit for bit to the serial
/// loop (each element's additions in the partials' order) for lengths around the chunk size,
/// in a 1- and 3-thread pool and from outside any pool; no partial, one partial.
#[test]
fn partial_sums_match_the_serial_loop() {
    for len in [0, 1, 100, SUM_CHUNK, SUM_CHUNK + 1, 3 * SUM_CHUNK + 5] {
        for parts in [0, 1, 5] {
            let acc = values(len, 1);
            let rest: Vec<Vec<f32>> = (0..parts).map(|p| values(len, 2 + p)).collect();
            let mut want = acc.clone();
            for p in &rest {
                for (a, b) in want.iter_mut().zip(p) {
                    *a += b;
                }
            }
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
            let run = || {
                let mut got = acc.clone();
                sum_partials(&mut got, &rest);
                bits(&got)
            };
            let what = format!("{len} elements, {parts} partials");
            assert_eq!(pool(1).install(run), bits(&want), "{what}, 1 thread");
            assert_eq!(pool(3).install(run), bits(&want), "{what}, 3 threads");
            assert_eq!(run(), bits(&want), "{what}, outside the pool");
        }
    }
}
