//! A whole run on AWS, recorded in the run registry like a local one.

use super::{Aws, AwsProgress, start_and_follow, upload};
use crate::commands::run::RunControl;
use crate::registry::Registry;
use anyhow::Result;
use cosmicai_engine::executor::ExecutorEvent;
use cosmicai_engine::pipeline::{RunSummary, plan};
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::run::RunRequest;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;

/// Runs `request`, whose `data_prefix` is a folder of the local store at `root`, on
/// AWS as run `run_id`: uploads what the bucket lacks under `s3_prefix`, starts the
/// state machine and follows it; results are copied back under `root`.
pub fn execute_on_aws(
    aws: &Aws,
    root: &Path,
    request: &RunRequest,
    s3_prefix: &str,
    run_id: &str,
    control: RunControl,
    observe: &mut dyn FnMut(&ExecutorEvent),
) -> Result<RunSummary> {
    let local = LocalStore::new(root);
    let local_plan = plan(&local, request, run_id)?;
    let bar = if control.quiet {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(local_plan.files.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30.green/blue}] {pos}/{len} {elapsed}")?
            .progress_chars("=> "),
    );
    bar.set_message(format!("upload to s3://{}/{s3_prefix}", aws.config.bucket));
    let uploaded = upload(
        &local,
        &local_plan,
        &request.data_prefix,
        aws,
        s3_prefix,
        |done, _| bar.set_position(done as u64),
    )?;
    let line = format!(
        "s3://{}/{s3_prefix}: {} partitions uploaded ({} bytes), {} already there",
        aws.config.bucket, uploaded.uploaded, uploaded.bytes, uploaded.already_there
    );
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }

    let remote = RunRequest {
        bucket: aws.config.bucket.clone(),
        data_prefix: s3_prefix.to_string(),
        ..request.clone()
    };
    let registry = Registry::open(&root.join("cosmicai.sqlite"))?;
    registry.start(run_id, &remote)?;
    bar.set_length(request.world_size as u64);
    bar.set_position(0);
    bar.set_message(format!("run {run_id} on AWS"));
    let outcome = start_and_follow(
        aws,
        &remote,
        run_id,
        &local,
        &control.cancel,
        &mut |event| {
            observe(event);
            let recorded = match event {
                ExecutorEvent::Started { rank, attempt } => {
                    registry.rank_update(run_id, *rank, "running", None, *attempt, None)
                }
                ExecutorEvent::Finished(m) => {
                    bar.inc(1);
                    registry.rank_update(run_id, m.rank, "succeeded", Some(m), m.attempts, None)
                }
                ExecutorEvent::Failed {
                    rank,
                    attempt,
                    error,
                    ..
                } => registry.rank_update(run_id, *rank, "failed", None, *attempt, Some(error)),
                _ => Ok(()),
            };
            if let Err(e) = recorded {
                bar.println(format!("registry: {e:#}"));
            }
        },
        &mut |p: &AwsProgress| {
            bar.set_message(format!(
                "run {run_id} on AWS: {} (map items: {} done, {} failed, {} running of {})",
                p.status, p.succeeded, p.failed, p.running, p.total
            ))
        },
    );
    bar.finish_and_clear();
    match outcome {
        Ok(summary) => {
            registry.finish(&summary)?;
            Ok(summary)
        }
        Err(e) => {
            registry.fail(run_id, &format!("{e:#}"))?;
            Err(e)
        }
    }
}
