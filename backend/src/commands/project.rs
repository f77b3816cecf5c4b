//! `cosmicai project`: what a run of a size not at hand (CAI's 12.6 GB, 100 GB,
//! 1,000 GB) would take and cost on Lambda, from the model's throughput measured
//! here and now, and stated assumptions for the rest. Every figure it prints is
//! marked measured, assumed or projected.

use super::bench::{InferArgs, ModelName, measure};
use anyhow::{Result, bail};
use clap::Args;
use cosmicai_engine::projection::{Projection, ProjectionInput, project};
use cosmicai_engine::size::{format_size, parse_size};
use serde::Serialize;

#[derive(Args)]
#[command(
    after_help = "Example (CAI's three published runs, AstroMAE, 1,000 ranks):\n  \
    cosmicai project --size 12.6GB --size 100GB --size 1000GB --model astromae --world-size 1000\n\n\
    Measures the model's objects/s on one core of this machine (random weights, batch 256),\n\
    then plans each size like CAI's initializer: partitions of --partition-size, ceil(files /\n\
    world size) per rank, ranks in waves of --concurrency, priced like real runs."
)]
pub struct ProjectArgs {
    /// Dataset sizes to project (repeatable), e.g. 12.6GB.
    #[arg(long = "size", value_parser = parse_size, required = true)]
    pub sizes: Vec<u64>,
    #[arg(long, value_enum, default_value_t = ModelName::Astromae)]
    pub model: ModelName,
    #[arg(long, default_value_t = 1000)]
    pub world_size: usize,
    /// Ranks at once (Lambda's default account concurrency is 1,000).
    #[arg(long, default_value_t = 1000)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 2048)]
    pub memory_mb: u32,
    /// CAI's partitions are 25 to 100 MB.
    #[arg(long, value_parser = parse_size, default_value = "25MB")]
    pub partition_size: u64,
    /// Assumed S3 to Lambda throughput per stream, MB/s.
    #[arg(long, default_value_t = 50.0)]
    pub s3_mb_per_s: f64,
    /// Assumed wait for a GET's first byte, ms (AWS's S3 performance guide:
    /// "tens of milliseconds" for small requests).
    #[arg(long, default_value_t = cosmicai_engine::pipeline::S3_REQUEST_S * 1000.0)]
    pub s3_request_ms: f64,
    /// Price Lambda as arm64 (Graviton) rather than x86_64.
    #[arg(long)]
    pub arm64: bool,
    /// The number format of the products: bf16 for AstroMAE measures its bf16 CPU
    /// path (AVX-512 BF16 when this CPU has it; a Lambda's CPU may not).
    #[arg(long, value_enum, default_value_t = super::run::PrecisionArg::Fp32)]
    pub precision: super::run::PrecisionArg,
    /// Objects measured for the rate (after one warm-up batch).
    #[arg(long, default_value_t = 512)]
    pub samples: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    dataset_bytes: u64,
    #[serde(flatten)]
    projection: Projection,
}

/// Lambda compute per million objects, at 1,769 MB (one full vCPU: below it the
/// price and the CPU share fall together; above it a one-thread rank gains
/// nothing), for each architecture, beside CAI's published rate.
#[derive(Serialize)]
struct PerObject {
    x86_64_usd_per_million: f64,
    arm64_usd_per_million: f64,
    /// CAI's figure: about 230 objects/s on a 10,240 MB x86 Lambda (not measured here).
    cai_x86_64_usd_per_million: f64,
}

/// CAI's AstroMAE rate on one 10 GB Lambda, from its paper and repository.
const CAI_OBJECTS_PER_S: f64 = 230.0;
const CAI_MEMORY_GB: f64 = 10.0;

fn per_object(rate: f64) -> PerObject {
    use cosmicai_engine::cost::{LAMBDA_GB_S_ARM, LAMBDA_GB_S_X86};
    use cosmicai_engine::projection::MB_PER_VCPU;
    let per_vcpu_s = |price: f64| price * MB_PER_VCPU / 1024.0;
    PerObject {
        x86_64_usd_per_million: per_vcpu_s(LAMBDA_GB_S_X86) / rate.max(1e-9) * 1e6,
        arm64_usd_per_million: per_vcpu_s(LAMBDA_GB_S_ARM) / rate.max(1e-9) * 1e6,
        cai_x86_64_usd_per_million: LAMBDA_GB_S_X86 * CAI_MEMORY_GB / CAI_OBJECTS_PER_S * 1e6,
    }
}

#[derive(Serialize)]
struct Report {
    precision: &'static str,
    /// Measured here: the model's rate on one thread, and its start.
    measured_objects_per_core_s: f64,
    measured_cold_start_s: f64,
    per_object: PerObject,
    input: ProjectionInput,
    rows: Vec<Row>,
}

