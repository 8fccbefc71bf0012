"""Fixture for afan-models' grouped, depthwise and dilated convolution kernels
(`crates/afan-models/src/conv`), computed by PyTorch's `F.conv2d` in float64 and stored as float32.

Writes tests/fixtures/conv_kernels.safetensors (read by crates/afan-models/src/conv/tests.rs; CI
never runs Python). Regenerate with `AFAN_TORCH_PYTHON=... cargo xtask goldens`, or:

    .venv/bin/python xtask/reference/conv_kernels.py

For each case `<name>`: `<name>.x`, `<name>.w`, `<name>.y` (the output), `<name>.r` (an upstream
gradient), `<name>.dx` and `<name>.dw` (gradients of sum(y * r)); `<name>.meta` holds
[stride, padding, dilation, groups]. Cases, as MobileNetV2, EfficientNet and DeepLab's ASPP and
dilated ResNet use them, in miniature:
- `dw_s1`: depthwise 3x3, stride 1, padding 1 (an inverted residual's depthwise conv);
- `dw_s2`: depthwise 3x3, stride 2, odd size (a stage transition);
- `dw_d2`: depthwise 3x3, dilation 2, padding 2 (MobileNetV2 at output stride 16);
- `dw_k5s2`: depthwise 5x5, stride 2, padding 2 (EfficientNet);
- `grouped`: 3x3, 2 groups of 3 -> 4 channels;
- `dil6`: dense 3x3, dilation 6, padding 6 on a 9x9 map (ASPP, where most taps fall outside);
- `dil2_s1`: dense 3x3, dilation 2, padding 2 (a dilated ResNet block);
- `dil2_p0`: dense 3x3, dilation 2, no padding.
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(23)
cases = {
    # name: (batch, in, out, size, kernel, stride, padding, dilation, groups)
    "dw_s1": (2, 6, 6, 8, 3, 1, 1, 1, 6),
    "dw_s2": (2, 4, 4, 9, 3, 2, 1, 1, 4),
    "dw_d2": (2, 5, 5, 9, 3, 1, 2, 2, 5),
    "dw_k5s2": (1, 3, 3, 11, 5, 2, 2, 1, 3),
    "grouped": (2, 6, 8, 7, 3, 1, 1, 1, 2),
    "dil6": (2, 4, 5, 9, 3, 1, 6, 6, 1),
    "dil2_s1": (2, 3, 4, 10, 3, 1, 2, 2, 1),
    "dil2_p0": (1, 3, 2, 9, 3, 1, 0, 2, 1),
}
out = {}
for name, (b, c, k, s, kk, stride, pad, dil, groups) in cases.items():
    x = torch.randn(b, c, s, s, dtype=torch.float64, requires_grad=True)
    w = torch.randn(k, c // groups, kk, kk, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, w, None, stride, pad, dil, groups)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    out.update({
        f"{name}.x": x.detach(), f"{name}.w": w.detach(), f"{name}.y": y.detach(),
        f"{name}.r": r, f"{name}.dx": x.grad, f"{name}.dw": w.grad,
        f"{name}.meta": torch.tensor([stride, pad, dil, groups], dtype=torch.float64),
    })
path = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/conv_kernels.safetensors")
save_file({k: v.float().contiguous() for k, v in out.items()}, path)
print("wrote", path, len(out), "tensors")
