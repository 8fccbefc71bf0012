"""Compares afan.json (afan infer --json) with torchvision.json (torchvision_top5.py), per image:
the top-5 classes in order, and the largest probability difference among them."""
import json
import os
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "/tmp/afan-top5"
ref = {os.path.basename(r["image"]): r["top"] for r in json.load(open(os.path.join(d, "torchvision.json")))}
got = {os.path.basename(r["image"]): r["top"] for r in json.load(open(os.path.join(d, "afan.json")))}
same = 0
for name, want in ref.items():
    have = got[name]
    wc, hc = [t["class"] for t in want], [t["class"] for t in have]
    dp = max(abs(a["probability"] - b["probability"]) for a, b in zip(want, have))
    same += wc == hc
    print(f"{name:28s} torchvision {wc} afan {hc} {'same' if wc == hc else 'DIFFERENT'}"
          f"  max |dp| {dp:.2e}  top-1 p {want[0]['probability']:.4f}")
print(f"{same}/{len(ref)} images with the same top-5 in the same order")
sys.exit(0 if same == len(ref) else 1)
