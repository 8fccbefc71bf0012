#!/usr/bin/env bash
# Builds, on a machine with Rust, everything `xtask/gpu/run.sh` runs on a GPU machine that has
# no Rust toolchain and no network: the release `afan` with the wgpu and cuda backends, and the
# backend-portable test binaries (they read AFAN_TEST_DEVICE), packed as .gpu/bins.tar.xz.
#
# Needs LLVM 23.1 for the cuda feature (`cargo xtask cuda-offline --status`; see docs/gpu.md).
# Usage: xtask/gpu/build.sh [TARGET_DIR]   (default target/gpu, kept apart from CPU builds)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${1:-target/gpu}"
# Symbols are only backtrace names here; without them the binaries fit the transfer limits.
export CARGO_PROFILE_RELEASE_STRIP=symbols
features="afan-cli/wgpu,afan-cli/cuda,afan-core/wgpu,afan-core/cuda"
cargo build --release --locked -p afan-cli --features "$features"
# One cargo invocation for every test binary, so features unify as in the build above.
cargo test --release --locked --no-run --message-format=json \
    -p afan-core -p afan-models -p afan-cli --features "$features" \
    --lib --bin afan --test golden_cifar --test golden_attacks --test golden_torchvision \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        t = m["target"]
        name = t["name"] if t["kind"] != ["bin"] else "afan-bin"
        print(name.replace("_", "-"), m["executable"])
' > "$CARGO_TARGET_DIR/gpu-tests.txt"
rm -rf .gpu && mkdir -p .gpu/bin
cp "$CARGO_TARGET_DIR/release/afan" .gpu/bin/afan
while read -r name exe; do cp "$exe" ".gpu/bin/test-$name"; done < "$CARGO_TARGET_DIR/gpu-tests.txt"
ls -la .gpu/bin
tar -C .gpu -cf - bin | xz -T2 -6 > .gpu/bins.tar.xz
rm -rf .gpu/bin
ls -la .gpu
