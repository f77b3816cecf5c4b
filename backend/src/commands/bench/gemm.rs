//! `cosmicai bench gemm`: the machine's matrix-product peak, the ceiling that
//! `bench infer`'s GFLOP/s is read against (the roofline).
//!
//! Each thread multiplies its own square matrices with the `gemm` crate on one
//! core, as the fused AstroMAE path does (slices of a batch on separate
//! threads); the figure is their total rate.

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use std::time::Instant;

#[derive(Args)]
pub struct GemmArgs {
    /// Side of the square matrices.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Threads, each with its own product.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds to measure for.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct GemmFigures {
    precision: &'static str,
    size: usize,
    threads: usize,
    gflops_per_s: f64,
    gflops_per_s_per_thread: f64,
}

pub fn bench_gemm(args: GemmArgs) -> Result<()> {
    if args.size == 0 || args.size > 8192 || args.threads == 0 || args.threads > 1024 {
        anyhow::bail!("--size must be 1 to 8192 and --threads 1 to 1024");
    }
    let n = args.size;
    let seconds = args.seconds.clamp(0.1, 600.0);
    let flops: f64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| scope.spawn(move || products_for(n, seconds)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0.0)).sum()
    });
    let gflops = flops / seconds / 1e9;
    let figures = GemmFigures {
        precision: "fp32",
        size: n,
        threads: args.threads,
        gflops_per_s: gflops,
        gflops_per_s_per_thread: gflops / args.threads as f64,
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "fp32 {n}x{n} products on {} threads: {gflops:.1} GFLOP/s ({:.1} per thread)",
            args.threads, figures.gflops_per_s_per_thread
        )
    };
    crate::output::emit(&(text + "\n"))
}

/// Floating-point operations done in `seconds` of back-to-back n x n products.
fn products_for(n: usize, seconds: f64) -> f64 {
    let a = vec![1.0f32; n * n];
    let b = vec![0.5f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let product = |c: &mut [f32]| {
        // SAFETY: a, b and c each hold n * n values, row-major with stride n.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    };
    product(&mut c); // warm-up: packing buffers, frequency
    let (start, mut done) = (Instant::now(), 0u64);
    while start.elapsed().as_secs_f64() < seconds {
        product(&mut c);
        done += 1;
    }
    std::hint::black_box(&c);
    // Products finished in the measured time, scaled to exactly `seconds`.
    2.0 * (n * n * n) as f64 * done as f64 * seconds / start.elapsed().as_secs_f64()
}
