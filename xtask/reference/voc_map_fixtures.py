"""Golden numbers for afan's VOC mAP, from an independent numpy copy of
py-faster-rcnn's `voc_eval` / `voc_ap` (the classic devkit rule).

Boxes here are VOC's 1-based inclusive pixel boxes, with the devkit's `+ 1` in
widths and areas; afan converts them to continuous corners
(`BoxXyxy::from_voc_pixels`) and must still agree. Detection coordinates are
multiples of 0.25 so both sides compute IoUs without rounding differences.
Scores are distinct (voc_eval's quicksort leaves tie order unspecified). A class
without non-difficult ground truth gets AP None and is left out of the mean
(voc_eval would give NaN).

Writes tests/fixtures/voc_map/cases.json. Needs only numpy:
    /tmp/cocoref/bin/python xtask/reference/voc_map_fixtures.py
"""

import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "voc_map")


def voc_ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def voc_eval(images, dets, cls, use_07_metric, ovthresh=0.5):
    class_recs, npos = {}, 0
    for img in images:
        objs = [o for o in img["objects"] if o["cls"] == cls]
        bbox = np.array([o["box"] for o in objs], dtype=float).reshape(-1, 4)
        difficult = np.array([o["difficult"] for o in objs]).astype(bool)
        npos += int(np.sum(~difficult))
        class_recs[img["id"]] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(objs)}
    if npos == 0:
        return None
    cd = [d for d in dets if d["cls"] == cls]
    confidence = np.array([d["score"] for d in cd])
    BB = np.array([d["box"] for d in cd], dtype=float).reshape(-1, 4)
    image_ids = [d["image"] for d in cd]
    sorted_ind = np.argsort(-confidence, kind="mergesort")
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :]
        ovmax = -np.inf
        BBGT = R["bbox"]
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                   + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return float(voc_ap(rec, prec, use_07_metric))


def q(x):
    return float(np.round(x * 4) / 4)


def make_case(seed, n_images, num_classes, max_objs, difficult_p, fp_per_image, absent_classes=()):
    rng = np.random.default_rng(seed)
    images, dets = [], []
    scores = iter(rng.permutation(100000)[:5000] / 100000 + 1e-5)  # distinct
    for i in range(n_images):
        W, H = int(rng.integers(100, 500)), int(rng.integers(100, 500))
        objs = []
        for _ in range(int(rng.integers(0, max_objs + 1))):
            cls = int(rng.choice([c for c in range(num_classes) if c not in absent_classes]))
            w, h = int(rng.integers(8, W // 2)), int(rng.integers(8, H // 2))
            x1, y1 = int(rng.integers(1, W - w)), int(rng.integers(1, H - h))
            box = [x1, y1, x1 + w, y1 + h]
            objs.append({"box": box, "cls": cls, "difficult": bool(rng.uniform() < difficult_p)})
            for _ in range(int(rng.integers(0, 3))):
                jit = [q(v + rng.normal(0, 0.12 * s)) for v, s in zip(box, [w, h, w, h])]
                if jit[2] <= jit[0] or jit[3] <= jit[1]:
                    continue
                c = cls if rng.uniform() < 0.85 else int(rng.integers(num_classes))
                dets.append({"image": i, "cls": c, "box": jit, "score": float(next(scores))})
        for _ in range(fp_per_image):
            w, h = q(rng.uniform(8, W / 2)), q(rng.uniform(8, H / 2))
            x1, y1 = q(rng.uniform(1, W - w)), q(rng.uniform(1, H - h))
            dets.append({"image": i, "cls": int(rng.integers(num_classes)),
                         "box": [x1, y1, x1 + w, y1 + h], "score": float(next(scores))})
        images.append({"id": i, "width": W, "height": H, "objects": objs})
    ap07 = [voc_eval(images, dets, c, True) for c in range(num_classes)]
    aparea = [voc_eval(images, dets, c, False) for c in range(num_classes)]
    mean = lambda v: float(np.mean([a for a in v if a is not None]))
    return {"num_classes": num_classes, "images": images, "dets": dets,
            "ap07": ap07, "ap_area": aparea, "map07": mean(ap07), "map_area": mean(aparea)}


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = {
        "plain": make_case(11, 12, 3, 4, 0.0, 2),
        "difficult": make_case(12, 20, 4, 5, 0.25, 3),
        "absent_class": make_case(13, 10, 5, 4, 0.2, 2, absent_classes=(3,)),
        "crowded": make_case(14, 6, 2, 12, 0.1, 6),
    }
    path = os.path.join(OUT, "cases.json")
    with open(path, "w") as f:
        json.dump(cases, f, separators=(",", ":"))
    for k, v in cases.items():
        print(k, len(v["dets"]), "dets", "map07", round(v["map07"], 4), "area", round(v["map_area"], 4))


if __name__ == "__main__":
    main()
