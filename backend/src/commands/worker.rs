//! `cosmicai worker`: one rank of a run, as its own process (started by the
//! local executor, like a Lambda invocation). Speaks the executor's stdout protocol.

use anyhow::Result;
use clap::Args;
use cosmicai_engine::executor::WorkerMessage;
use cosmicai_engine::pipeline::{
    Payload, PayloadOf, RankEvent, Stores, infer_rank, payload_key, read_payload,
};
use cosmicai_engine::placement::{OnBackend, Placement};
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::{LocalStore, ObjectStore};
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
    // A coordinator gone (its pipe closed) is no panic: the worker ends with it.
    if let Ok(line) = serde_json::to_string(message) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

pub fn run(args: WorkerArgs) -> Result<()> {
    let store = LocalStore::new(&args.store);
    let key = payload_key(&args.result_path);
    let payload = match read_payload(&store, &args.result_path, None)? {
        PayloadOf::Its(payload) => *payload,
        PayloadOf::Missing => anyhow::bail!("{key}: not in {}", store.describe()),
        PayloadOf::Unreadable(e) | PayloadOf::OtherRun(e) => anyhow::bail!("{key}: {e}"),
    };
    let placement = Placement::of(&payload.request).map_err(anyhow::Error::msg)?;
    placement.run(Rank {
        store: &store,
        payload: &payload,
        rank: args.rank,
    })
}

/// This worker's rank, to run on the backend its placement names.
struct Rank<'a> {
    store: &'a LocalStore,
    payload: &'a Payload,
    rank: usize,
}

impl OnBackend for Rank<'_> {
    type Output = Result<()>;
    fn on<B: burn::prelude::Backend>(self, placement: Placement) -> Result<()>
    where
        cosmicai_model::astromae::AstroMae<B>: Sync,
    {
        let device = Default::default();
        let request = &self.payload.request;
        let model = request
            .model_spec()
            .and_then(|spec| RedshiftModel::<B>::load(&spec, &device, placement.fused()))
            .and_then(|model| placement.finish(model))
            .map_err(anyhow::Error::msg)?;
        run_on::<B>(self.store, self.payload, self.rank, &device, &model)
    }
}

fn run_on<B: burn::prelude::Backend>(
    store: &LocalStore,
    payload: &Payload,
    rank: usize,
    device: &B::Device,
    model: &RedshiftModel<B>,
) -> Result<()>
where
    cosmicai_model::astromae::AstroMae<B>: Sync,
{
    say(&WorkerMessage::Ready);
    if let Some(ms) = std::env::var("COSMICAI_WORKER_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut last = 0;
    let system = cosmicai_engine::system::system_info();
    let result = infer_rank::<B>(
        Stores::one(store),
        payload,
        rank,
        model,
        device,
        system,
        |event| {
            // The first batch, then a line per few thousand objects: plenty for a progress bar.
            if let RankEvent::Objects(n) = event
                && (last == 0 || n >= last + 4096)
            {
                last = n;
                say(&WorkerMessage::Objects { objects: n });
            }
            Ok(())
        },
    )?;
    say(&WorkerMessage::Done {
        objects: result.objects,
        throughput_bps: result.throughput_bps,
        peak_rss_mb: Some(cosmicai_engine::system::peak_rss_mb()),
    });
    Ok(())
}
