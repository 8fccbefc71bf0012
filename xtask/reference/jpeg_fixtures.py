"""JPEG files and the pixels Pillow decodes from them, for afan-data's JPEG test
(crates/afan-data/src/jpeg_tests.rs).

Writes tests/fixtures/jpeg/: crops of scikit-image's photographs (real photographic content:
skin, fur, texture, sharp edges), odd-sized so that the chroma upsampling's edge handling shows,
encoded by Pillow (libjpeg-turbo) in the layouts cameras and datasets use — baseline 4:2:0 (most
photographs, VOC, COCO), 4:2:2, 4:4:4, progressive, grayscale, restart intervals — each next to
`NAME.png`, the RGB pixels of `Image.open(NAME.jpg).convert("RGB")` (what torchvision's
`pil_loader` returns), saved losslessly. Plus `truncated.jpg`, the first half of a file, which
Pillow refuses ("image file is truncated").

    /work/torchenv/bin/python xtask/reference/jpeg_fixtures.py
"""
import os

import numpy as np
import PIL
import skimage.data
from PIL import Image, ImageFile

OUT = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/jpeg")

CASES = [
    # name, photograph, crop (x, y, w, h), save options
    ("astronaut_420_q90", "astronaut", (180, 60, 67, 45), dict(quality=90, subsampling=2)),
    ("chelsea_422_q75", "chelsea", (120, 80, 53, 38), dict(quality=75, subsampling=1)),
    ("coffee_444_q95", "coffee", (200, 100, 41, 33), dict(quality=95, subsampling=0)),
    ("coffee_420_progressive", "coffee", (10, 20, 59, 47),
     dict(quality=85, subsampling=2, progressive=True)),
    ("astronaut_420_restarts", "astronaut", (300, 200, 45, 61),
     dict(quality=80, subsampling=2, restart_marker_blocks=1)),
    ("camera_gray", "camera", (100, 100, 39, 27), dict(quality=90)),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, photo, (x, y, w, h), options in CASES:
        pixels = getattr(skimage.data, photo)()[y:y + h, x:x + w]
        path = os.path.join(OUT, name + ".jpg")
        Image.fromarray(pixels).save(path, **options)
        Image.open(path).convert("RGB").save(os.path.join(OUT, name + ".png"))
    whole = open(os.path.join(OUT, "astronaut_420_q90.jpg"), "rb").read()
    with open(os.path.join(OUT, "truncated.jpg"), "wb") as f:
        f.write(whole[: len(whole) // 2])
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        Image.open(os.path.join(OUT, "truncated.jpg")).convert("RGB")
        raise SystemExit("Pillow decoded the truncated file")
    except OSError as e:
        print("Pillow on truncated.jpg:", e)
    print(f"wrote {len(CASES)} JPEG files and their Pillow {PIL.__version__} pixels to {OUT}")


if __name__ == "__main__":
    main()
