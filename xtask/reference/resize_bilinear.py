"""Fixture for afan-models' bilinear resize (`crates/afan-models/src/upsample`), computed by
PyTorch's `F.interpolate(mode="bilinear")` on float32 (the kernels mirror its float32 arithmetic).

Writes tests/fixtures/resize_bilinear.safetensors (read by crates/afan-models/src/upsample/tests.rs;
CI never runs Python). Regenerate with `AFAN_TORCH_PYTHON=... cargo xtask goldens`, or:

    .venv/bin/python xtask/reference/resize_bilinear.py

Contents: `x` [2, 3, 5, 7]; for each case `<case>.out`, `<case>.r` (an upstream gradient) and
`<case>.grad` = d sum(out * r) / d x. Cases `<h>x<w>_<ac>`: output size h x w, align_corners
`ac` (0/1): 20x28 (x4, DeepLab's decoder and logits), 17x13 (uneven up-sampling), 3x4 (down),
1x1, each with align_corners False and True.
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(11)
x = torch.randn(2, 3, 5, 7, dtype=torch.float32)
out = {"x": x}
for h, w in [(20, 28), (17, 13), (3, 4), (1, 1)]:
    for ac in (False, True):
        name = f"{h}x{w}_{int(ac)}"
        t = x.clone().requires_grad_(True)
        y = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=ac)
        r = torch.randn_like(y)
        (y * r).sum().backward()
        out[f"{name}.out"] = y.detach()
        out[f"{name}.r"] = r
        out[f"{name}.grad"] = t.grad
path = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/resize_bilinear.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path)
print("wrote", path, {k: tuple(v.shape) for k, v in out.items()})