pub fn run(args: ProjectArgs) -> Result<()> {
    if args.world_size == 0 || args.concurrency == 0 || args.partition_size == 0 {
        bail!("--world-size, --concurrency and --partition-size must be above 0");
    }
    if !(args.s3_request_ms.is_finite() && args.s3_request_ms >= 0.0) {
        bail!(
            "--s3-request-ms must be 0 or more, not {}",
            args.s3_request_ms
        );
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .ok();
    let infer = InferArgs {
        model: args.model,
        batch_size: 256,
        samples: args.samples,
        threads: 1,
        // What a rank runs on the CPU: fused AstroMAE, PhotoZ on ndarray.
        backend: None,
        slice: None,
        precision: args.precision,
        tf32: false,
        json: false,
    };
    let started = std::time::Instant::now();
    let (seconds, first_batch_s, samples) = measure(&infer)?;
    // A rank's start: the model's construction, plus what its first batch took
    // over a steady one (process start and reading weights not included).
    let rate = samples as f64 / seconds.max(1e-9);
    let construction_s = (started.elapsed().as_secs_f64() - seconds - first_batch_s).max(0.0);
    let cold_start_s = construction_s + (first_batch_s - 256.0 / rate).max(0.0);
    let input = ProjectionInput {
        dataset_bytes: 0,
        partition_bytes: args.partition_size,
        bytes_per_object: cosmicai_engine::partition::bytes_per_object(Some((32, 32))) as f64,
        // The shipped PhotoZ reads magnitudes alone.
        reads_cutouts: matches!(args.model, ModelName::Astromae),
        world_size: args.world_size,
        concurrency: args.concurrency,
        memory_mb: args.memory_mb,
        objects_per_vcpu_s: rate,
        cold_start_s,
        s3_bytes_per_s: args.s3_mb_per_s * 1e6,
        s3_request_s: args.s3_request_ms / 1000.0,
        arm64: args.arm64,
    };
    let rows: Vec<Row> = args
        .sizes
        .iter()
        .map(|&bytes| Row {
            dataset_bytes: bytes,
            projection: project(&ProjectionInput {
                dataset_bytes: bytes,
                ..input.clone()
            }),
        })
        .collect();
    if args.json {
        let report = Report {
            precision: cosmicai_shared::run::Precision::from(args.precision).name(),
            measured_objects_per_core_s: rate,
            measured_cold_start_s: cold_start_s,
            per_object: per_object(rate),
            input,
            rows,
        };
        return crate::output::emit(&(serde_json::to_string(&report)? + "\n"));
    }
    let mut out = String::new();
    crate::line!(
        out,
        "measured here: {:?} in {} {rate:.1} objects/s on one core (batch 256), start {cold_start_s:.2} s",
        args.model,
        cosmicai_shared::run::Precision::from(args.precision).name()
    );
    let each = per_object(rate);
    crate::line!(
        out,
        "projected per million objects at 1,769 MB (one vCPU): ${:.3} x86_64, ${:.3} arm64; CAI's ~230 objects/s per 10 GB x86_64 Lambda: ${:.3}",
        each.x86_64_usd_per_million,
        each.arm64_usd_per_million,
        each.cai_x86_64_usd_per_million
    );
    crate::line!(
        out,
        "assumed: {} MB per rank ({:.2} vCPU), S3 {} MB/s and {} ms a GET, {} partitions, {} objects per GB, {} ranks {} at a time, {}",
        args.memory_mb,
        f64::from(args.memory_mb) / cosmicai_engine::projection::MB_PER_VCPU,
        args.s3_mb_per_s,
        args.s3_request_ms,
        format_size(args.partition_size),
        (1e9 / input.bytes_per_object).round(),
        args.world_size,
        args.concurrency,
        if args.arm64 { "arm64" } else { "x86_64" }
    );
    crate::line!(
        out,
        "{:>10} {:>11} {:>10} {:>10} {:>9} {:>7} {:>10} {:>10} {:>21} {:>12}  projected",
        "dataset",
        "objects",
        "partitions",
        "files/rank",
        "rank_s",
        "waves",
        "map_s",
        "cost_usd",
        "sfn_usd express/std",
        "s3_usd/month"
    );
    for row in &rows {
        let p = &row.projection;
        crate::line!(
            out,
            "{:>10} {:>11} {:>10} {:>10} {:>9.1} {:>7} {:>10.1} {:>10.2} {:>10.3}/{:<10.3} {:>12.2}{}",
            format_size(row.dataset_bytes),
            p.objects,
            p.partitions,
            p.files_per_rank,
            p.rank_s,
            p.waves,
            p.map_s,
            p.cost_usd,
            p.cost.step_functions_usd,
            p.step_functions_standard_usd,
            p.cost.storage_usd_month,
            if p.fits_express {
                ""
            } else {
                "  (a rank past the 250 s a rank may be planned at in an Express child: Initialize refuses it; raise --world-size)"
            }
        );
    }
    crate::output::emit(&out)
}
