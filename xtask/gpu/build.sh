#!/usr/bin/env bash
# Builds, on a machine with Rust, everything `xtask/gpu/run.sh` runs on a GPU machine that has
# no Rust toolchain and no network: the release `afan` with the wgpu and cuda backends, and the
# backend-portable test binaries (they read AFAN_TEST_DEVICE).
#
# Each binary links LLVM statically for the cuda backend (~150 MB stripped, ~35 MB as .xz), and
# the device tool moves at most 64 MiB a call, working tree included. So every binary is packed
# alone, as .gpu/NAME.tar.xz, one per call (run.sh NAME), and this script fails if one is over
# the limit. NAME: afan (bench + training runs), golden, models, core, cli (test binaries).
#
# Needs LLVM 23.1 for the cuda feature (`cargo xtask cuda-offline --status`; see docs/gpu.md).
# Usage: xtask/gpu/build.sh [TARGET_DIR]   (default target/gpu, kept apart from CPU builds)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${1:-target/gpu}"
# Symbols are only backtrace names here; stripped, the packs are a quarter smaller.
export CARGO_PROFILE_RELEASE_STRIP=symbols
features="afan-cli/wgpu,afan-cli/cuda,afan-core/wgpu,afan-core/cuda"
cargo build --release --locked -p afan-cli --features "$features"
# One cargo invocation for every test binary, so features unify as in the build above.
cargo test --release --locked --no-run --message-format=json \
    -p afan-core -p afan-models -p afan-cli --features "$features" \
    --lib --bin afan --test golden \
    | python3 -c '
import json, sys
names = {"afan_core": "core", "afan_models": "models", "golden": "golden", "afan": "cli"}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(names[m["target"]["name"]], m["executable"])
' > "$CARGO_TARGET_DIR/gpu-tests.txt"
# What the working tree leaves of the 64 MiB a call may move.
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
limit=$((64 * 1024 * 1024 - tree - 1024 * 1024))
rm -rf .gpu && mkdir -p .gpu
pack() { # pack NAME EXE: .gpu/NAME.tar.xz holding bin/NAME
    local dir; dir=$(mktemp -d)
    mkdir "$dir/bin" && cp "$2" "$dir/bin/$1"
    tar -C "$dir" -cf - bin | xz -T2 -6 > ".gpu/$1.tar.xz"
    rm -rf "$dir"
    local size; size=$(stat -c %s ".gpu/$1.tar.xz")
    echo "$1: $size bytes (limit $limit)"
    [ "$size" -le "$limit" ] || { echo "error: .gpu/$1.tar.xz is over the device tool's limit" >&2; exit 1; }
}
pack afan "$CARGO_TARGET_DIR/release/afan"
while read -r name exe; do pack "$name" "$exe"; done < "$CARGO_TARGET_DIR/gpu-tests.txt"
ls -la .gpu
