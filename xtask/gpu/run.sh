#!/usr/bin/env bash
# Runs on a GPU machine (no Rust, no network) one pack of `xtask/gpu/build.sh`: `afan` (bench,
# f32 training, eval of its checkpoint on the CPU, bf16 training) or one test binary (`golden`,
# `models`, `core`, `cli`: the backend-portable tests), on cuda and wgpu, each under its own time
# limit so that one hang cannot eat the rest. Logs go to $OUT (or ./gpu-out): tests.log,
# runs.log, bench-*.json, metrics-*.jsonl.
# Usage, from the repository root, with .gl and .gpu/PACK.tar.xz carried:
#   xtask/gpu/run.sh PACK [cuda|wgpu|all|cpu]
set -uo pipefail
pack="${1:?usage: xtask/gpu/run.sh afan|golden|models|core|cli [cuda|wgpu|all|cpu]}"
which="${2:-all}"
out="${OUT:-$PWD/gpu-out}"; mkdir -p "$out"
root="$PWD"
# Vulkan/EGL loaders for wgpu, when carried as Debian packages in .gl (see docs/gpu.md).
if [ "$which" != cpu ] && ls .gl/*.deb >/dev/null 2>&1; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
# The test binaries find their fixtures through the path they were built in.
if [ ! -e /work/main ]; then mkdir -p /work && ln -s "$root" /work/main; fi
# cudarc loads NVRTC at run time; add whatever CUDA installation the machine has.
for d in $(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' -printf '%h\n' 2>/dev/null | sort -u); do
    export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
bin="$root/.gpu/bin"
[ -x "$bin/$pack" ] || xz -dc "$root/.gpu/$pack.tar.xz" | tar -C "$root/.gpu" -xf - || exit 1
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
tests() { # tests DEVICE: the pack's test binary, the backend-portable part
    case $pack in
        golden) t 150 "$1" golden golden ;;
        models) t 150 "$1" afan-models models detection deeplab mobilenet ;;
        core) t 90 "$1" afan-core core ;;
        cli) t 120 "$1" afan-cli cli precision parallel ;;
    esac
}
runs() { # runs DEVICE: the afan pack
    local d=$1
    r 120 "bench $d" sh -c "'$bin/afan' bench --device $d --json --iters 10 --warmup 3 > '$out/bench-$d.json'"
    r 150 "train $d f32" "$bin/afan" train --device "$d" --out "/tmp/run-$d" --quiet
    cp "/tmp/run-$d/metrics.jsonl" "$out/metrics-$d.jsonl" 2>/dev/null
    r 60 "eval $d checkpoint on cpu" "$bin/afan" eval --checkpoint "/tmp/run-$d/best.ckpt" --device cpu --json
}
# `cpu` (never part of `all`) tries a pack on the build machine before a GPU is lent.
for d in cuda wgpu cpu; do
    if [ "$which" = all ]; then [ "$d" = cpu ] && continue; elif [ "$which" != "$d" ]; then continue; fi
    if [ "$pack" = afan ]; then runs "$d"; else tests "$d"; fi
done
if [ "$pack" = afan ] && { [ "$which" = all ] || [ "$which" = cuda ]; }; then
    r 120 "train cuda bf16" "$bin/afan" train --device cuda --precision bf16 --epochs 2 --out /tmp/run-bf16 --quiet
    cp /tmp/run-bf16/metrics.jsonl "$out/metrics-cuda-bf16.jsonl" 2>/dev/null
fi
[ -f "$out/tests.log" ] && grep -h "^test result\|FAILED\|panicked" "$out/tests.log" | sort | uniq -c | sort -rn | head -40
exit 0
