#!/usr/bin/env bash
# Packs what issue 20's GPU check needs into .gpu/ (ignored by git), for a device
# machine that has CUDA, PyTorch and timm but no Rust toolchain and no network:
#   - `cosmicai`, release, built with `--features cuda`;
#   - the model crate's test binary, release, with `--features cuda` (the device
#     tests: each kernel against the host's, then the whole schedule);
#   - the PyTorch peer, which lives outside the repository (../shared/peers).
# Binaries are stripped and compressed with xz: a device call carries at most 64 MiB.
#
#   tools/gpu_pack.sh            # here, on the CPU machine (a release build: minutes)
#   then, as one device call, with carry [".gpu"] and a timeout that leaves time for a rerun
#   (a device session has 15 minutes in all, starting included):
#   tools/gpu_check.sh           # its log comes back in $OUT/gpu.log, even when cut off
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
peer="${PEER:-../shared/peers/astromae_torch.py}"
[ -f "$peer" ] || { echo "no PyTorch peer at $peer (set PEER)"; exit 1; }
cargo build --release -p cosmicai-backend --features cuda --bin cosmicai
tests=$(cargo test --release -p cosmicai-model --features cuda --lib --no-run --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cosmicai_model":
        print(m["executable"])' | tail -1)
[ -n "$tests" ] || { echo "the model crate's test binary was not found"; exit 1; }
rm -rf .gpu && mkdir -p .gpu
cp "$CARGO_TARGET_DIR/release/cosmicai" .gpu/cosmicai
cp "$tests" .gpu/model-tests
strip .gpu/cosmicai .gpu/model-tests
# The device runs these with its own C library: they need at least this glibc there.
objdump -T .gpu/cosmicai .gpu/model-tests | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 > .gpu/glibc
xz -T0 -6 .gpu/cosmicai .gpu/model-tests
cp "$peer" .gpu/astromae_torch.py
echo "$(git rev-parse HEAD)$(git diff --quiet HEAD || echo " with uncommitted changes")" > .gpu/commit
echo "needs $(cat .gpu/glibc) or newer on the device"
du -b .gpu/* | awk '{ printf "%-28s %6.1f MiB\n", $2, $1 / 1048576; total += $1 }
    END { printf "%-28s %6.1f MiB (a device call carries at most 64)\n", "total", total / 1048576 }'
