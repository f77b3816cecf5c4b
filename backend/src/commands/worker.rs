//! `cosmicai worker`: one rank of a run, as its own process (started by the
//! local executor, like a Lambda invocation). Speaks the executor's stdout protocol.

use crate::models::Cpu;
use anyhow::{Context, Result};
use clap::Args;
use cosmicai_engine::executor::WorkerMessage;
use cosmicai_engine::pipeline::{Payload, RankEvent, infer_rank, payload_key};
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::{LocalStore, ObjectStore};
use cosmicai_shared::run::Device;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Started by `cosmicai run`, not by hand:\n  \
    cosmicai worker --store data --result-path results/run-1 --rank 0\n\n\
    COSMICAI_WORKER_PAUSE_MS=N makes the worker wait N ms after loading the model\n\
    (to watch a run in class, or to kill a worker mid-run in tests).")]
pub struct WorkerArgs {
    /// Root of the local store.
    #[arg(long)]
    pub store: PathBuf,
    /// The run's result path (holds payload.json).
    #[arg(long)]
    pub result_path: String,
    #[arg(long)]
    pub rank: usize,
}

fn say(message: &WorkerMessage) {
    if let Ok(line) = serde_json::to_string(message) {
        println!("{line}");
    }
}

pub fn run(args: WorkerArgs) -> Result<()> {
    let store = LocalStore::new(&args.store);
    let bytes = store.get(&payload_key(&args.result_path))?;
    let payload: Payload = serde_json::from_slice(&bytes).context("reading payload.json")?;
    let (rank, device) = (args.rank, &Default::default());
    match payload.request.device {
        Device::Cpu => run_on::<Cpu>(&store, &payload, rank, device, Placement::Cpu),
        // AstroMAE in fp32 or bf16 with COSMICAI_CUDA_KERNELS=fused: the fused schedule on
        // cuBLAS, its weights read as for the CPU.
        #[cfg(feature = "cuda")]
        Device::Cuda
            if cosmicai_engine::gpu_astromae::takes(
                &payload.request.model_spec().map_err(anyhow::Error::msg)?,
                payload.request.precision,
            ) =>
        {
            run_on::<Cpu>(&store, &payload, rank, device, Placement::FusedGpu)
        }
        #[cfg(feature = "cuda")]
        Device::Cuda => {
            use burn::backend::Cuda;
            use burn::tensor::{bf16, f16};
            use cosmicai_shared::run::Precision;
            let (device, on) = (&Default::default(), Placement::Burn);
            match payload.request.precision {
                Precision::Fp32 => run_on::<Cuda<f32>>(&store, &payload, rank, device, on),
                Precision::Bf16 => run_on::<Cuda<bf16>>(&store, &payload, rank, device, on),
                Precision::F16 => run_on::<Cuda<f16>>(&store, &payload, rank, device, on),
            }
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => anyhow::bail!("device cuda: this cosmicai was built without CUDA"),
    }
}

/// Where a rank's model runs.
#[derive(Clone, Copy)]
enum Placement {
    /// The CPU's fused path (AstroMAE) or burn's CPU backend (PhotoZ).
    Cpu,
    /// AstroMAE's fused schedule on the GPU.
    #[cfg(feature = "cuda")]
    FusedGpu,
    /// Burn's backend `B`, whole batches on its device.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Burn,
}

fn load<B: burn::prelude::Backend>(
    payload: &Payload,
    device: &B::Device,
    on: Placement,
) -> Result<RedshiftModel<B>, String> {
    let spec = payload.request.model_spec()?;
    let precision = payload.request.precision;
    match on {
        Placement::Cpu => RedshiftModel::load(&spec, device, true)?.in_precision(precision, true),
        #[cfg(feature = "cuda")]
        Placement::FusedGpu => RedshiftModel::load(&spec, device, true)?.on_gpu(precision),
        Placement::Burn => {
            RedshiftModel::load(&spec, device, false)?.in_precision(precision, false)
        }
    }
}

fn run_on<B: burn::prelude::Backend>(
    store: &LocalStore,
    payload: &Payload,
    rank: usize,
    device: &B::Device,
    on: Placement,
) -> Result<()>
where
    cosmicai_model::astromae::AstroMae<B>: Sync,
{
    let model = load::<B>(payload, device, on).map_err(anyhow::Error::msg)?;
    say(&WorkerMessage::Ready);
    if let Some(ms) = std::env::var("COSMICAI_WORKER_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut last = 0;
    let system = cosmicai_engine::system::system_info();
    let result = infer_rank::<B>(store, payload, rank, &model, device, system, |event| {
        // The first batch, then a line per few thousand objects: plenty for a progress bar.
        if let RankEvent::Objects(n) = event
            && (last == 0 || n >= last + 4096)
        {
            last = n;
            say(&WorkerMessage::Objects { objects: n });
        }
        Ok(())
    })?;
    say(&WorkerMessage::Done {
        objects: result.objects,
        throughput_bps: result.throughput_bps,
        peak_rss_mb: Some(cosmicai_engine::system::peak_rss_mb()),
    });
    Ok(())
}
