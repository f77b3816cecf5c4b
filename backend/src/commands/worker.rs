//! `cosmicai worker`: one rank of a run, as its own process (started by the
//! local executor, like a Lambda invocation). Speaks the executor's stdout protocol.

use crate::models::{Cpu, load_photoz};
use anyhow::{Context, Result};
use clap::Args;
use cosmicai_engine::executor::WorkerMessage;
use cosmicai_engine::pipeline::{Payload, RankEvent, infer_rank, payload_key};
use cosmicai_engine::store::{LocalStore, ObjectStore};
use std::path::{Path, PathBuf};

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
    let weights = payload.request.model.strip_prefix("photoz:").map(Path::new);
    let model = load_photoz(weights)?;
    say(&WorkerMessage::Ready);
    if let Some(ms) = std::env::var("COSMICAI_WORKER_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut last = 0;
    let result = infer_rank::<Cpu>(
        &store,
        &payload,
        args.rank,
        &model,
        &Default::default(),
        cosmicai_engine::system::system_info(),
        |RankEvent::Objects(n)| {
            // A line per few thousand objects is plenty for a progress bar.
            if n >= last + 4096 {
                last = n;
                say(&WorkerMessage::Objects { objects: n });
            }
        },
    )?;
    say(&WorkerMessage::Done {
        objects: result.objects,
        throughput_bps: result.throughput_bps,
    });
    Ok(())
}
