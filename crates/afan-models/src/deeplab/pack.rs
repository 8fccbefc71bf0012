//! One tensor for a cut that needs two: past `layer1`, DeepLabV3+'s tail needs the deep feature
//! *and* the low-level (stride-4) feature of the skip connection, but a split point hands over a
//! single `[B, C, H, W]` feature.
//!
//! The deep feature (stride `4r`, `h = ceil(H / r)` rows, as every stride-2 conv of the backbones
//! rounds up) is repeated `r x r` to the low-level grid, cropped to `H x W`, and concatenated in
//! front of the low-level channels. Unpacking takes every `r`-th row and column of the first
//! channels, which are the original values, and the remaining channels as they are — an exact
//! round trip for any input size. The attack and the moment exchange at such a point therefore
//! act on the deep feature and the skip feature together; only the top-left copy of each deep
//! value reaches the tail, so the copies receive no gradient and no perturbation of their own.

use burn::tensor::{Tensor, s};

/// `cat([repeat(deep, r)[.., .., :H, :W], low], dim=1)`.
pub fn pack(deep: Tensor<4>, low: Tensor<4>, r: usize) -> Tensor<4> {
    let [b, c, h, w] = deep.dims();
    let [_, _, lh, lw] = low.dims();
    debug_assert!(h * r >= lh && w * r >= lw && (h - 1) * r < lh && (w - 1) * r < lw);
    let repeated = deep
        .reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, r, w, r])
        .reshape([b, c, h * r, w * r])
        .slice(s![.., .., 0..lh, 0..lw]);
    Tensor::cat(vec![repeated, low], 1)
}

/// Inverse of [`pack`]: `(deep, low)` for `deep_channels` deep channels at ratio `r`.
pub fn unpack(packed: Tensor<4>, deep_channels: usize, r: usize) -> (Tensor<4>, Tensor<4>) {
    let [_, c, lh, lw] = packed.dims();
    let deep = packed
        .clone()
        .slice(s![.., 0..deep_channels, 0..lh;r, 0..lw;r]);
    let low = packed.slice(s![.., deep_channels..c, .., ..]);
    (deep, low)
}
