//! `cosmicai bench device-memory`: the GPU memory AstroMAE's device schedule
//! (`--backend cuda-fused`) takes at each batch size, from a dry run on any
//! machine: no GPU, no CUDA, and no compute (`astromae::fused::device::ledger`).
//! Each batch size is also run dry at its full size, so every step's reach and
//! cuBLAS's 32-bit sizes are checked there.

use super::super::run::PrecisionArg;
use anyhow::Result;
use clap::Args;
use cosmicai_model::astromae::AstroMaeConfig;
use cosmicai_model::astromae::fused::FusedAstroMae;
use cosmicai_model::astromae::fused::device::ledger::Footprint;
use serde::Serialize;

/// The largest batch and image the dry run takes (its inputs are zero pages,
/// never written, but they are still allocated).
const MAX_BATCH: usize = 65_536;
const MAX_IMAGE: usize = 64;

#[derive(Args)]
pub struct DeviceMemoryArgs {
    /// Batch sizes to report (repeat the flag).
    #[arg(long = "batch-size", default_values_t = [512, 4096])]
    pub batch_sizes: Vec<usize>,
    /// fp32, or bf16 transformer products (their weights held in bf16).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// Side of the square images uploaded (the model reads their centre 32x32).
    #[arg(long, default_value_t = 32)]
    pub image: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct DeviceMemoryFigures {
    batch_size: usize,
    precision: &'static str,
    image: usize,
    /// Weights and constants, held while the model is.
    weights_mb: f64,
    /// What each object of a batch adds at the schedule's fullest moment.
    per_object_kb: f64,
    /// The schedule's buffers at their fullest, weights included (not counted:
    /// the CUDA context, cuBLAS's workspace, the allocator's rounding).
    peak_mb: f64,
    /// Kernel launches, products included, per batch.
    launches: usize,
}

pub fn bench_device_memory(args: DeviceMemoryArgs) -> Result<()> {
    let bf16 = match args.precision {
        PrecisionArg::Fp32 => false,
        PrecisionArg::Bf16 => true,
        PrecisionArg::F16 => anyhow::bail!("--precision: the device schedule runs fp32 or bf16"),
    };
    if !(32..=MAX_IMAGE).contains(&args.image) {
        anyhow::bail!("--image {}: must be 32 to {MAX_IMAGE}", args.image);
    }
    if let Some(b) = args.batch_sizes.iter().find(|&&b| b == 0 || b > MAX_BATCH) {
        anyhow::bail!("--batch-size {b}: must be 1 to {MAX_BATCH}");
    }
    // Random weights of AstroMAE's shape (CAI's checkpoints hold this shape;
    // memory does not depend on the values).
    let device = Default::default();
    let model = AstroMaeConfig::new().init::<burn::backend::NdArray<f32>>(&device);
    let fused = FusedAstroMae::new(&model)?;
    drop(model);
    let image = [args.image, args.image];
    let footprint = Footprint::of(&fused, bf16, image)?;
    let mb = |bytes: usize| bytes as f64 / 1e6;
    for &batch_size in &args.batch_sizes {
        let (peak, launches) = Footprint::dry_run(&fused, bf16, image, batch_size)?;
        anyhow::ensure!(
            peak == footprint.peak(batch_size) && launches == footprint.launches,
            "the dry run at {batch_size} objects held {peak} bytes in {launches} launches, \
             not the {} bytes in {} that one object's run predicts",
            footprint.peak(batch_size),
            footprint.launches
        );
        let figures = DeviceMemoryFigures {
            batch_size,
            precision: cosmicai_shared::run::Precision::from(args.precision).name(),
            image: args.image,
            weights_mb: mb(footprint.weights),
            per_object_kb: footprint.per_object as f64 / 1e3,
            peak_mb: mb(peak),
            launches,
        };
        let text = if args.json {
            serde_json::to_string(&figures)?
        } else {
            format!(
                "AstroMAE on the device schedule, {} products, {}x{} images, batch {}: {:.1} MB at its fullest ({:.1} MB of weights + {:.1} kB an object), {} launches a batch",
                figures.precision,
                args.image,
                args.image,
                batch_size,
                figures.peak_mb,
                figures.weights_mb,
                figures.per_object_kb,
                launches
            )
        };
        crate::output::emit(&(text + "\n"))?;
    }
    Ok(())
}
