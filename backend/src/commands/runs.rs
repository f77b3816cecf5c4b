//! `cosmicai runs`: the run history of a data directory.

use crate::registry::Registry;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Examples:\n  cosmicai runs --data data/demo/partitions --json\n  \
    cosmicai runs --data data/demo/partitions --follow run-1764655200-4242-0\n\n\
    --follow picks up an AWS run whose launcher stopped (a closed terminal, a lost\n\
    connection): it follows the execution to its end, copies the results back and\n\
    closes the run's row, as if it had been followed all along."
)]
pub struct RunsArgs {
    /// The data directory the runs used.
    #[arg(long)]
    pub data: PathBuf,
    /// Follow this AWS run again, to its end.
    #[arg(long, value_name = "RUN_ID")]
    pub follow: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RunsArgs) -> Result<()> {
    if let Some(id) = &args.follow {
        let control = crate::coordinator::RunControl {
            quiet: args.json,
            ..Default::default()
        };
        let summary = crate::coordinator::reattach(&args.data, id, control, &mut |_| {})?;
        return crate::output::emit(&(serde_json::to_string(&summary)? + "\n"));
    }
    let runs = Registry::open(&args.data.join("cosmicai.sqlite"))?.list()?;
    if args.json {
        return crate::output::emit(&(serde_json::to_string(&runs)? + "\n"));
    }
    let mut out = String::new();
    crate::line!(
        out,
        "{:<24} {:<12} {:>5} {:>6} {:>8} {:>10} {:>12}  result_path",
        "run",
        "status",
        "world",
        "batch",
        "objects",
        "duration_s",
        "cost_usd"
    );
    for r in &runs {
        crate::line!(
            out,
            "{:<24} {:<12} {:>5} {:>6} {:>8} {:>10} {:>12}  {}",
            r.id,
            r.status.name(),
            r.world_size,
            r.batch_size,
            r.objects.map_or("-".into(), |n| n.to_string()),
            r.duration_s.map_or("-".into(), |d| format!("{d:.2}")),
            r.cost_usd.map_or("-".into(), |c| format!("{c:.6}")),
            r.result_path
        );
    }
    crate::output::emit(&out)
}
