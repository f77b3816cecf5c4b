//! `cosmicai bench infer`: inference throughput with random inputs (and random
//! AstroMAE weights), with GFLOP/s and peak RSS, on each backend and precision.

use crate::commands::run::PrecisionArg;
use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use clap::{Args, ValueEnum};
use cosmicai_model::astromae::AstroMaeConfig;
use cosmicai_model::photoz::PhotoZ;
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelName {
    Astromae,
    Photoz,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InferBackend {
    /// AstroMAE only: fused CPU kernels over gemm (`astromae::fused`), what runs use on the CPU
    Fused,
    /// burn-ndarray (matrixmultiply, rayon)
    Ndarray,
    /// burn-flex (gemm, SIMD, rayon)
    Flex,
    /// burn's CUDA backend (builds with `--features cuda` only)
    #[cfg(feature = "cuda")]
    Cuda,
    /// AstroMAE only, fp32 or bf16: the fused path's schedule on cuBLAS and NVRTC
    /// kernels (`astromae::fused::device`), whole batches (builds with `--features cuda` only)
    #[cfg(feature = "cuda")]
    CudaFused,
}

#[derive(Args)]
pub struct InferArgs {
    #[arg(long, value_enum, default_value_t = ModelName::Astromae)]
    pub model: ModelName,
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    /// Objects to push through (rounded up to whole batches), after one warm-up batch.
    #[arg(long, default_value_t = 2048)]
    pub samples: usize,
    /// CPU threads (sets the rayon pool before any work starts).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Default: the fastest measured here (see the README): fused for AstroMAE,
    /// ndarray for PhotoZ.
    #[arg(long, value_enum)]
    pub backend: Option<InferBackend>,
    /// AstroMAE: objects per slice of a batch, slices run in parallel; 0: the whole
    /// batch in one forward. Default: 32 fused, 16 on burn's CPU backends, 0 on
    /// CUDA (a GPU wants it whole).
    #[arg(long)]
    pub slice: Option<usize>,
    /// The number format of the products: bf16 on --backend fused or cuda, f16 on cuda.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// --backend cuda-fused: fp32 products on TF32 tensor cores (PyTorch's `allow_tf32`).
    #[arg(long)]
    pub tf32: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct InferFigures {
    model: ModelName,
    backend: InferBackend,
    /// Number format of the products.
    precision: PrecisionArg,
    batch_size: usize,
    slice: usize,
    threads: usize,
    samples: usize,
    seconds: f64,
    samples_per_s: f64,
    /// AstroMAE: achieved GFLOP/s in its products (0.765 GFLOP per object).
    gflops_per_s: Option<f64>,
    first_batch_s: f64,
    peak_rss_mb: f64,
    /// The BLAS behind ndarray's matrix products, when built with one (`--features openblas`).
    blas: Option<&'static str>,
    /// Fused AstroMAE: what ran the products (`bf16 (AVX-512 BF16)`, say).
    kernels: Option<&'static str>,
}

pub fn bench_infer(args: InferArgs) -> Result<()> {
    if args.batch_size == 0 || args.threads == 0 {
        anyhow::bail!("--batch-size and --threads must be at least 1");
    }
    if args.tf32 && !args.backend_is_cuda_fused() {
        anyhow::bail!("--tf32 runs on --backend cuda-fused only");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .ok();
    let backend = args.backend();
    let slice = args.slice();
    #[cfg(feature = "openblas")]
    openblas_threads(if slice > 0 { 1 } else { args.threads });
    let (seconds, first_batch_s, samples) = measure(&args)?;
    let samples_per_s = samples as f64 / seconds;
    // Read before counting FLOPs, which builds a model of its own.
    let peak_rss_mb = cosmicai_engine::system::peak_rss_mb();
    let flops = match args.model {
        ModelName::Astromae => Some(astromae_flops_per_object()?),
        ModelName::Photoz => None,
    };
    let figures = InferFigures {
        model: args.model,
        backend,
        precision: args.precision,
        batch_size: args.batch_size,
        slice,
        threads: args.threads,
        samples,
        seconds,
        samples_per_s,
        gflops_per_s: flops.map(|f| f * samples_per_s / 1e9),
        first_batch_s,
        peak_rss_mb,
        blas: (cfg!(feature = "openblas") && matches!(backend, InferBackend::Ndarray))
            .then_some("openblas"),
        kernels: match (backend, args.precision) {
            (InferBackend::Fused, PrecisionArg::Bf16) => {
                Some(cosmicai_model::astromae::fused::bf16::kernels())
            }
            (InferBackend::Fused, _) => Some("fp32 (gemm)"),
            #[cfg(feature = "cuda")]
            (InferBackend::CudaFused, PrecisionArg::Bf16) if args.tf32 => {
                Some("bf16 transformer products, tf32 others (cuBLAS, NVRTC kernels)")
            }
            #[cfg(feature = "cuda")]
            (InferBackend::CudaFused, PrecisionArg::Bf16) => {
                Some("bf16 transformer products (cuBLAS, NVRTC kernels)")
            }
            #[cfg(feature = "cuda")]
            (InferBackend::CudaFused, _) if args.tf32 => Some("tf32 (cuBLAS, NVRTC kernels)"),
            #[cfg(feature = "cuda")]
            (InferBackend::CudaFused, _) => Some("fp32 (cuBLAS, NVRTC kernels)"),
            _ => None,
        },
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "{:?} on {:?} ({}), batch {} (slices of {}), {} threads: {:.1} samples/s{} ({} in {:.2} s; first batch {:.2} s), peak RSS {:.0} MB",
            figures.model,
            figures.backend,
            cosmicai_shared::run::Precision::from(figures.precision).name(),
            figures.batch_size,
            figures.slice,
            figures.threads,
            figures.samples_per_s,
            figures
                .gflops_per_s
                .map_or_else(String::new, |g| format!(", {g:.1} GFLOP/s")),
            figures.samples,
            figures.seconds,
            figures.first_batch_s,
            figures.peak_rss_mb
        )
    };
    crate::output::emit(&(text + "\n"))
}

impl InferArgs {
    /// The backend asked for, or the fastest for the model.
    pub fn backend(&self) -> InferBackend {
        self.backend.unwrap_or(match self.model {
            ModelName::Astromae => InferBackend::Fused,
            ModelName::Photoz => InferBackend::Ndarray,
        })
    }

    fn backend_is_cuda_fused(&self) -> bool {
        #[cfg(feature = "cuda")]
        return matches!(self.backend(), InferBackend::CudaFused);
        #[cfg(not(feature = "cuda"))]
        false
    }

    /// The slice asked for, or the default for the backend.
    pub fn slice(&self) -> usize {
        self.slice.unwrap_or(match self.backend() {
            InferBackend::Fused => cosmicai_engine::redshift_model::CPU_SLICE,
            #[cfg(feature = "cuda")]
            InferBackend::Cuda | InferBackend::CudaFused => 0,
            _ => 16,
        })
    }
}

/// (seconds for the timed batches, seconds for the warm-up batch, objects timed)
/// on the backend `args` names.
pub fn measure(args: &InferArgs) -> Result<(f64, f64, usize)> {
    let slice = args.slice();
    #[cfg(feature = "cuda")]
    let cuda = matches!(args.backend(), InferBackend::Cuda | InferBackend::CudaFused);
    #[cfg(not(feature = "cuda"))]
    let cuda = false;
    let fused_bf16 = matches!(args.backend(), InferBackend::Fused)
        && matches!(args.precision, PrecisionArg::Bf16);
    if !cuda && !fused_bf16 && !matches!(args.precision, PrecisionArg::Fp32) {
        anyhow::bail!(
            "--precision {}: on the CPU, bf16 runs on --backend fused only and f16 not at all; f16 runs on --backend cuda",
            cosmicai_shared::run::Precision::from(args.precision).name()
        );
    }
    match args.backend() {
        InferBackend::Fused => time_fused(args, slice),
        InferBackend::Ndarray => time::<burn::backend::NdArray<f32>>(args, slice),
        InferBackend::Flex => time::<burn::backend::Flex>(args, slice),
        #[cfg(feature = "cuda")]
        InferBackend::Cuda => {
            use burn::backend::Cuda;
            use burn::tensor::{bf16, f16};
            if let Some(why) = cosmicai_engine::system::cuda_unavailable() {
                anyhow::bail!("--backend cuda: {why}");
            }
            match args.precision {
                PrecisionArg::Fp32 => time::<Cuda<f32>>(args, slice),
                PrecisionArg::Bf16 => time::<Cuda<bf16>>(args, slice),
                PrecisionArg::F16 => time::<Cuda<f16>>(args, slice),
            }
        }
        #[cfg(feature = "cuda")]
        InferBackend::CudaFused => time_cuda_fused(args),
    }
}

/// The floating-point operations of one AstroMAE object, counted on its layers.
fn astromae_flops_per_object() -> Result<f64> {
    let model = AstroMaeConfig::new().init::<burn::backend::NdArray<f32>>(&Default::default());
    Ok(cosmicai_model::astromae::fused::FusedAstroMae::new(&model)?.flops_per_object())
}

/// (seconds for the timed batches, seconds for the warm-up batch, objects timed).
pub fn time<B: Backend>(args: &InferArgs, slice: usize) -> Result<(f64, f64, usize)> {
    let device = B::Device::default();
    B::seed(&device, 0);
    let b = args.batch_size;
    let magnitudes = Tensor::<B, 2>::random([b, 5], Distribution::Normal(18.0, 1.0), &device);
    let run: Box<dyn Fn() -> Vec<f32>> = match args.model {
        ModelName::Astromae => {
            let model = AstroMaeConfig::new().init::<B>(&device);
            let images =
                Tensor::<B, 4>::random([b, 5, 32, 32], Distribution::Normal(0.0, 1.0), &device);
            Box::new(move || {
                let z = if slice == 0 {
                    model.forward(images.clone(), magnitudes.clone())
                } else {
                    model.forward_sliced(images.clone(), magnitudes.clone(), slice)
                };
                z.into_data().convert::<f32>().to_vec().unwrap_or_default()
            })
        }
        ModelName::Photoz => {
            let weights = cosmicai_model::weights::Weights::from_bytes(
                "shipped",
                crate::models::SHIPPED_PHOTOZ,
            )?;
            let model = PhotoZ::<B>::from_weights(&weights, &device)?;
            Box::new(move || {
                model
                    .predict(magnitudes.clone())
                    .redshift
                    .into_data()
                    .convert::<f32>()
                    .to_vec()
                    .unwrap_or_default()
            })
        }
    };
    let start = Instant::now();
    run();
    let first = start.elapsed().as_secs_f64();
    let batches = args.samples.div_ceil(b).max(1);
    let start = Instant::now();
    for _ in 0..batches {
        std::hint::black_box(run());
    }
    Ok((start.elapsed().as_secs_f64(), first, batches * b))
}

/// The random AstroMAE [`time`] builds, as the fused path holds it, and a
/// batch of its random inputs (images, magnitudes), as flat values.
fn fused_model_and_batch(
    args: &InferArgs,
) -> Result<(
    cosmicai_model::astromae::fused::FusedAstroMae,
    Vec<f32>,
    Vec<f32>,
)> {
    type B = burn::backend::NdArray<f32>;
    let device = Default::default();
    B::seed(&device, 0);
    let b = args.batch_size;
    let magnitudes = Tensor::<B, 2>::random([b, 5], Distribution::Normal(18.0, 1.0), &device);
    let model = AstroMaeConfig::new().init::<B>(&device);
    let images = Tensor::<B, 4>::random([b, 5, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    // A rank keeps only the fused copy: burn's is dropped on return.
    let fused = cosmicai_model::astromae::fused::FusedAstroMae::new(&model)?;
    let data = |t: TensorData| t.into_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"));
    Ok((
        fused,
        data(images.into_data())?,
        data(magnitudes.into_data())?,
    ))
}

/// (seconds for the timed batches, seconds for the warm-up batch, objects
/// timed) of `run`, one batch of `args.batch_size` a call.
fn time_batches<T>(
    args: &InferArgs,
    run: impl Fn() -> Result<T, cosmicai_model::astromae::fused::FusedError>,
) -> Result<(f64, f64, usize)> {
    let start = Instant::now();
    run()?;
    let first = start.elapsed().as_secs_f64();
    let batches = args.samples.div_ceil(args.batch_size).max(1);
    let start = Instant::now();
    for _ in 0..batches {
        std::hint::black_box(run()?);
    }
    Ok((
        start.elapsed().as_secs_f64(),
        first,
        batches * args.batch_size,
    ))
}

/// [`time`] for AstroMAE on the fused CPU path, from the same random model and inputs.
fn time_fused(args: &InferArgs, slice: usize) -> Result<(f64, f64, usize)> {
    if !matches!(args.model, ModelName::Astromae) {
        anyhow::bail!("--backend fused runs AstroMAE only; PhotoZ runs on ndarray or flex");
    }
    let (mut fused, images, magnitudes) = fused_model_and_batch(args)?;
    if matches!(args.precision, PrecisionArg::Bf16) {
        fused = fused.with_bf16_products();
    }
    let b = args.batch_size;
    let slice = if slice == 0 { b } else { slice };
    time_batches(args, || {
        fused.forward(&images, &magnitudes, b, [32, 32], slice)
    })
}

/// [`time`] for AstroMAE on the GPU through the fused path's schedule
/// (`astromae::fused::device::cuda`), from the same random model and inputs.
/// Each batch's images go up and its redshifts come back, as in a run.
#[cfg(feature = "cuda")]
fn time_cuda_fused(args: &InferArgs) -> Result<(f64, f64, usize)> {
    use cosmicai_model::astromae::fused::device::{OnDevice, cuda::CudaKernels, ledger::Footprint};
    if !matches!(args.model, ModelName::Astromae) || matches!(args.precision, PrecisionArg::F16) {
        anyhow::bail!("--backend cuda-fused runs AstroMAE in fp32 or bf16");
    }
    let (fused, images, magnitudes) = fused_model_and_batch(args)?;
    let bf16 = matches!(args.precision, PrecisionArg::Bf16);
    let footprint = Footprint::of(&fused, bf16, [32, 32])?;
    let mut kernels = CudaKernels::new(0)?;
    if args.tf32 {
        kernels = kernels.with_tf32()?;
    }
    let gpu = if bf16 {
        OnDevice::with_bf16_products(&fused, kernels)?
    } else {
        OnDevice::new(&fused, kernels)?
    };
    drop(fused);
    // A batch the GPU's free memory cannot hold goes through in parts (a tenth
    // left for cuBLAS's workspace and the allocator).
    let (free, _) = gpu.kernels().memory()?;
    let part = footprint.objects_within(free / 10 * 9);
    let b = args.batch_size;
    if part < b {
        crate::say!(
            "a batch of {b} takes {:.0} MB on the GPU, {:.0} MB free: in parts of {part}",
            footprint.peak(b) as f64 / 1e6,
            free as f64 / 1e6
        );
    }
    time_batches(args, || {
        gpu.forward_in_parts(&images, &magnitudes, b, [32, 32], part)
    })
}

/// Slices already keep every core busy; OpenBLAS threads of its own inside each
/// slice's products would fight them (measured: 82 samples/s instead of 130).
#[cfg(feature = "openblas")]
fn openblas_threads(threads: usize) {
    unsafe extern "C" {
        fn openblas_set_num_threads(threads: std::ffi::c_int);
    }
    // SAFETY: OpenBLAS's documented setter, called before any product runs.
    unsafe { openblas_set_num_threads(threads.min(i32::MAX as usize) as std::ffi::c_int) }
}
