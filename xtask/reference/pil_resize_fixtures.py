"""Images resized by Pillow, for afan-data's resize test (crates/afan-data/src/resize_tests.rs).

Writes tests/fixtures/pil_resize/: a few small 8-bit source images (RGB pictures with smooth
parts, edges and noise; a label map), each resized with `Image.resize(size, BILINEAR)` (what
torchvision's `transforms.Resize` runs on PIL images) or `NEAREST` (label maps) to sizes down
and up, odd, and mixed (down in one axis, up in the other), as PNG, and `manifest.json` listing
`{source, filter, size, expected}`. Some sizes sit on either side of Pillow 13's pass-order rule
(vertical pass first when the height shrinks by more than twice what the width shrinks by):
37x23 -> 36x20 and 35x18 go vertical first, 35x19 (4 = 2 * 2) horizontal; likewise 150x113 ->
120x40 and 120x53.

    /work/torchenv/bin/python xtask/reference/pil_resize_fixtures.py
"""
import json
import os

import numpy as np
import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/pil_resize")


def picture(w, h, seed):
    """Gradients, a sharp-edged disc, stripes and noise: every part of the filter shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 127 + 120 * np.sin(x / 2.3 + y / 3.1)
    b = np.where((x - w / 2) ** 2 + (y - h / 3) ** 2 < (min(w, h) / 3) ** 2, 250.0, 10.0)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 20, (h, w, 3))
    img[h // 2] = rng.integers(0, 256, (w, 3))  # one row of pure noise
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


def labels(w, h, seed):
    """Blocks of class ids with a 255 (ignore) border, as a VOC mask."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 21, (h // 4 + 1, w // 4 + 1)).astype(np.uint8)
    lab = np.kron(ids, np.ones((4, 4), np.uint8))[:h, :w]
    lab[0, :] = 255
    lab[:, -1] = 255
    return Image.fromarray(lab, "L")


CASES = {
    "rgb_37x23.png": (picture(37, 23, 1), "bilinear",
                      [(18, 11), (11, 7), (29, 19), (63, 39), (111, 69), (50, 12), (37, 23),
                       (1, 1), (36, 23), (36, 20), (35, 19), (35, 18)]),
    "rgb_64x48.png": (picture(64, 48, 2), "bilinear", [(32, 24), (21, 16), (224, 168), (64, 7)]),
    "rgb_150x113.png": (picture(150, 113, 3), "bilinear",
                        [(7, 5), (47, 35), (149, 112), (120, 40), (120, 53)]),
    "gray_31x17.png": (picture(31, 17, 4).convert("L"), "bilinear", [(13, 29), (5, 3)]),
    "labels_31x17.png": (labels(31, 17, 5), "nearest",
                         [(15, 8), (62, 34), (7, 40), (100, 3), (31, 17), (29, 16)]),
}

FILTERS = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = []
    for source, (img, filt, sizes) in CASES.items():
        img.save(os.path.join(OUT, source))
        for w, h in sizes:
            expected = f"{source[:-4]}_{filt}_{w}x{h}.png"
            img.resize((w, h), FILTERS[filt]).save(os.path.join(OUT, expected))
            manifest.append({"source": source, "filter": filt, "size": [w, h],
                             "expected": expected})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "xtask/reference/pil_resize_fixtures.py",
                   "pillow": PIL.__version__, "cases": manifest}, f, indent=1)
    print(OUT, len(manifest), "cases")


if __name__ == "__main__":
    main()
