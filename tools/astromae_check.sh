#!/usr/bin/env bash
# AstroMAE beside PyTorch on the same machine, as one short script (for a GPU
# machine, or DEVICE=cpu here): speed at each precision (ours and the peer's),
# then accuracy.
#
#   tools/astromae_check.sh COSMICAI PEER OUT [SAMPLES]
#   DEVICE=cpu tools/astromae_check.sh target/release/cosmicai PEER OUT 2048
#
# COSMICAI: a `cosmicai` (built with `--features cuda` for the GPU); PEER:
# astromae_torch.py (needs torch and timm); OUT: a scratch folder. Accuracy: a
# full-size fixture (random weights, PyTorch's fp32 redshifts on the CPU) run by
# `cosmicai run` at each precision, and renderer cutouts (`cosmicai synth`,
# real-shaped inputs) at the reduced precisions against our own fp32 on the same
# device. Prints JSON lines. BATCHES (default "512 4096" on CUDA, "512" on the
# CPU) and PEER=0 (skip the peer's timings) shorten it. MODEL_TESTS: the model
# crate's test binary built with `--features cuda` (`cargo test -p cosmicai-model
# --features cuda --no-run` names it), run first on the GPU: each device kernel
# against the host's, then the device schedule against the fused CPU path.
set -uo pipefail
bin=$1 peer=$2 out=$3 samples=${4:-16384}
here=$(cd "$(dirname "$0")" && pwd)
device=${DEVICE:-cuda}
mkdir -p "$out"
if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    # cudarc loads cuBLAS and NVRTC at run time: the toolkit's, or PyTorch's wheels'.
    wheels=$(python3 -c 'import glob, nvidia; print(":".join(d for p in nvidia.__path__ for d in glob.glob(p + "/*/lib")))' 2>/dev/null)
    export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${wheels}:${LD_LIBRARY_PATH:-}"
    [ -z "${MODEL_TESTS:-}" ] || COSMICAI_REQUIRE_GPU=1 COSMICAI_REQUIRE_NVRTC=1 "$MODEL_TESTS" device --nocapture --test-threads 1 || exit 1
    # The roofline's ceiling: cuBLAS's peak on this GPU.
    python3 "$here/gpu_gemm_peak.py"
    precisions="fp32 bf16 f16" peer_precisions="fp32 fp32-default tf32 bf16 f16"
    threads=8 backend=cuda batches=${BATCHES:-512 4096}
else
    lscpu | grep -E '^Model name|^CPU\(s\)'
    precisions="fp32 bf16" peer_precisions="fp32 bf16"
    threads=${THREADS:-2} backend=fused batches=${BATCHES:-512}
fi

for batch in $batches; do
    [ "${PEER:-1}" = 0 ] || python3 "$here/astromae_peer_bench.py" --device "$device" \
        --threads "$threads" --batch "$batch" --samples "$samples" --peer "$peer" \
        --precision $peer_precisions
    # The fused path's schedule on cuBLAS (fp32, TF32, bf16), then burn's CUDA backend (which
    # compiles its kernels at each start: slower to begin, so second, in case time runs out). Its
    # correctness first: `cargo test -p cosmicai-model --features cuda --lib device`.
    if [ "$device" = cuda ]; then
        for mode in "fp32" "fp32 --tf32" "bf16"; do
            "$bin" bench infer --model astromae --backend cuda-fused --precision $mode \
                --threads "$threads" --batch-size "$batch" --samples "$samples" --json
        done
    fi
    for precision in $precisions; do
        "$bin" bench infer --model astromae --backend "$backend" --precision "$precision" \
            --threads "$threads" --batch-size "$batch" --samples "$samples" --json
    done
done

# Accuracy: PyTorch's fixture, and synthetic 32x32 cutouts.
# The fixture's reference is PyTorch's fp32 on the CPU: the GPU machine's torch made
# the GPU its default device, which the peer's CPU inputs then did not match.
python3 -c 'import runpy, sys, torch; torch.set_default_device("cpu"); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")' \
    "$peer" --fixture "$out/fx" --batch 1024 > "$out/fixture.json" || exit 1
