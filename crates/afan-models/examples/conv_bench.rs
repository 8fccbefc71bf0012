//! Times the convolutions of a ResNet-20 training step at batch 128 (median of ITERS runs after
//! a warm-up, default 5):
//!
//! ```sh
//! cargo run --release -p afan-models --example conv_bench -- [MODE] [ITERS]
//! ```
//!
//! Modes:
//! - `flex` (default): flex's own ops against afan's kernels, forward and each backward.
//! - `shapes`: afan only, per shape: forward, input gradient by each route, weight gradient,
//!   both gradients fused (the backward a training step runs).
//! - `fwd`, `dx`, `dw`: one of those columns (`dx`: both routes).
//! - `set`: the whole set of a step (forward + backward of every convolution), one line, for
//!   A/B runs against another build.

mod common;

use afan_models::conv::kernel::conv2d_forward;
use afan_models::conv::kernel::{ConvGeom, InputRoute, conv2d_backward, conv2d_backward_by};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, TensorData};
use common::{data, time};

/// (in, out, size, stride, how many per ResNet-20 step).
const SHAPES: [(usize, usize, usize, usize, usize); 6] = [
    (3, 16, 32, 1, 1),
    (16, 16, 32, 1, 6),
    (16, 32, 32, 2, 1),
    (32, 32, 16, 1, 5),
    (32, 64, 16, 2, 1),
    (64, 64, 8, 1, 5),
];

const BATCH: usize = 128;

/// One shape's geometry and data.
struct Conv {
    g: ConvGeom,
    count: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
}

impl Conv {
    fn new((c, k, size, stride, count): (usize, usize, usize, usize, usize)) -> Self {
        let g = ConvGeom::dense([BATCH, c, k], [size, size], [3, 3], [stride; 2], [1, 1]);
        let [oh, ow] = g.out_hw();
        Self {
            g,
            count,
            x: data(BATCH * c * size * size, 1),
            w: data(k * c * 9, 2),
            dy: data(BATCH * k * oh * ow, 3),
        }
    }

    fn name(&self) -> String {
        let g = &self.g;
        format!("{}->{} @{} s{}", g.in_ch, g.out_ch, g.in_hw[0], g.stride[0])
    }

    /// The stem's input is the image: no input gradient.
    fn needs_dx(&self) -> bool {
        self.g.in_ch != 3
    }

    fn fwd(&self, iters: usize) -> f64 {
        time(iters, || conv2d_forward(&self.g, &self.x, &self.w))
    }

    /// The input gradient alone by `route`; `None` where the route does not apply.
    fn dx(&self, iters: usize, route: InputRoute) -> Option<f64> {
        if route == InputRoute::Conv && self.g.input_grad_conv().is_none() {
            return None;
        }
        let (g, x, w, dy) = (&self.g, &self.x, &self.w, &self.dy);
        Some(time(iters, || {
            conv2d_backward_by(g, route, x, w, dy, [true, false])
        }))
    }

    fn backward(&self, iters: usize, need: [bool; 2]) -> f64 {
        time(iters, || {
            conv2d_backward(&self.g, &self.x, &self.w, &self.dy, need)
        })
    }

    /// Forward + the backward a training step runs, for one of this shape's convolutions.
    fn step(&self, iters: usize) -> f64 {
        self.fwd(iters) + self.backward(iters, [self.needs_dx(), true])
    }
}

fn ms(t: f64) -> String {
    format!("{:>8.2}ms", t * 1e3)
}

fn ms_or_dash(t: Option<f64>) -> String {
    t.map_or(format!("{:>10}", "-"), ms)
}

/// flex's forward, input gradient and weight gradient.
fn flex_times(conv: &Conv, iters: usize) -> [f64; 3] {
    let g = &conv.g;
    let [oh, ow] = g.out_hw();
    let [c, k, size] = [g.in_ch, g.out_ch, g.in_hw[0]];
    let tensor = |v: &[f32], shape: [usize; 4]| {
        FlexTensor::from_data(TensorData::new(v.to_vec(), Shape::from(shape)))
    };
    let x = tensor(&conv.x, [BATCH, c, size, size]);
    let w = tensor(&conv.w, [k, c, 3, 3]);
    let dy = tensor(&conv.dy, [BATCH, k, oh, ow]);
    let opts = ConvOptions::new(g.stride, g.padding, [1, 1], 1);
    [
        time(iters, || {
            Flex::conv2d(x.clone(), w.clone(), None, opts.clone())
        }),
        time(iters, || {
            Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), opts.clone())
        }),
        time(iters, || {
            Flex::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), opts.clone())
        }),
    ]
}

