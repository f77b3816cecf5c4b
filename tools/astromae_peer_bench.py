"""Times the PyTorch peer (../shared/peers/astromae_torch.py) beside `cosmicai bench
infer --model astromae`, in fp32 and in bf16 autocast, with peak RSS: one JSON line
per precision.

    python tools/astromae_peer_bench.py [--batch 512] [--samples 2048] [--threads 2]
        [--precision fp32 bf16] [--peer ../shared/peers/astromae_torch.py]

Needs torch and timm (see ../shared/README.md). Each precision runs in a fresh
process, so its peak RSS is its own.
"""
import argparse, importlib.util, json, resource, subprocess, sys, time


def one(peer, batch, samples, threads, precision):
    import torch
    spec = importlib.util.spec_from_file_location("astromae_torch", peer)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = mod.AstroMAE().eval()
    img = torch.randn(batch, 5, 32, 32)
    mag = torch.randn(batch, 5) + 18
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), cast:
        m([img, mag])  # warm-up
        n, t0 = 0, time.perf_counter()
        while n < samples:
            m([img, mag])
            n += batch
        dt = time.perf_counter() - t0
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "precision": precision,
                      "batch": batch, "threads": threads, "samples": n,
                      "seconds": round(dt, 3), "samples_per_s": round(n / dt, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
          flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--peer", default="../shared/peers/astromae_torch.py")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        one(a.peer, a.batch, a.samples, a.threads, a.precision[0])
    else:
        for precision in a.precision:
            subprocess.run([sys.executable, __file__, "--one", "--peer", a.peer, "--batch", str(a.batch),
                            "--samples", str(a.samples), "--threads", str(a.threads),
                            "--precision", precision], check=True)
