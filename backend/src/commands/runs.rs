//! `cosmicai runs`: the run history of a data directory.

use crate::registry::Registry;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Examples:\n  cosmicai runs --data data/demo/partitions --json\n  \
    cosmicai runs --data data/demo/partitions --follow run-1764655200-4242-0\n\n\
    cosmicai runs --data data/demo/partitions --predictions run-1764655200-4242-0 --out z.csv\n\n\
    cosmicai runs --data runs-home --adopt arn:aws:states:us-east-1:123456789012:execution:cosmicai:cai-1\n\n\
    --follow on a local run watches it from another terminal (the CLI or the server\n\
    that runs it goes on; ending the watch stops nothing), then prints its summary.\n\
    On an AWS run it picks up a run whose launcher stopped (a closed terminal, a lost\n\
    connection): it follows the execution to its end, copies the results back and\n\
    closes the run's row, as if it had been followed all along. --adopt does the same\n\
    for an execution started elsewhere (CAI's payload through `aws stepfunctions\n\
    start-execution`), recording it here under the execution's name.\n\n\
    --predictions writes a run's predictions as one CSV table, a row per object:\n\
    rank, partition (its key) and row, object_id, the catalog's class and\n\
    redshift, predicted_redshift (with its sigma and outlier probability where\n\
    the model gives them), predicted_class and its probabilities (empty for\n\
    AstroMAE, which predicts none), and synthetic (1 for rendered objects)."
)]
pub struct RunsArgs {
    /// The data directory the runs used.
    #[arg(long)]
    pub data: PathBuf,
    /// Follow this run to its end: a local one that another process runs is
    /// watched (its ranks as its registry records them), an AWS one followed again.
    #[arg(long, value_name = "RUN_ID")]
    pub follow: Option<String>,
    /// Take in this execution of the stack's state machine, started elsewhere,
    /// and follow it to its end (the bucket from --bucket or COSMICAI_AWS_BUCKET).
    #[arg(long, value_name = "EXECUTION_ARN", conflicts_with = "follow")]
    pub adopt: Option<String>,
    /// The stack's bucket, for --adopt [env: COSMICAI_AWS_BUCKET].
    #[arg(long, requires = "adopt")]
    pub bucket: Option<String>,
    /// An S3 + Step Functions endpoint other than AWS, for --adopt [env: COSMICAI_AWS_ENDPOINT].
    #[arg(long, requires = "adopt")]
    pub aws_endpoint: Option<String>,
    /// Write this run's per-object predictions as CSV (to --out, or standard output).
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["follow", "adopt", "json"])]
    pub predictions: Option<String>,
    /// The CSV file for --predictions (written whole, or not at all).
    #[arg(long, value_name = "FILE", requires = "predictions")]
    pub out: Option<PathBuf>,
    /// Replace --out where it exists.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Print the runs as JSON (one array) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RunsArgs) -> Result<()> {
    let control = crate::coordinator::RunControl {
        quiet: args.json,
        ..Default::default()
    };
    if let Some(id) = &args.follow {
        // A local run is watched (its coordinator is another process); an AWS
        // one is followed, and its results copied back, by this one.
        let (_, run, _) = crate::registry::open_run(&args.data, id)?;
        if run.aws.is_none() {
            let summary = crate::coordinator::watch(&args.data, id, args.json)?;
            super::run::print_summary(&summary, args.json)?;
            return super::succeeded(&summary.run_id, summary.status);
        }
        let summary = crate::coordinator::reattach(&args.data, id, control, &mut |_| {})?;
        crate::output::emit(&(serde_json::to_string(&summary)? + "\n"))?;
        return super::succeeded(&summary.run_id, summary.status);
    }
    if let Some(id) = &args.predictions {
        // Another run's export (or any file) is not written over unasked.
        if let Some(out) = args.out.as_ref().filter(|o| o.exists() && !args.force) {
            bail!("--out {} exists; pass --force to replace it", out.display());
        }
        let done = super::predictions::export(&args.data, id, args.out.as_deref())?;
        crate::say!(
            "run {id}: {} objects from {} ranks{}{}",
            done.objects,
            done.ranks,
            args.out
                .as_ref()
                .map_or(String::new(), |o| format!(" written to {}", o.display())),
            if done.ranks_without > 0 {
                format!(
                    " ({} without predictions: failed, not run (yet), planned no file, or unreadable)",
                    cosmicai_shared::counted(done.ranks_without, "rank")
                )
            } else {
                String::new()
            }
        );
        return Ok(());
    }
    if let Some(arn) = &args.adopt {
        let config = crate::aws::AwsConfig::resolve(
            args.bucket.clone(),
            Some(crate::aws::execution_state_machine(arn)?),
            region_of(arn),
            args.aws_endpoint.clone(),
        )?;
        std::fs::create_dir_all(&args.data)
            .with_context(|| format!("--data {}", args.data.display()))?;
        let summary = crate::coordinator::adopt(&args.data, config, arn, control, &mut |_| {})?;
        crate::output::emit(&(serde_json::to_string(&summary)? + "\n"))?;
        return super::succeeded(&summary.run_id, summary.status);
    }
    // Only looked at: a mistyped --data makes no folder and no empty registry.
    let registry = crate::registry::path(&args.data);
    if !args.data.is_dir() {
        anyhow::bail!("--data {}: no such folder", args.data.display());
    }
    let runs = if registry.is_file() {
        Registry::open(&registry)?.list()?
    } else {
        Vec::new()
    };
    if args.json {
        return crate::output::emit(&(serde_json::to_string(&runs)? + "\n"));
    }
    let mut out = String::new();
    let id_width = runs.iter().map(|r| r.id.len()).max().unwrap_or(0).max(3);
    // Which model ran tells PhotoZ runs from AstroMAE ones.
    let model_of = |r: &cosmicai_shared::api::RunInfo| match (&r.model, &r.precision) {
        (Some(model), Some(precision)) => format!("{model} {precision}"),
        (Some(model), None) => model.clone(),
        (None, _) => "-".into(),
    };
    let model_width = runs
        .iter()
        .map(|r| model_of(r).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 48);
    crate::line!(
        out,
        "{:<id_width$} {:<16} {:<12} {:>5} {:>6} {:>8} {:>10} {:>12}  {:<model_width$}  result_path",
        "run",
        "started (UTC)",
        "status",
        "world",
        "batch",
        "objects",
        "duration_s",
        "cost_usd",
        "model"
    );
    for r in &runs {
        crate::line!(
            out,
            "{:<id_width$} {:<16} {:<12} {:>5} {:>6} {:>8} {:>10} {:>12}  {:<model_width$}  {}",
            r.id,
            utc_minute(r.created_at),
            r.status.name(),
            r.world_size,
            r.batch_size,
            r.objects.map_or("-".into(), |n| n.to_string()),
            r.duration_s.map_or("-".into(), |d| format!("{d:.2}")),
            r.cost_usd.map_or("-".into(), |c| format!("{c:.6}")),
            model_of(r),
            r.result_path
        );
        // Why it ended with no summary (a summary's own report says the rest).
        if let Some(error) = &r.error {
            crate::line!(out, "{:id_width$}   why: {}", "", first_line(error, 300));
        }
        if r.resumable && r.status != cosmicai_shared::run::RunStatus::Interrupted {
            let how = match r.on_aws {
                true => {
                    "starts a new execution on its AWS stack for its ranks that left no results"
                }
                false => "runs its ranks that left no results",
            };
            crate::line!(
                out,
                "{:id_width$}   resume: cosmicai run --data {} --resume {} {how}",
                "",
                args.data.display(),
                r.id
            );
        }
    }
    crate::output::emit(&out)
}

