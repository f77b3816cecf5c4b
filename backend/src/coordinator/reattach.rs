//! Following an AWS run again after its launcher stopped (a closed terminal, a
//! restarted server, a follower that lost contact): the execution goes on, and
//! billing with it, whether or not anyone watches. `cosmicai runs --follow ID`
//! and `serve` at start pick such runs up from the registry.

use super::record::{Recorder, RunControl};
use crate::aws::{Aws, follow};
use crate::registry::{Registry, coordinator_alive};
use anyhow::{Result, bail};
use cosmicai_engine::pipeline::RunSummary;
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::RunStatus;
use std::path::Path;

/// Follows AWS run `run_id` of the registry under `root` to its end: its
/// execution as it is now (it may have ended long ago), then its results copied
/// back and its row closed, as if it had been followed all along.
pub fn reattach(
    root: &Path,
    run_id: &str,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
) -> Result<RunSummary> {
    let registry = Registry::open(&root.join("cosmicai.sqlite"))?;
    let Some(run) = registry.run(run_id)? else {
        bail!("run {run_id}: not in the registry of {}", root.display());
    };
    let Some(aws) = run.aws else {
        bail!("run {run_id} did not run on AWS: only AWS executions can be followed again");
    };
    if run.status == RunStatus::Running
        && coordinator_alive(run.coordinator_pid, run.coordinator_identity.as_deref())
    {
        bail!(
            "run {run_id} is followed by process {} already",
            run.coordinator_pid
        );
    }
    drop(registry);
    let request = run.request;
    let mut recorder = Recorder::new(root, run_id, request.world_size, control, observe)?;
    recorder.resume()?;
    recorder.status(format!("following {} again", aws.execution_arn));
    let outcome = Aws::connect(aws.config).and_then(|client| {
        follow(
            &client,
            &request,
            run_id,
            &aws.execution_arn,
            &LocalStore::new(root),
            &mut recorder,
        )
    });
    recorder.end(outcome)
}

/// Follows, each on its own thread, the interrupted AWS runs of the last 90 days
/// (how long Step Functions keeps an execution's history); returns how many.
pub fn reattach_interrupted(root: &Path) -> Result<usize> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - 90 * 86_400;
    let ids = Registry::open(&root.join("cosmicai.sqlite"))?.interrupted_on_aws(since)?;
    for id in &ids {
        let (root, id) = (root.to_path_buf(), id.clone());
        std::thread::spawn(move || {
            let control = RunControl {
                quiet: true,
                ..Default::default()
            };
            match reattach(&root, &id, control, &mut |_| {}) {
                Ok(summary) => eprintln!("run {id} followed again: {}", summary.status.name()),
                Err(e) => eprintln!("run {id}: {e:#}"),
            }
        });
    }
    Ok(ids.len())
}
