//! Resuming a local run that did not finish (interrupted, cancelled, or with
//! ranks that failed): the ranks that left their results are kept, the others
//! run again under the same plan and run id, and Summarize covers them all.
//! `cosmicai run --resume ID` and the API's `POST /api/runs/{id}/resume`;
//! both resume an AWS run on a new execution of its stack (`aws::resume_on_aws`).

use super::record::{Recorder, RunControl};
use crate::registry::{Claim, Registry};
use anyhow::{Result, bail};
use cosmicai_engine::pipeline::{Payload, PayloadOf, RunSummary, earlier_ranks, read_payload};
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::RunStatus;
use std::path::Path;
use std::time::Instant;

/// A run checked for resuming: its plan.
pub struct Resumable {
    pub payload: Payload,
}

impl Resumable {
    /// Ranks planned a file: at most this many run again.
    pub fn working(&self) -> usize {
        (0..self.payload.request.world_size)
            .filter(|&rank| self.payload.reads_files(rank))
            .count()
    }
}

/// Whether a run of `status` may be resumed: one that ended without every
/// rank's results.
pub fn may_resume(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Interrupted | RunStatus::Cancelled | RunStatus::Failed | RunStatus::Partial
    )
}

/// Checks that run `run_id` of the registry under `root` can be resumed here;
/// says why not, by name, where it cannot. Reads nothing but its row and plan:
/// which ranks it keeps is read once it is claimed.
pub fn resumable(root: &Path, run_id: &str) -> Result<Resumable> {
    let (_, run, info) = crate::registry::open_run(root, run_id)?;
    if run.aws.is_some() {
        bail!(
            "run {run_id} ran on AWS: `cosmicai run --data DATA --resume {run_id}` resumes it on its stack (here, local runs only)"
        );
    }
    match info.status {
        RunStatus::Running => bail!(
            "run {run_id} is running (its coordinator is alive): cancel it first, or wait for its end"
        ),
        RunStatus::Succeeded => bail!(
            "run {run_id} succeeded: every rank left its results ({} objects), so there is nothing to resume",
            info.objects.unwrap_or(0)
        ),
        status if !may_resume(status) => bail!("run {run_id} is {}", status.name()),
        _ => {}
    }
    let store = LocalStore::new(root);
    let result_path = &run.request.result_path;
    let payload = match read_payload(&store, result_path, Some(run_id))? {
        PayloadOf::Its(payload) => *payload,
        PayloadOf::Missing => bail!(
            "run {run_id} has no plan in its result_path '{result_path}' (payload.json): it ended before its ranks were planned, or the file was removed since, so it cannot be resumed; start it anew"
        ),
        PayloadOf::Unreadable(e) => bail!("run {run_id}: {result_path}/payload.json: {e}"),
        PayloadOf::OtherRun(other) => bail!(
            "run {run_id}: its result_path '{result_path}' holds run {other}'s plan, not its own"
        ),
    };
    // The plan is a file anyone may have edited: it must be the one the run
    // was recorded with (its ranks, its folder, its bounds), read back as written.
    let recorded = serde_json::to_value(&run.request)?;
    if serde_json::to_value(&payload.request)? != recorded
        || payload.ranks.len() != payload.request.world_size
    {
        bail!(
            "run {run_id}: {result_path}/payload.json is not the plan the run was recorded with (edited since?): it cannot be resumed"
        );
    }
    // The partitions as planned: one replaced or gone since would mix two
    // datasets in one run.
    cosmicai_engine::pipeline::unchanged_partitions(&store, &payload)?;
    if payload.request.device == cosmicai_shared::run::Device::Cuda {
        super::check_device(payload.request.device)?;
    }
    Ok(Resumable { payload })
}

/// Resumes run `run_id` under `root` (checked by [`resumable`] first): its row
/// is running again, under this process, until it ends with a new summary.
pub fn resume(
    root: &Path,
    run_id: &str,
    concurrency: Option<usize>,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
) -> Result<RunSummary> {
    let started = Instant::now();
    if crate::registry::open_run(root, run_id)?.1.aws.is_some() {
        return crate::aws::resume_on_aws(root, run_id, control, observe);
    }
    let resumable = resumable(root, run_id)?;
    resume_checked(root, resumable, concurrency, control, observe, started)
}

/// [`resume`] of a run [`resumable`] has checked (the API checks before it
/// answers, then resumes on a thread of its own); `started` when that began.
pub fn resume_checked(
    root: &Path,
    resumable: Resumable,
    concurrency: Option<usize>,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
    started: Instant,
) -> Result<RunSummary> {
    let reading = resumable.working();
    let Resumable { payload } = resumable;
    let run_id = payload.run_id.clone();
    // Checked and taken in one write, only while the run has not ended since
    // it was checked: two processes resuming one run would run its ranks twice
    // into the same files, and a run another resume finished is left alone.
    let registry = Registry::in_folder(root)?;
    match registry.claim_to_resume(&run_id)? {
        Claim::Taken => {}
        Claim::FollowedBy(pid) => bail!("run {run_id} is being run by process {pid} already"),
        Claim::NotInterrupted => {
            bail!("run {run_id} has ended since it was checked: nothing to resume")
        }
    }
    let world_size = payload.request.world_size;
    let mut recorder =
        Recorder::for_claimed(registry, root, &run_id, world_size, control, observe)?;
    recorder.start(&payload.request, &payload.ranks)?;
    let results = root.join(&payload.request.result_path);
    // The last attempt's summary goes first: a resume cut short (a kill, a
    // power cut) is then interrupted, not closed from that older summary, and
    // what a killed attempt was writing (its workers died with it) goes too.
    if let Err(e) = remove_last_summary(&results) {
        return recorder.end(Err(e));
    }
    cosmicai_engine::store::sweep_temporaries(&results);
    let earlier = match earlier_ranks(&LocalStore::new(root), &payload) {
        Ok(earlier) => earlier,
        Err(e) => return recorder.end(Err(e.into())),
    };
    let kept = earlier
        .iter()
        .flatten()
        .filter(|m| m.error.is_none())
        .count();
    recorder.println(&format!(
        "resuming run {run_id}: keeping the results of {} that finished before; running {}",
        cosmicai_shared::counted(kept, "rank"),
        cosmicai_shared::counted(reading - kept, "rank")
    ));
    let outcome = super::local::run_ranks(
        root,
        &payload,
        earlier,
        concurrency,
        &mut recorder,
        started,
        0.0,
    );
    recorder.end(outcome)
}

/// What Summarize writes last, which a resume removes before it runs: a
/// resume cut short is then summarized anew, not closed from the older one.
pub const LAST_SUMMARY: [&str; 2] = ["summary.json", "combined_data.json"];

/// Removes [`LAST_SUMMARY`] from the run's results folder `results` here.
pub fn remove_last_summary(results: &Path) -> Result<()> {
    for old in LAST_SUMMARY {
        let file = results.join(old);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::Error::new(e).context(format!("removing {}", file.display())));
            }
            _ => {}
        }
    }
    Ok(())
}