fn flex_mode(convs: &[Conv], iters: usize) {
    println!(
        "{:<16} {:>5} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} {:>10}",
        "conv (batch 128)",
        "count",
        "flex fwd",
        "flex dx",
        "flex dw",
        "afan fwd",
        "afan dx",
        "afan dw",
        "afan dx+dw"
    );
    let mut totals = [0.0f64; 2];
    for conv in convs {
        let flex = flex_times(conv, iters);
        let afan = [
            conv.fwd(iters),
            conv.backward(iters, [true, false]),
            conv.backward(iters, [false, true]),
            conv.backward(iters, [true, true]),
        ];
        let cells: Vec<String> = flex.iter().chain(&afan).map(|&t| ms(t)).collect();
        println!(
            "{:<16} {:>5} | {} | {}",
            conv.name(),
            conv.count,
            cells[..3].join(" "),
            cells[3..].join(" ")
        );
        let dx = if conv.needs_dx() { 1.0 } else { 0.0 };
        let count = conv.count as f64;
        totals[0] += count * (flex[0] + dx * flex[1] + flex[2]);
        totals[1] += count * (afan[0] + if conv.needs_dx() { afan[3] } else { afan[2] });
    }
    println!(
        "ResNet-20 step, all convolutions (forward + backward): flex {:.3} s, afan {:.3} s ({:.2}x)",
        totals[0],
        totals[1],
        totals[0] / totals[1]
    );
}

/// Per-shape afan columns; `cols` picks which of fwd, dx (both routes), dw, dx+dw.
fn shapes_mode(convs: &[Conv], iters: usize, [fwd, dx, dw]: [bool; 3]) {
    let all = fwd && dx && dw;
    let mut head = format!("{:<16} {:>5} |", "conv (batch 128)", "count");
    let mut add = |on: bool, names: &[&str]| {
        for n in names.iter().filter(|_| on) {
            head += &format!(" {n:>10}");
        }
    };
    add(fwd, &["fwd"]);
    add(dx, &["dx col2im", "dx conv", "dx chosen"]);
    add(dw, &["dw"]);
    add(all, &["dx+dw"]);
    println!("{head}");
    for conv in convs {
        let mut row = format!("{:<16} {:>5} |", conv.name(), conv.count);
        if fwd {
            row += &format!(" {}", ms(conv.fwd(iters)));
        }
        if dx {
            let col2im = conv.dx(iters, InputRoute::Col2im);
            let by_conv = conv.dx(iters, InputRoute::Conv);
            row += &format!(" {} {}", ms_or_dash(col2im), ms_or_dash(by_conv));
            row += &format!(" {:>10?}", InputRoute::choose(&conv.g));
        }
        if dw {
            row += &format!(" {}", ms(conv.backward(iters, [false, true])));
        }
        if all {
            row += &format!(" {}", ms(conv.backward(iters, [true, true])));
        }
        println!("{row}");
    }
}

/// The whole set, as wall time (sum of per-convolution medians) and as the CPU time all threads
/// spent per step (less disturbed by other processes on a busy machine than wall time).
fn set_mode(convs: &[Conv], iters: usize) {
    let runs = (iters.max(1) + 1) as f64; // time() adds a warm-up run
    let (mut wall, mut cpu) = (0.0, 0.0);
    for c in convs {
        let before = cpu_seconds().unwrap_or(f64::NAN);
        wall += c.count as f64 * c.step(iters);
        let after = cpu_seconds().unwrap_or(f64::NAN);
        cpu += c.count as f64 * (after - before) / runs;
    }
    println!(
        "ResNet-20 step, all convolutions (forward + backward): afan {wall:.3} s (cpu {cpu:.3} s)"
    );
}

/// User + system CPU seconds of this process so far, from `/proc/self/stat` (Linux; 10 ms ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, iters) = match args.as_slice() {
        [] => ("flex", None),
        [a] if a.parse::<usize>().is_ok() => ("flex", Some(a.as_str())),
        [m] => (m.as_str(), None),
        [m, i, ..] => (m.as_str(), Some(i.as_str())),
    };
    let iters = iters.map_or(5, |i| i.parse().expect("ITERS: a number"));
    let convs: Vec<Conv> = SHAPES.into_iter().map(Conv::new).collect();
    match mode {
        "flex" => flex_mode(&convs, iters),
        "shapes" => shapes_mode(&convs, iters, [true; 3]),
        "fwd" => shapes_mode(&convs, iters, [true, false, false]),
        "dx" => shapes_mode(&convs, iters, [false, true, false]),
        "dw" => shapes_mode(&convs, iters, [false, false, true]),
        "set" => set_mode(&convs, iters),
        _ => panic!("MODE: flex, shapes, fwd, dx, dw or set"),
    }
}
