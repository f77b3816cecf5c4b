//! Resuming a local run that did not finish (interrupted, cancelled, or with
//! ranks that failed): the ranks that left their results are kept, the others
//! run again under the same plan and run id, and Summarize covers them all.
//! `cosmicai run --resume ID` and the API's `POST /api/runs/{id}/resume`.

use super::record::{Recorder, RunControl};
use crate::registry::{Claim, Registry};
use anyhow::{Result, bail};
use cosmicai_engine::pipeline::{Payload, PayloadOf, RunSummary, finished_ranks, read_payload};
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::{RankMeasure, RunStatus};
use std::path::Path;
use std::time::Instant;

/// A run checked for resuming: its plan, and the ranks it keeps.
pub struct Resumable {
    pub payload: Payload,
    /// `finished[rank]`: the measures of a rank that left its results.
    pub finished: Vec<Option<RankMeasure>>,
}

impl Resumable {
    /// Ranks that will run again (planned a file, and left no results).
    pub fn to_run(&self) -> usize {
        (0..self.payload.request.world_size)
            .filter(|&rank| self.payload.reads_files(rank) && self.finished[rank].is_none())
            .count()
    }

    pub fn kept(&self) -> usize {
        self.finished.iter().flatten().count()
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

/// Checks that run `run_id` of the registry under `root` can be resumed here,
/// and what it keeps; says why not, by name, where it cannot.
pub fn resumable(root: &Path, run_id: &str) -> Result<Resumable> {
    let (_, run, info) = crate::registry::open_run(root, run_id)?;
    if run.aws.is_some() {
        bail!(
            "run {run_id} ran on AWS: `cosmicai runs --follow {run_id}` follows its execution to its end and summarizes it (resuming runs a local run's unfinished ranks)"
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
            "run {run_id} has no plan in its result_path '{result_path}' (payload.json): it ended before its ranks were planned{}, so there is nothing to resume; start it anew",
            info.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        PayloadOf::Unreadable(e) => bail!("run {run_id}: {result_path}/payload.json: {e}"),
        PayloadOf::OtherRun(other) => bail!(
            "run {run_id}: its result_path '{result_path}' holds run {other}'s plan, not its own"
        ),
    };
    if payload.request.device == cosmicai_shared::run::Device::Cuda {
        super::check_device(payload.request.device)?;
    }
    let finished = finished_ranks(&store, &payload)?;
    Ok(Resumable { payload, finished })
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
    let (kept, to_run) = (resumable.kept(), resumable.to_run());
    let Resumable { payload, finished } = resumable;
    let run_id = payload.run_id.clone();
    // Checked and taken in one write: two processes resuming one run would
    // run its ranks twice into the same files.
    let registry = Registry::in_folder(root)?;
    match registry.claim(&run_id, false)? {
        Claim::Taken => {}
        Claim::FollowedBy(pid) => bail!("run {run_id} is being run by process {pid} already"),
        Claim::NotInterrupted => bail!("run {run_id} cannot be taken up now"),
    }
    let world_size = payload.request.world_size;
    let mut recorder = match Recorder::new(root, &run_id, world_size, control, observe) {
        Ok(recorder) => recorder,
        Err(e) => {
            // Not left running under a process that will not run it.
            let _ = registry.interrupt(&run_id, &format!("{e:#}"));
            return Err(e);
        }
    };
    drop(registry);
    recorder.start(&payload.request, &payload.ranks)?;
    recorder.println(&format!(
        "resuming run {run_id}: keeping the results of {} that finished before; running {}",
        cosmicai_shared::counted(kept, "rank"),
        cosmicai_shared::counted(to_run, "rank")
    ));
    // What a killed attempt of the earlier coordinator was writing (its
    // workers died with it) can go before new attempts write there.
    cosmicai_engine::store::sweep_temporaries(&root.join(&payload.request.result_path));
    let outcome = super::local::run_ranks(
        root,
        &payload,
        finished,
        concurrency,
        &mut recorder,
        started,
        0.0,
    );
    recorder.end(outcome)
}
