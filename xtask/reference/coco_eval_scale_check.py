"""A COCO-sized check of `afan eval-detections` against pycocotools (not run in CI).

Writes a seeded random case of COCO val2017's size (5,050 images, 80 categories,
~35k ground truths with crowd regions and mask-like areas, ~137k detections) to OUT,
evaluates it with pycocotools, and prints both results and the largest difference.

    /tmp/cocoref/bin/python xtask/reference/coco_eval_scale_check.py /tmp/detbig \\
        target/debug/afan
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from coco_eval_fixtures import evaluate, make_case  # noqa: E402


def main(out, afan):
    os.makedirs(out, exist_ok=True)
    gt, dts = make_case(seed=99, n_images=5000, cat_ids=list(range(1, 81)), objs_per_image=14,
                        sizes=[12, 30, 45, 90, 130, 250], crowd_p=0.02, empty_images=50,
                        mask_area=True, fp_per_image=20, many_dets_image=3)
    gt_path, dt_path = os.path.join(out, "gt.json"), os.path.join(out, "dt.json")
    json.dump(gt, open(gt_path, "w"))
    json.dump(dts, open(dt_path, "w"))
    print(f"{len(gt['annotations'])} ground truths, {len(dts)} detections")
    t = time.time()
    want, _ = evaluate(gt, dts)
    print(f"pycocotools: {time.time() - t:.1f} s")
    t = time.time()
    res = subprocess.run([afan, "eval-detections", "--gt", gt_path, "--dt", dt_path, "--json"],
                         check=True, capture_output=True, text=True)
    print(f"afan: {time.time() - t:.1f} s")
    got = json.loads(res.stdout)["stats"]
    print("max |afan - pycocotools| =", max(abs(a - b) for a, b in zip(got, want)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
