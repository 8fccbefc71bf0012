"""Fixture for afan-models' RoIAlign / RoIPool, computed by torchvision.ops.

Writes tests/fixtures/roi_align.safetensors (read by crates/afan-models/src/detection/roi_align_tests.rs;
CI never runs Python). Regenerate with:

    python3 -m venv .venv && .venv/bin/pip install torch torchvision safetensors
    .venv/bin/python xtask/reference/roi_align.py

Contents: `x` [2, 3, 6, 7] features, `rois` [R, 5] (image index, x1, y1, x2, y2 in input pixels; image 1
first so the output order is tested, some boxes partly or wholly outside the map), `r` an upstream
gradient per case, and for each case `<case>.out` and `<case>.grad` = d sum(out * r) / d x.
Cases: `align0` (aligned=False, sampling_ratio=-1), `align1` (aligned=True, sampling_ratio=2),
`pool` (roi_pool). All with output size (3, 2) and spatial scale 0.5, computed in float64.

Then the release's head size on a stride-16 map: `big.x` [2, 5, 12, 15], `big.rois` (boxes of 20
to 260 pixels, one reaching past the map), and the cases `align14` (14x14, scale 1/16,
sampling_ratio=-1, aligned=False: the release's pooling before its 2x2 max pool) and `align7r2`
(7x7, sampling_ratio=2, aligned=True), drawn from a second generator so that the values above
stay as they were.
"""
import os
import torch
from torchvision.ops import roi_align, roi_pool
from safetensors.torch import save_file

torch.manual_seed(7)
x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
rois = torch.tensor(
    [
        [1, 1.0, 2.0, 9.0, 7.5],
        [0, 0.0, 0.0, 13.0, 11.0],
        [0, 3.3, 4.1, 5.2, 4.9],
        [1, -4.0, -3.0, 6.0, 20.0],
        [0, 10.0, 8.0, 30.0, 14.0],
        [1, 12.5, 10.0, 12.5, 11.0],
    ],
    dtype=torch.float64,
)
out = {"x": x, "rois": rois}
cases = {
    "align0": lambda t: roi_align(t, rois, (3, 2), 0.5, -1, False),
    "align1": lambda t: roi_align(t, rois, (3, 2), 0.5, 2, True),
    "pool": lambda t: roi_pool(t, rois, (3, 2), 0.5),
}
for name, fn in cases.items():
    t = x.clone().requires_grad_(True)
    y = fn(t)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    out[f"{name}.out"] = y.detach()
    out[f"{name}.r"] = r
    out[f"{name}.grad"] = t.grad
g = torch.Generator().manual_seed(19)
big = torch.randn(2, 5, 12, 15, dtype=torch.float64, generator=g)
big_rois = torch.tensor(
    [
        [0, 10.0, 20.0, 270.0, 180.0],
        [1, 100.0, 50.0, 120.0, 70.0],
        [0, 200.0, 150.0, 260.0, 200.0],
        [1, -30.0, -10.0, 230.0, 250.0],
        [1, 31.5, 47.25, 95.0, 160.5],
    ],
    dtype=torch.float64,
)
out["big.x"], out["big.rois"] = big, big_rois
big_cases = {
    "align14": lambda t: roi_align(t, big_rois, (14, 14), 1 / 16, -1, False),
    "align7r2": lambda t: roi_align(t, big_rois, (7, 7), 1 / 16, 2, True),
}
for name, fn in big_cases.items():
    t = big.clone().requires_grad_(True)
    y = fn(t)
    r = torch.randn(y.shape, dtype=torch.float64, generator=g)
    (y * r).sum().backward()
    out[f"{name}.out"] = y.detach()
    out[f"{name}.r"] = r
    out[f"{name}.grad"] = t.grad
path = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/roi_align.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path)
print("wrote", path, {k: tuple(v.shape) for k, v in out.items()})
