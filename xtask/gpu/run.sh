#!/usr/bin/env bash
# Runs on a GPU machine (no Rust, no network) what `xtask/gpu/build.sh` packed: the
# backend-portable tests on cuda and wgpu, `afan bench`, and short trainings (f32 and bf16),
# each under its own time limit so that one hang cannot eat the rest. Logs go to $OUT (or
# ./gpu-out): tests.log, runs.log, bench-*.json, metrics-*.jsonl.
# Usage, from the repository root: xtask/gpu/run.sh [cuda|wgpu|all]
set -uo pipefail
which="${1:-all}"
out="${OUT:-$PWD/gpu-out}"; mkdir -p "$out"
root="$PWD"
# Vulkan/EGL loaders for wgpu, when carried as Debian packages in .gl (see docs/gpu.md).
if ls .gl/*.deb >/dev/null 2>&1; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
# The test binaries find their fixtures through the path they were built in.
if [ ! -e /work/main ]; then mkdir -p /work && ln -s "$root" /work/main; fi
# cudarc loads NVRTC at run time; add whatever CUDA installation the machine has.
for d in $(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' -printf '%h\n' 2>/dev/null | sort -u); do
    export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
bin="$root/.gpu/bin"
[ -d "$bin" ] || { mkdir -p "$bin"; xz -dc "$root/.gpu/bins.tar.xz" | tar -C "$root/.gpu" -xf -; }
# Tests compile many one-off shapes; minimal autotuning keeps them short (timings use the default).
t() { # t SECONDS DEVICE NAME BINARY [FILTERS...]
    local s=$1 dev=$2 name=$3 exe=$4; shift 4
    echo "=== [$dev] $name $*" | tee -a "$out/tests.log"
    local t0=$SECONDS
    AFAN_TEST_DEVICE=$dev CUBECL_AUTOTUNE_LEVEL=minimal timeout "$s" "$bin/$exe" --test-threads 4 "$@" \
        >> "$out/tests.log" 2>&1
    echo "=== [$dev] $name: exit $? in $((SECONDS - t0)) s" | tee -a "$out/tests.log"
}
r() { # r SECONDS LABEL COMMAND...
    local s=$1 label=$2; shift 2
    echo "=== $label: $*" | tee -a "$out/runs.log"
    local t0=$SECONDS
    timeout "$s" "$@" >> "$out/runs.log" 2>&1
    echo "=== $label: exit $? in $((SECONDS - t0)) s" | tee -a "$out/runs.log"
}
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } >> "$out/runs.log" 2>&1
suite() { # suite DEVICE
    local d=$1
    t 60 "$d" afan-core test-afan-core
    t 90 "$d" golden-cifar test-golden-cifar
    t 60 "$d" golden-attacks test-golden-attacks
    t 90 "$d" golden-torchvision test-golden-torchvision
    t 90 "$d" afan-models test-afan-models detection deeplab mobilenet
    t 90 "$d" afan-cli test-afan-bin precision parallel
}
for d in cuda wgpu; do
    [ "$which" = all ] || [ "$which" = "$d" ] || continue
    r 120 "bench $d" sh -c "'$bin/afan' bench --device $d --json --iters 10 --warmup 3 > '$out/bench-$d.json'"
    suite "$d"
    r 150 "train $d f32" "$bin/afan" train --device "$d" --out "/tmp/run-$d" --quiet
    cp "/tmp/run-$d/metrics.jsonl" "$out/metrics-$d.jsonl" 2>/dev/null
    r 60 "eval $d checkpoint on cpu" "$bin/afan" eval --checkpoint "/tmp/run-$d/best.ckpt" --device cpu --json
done
if [ "$which" = all ] || [ "$which" = cuda ]; then
    r 120 "train cuda bf16" "$bin/afan" train --device cuda --precision bf16 --epochs 2 --out /tmp/run-bf16 --quiet
    cp /tmp/run-bf16/metrics.jsonl "$out/metrics-cuda-bf16.jsonl" 2>/dev/null
fi
grep -h "^test result\|FAILED\|panicked" "$out/tests.log" | sort | uniq -c | sort -rn | head -40