/// Unix seconds `secs` as "YYYY-MM-DD HH:MM" in UTC (Hinnant's days-to-civil).
fn utc_minute(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// `text`'s first line, at most `max` characters of it.
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// The region an execution ARN names: where the execution is.
fn region_of(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_read_as_utc_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        // `date -u -d @1796662971`: Mon Dec  7 17:02:51 UTC 2026.
        assert_eq!(utc_minute(1_796_662_971), "2026-12-07 17:02");
        // A leap day, and before 1970.
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minute(-86_400), "1969-12-31 00:00");
    }

    #[test]
    fn an_execution_arn_names_its_state_machine() {
        let arn = "arn:aws:states:eu-west-1:123456789012:execution:cosmicai:cai-1";
        assert_eq!(
            crate::aws::execution_state_machine(arn).unwrap(),
            "arn:aws:states:eu-west-1:123456789012:stateMachine:cosmicai"
        );
        assert_eq!(region_of(arn).as_deref(), Some("eu-west-1"));
        for bad in [
            "arn:aws:states:eu-west-1:123456789012:stateMachine:cosmicai",
            "arn:aws:states:eu-west-1:123456789012:execution:cosmicai",
            "arn:aws:states:eu-west-1:123456789012:execution::x",
            "cai-1",
        ] {
            let e = crate::aws::execution_state_machine(bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("not a Step Functions execution ARN"),
                "{bad}: {e}"
            );
        }
    }
}