mkdir -p "$out/fixture" "$out/synth"
cp "$out/fx/partition.pt" "$out/fixture/"
"$bin" synth --catalog "$here/../assets/catalogs/skyserver_dr14.csv.gz" --objects 4096 \
    --size 32 --objects-per-file 4096 --out "$out/synth" --json | tail -1
# On CUDA a run takes burn's backend unless COSMICAI_CUDA_KERNELS=fused: the fused-* modes
# run AstroMAE's fused schedule on cuBLAS, the path `bench infer --backend cuda-fused` times.
modes=$precisions
[ "$device" != cuda ] || modes="$precisions fused-fp32 fused-bf16"
for data in fixture synth; do
    for mode in $modes; do
        precision=${mode#fused-} kernels=burn
        [ "$mode" = "$precision" ] || kernels=fused
        COSMICAI_CUDA_KERNELS=$kernels "$bin" run --data "$out/$data" \
            --model "astromae:$out/fx/astromae_module.pt" \
            --device "$device" --precision "$precision" --world-size 1 --batch-size 512 \
            --result-path "results/$mode" --json | tail -1 |
            python3 -c 'import json,sys; s=json.load(sys.stdin); kern=json.load(open(sys.argv[2])).get("kernels"); print(json.dumps({"mode": sys.argv[1], "kernels": kern, **{k: s.get(k) for k in ["status","objects","precision","device","samples_per_s","duration_s"]}}))' \
                "$mode" "$out/$data/results/$mode/0.json"
    done
done
python3 - "$out" "$device" $modes <<'EOF'
import json, sys
import numpy as np
from safetensors.numpy import load_file
out, device, modes = sys.argv[1], sys.argv[2], sys.argv[3:]
def predicted(data, mode):
    p = load_file(f"{out}/{data}/results/{mode}/predictions/0.safetensors")
    order = np.argsort(p["object_id"])
    return p["redshift"][order].astype(np.float64), p["predicted_redshift"][order].astype(np.float64)
# The fixture partition's redshift column holds PyTorch's predictions.
for precision in modes:
    torch_z, z = predicted("fixture", precision)
    print(json.dumps({"check": "fixture vs PyTorch fp32 (CPU)", "precision": precision,
                      "objects": int(len(z)), "max_abs_dz": float(np.abs(z - torch_z).max()),
                      "mean_abs_dz": float(np.abs(z - torch_z).mean())}))
for data in ["fixture", "synth"]:
    _, ref = predicted(data, "fp32")
    for precision in modes[1:]:
        _, z = predicted(data, precision)
        print(json.dumps({"check": f"{data} vs our {device} fp32", "precision": precision,
                          "objects": int(len(z)), "max_abs_dz": float(np.abs(z - ref).max()),
                          "mean_abs_dz": float(np.abs(z - ref).mean())}))
EOF
# The peer's own reduced precisions on the same fixture (autocast, as it was timed).
python3 - "$peer" "$out/fx" "$device" $precisions <<'PEER'
import importlib.util, json, sys
import torch
from safetensors.torch import load_file
peer, fx, device, precisions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
spec = importlib.util.spec_from_file_location("astromae_torch", peer)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
m = mod.AstroMAE().eval().to(device)
m.load_state_dict(load_file(f"{fx}/astromae.safetensors"))
io = load_file(f"{fx}/io.safetensors")
img, mag = io["images"].to(device), io["magnitudes"].to(device)
with torch.inference_mode():
    ref = m([img, mag]).squeeze(1).double().cpu()
    for precision in precisions[1:]:
        dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[precision]
        with torch.autocast(device, dtype=dtype):
            z = m([img, mag]).squeeze(1).double().cpu()
        print(json.dumps({"check": f"fixture, PyTorch {precision} autocast vs its own fp32 ({device})",
                          "precision": precision, "objects": len(z),
                          "max_abs_dz": (z - ref).abs().max().item(),
                          "mean_abs_dz": (z - ref).abs().mean().item()}))
PEER
