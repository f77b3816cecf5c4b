#!/usr/bin/env bash
# Issue 20's GPU check, as one device call over what tools/gpu_pack.sh packed
# (carry [".gpu"]): unpacks the binaries, then runs tools/astromae_check.sh with
# the device tests first. Its JSON lines, and the whole log in $OUT/gpu.log,
# are the figures to report. SAMPLES and BATCHES shorten it (astromae_check.sh). The
# device tests run first and fail without a GPU (COSMICAI_REQUIRE_GPU); DEVICE=cpu runs
# the rest on a CPU, which is how it was tried without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .gpu/cosmicai.xz ] || { echo "no .gpu/: run tools/gpu_pack.sh here and carry .gpu"; exit 1; }
echo "packed from commit $(cat .gpu/commit); needs $(cat .gpu/glibc), here: $(ldd --version | head -1)"
bin=/tmp/gpu && mkdir -p "$bin"
# Python's lzma, not xz(1): the device's image promises Python, not xz.
python3 - "$bin" <<'EOF' || exit 1
import lzma, os, shutil, sys
for name in ["cosmicai", "model-tests"]:
    with lzma.open(f".gpu/{name}.xz") as packed, open(f"{sys.argv[1]}/{name}", "wb") as out:
        shutil.copyfileobj(packed, out)
    os.chmod(f"{sys.argv[1]}/{name}", 0o755)
EOF
log="${OUT:-/tmp}/gpu.log"
MODEL_TESTS="$bin/model-tests" PYTHONUNBUFFERED=1 tools/astromae_check.sh \
    "$bin/cosmicai" .gpu/astromae_torch.py /tmp/astromae-check "${SAMPLES:-16384}" 2>&1 | tee "$log"
