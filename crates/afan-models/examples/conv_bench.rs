//! Times the convolutions of a ResNet-20 training step at batch 128, flex's own ops against afan's
//! kernels, forward and each backward, on the same data in one run:
//!
//! ```sh
//! cargo run --release -p afan-models --example conv_bench [-- ITERS]
//! ```

mod common;

use afan_models::conv::kernel::{ConvGeom, conv2d_backward, conv2d_forward};
use burn::backend::Flex;
use burn::backend::ops::ModuleOps;
use burn::tensor::ops::ConvOptions;
use common::{data, iters_arg, tensor, time};

fn main() {
    let iters = iters_arg(5);
    let n = 128;
    // (in, out, size, stride, how many per ResNet-20 step)
    let shapes = [
        (3, 16, 32, 1, 1),
        (16, 16, 32, 1, 6),
        (16, 32, 32, 2, 1),
        (32, 32, 16, 1, 5),
        (32, 64, 16, 2, 1),
        (64, 64, 8, 1, 5),
    ];
    println!(
        "{:<22} {:>5} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
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
    for (c, k, size, stride, count) in shapes {
        let g = ConvGeom {
            batch: n,
            in_ch: c,
            in_hw: [size, size],
            out_ch: k,
            kernel: [3, 3],
            stride: [stride; 2],
            padding: [1, 1],
        };
        let [oh, ow] = g.out_hw();
        let (xv, wv, dyv) = (
            data(n * c * size * size, 1),
            data(k * c * 9, 2),
            data(n * k * oh * ow, 3),
        );
        let (x, w, dy) = (
            tensor(xv.clone(), [n, c, size, size]),
            tensor(wv.clone(), [k, c, 3, 3]),
            tensor(dyv.clone(), [n, k, oh, ow]),
        );
        let opts = ConvOptions::new([stride; 2], [1, 1], [1, 1], 1);
        let flex = [
            time(iters, || {
                Flex::conv2d(x.clone(), w.clone(), None, opts.clone())
            }),
            time(iters, || {
                Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), opts.clone())
            }),
            time(iters, || {
                Flex::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), opts.clone())
            }),
        ];
        let afan = [
            time(iters, || conv2d_forward(&g, &xv, &wv)),
            time(iters, || conv2d_backward(&g, &xv, &wv, &dyv, [true, false])),
            time(iters, || conv2d_backward(&g, &xv, &wv, &dyv, [false, true])),
            time(iters, || conv2d_backward(&g, &xv, &wv, &dyv, [true, true])),
        ];
        let name = format!("{c}->{k} @{size} s{stride}");
        println!(
            "{name:<22} {count:>5} | {:>8.2}ms {:>8.2}ms {:>8.2}ms | {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms",
            flex[0] * 1e3,
            flex[1] * 1e3,
            flex[2] * 1e3,
            afan[0] * 1e3,
            afan[1] * 1e3,
            afan[2] * 1e3,
            afan[3] * 1e3
        );
        // A training step: forward + both gradients (the stem needs no input gradient).
        let dx = if c == 3 { 0.0 } else { 1.0 };
        totals[0] += count as f64 * (flex[0] + dx * flex[1] + flex[2]);
        totals[1] += count as f64 * (afan[0] + if c == 3 { afan[2] } else { afan[3] });
    }
    println!(
        "ResNet-20 step, all convolutions (forward + backward): flex {:.3} s, afan {:.3} s ({:.2}x)",
        totals[0],
        totals[1],
        totals[0] / totals[1]
    );
}
