//! `cosmicai bench`: figures for the speed targets, printed, never asserted.

mod copy;
mod device_memory;
mod fetch;
mod gemm;
mod summarize;
mod upload;

use super::run::PrecisionArg;
use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use clap::{Args, Subcommand, ValueEnum};
use cosmicai_model::astromae::AstroMaeConfig;
use cosmicai_model::photoz::PhotoZ;
use serde::Serialize;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The local pipeline: orchestration overhead, scaling from 1 to 2 workers, cold start.
    #[command(
        after_help = "Example:\n  cosmicai bench pipeline --data data/demo/partitions --copies 20 --json\n\n\
        Copies the partitions --copies times into a scratch dataset, then measures pure\n\
        in-process inference, a run at world size 1 and one at world size 2."
    )]
    Pipeline(PipelineArgs),
    /// Inference throughput with random inputs (and random AstroMAE weights).
    #[command(
        after_help = "Example (compare with ../shared/peers/astromae_torch.py --batch 512 --threads 2):\n  \
        cosmicai bench infer --model astromae --batch-size 512 --samples 2048 --threads 2 --json"
    )]
    Infer(InferArgs),
    /// The matrix-product peak of this machine (fp32, the `gemm` crate, one product per thread).
    #[command(
        after_help = "Example (the ceiling for bench infer's gflops_per_s):\n  \
        cosmicai bench gemm --size 1024 --threads 2 --json"
    )]
    Gemm(gemm::GemmArgs),
    /// AstroMAE's GPU memory on the device schedule (`--backend cuda-fused`), from a dry run here.
    #[command(
        after_help = "Example:\n  cosmicai bench device-memory --batch-size 512 --batch-size 4096 --precision bf16\n\n\
        Runs the schedule on a device that computes nothing: it counts the bytes its buffers\n\
        hold and checks every step's reach at each batch size. No GPU or CUDA needed."
    )]
    DeviceMemory(device_memory::DeviceMemoryArgs),
    /// The renderer's speed: synthetic cutouts per second per core.
    #[command(
        after_help = "Example:\n  cosmicai bench synth --size 32 --objects 20000 --threads 1\n\n\
        Renders catalog objects into memory (nothing written) with the bundled calibration."
    )]
    Synth(SynthBenchArgs),
    /// The Summarize stage's time and peak memory at a run's size (no inference).
    #[command(
        after_help = "Example (CAI's 1,000 GB run: about 26 million objects):\n  \
        cosmicai bench summarize --objects 26000000 --ranks 10000\n\n\
        Writes rank results and predictions files into a scratch store, then summarizes them."
    )]
    Summarize(summarize::SummarizeBenchArgs),
    /// The AWS launcher's partition upload: speed, peak memory, and the rerun that finds it all there.
    #[command(
        after_help = "Example (a local S3 server: tools/bench_upload.sh starts moto and runs this):\n  \
        cosmicai bench upload --endpoint http://127.0.0.1:5000 --bucket bench --files 8 --mib 100\n\n\
        Writes the files into a scratch folder, uploads them as a run's partitions, uploads\n\
        them again (nothing is sent: the ETags match), then deletes them from the bucket."
    )]
    Upload(upload::UploadBenchArgs),
    /// Writing a run's results here as the AWS follower copies them back: a sync each, or one for all.
    #[command(
        after_help = "Example (a run of 10,000 ranks leaves over 30,000 objects):\n  \
        cosmicai bench copy --objects 30000 --bytes 400"
    )]
    Copy(copy::CopyBenchArgs),
    /// Reading many small objects with GETs in flight (Summarize, the copy back), from a store with S3-like waits.
    #[command(after_help = "Example (most GETs at 20 ms, one in 50 at 300 ms):\n  \
        cosmicai bench fetch --objects 4000 --parallel 32 --median-ms 20 --slow-every 50 --slow-ms 300")]
    Fetch(fetch::FetchBenchArgs),
}

#[derive(Args)]
pub struct SynthBenchArgs {
    #[arg(long, default_value = "assets/catalogs/skyserver_dr14.csv.gz")]
    pub catalog: std::path::PathBuf,
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    #[arg(long, default_value_t = 20_000)]
    pub objects: usize,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long)]
    pub json: bool,
}

