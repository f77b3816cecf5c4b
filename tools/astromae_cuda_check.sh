#!/usr/bin/env bash
# AstroMAE on CUDA beside PyTorch on the same card, as one short script for a GPU
# machine: speed at each precision (ours and the peer's), then accuracy.
#
#   tools/astromae_cuda_check.sh COSMICAI PEER OUT [SAMPLES]
#
# COSMICAI: a `cosmicai` built with `--features cuda`; PEER: astromae_torch.py (needs
# torch and timm); OUT: a scratch folder. Accuracy: a full-size fixture (random
# weights, PyTorch's fp32 redshifts on the CPU) run by `cosmicai run --device cuda`
# at each precision, and renderer cutouts (`cosmicai synth`, real-shaped inputs)
# at bf16 and f16 against our own CUDA fp32. Prints JSON lines.
# BATCHES (default "512 4096") and PEER=0 (skip the peer's timings) shorten it.
set -uo pipefail
bin=$1 peer=$2 out=$3 samples=${4:-16384}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

for batch in ${BATCHES:-512 4096}; do
    [ "${PEER:-1}" = 0 ] || python3 "$here/astromae_peer_bench.py" --device cuda --threads 8 \
        --batch "$batch" --samples "$samples" --peer "$peer" \
        --precision fp32 fp32-default tf32 bf16 f16
    for precision in fp32 bf16 f16; do
        "$bin" bench infer --model astromae --backend cuda --precision "$precision" \
            --batch-size "$batch" --samples "$samples" --json
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
for data in fixture synth; do
    for precision in fp32 bf16 f16; do
        "$bin" run --data "$out/$data" --model "astromae:$out/fx/astromae_module.pt" \
            --device cuda --precision "$precision" --world-size 1 --batch-size 512 \
            --result-path "results/$precision" --json | tail -1 |
            python3 -c 'import json,sys; s=json.load(sys.stdin); print(json.dumps({k: s.get(k) for k in ["status","objects","precision","device","samples_per_s","duration_s"]}))'
    done
done
python3 - "$out" <<'EOF'
import json, sys
import numpy as np
from safetensors.numpy import load_file
out = sys.argv[1]
def predicted(data, precision):
    p = load_file(f"{out}/{data}/results/{precision}/predictions/0.safetensors")
    order = np.argsort(p["object_id"])
    return p["redshift"][order].astype(np.float64), p["predicted_redshift"][order].astype(np.float64)
# The fixture partition's redshift column holds PyTorch's predictions.
for precision in ["fp32", "bf16", "f16"]:
    torch_z, z = predicted("fixture", precision)
    print(json.dumps({"check": "fixture vs PyTorch fp32 (CPU)", "precision": precision,
                      "objects": int(len(z)), "max_abs_dz": float(np.abs(z - torch_z).max())}))
_, ref = predicted("synth", "fp32")
for precision in ["bf16", "f16"]:
    _, z = predicted("synth", precision)
    print(json.dumps({"check": "synthetic cutouts vs our CUDA fp32", "precision": precision,
                      "objects": int(len(z)), "max_abs_dz": float(np.abs(z - ref).max())}))
EOF
