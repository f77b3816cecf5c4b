//! `cosmicai bench gemm`: the machine's matrix-product peak, the ceiling that
//! `bench infer`'s GFLOP/s is read against (the roofline).
//!
//! Each thread multiplies its own square matrices with the `gemm` crate on one
//! core, as the fused AstroMAE path does (slices of a batch on separate
//! threads); the figure is their total rate.

use anyhow::Result;
use clap::Args;
use cosmicai_model::astromae::fused::bf16 as fused;
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
    /// fp32 (the `gemm` crate) or bf16 (our AVX-512 BF16 kernel, bf16 inputs
    /// and f32 sums, as `run --precision bf16` multiplies on the CPU).
    #[arg(long, value_enum, default_value_t = GemmPrecision::Fp32)]
    pub precision: GemmPrecision,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GemmPrecision {
    Fp32,
    Bf16,
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
    let bf16 = matches!(args.precision, GemmPrecision::Bf16);
    if bf16 && !fused::native() {
        anyhow::bail!(
            "--precision bf16: this CPU has no AVX-512 BF16, so bf16 products run on the fp32 kernels (measure --precision fp32)"
        );
    }
    let n = args.size;
    let seconds = args.seconds.clamp(0.1, 600.0);
    let flops: f64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| {
                scope.spawn(move || {
                    if bf16 {
                        bf16_products_for(n, seconds)
                    } else {
                        products_for(n, seconds)
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0.0)).sum()
    });
    let gflops = flops / seconds / 1e9;
    let figures = GemmFigures {
        precision: if bf16 { "bf16" } else { "fp32" },
        size: n,
        threads: args.threads,
        gflops_per_s: gflops,
        gflops_per_s_per_thread: gflops / args.threads as f64,
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "{} {n}x{n} products on {} threads: {gflops:.1} GFLOP/s ({:.1} per thread)",
            figures.precision, args.threads, figures.gflops_per_s_per_thread
        )
    };
    crate::output::emit(&(text + "\n"))
}

/// [`products_for`] with bf16 inputs, the activations rounded into pairs for
/// each product as the model does.
fn bf16_products_for(n: usize, seconds: f64) -> f64 {
    let a = vec![1.0f32; n * n];
    let w = fused::PackedWeights::new(&vec![0.5f32; n * n], n, n);
    let mut pairs = fused::Pairs::default();
    timed(n, seconds, |c| {
        pairs.fill(&a, n, n);
        fused::matmul(&pairs, &w, None, c, n, false);
    })
}

/// Floating-point operations done in `seconds` of back-to-back n x n products.
fn products_for(n: usize, seconds: f64) -> f64 {
    let a = vec![1.0f32; n * n];
    let b = vec![0.5f32; n * n];
    timed(n, seconds, |c| {
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
    })
}

/// Floating-point operations done in `seconds` of back-to-back n x n `product`s
/// into one destination.
fn timed(n: usize, seconds: f64, mut product: impl FnMut(&mut [f32])) -> f64 {
    let mut c = vec![0.0f32; n * n];
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
