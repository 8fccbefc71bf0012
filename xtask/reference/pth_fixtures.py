"""Small files written by torch.save, for the tests of afan's .pth reader (tests/import_pth.rs).

Each holds a few tensors with hash_weights values (so the Rust test knows what to expect without
PyTorch) in the ways real checkpoints come: a bare state dict in the zip container (PyTorch >= 1.6)
and in the legacy stream (`_use_new_zipfile_serialization=False`), a training checkpoint that
nests a DataParallel state dict under "state_dict" beside an epoch number, mixed dtypes
(float16 weights, int64 num_batches_tracked), and a pickle that is not a state dict. Regenerate:

    .venv/bin/python xtask/reference/pth_fixtures.py
"""
import os
import numpy as np
import torch
from hash_weights import value

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "pth")
os.makedirs(OUT, exist_ok=True)

SHAPES = {"conv1.weight": (4, 3, 3, 3), "bn1.weight": (4,), "bn1.running_var": (4,),
          "fc.weight": (2, 4), "fc.bias": (2,)}


def state(dtype=torch.float32):
    sd = {k: torch.from_numpy(value(k, s)).to(dtype) for k, s in SHAPES.items()}
    sd["bn1.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    return sd


def save(obj, name, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    print(name, os.path.getsize(path), "bytes")


save(state(), "plain_zip.pth")
save(state(), "plain_legacy.pth", _use_new_zipfile_serialization=False)
sd = state()
# A strided view, as `state_dict()` of a transposed or sliced parameter gives.
sd["fc.weight"] = torch.from_numpy(value("fc.weight", (2, 4)).T.copy()).T
assert not sd["fc.weight"].is_contiguous()
save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, "nested_module.pth")
save(state(torch.float16), "half.pth")
save({"epoch": 3, "arch": "resnet18"}, "no_tensors.pth")
