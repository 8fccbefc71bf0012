//! The shape of one convolution and the index arithmetic the patch copies share.

/// The shape of one convolution (symmetric padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_ch: usize,
    /// Input height and width.
    pub in_hw: [usize; 2],
    /// Output channels.
    pub out_ch: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Zero padding on each side, along height and width.
    pub padding: [usize; 2],
    /// Spacing of the kernel taps along height and width (atrous convolution).
    pub dilation: [usize; 2],
    /// Channel groups: group `g` convolves input channels `g*C/G..` into output channels
    /// `g*K/G..` with its own `K/G` kernels.
    pub groups: usize,
}

impl ConvGeom {
    /// An ungrouped, undilated convolution.
    pub fn dense(
        [batch, in_ch, out_ch]: [usize; 3],
        in_hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Self {
        Self {
            batch,
            in_ch,
            in_hw,
            out_ch,
            kernel,
            stride,
            padding,
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// Rows and columns a kernel spans: `dilation * (kernel - 1) + 1`.
    pub fn span(&self) -> [usize; 2] {
        [0, 1].map(|d| self.dilation[d] * (self.kernel[d] - 1) + 1)
    }

    /// Output height and width (PyTorch's floor formula).
    pub fn out_hw(&self) -> [usize; 2] {
        let span = self.span();
        [0, 1].map(|d| (self.in_hw[d] + 2 * self.padding[d] - span[d]) / self.stride[d] + 1)
    }

    /// Whether the padded input holds the kernel at least once along both axes.
    pub fn fits(&self) -> bool {
        let span = self.span();
        (0..2).all(|d| self.in_hw[d] + 2 * self.padding[d] >= span[d])
    }

    /// Input channels of one group.
    pub fn group_in(&self) -> usize {
        self.in_ch / self.groups
    }

    /// Output channels of one group.
    pub fn group_out(&self) -> usize {
        self.out_ch / self.groups
    }

    /// Rows of one group's patch matrix: `C/G * kh * kw` (the weight's elements per output
    /// channel).
    pub fn patch(&self) -> usize {
        self.group_in() * self.kernel[0] * self.kernel[1]
    }

    /// One group as an ungrouped convolution (the geometry im2col and col2im work on).
    pub(super) fn one_group(&self) -> ConvGeom {
        ConvGeom {
            in_ch: self.group_in(),
            out_ch: self.group_out(),
            groups: 1,
            ..*self
        }
    }

    /// Elements of one input image.
    pub(super) fn in_len(&self) -> usize {
        self.in_ch * self.in_hw[0] * self.in_hw[1]
    }

    /// Pixels of one output plane.
    pub(super) fn out_pixels(&self) -> usize {
        let [oh, ow] = self.out_hw();
        oh * ow
    }

    /// Elements of one output image.
    pub(super) fn out_len(&self) -> usize {
        self.out_ch * self.out_pixels()
    }

    /// An image is its own patch matrix.
    pub(super) fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// The convolution whose forward pass is this one's input gradient, when there is one
    /// without inserting zeros: ungrouped, stride 1 and padding at most the kernel's span less
    /// one. It convolves the output gradient (`K` channels, `OH x OW`) with the weight flipped in
    /// space and transposed to `[C, K, kh, kw]` (`layout::flip_transpose`), at the same dilation,
    /// padded by `span - 1 - padding`, and yields exactly `H x W`.
    pub fn input_grad_conv(&self) -> Option<ConvGeom> {
        let span = self.span();
        let fits =
            self.groups == 1 && (0..2).all(|d| self.stride[d] == 1 && self.padding[d] < span[d]);
        fits.then(|| ConvGeom {
            batch: self.batch,
            in_ch: self.out_ch,
            in_hw: self.out_hw(),
            out_ch: self.in_ch,
            kernel: self.kernel,
            stride: [1, 1],
            padding: [0, 1].map(|d| span[d] - 1 - self.padding[d]),
            dilation: self.dilation,
            groups: 1,
        })
    }
}

/// Output positions `lo..hi` (along one axis) whose input index `o * s + k - p` is inside `0..n`
/// (`k` is the tap's offset: its index times the dilation).
pub(super) fn valid_range(k: usize, p: usize, s: usize, n: usize, out: usize) -> (usize, usize) {
    let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
    let hi = if n + p > k {
        ((n + p - k - 1) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}
