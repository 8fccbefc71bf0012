"""Golden numbers for afan's COCO box evaluation, from pycocotools itself.

Writes tests/fixtures/coco_eval/<case>.json, each holding a small ground-truth
instances dict ("gt"), a result list ("dt") and what pycocotools' COCOeval
(iouType="bbox") reports for them: the 12 `stats` and the per-category
AP@[.5:.95] (all areas, maxDets=100; -1 without ground truth). The cases are
random but seeded and cover crowd regions, small/medium/large areas (with an
`area` field unlike the box area, as COCO's mask areas are), images without
ground truth, categories without detections, tied scores and more than 100
detections on an image.

Run (CI never does; the JSON files are committed):
    python3 -m venv /tmp/cocoref && /tmp/cocoref/bin/pip install pycocotools numpy
    /tmp/cocoref/bin/python xtask/reference/coco_eval_fixtures.py
"""

import contextlib
import copy
import io
import json
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "coco_eval")


def r2(x):
    return float(round(float(x), 2))


def random_box(rng, w_img, h_img, size):
    bw = max(1.0, rng.uniform(0.5, 1.5) * size)
    bh = max(1.0, rng.uniform(0.5, 1.5) * size)
    x = rng.uniform(0, max(1.0, w_img - bw))
    y = rng.uniform(0, max(1.0, h_img - bh))
    return [r2(x), r2(y), r2(bw), r2(bh)]


def jitter(rng, box, amount):
    x, y, w, h = box
    return [r2(x + rng.normal(0, amount * w)), r2(y + rng.normal(0, amount * h)),
            r2(max(0.5, w * rng.uniform(1 - amount, 1 + amount))),
            r2(max(0.5, h * rng.uniform(1 - amount, 1 + amount)))]


def make_case(seed, n_images, cat_ids, objs_per_image, sizes, crowd_p=0.0,
              empty_images=0, dt_only_cats=(), gt_only_cats=(), fp_per_image=2,
              many_dets_image=None, tie_scores=False, mask_area=False):
    rng = np.random.default_rng(seed)
    images, anns, dts = [], [], []
    ann_id = 1
    for i in range(n_images + empty_images):
        img_id = 10 + 3 * i  # not contiguous, not starting at 0
        W, H = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": W, "height": H})
        if i >= n_images:
            # No ground truth here, but detections (all false positives).
            for _ in range(fp_per_image):
                c = int(rng.choice(cat_ids))
                dts.append({"image_id": img_id, "category_id": c,
                            "bbox": random_box(rng, W, H, rng.choice(sizes)),
                            "score": r2(rng.uniform(0.01, 1.0))})
            continue
        for _ in range(int(rng.integers(0, objs_per_image + 1))):
            c = int(rng.choice([c for c in cat_ids if c not in dt_only_cats]))
            box = random_box(rng, W, H, rng.choice(sizes))
            crowd = int(rng.uniform() < crowd_p)
            area = box[2] * box[3] * (rng.uniform(0.4, 0.9) if mask_area else 1.0)
            anns.append({"id": ann_id, "image_id": img_id, "category_id": c, "bbox": box,
                         "area": r2(area), "iscrowd": crowd})
            ann_id += 1
            if c in gt_only_cats:
                continue
            # Zero to two detections per object: a good one, a sloppy duplicate.
            for quality in (0.05, 0.3)[: int(rng.integers(0, 3))]:
                if crowd:
                    # Detections inside the crowd region.
                    sub = [r2(box[0] + box[2] * 0.1), r2(box[1] + box[3] * 0.1),
                           r2(box[2] * 0.4), r2(box[3] * 0.4)]
                    dts.append({"image_id": img_id, "category_id": c, "bbox": sub,
                                "score": r2(rng.uniform(0.01, 1.0))})
                dts.append({"image_id": img_id, "category_id": c, "bbox": jitter(rng, box, quality),
                            "score": r2(rng.uniform(0.01, 1.0))})
        for _ in range(fp_per_image):
            c = int(rng.choice(cat_ids))
            dts.append({"image_id": img_id, "category_id": c,
                        "bbox": random_box(rng, W, H, rng.choice(sizes)),
                        "score": r2(rng.uniform(0.01, 1.0))})
        if many_dets_image == i:
            img_anns = [a for a in anns if a["image_id"] == img_id]
            c = img_anns[0]["category_id"] if img_anns else int(cat_ids[0])
            for k in range(130):
                src = img_anns[k % len(img_anns)]["bbox"] if img_anns else random_box(rng, W, H, 50)
                dts.append({"image_id": img_id, "category_id": c, "bbox": jitter(rng, src, 0.2),
                            "score": r2(rng.uniform(0.01, 1.0))})
    if tie_scores:
        for d in dts:
            d["score"] = float(round(d["score"] * 4) / 4)  # few distinct values
    cats = [{"id": int(c), "name": f"class{c}"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, dts


def evaluate(gt, dts):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        res = coco.loadRes(copy.deepcopy(dts))
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]
    per_cat = []
    for k, c in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, 2]
        per_cat.append([int(c), float(np.mean(p[p > -1])) if (p > -1).any() else -1.0])
    return [float(s) for s in ev.stats], per_cat


CASES = {
    "basic": dict(seed=1, n_images=8, cat_ids=[1, 2, 3], objs_per_image=4, sizes=[20, 50, 120]),
    "crowd": dict(seed=2, n_images=8, cat_ids=[1, 5], objs_per_image=4, sizes=[30, 80, 150],
                  crowd_p=0.3),
    "areas": dict(seed=3, n_images=10, cat_ids=[2, 7, 9], objs_per_image=5,
                  sizes=[10, 25, 33, 60, 95, 100, 200], mask_area=True, crowd_p=0.1),
    "empty": dict(seed=4, n_images=5, cat_ids=[1, 2, 3, 4], objs_per_image=3, sizes=[40, 90],
                  empty_images=3, dt_only_cats=(4,), gt_only_cats=(3,)),
    "many_dets": dict(seed=5, n_images=3, cat_ids=[1, 2], objs_per_image=6, sizes=[30, 60],
                      many_dets_image=1),
    "ties": dict(seed=6, n_images=8, cat_ids=[1, 2], objs_per_image=4, sizes=[20, 60, 110],
                 tie_scores=True, crowd_p=0.15),
    "mixed": dict(seed=7, n_images=30, cat_ids=[1, 3, 8, 11], objs_per_image=6,
                  sizes=[12, 30, 45, 90, 130], crowd_p=0.1, empty_images=2, mask_area=True,
                  fp_per_image=3, many_dets_image=4),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, kw in CASES.items():
        gt, dts = make_case(**kw)
        stats, per_cat = evaluate(gt, dts)
        path = os.path.join(OUT, f"{name}.json")
        with open(path, "w") as f:
            json.dump({"gt": gt, "dt": dts, "stats": stats, "per_category_ap": per_cat}, f,
                      separators=(",", ":"))
        print(f"{path}: {len(gt['annotations'])} gt, {len(dts)} dt, stats {np.round(stats, 4)}")


if __name__ == "__main__":
    main()
