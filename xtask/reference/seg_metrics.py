"""Golden numbers for afan-data's segmentation metrics, computed independently with numpy.

The formulas are those of VainF/DeepLabV3Plus-Pytorch `metrics/stream_metrics.py`
(`StreamSegMetrics`), the release's evaluation code: one confusion matrix over the whole split,
labels outside 0..n-1 (255) ignored, `np.nanmean` over classes.

Writes crates/afan-data/tests/fixtures/seg_metrics.json: a few random prediction/label maps (with
ignored pixels and an absent class) and the scores. Run from the repository root:
    python3 xtask/reference/seg_metrics.py
"""
import json
import numpy as np

N_CLASSES = 6
rng = np.random.default_rng(7)
maps = []
hist = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
for shape in [(5, 7), (4, 4), (3, 9)]:
    label = rng.integers(0, N_CLASSES - 1, size=shape)  # class 5 never in the labels
    label[rng.random(shape) < 0.15] = 255
    pred = np.where(rng.random(shape) < 0.6, label, rng.integers(0, N_CLASSES, size=shape))
    pred[pred == 255] = 0
    mask = (label >= 0) & (label < N_CLASSES)
    hist += np.bincount(N_CLASSES * label[mask] + pred[mask],
                        minlength=N_CLASSES ** 2).reshape(N_CLASSES, N_CLASSES)
    maps.append({"pred": pred.ravel().tolist(), "label": label.ravel().tolist()})

with np.errstate(divide="ignore", invalid="ignore"):
    acc = np.diag(hist).sum() / hist.sum()
    acc_cls = np.nanmean(np.diag(hist) / hist.sum(axis=1))
    iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
    mean_iu = np.nanmean(iu)
    freq = hist.sum(axis=1) / hist.sum()
    fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()

out = {
    "num_classes": N_CLASSES,
    "maps": maps,
    "confusion": hist.ravel().tolist(),
    "pixel_accuracy": float(acc),
    "mean_accuracy": float(acc_cls),
    "mean_iou": float(mean_iu),
    "frequency_weighted_iou": float(fwavacc),
    "class_iou": [None if np.isnan(v) else float(v) for v in iu],
}
with open("crates/afan-data/tests/fixtures/seg_metrics.json", "w") as f:
    json.dump(out, f, indent=1)
print(json.dumps({k: v for k, v in out.items() if k != "maps"}))
