"""Expected values of afan-data's blur and contrast corruptions (crates/afan-data/src/corruption_tests.rs),
computed the way CIFAR-10-C's make_cifar_c.py does: skimage.filters.gaussian(x, sigma) per channel
(channel_axis), np.mean over the spatial axes for contrast, then np.clip to [0, 1].

    /work/torchenv/bin/python xtask/reference/corruption_fixtures.py
"""
import json
import os

import numpy as np
from skimage.filters import gaussian

OUT = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/corruption.json")

rng = np.random.default_rng(5)
x = rng.random((7, 9, 3))  # H, W, C as make_cifar_c works on
cases = {"image_hwc": x.tolist()}
for sigma in (0.7, 1.5):
    cases[f"blur_{sigma}"] = np.clip(gaussian(x, sigma=sigma, channel_axis=-1), 0, 1).tolist()
for c in (0.4, 1.7):
    means = np.mean(x, axis=(0, 1), keepdims=True)
    cases[f"contrast_{c}"] = np.clip((x - means) * c + means, 0, 1).tolist()
json.dump(cases, open(OUT, "w"))
print("wrote", OUT)
