#!/usr/bin/env bash
# The step table of docs/benchmarks.md ("Detection, segmentation and classification against
# PyTorch, 1 and 2 threads"): afan's release build and PyTorch (CPU) on the same steps, each task
# at 1 and 2 threads, with the load average before each call: classification afan then PyTorch in
# one `cargo xtask bench` call; detection and segmentation each row ROUNDS times, afan's and
# PyTorch's back to back (`--rounds`: this host's speed swings within minutes), median ratio. Then the segmentation A-FAN step against its
# pass-count floor (afan only).
#
#   AFAN_TORCH_PYTHON=/work/torchenv/bin/python xtask/reference/bench_detseg.sh [ITERS [ROUNDS]]
#
# Run it on a quiet machine: PyTorch's threads slow down far more than afan's when anything else
# runs on the same cores (issue 19). ITERS (default 5) timed steps per row after 2 warm-ups;
# ROUNDS (default 3) rounds per detection and segmentation row.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${AFAN_TORCH_PYTHON:?set AFAN_TORCH_PYTHON to a Python with torch and torchvision}"
export AFAN_TORCH_PYTHON
iters="${1:-5}"
rounds="${2:-3}"

cargo build --release -p afan-cli
cargo build -p xtask
cargo build --release -p afan-models --example segment_step_bench
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "torch: $("$AFAN_TORCH_PYTHON" -c 'import torch; print(torch.__version__)')"

for threads in 1 2; do
  # classification: ResNet-20 at batch 128 (clean, A-FAN, pixel PGD, inference)
  # detection: Faster R-CNN C4 R-18, one 600x800 image (baseline, A-FAN at the VOC preset)
  # segmentation: DeepLabV3+ MobileNetV2 and ResNet-50, 129x129 crop, batch 2
  for task in classify detect segment; do
    echo
    echo "== $task, $threads thread(s); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$task" = classify ]; then
      cargo xtask bench --task "$task" --threads "$threads" --iters "$iters" --warmup 2
    else
      cargo xtask bench --task "$task" --threads "$threads" --iters "$iters" --warmup 2 --rounds "$rounds"
    fi
  done
done

for threads in 1 2; do
  echo
  echo "== segmentation A-FAN against its pass-count floor, $threads thread(s); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  RAYON_NUM_THREADS=$threads target/release/examples/segment_step_bench "$iters" 129 2
done
