//! A 2-d convolution module with the record of `burn::nn::conv::Conv2d` (same field names and
//! shapes, so checkpoints, PyTorch key maps and goldens are unchanged) whose forward runs afan's
//! own CPU kernels on the `flex` backend, where Burn's convolution was two thirds of a ResNet-20
//! training step: im2col + gemm for dense, grouped and dilated convolutions ([`kernel`]), a
//! direct kernel for depthwise ones ([`depthwise`]). Every other backend, and the cases the
//! kernels do not cover (asymmetric or "same" padding, non-`f32` data), go through Burn's
//! `conv2d`.

pub mod depthwise;
#[cfg(feature = "flex")]
mod ext;
mod flipped;
#[cfg(all(test, feature = "flex"))]
mod flipped_tests;
mod geom;
pub mod kernel;
#[cfg(test)]
mod kernel_tests;
mod layout;
mod patches;
pub(crate) mod scratch;
mod small_patches;
#[cfg(all(test, feature = "flex"))]
mod tests;

#[cfg(feature = "flex")]
pub use ext::{FastConv, FastConvBackward};
pub use flipped::{CacheCounts, FlippedWeights, with_flipped_weights};

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::tensor::Tensor;

/// `burn::nn::conv::Conv2d`'s fields, with a faster forward on the CPU.
#[derive(Module, Debug)]
pub struct Conv2d {
    /// `[out_ch, in_ch / groups, kh, kw]`.
    pub weight: Param<Tensor<4>>,
    /// `[out_ch]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Kernel height and width.
    pub kernel_size: [usize; 2],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
    /// Padding, as Burn's module takes it.
    #[module(skip)]
    pub padding: PaddingConfig2d,
}

impl From<burn::nn::conv::Conv2d> for Conv2d {
    fn from(c: burn::nn::conv::Conv2d) -> Self {
        Self {
            weight: c.weight,
            bias: c.bias,
            stride: c.stride,
            kernel_size: c.kernel_size,
            dilation: c.dilation,
            groups: c.groups,
            padding: c.padding,
        }
    }
}

impl Conv2d {
    /// The same convolution as Burn's module, sharing these parameters (for the fallback path).
    pub fn to_burn(&self) -> burn::nn::conv::Conv2d {
        burn::nn::conv::Conv2d {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            stride: self.stride,
            kernel_size: self.kernel_size,
            dilation: self.dilation,
            groups: self.groups,
            padding: self.padding.clone(),
        }
    }

    /// `[N, C, H, W] -> [N, K, OH, OW]`, as `burn::nn::conv::Conv2d::forward`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        match self.fast_padding(&input) {
            Some(padding) => {
                let out = fast_conv2d(
                    input,
                    self.weight.val(),
                    self.stride,
                    padding,
                    self.dilation,
                    self.groups,
                );
                match &self.bias {
                    Some(bias) => out + bias.val().reshape([1, -1, 1, 1]),
                    None => out,
                }
            }
            None => self.to_burn().forward(input),
        }
    }

    /// The symmetric padding when afan's kernels can run this convolution on `input`'s device.
    fn fast_padding(&self, input: &Tensor<4>) -> Option<[usize; 2]> {
        if !crate::flex::is_flex(&input.device()) {
            return None;
        }
        match self.padding {
            PaddingConfig2d::Valid => Some([0, 0]),
            PaddingConfig2d::Explicit(top, left, bottom, right) => {
                (top == bottom && left == right).then_some([top, left])
            }
            PaddingConfig2d::Same => None,
        }
    }
}

/// afan's convolution (bias-free, symmetric `padding`; `weight` `[K, C / groups, kh, kw]`) on a
/// `flex` tensor.
#[cfg(feature = "flex")]
pub fn fast_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Tensor<4> {
    use burn::backend::Dispatch;
    let out = <Dispatch as FastConv>::afan_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        stride,
        padding,
        dilation,
        groups,
    );
    Tensor::from_dispatch(out)
}

#[cfg(not(feature = "flex"))]
fn fast_conv2d(
    _: Tensor<4>,
    _: Tensor<4>,
    _: [usize; 2],
    _: [usize; 2],
    _: [usize; 2],
    _: usize,
) -> Tensor<4> {
    unreachable!("is_flex is false without the flex feature")
}
