"""The GPU's matrix-product peak through cuBLAS (PyTorch), the ceiling that
`cosmicai bench infer --backend cuda-fused`'s GFLOP/s is read against: square
products of random matrices, timed with CUDA events after a warm-up, in strict
fp32, TF32 and bf16. One JSON line per precision.

    python3 tools/gpu_gemm_peak.py [--size 8192] [--repeats 20]
"""
import argparse, json

import torch

p = argparse.ArgumentParser()
p.add_argument("--size", type=int, default=8192)
p.add_argument("--repeats", type=int, default=20)
a = p.parse_args()
n = a.size
for precision, dtype, tf32 in [("fp32", torch.float32, False), ("tf32", torch.float32, True),
                               ("bf16", torch.bfloat16, False)]:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    x = torch.randn(n, n, device="cuda", dtype=dtype)
    y = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        x @ y
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(a.repeats):
        start.record()
        x @ y
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    median = sorted(times)[len(times) // 2]
    print(json.dumps({"gemm_peak": precision, "size": n, "gpu": torch.cuda.get_device_name(),
                      "median_s": round(median, 6), "tflops_per_s": round(2 * n**3 / median / 1e12, 1)}),
          flush=True)