fn bench_synth(args: SynthBenchArgs) -> Result<()> {
    use cosmicai_engine::imagery::calibrate::Calibration;
    use cosmicai_engine::imagery::synth::{Renderer, Scratch};
    use rayon::prelude::*;
    if args.threads == 0 || args.objects == 0 || !(8..=512).contains(&args.size) {
        anyhow::bail!("--threads and --objects must be at least 1 and --size 8 to 512");
    }
    let catalog: Vec<_> =
        cosmicai_engine::catalog::read_catalogs(std::slice::from_ref(&args.catalog), |_, _| {})?
            .into_iter()
            .flat_map(|c| c.objects)
            .collect();
    anyhow::ensure!(
        !catalog.is_empty(),
        "{} holds no objects",
        args.catalog.display()
    );
    let renderer = Renderer::new(&Calibration::bundled(), args.size, 0);
    let per_object = 5 * args.size * args.size;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let mut pixels = vec![0.0f32; 4096 * per_object];
    let start = Instant::now();
    let mut done = 0;
    while done < args.objects {
        let n = 4096.min(args.objects - done);
        pool.install(|| {
            pixels[..n * per_object]
                .par_chunks_mut(per_object)
                .enumerate()
                .for_each_init(Scratch::default, |scratch, (k, out)| {
                    let i = done + k;
                    renderer.render(i as u64, &catalog[i % catalog.len()], scratch, out)
                })
        });
        done += n;
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(&pixels);
    let per_s = args.objects as f64 / seconds;
    let figures = serde_json::json!({
        "size": args.size,
        "objects": args.objects,
        "threads": args.threads,
        "seconds": seconds,
        "cutouts_per_s": per_s,
        "cutouts_per_s_per_core": per_s / args.threads as f64,
    });
    let text = if args.json {
        figures.to_string()
    } else {
        format!(
            "{} synthetic {}x{} cutouts on {} threads in {:.2} s: {:.0} cutouts/s ({:.0} per core)",
            args.objects,
            args.size,
            args.size,
            args.threads,
            seconds,
            per_s,
            per_s / args.threads as f64
        )
    };
    crate::output::emit(&(text + "\n"))
}

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

#[derive(Args)]
pub struct PipelineArgs {
    /// A dataset directory of partitions.
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// Copies of its partitions in the scratch dataset (more objects, steadier figures).
    #[arg(long, default_value_t = 20)]
    pub copies: usize,
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct PipelineFigures {
    objects: usize,
    files: usize,
    pure_inference_s: f64,
    world_1_s: f64,
    overhead_pct: f64,
    world_2_s: f64,
    scaling_efficiency_pct: f64,
    cold_start_ms: f64,
    init_ms: f64,
}

fn bench_pipeline(args: PipelineArgs) -> Result<()> {
    use super::run::{DeviceArg, RunArgs, execute_run};
    use cosmicai_engine::partition::PartitionFile;
    let inputs = cosmicai_engine::dataset::list_partitions(&args.data)?;
    let scratch = tempfile::tempdir()?;
    let mut files = Vec::new();
    for copy in 0..args.copies.max(1) {
        for input in &inputs {
            let name = format!(
                "copy{copy:03}-{}",
                input
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            );
            let path = scratch.path().join(name);
            std::fs::copy(input, &path)?;
            files.push(path);
        }
    }
    // Pure inference: the model's compute alone, in this process, on all cores.
    let model = crate::models::load_photoz(None)?;
    let (mut pure, mut objects) = (0.0, 0);
    for f in &files {
        let file = PartitionFile::open(f)?;
        let start = Instant::now();
        objects += cosmicai_engine::predict::predict_photoz::<crate::models::Cpu>(
            &model,
            &file.catalog().magnitudes,
            args.batch_size,
            &Default::default(),
        )
        .len();
        pure += start.elapsed().as_secs_f64();
    }
    let run = |world_size| {
        let run_args = RunArgs::new(
            scratch.path().to_path_buf(),
            world_size,
            args.batch_size,
            DeviceArg::Cpu,
        );
        execute_run(&run_args, true, false)
    };
    let one = run(1)?;
    let two = run(2)?;
    let mean = |f: fn(&cosmicai_shared::run::RankMeasure) -> f64| {
        let all: Vec<f64> = one.per_rank.iter().chain(&two.per_rank).map(f).collect();
        all.iter().sum::<f64>() / all.len().max(1) as f64
    };
    let figures = PipelineFigures {
        objects,
        files: files.len(),
        pure_inference_s: pure,
        world_1_s: one.duration_s,
        overhead_pct: 100.0 * (one.duration_s - pure) / pure,
        world_2_s: two.duration_s,
        scaling_efficiency_pct: 100.0 * one.duration_s / (2.0 * two.duration_s),
        cold_start_ms: 1000.0 * mean(|m| m.first_batch_s),
        init_ms: 1000.0 * mean(|m| m.init_duration_s),
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "{} objects in {} files: pure inference {:.2} s; world 1 {:.2} s (overhead {:.1}%); world 2 {:.2} s (scaling efficiency {:.1}%); cold start {:.1} ms (model ready {:.1} ms)",
            figures.objects,
            figures.files,
            figures.pure_inference_s,
            figures.world_1_s,
            figures.overhead_pct,
            figures.world_2_s,
            figures.scaling_efficiency_pct,
            figures.cold_start_ms,
            figures.init_ms
        )
    };
    crate::output::emit(&(text + "\n"))
}

pub fn run(command: BenchCommand) -> Result<()> {
    let args = match command {
        BenchCommand::Infer(args) => args,
        BenchCommand::Pipeline(args) => return bench_pipeline(args),
        BenchCommand::Synth(args) => return bench_synth(args),
        BenchCommand::Summarize(args) => return summarize::bench_summarize(args),
        BenchCommand::Upload(args) => return upload::bench_upload(args),
        BenchCommand::Copy(args) => return copy::bench_copy(args),
        BenchCommand::Fetch(args) => return fetch::bench_fetch(args),
        BenchCommand::Gemm(args) => return gemm::bench_gemm(args),
        BenchCommand::DeviceMemory(args) => return device_memory::bench_device_memory(args),
    };
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
        eprintln!(
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
