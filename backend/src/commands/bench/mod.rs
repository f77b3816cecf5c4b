//! `cosmicai bench`: figures for the speed targets, printed, never asserted.

mod copy;
mod device_memory;
mod fetch;
mod gemm;
mod infer;
mod pipeline;
mod summarize;
mod synth;
mod upload;

pub use infer::{InferArgs, ModelName, measure};

use anyhow::Result;
use clap::Subcommand;
use pipeline::PipelineArgs;
use synth::SynthBenchArgs;

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

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Infer(args) => infer::bench_infer(args),
        BenchCommand::Pipeline(args) => pipeline::bench_pipeline(args),
        BenchCommand::Synth(args) => synth::bench_synth(args),
        BenchCommand::Summarize(args) => summarize::bench_summarize(args),
        BenchCommand::Upload(args) => upload::bench_upload(args),
        BenchCommand::Copy(args) => copy::bench_copy(args),
        BenchCommand::Fetch(args) => fetch::bench_fetch(args),
        BenchCommand::Gemm(args) => gemm::bench_gemm(args),
        BenchCommand::DeviceMemory(args) => device_memory::bench_device_memory(args),
    }
}
