"""Times the PyTorch peer (../shared/peers/astromae_torch.py) beside `cosmicai bench
infer --model astromae`, in fp32 and in bf16 autocast, with peak RSS: one JSON line
per precision.

    python tools/astromae_peer_bench.py [--batch 512] [--samples 2048] [--threads 2]
        [--precision fp32 bf16] [--peer ../shared/peers/astromae_torch.py]
        [--device cuda]

On CUDA the precisions are fp32 (matmuls and cuDNN convolutions in strict fp32, as
ours), fp32-default (PyTorch's defaults: strict matmuls, TF32 convolutions), tf32
(both TF32), bf16 and f16 (autocast). Each batch's redshifts are read back to the
host, as `cosmicai bench infer` does, and the figure adds the peak GPU memory.

Needs torch and timm (see ../shared/README.md). Each precision runs in a fresh
process, so its peak RSS is its own.
"""
import argparse, importlib.util, json, resource, subprocess, sys, time


def one(peer, batch, samples, threads, precision, device):
    import torch
    spec = importlib.util.spec_from_file_location("astromae_torch", peer)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cuda = device == "cuda"
    if cuda:
        strict = precision in ("fp32", "bf16", "f16")
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = not strict
    m = mod.AstroMAE().eval().to(device)
    img = torch.randn(batch, 5, 32, 32, device=device)
    mag = torch.randn(batch, 5, device=device) + 18
    half = {"bf16": torch.bfloat16, "f16": torch.float16}.get(precision)
    cast = torch.autocast(device, dtype=half or torch.bfloat16, enabled=half is not None)
    with torch.inference_mode(), cast:
        for _ in range(3 if cuda else 1):  # warm-up (cuDNN picks its algorithms)
            m([img, mag]).float().cpu()
        n, t0 = 0, time.perf_counter()
        while n < samples:
            m([img, mag]).float().cpu()  # read back, as ours does
            n += batch
        dt = time.perf_counter() - t0
    figures = {"peer": "pytorch", "torch": torch.__version__, "device": device,
               "precision": precision, "batch": batch, "threads": threads, "samples": n,
               "seconds": round(dt, 3), "samples_per_s": round(n / dt, 1),
               "gflops_per_s": round(0.765 * n / dt, 1),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if cuda:
        figures["gpu"] = torch.cuda.get_device_name()
        figures["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                   choices=["fp32", "fp32-default", "tf32", "bf16", "f16"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--peer", default="../shared/peers/astromae_torch.py")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        one(a.peer, a.batch, a.samples, a.threads, a.precision[0], a.device)
    else:
        for precision in a.precision:
            subprocess.run([sys.executable, __file__, "--one", "--peer", a.peer, "--batch", str(a.batch),
                            "--samples", str(a.samples), "--threads", str(a.threads),
                            "--precision", precision, "--device", a.device], check=True)
