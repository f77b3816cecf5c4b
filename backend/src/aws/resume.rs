//! Resuming an AWS run that did not finish (cancelled, failed, partial): a new
//! execution of the stack's state machine, named after the run, whose
//! Initialize keeps the ranks that left their results and hands the Map only
//! the others; its Summarize covers the whole run. A run of 10,000 ranks
//! whose last 1,000 failed (out of memory, a partition put back since) pays
//! for those 1,000 again, not for all of them.

use super::{Aws, Deployed, follow, refuse_if_busy, start_execution};
use crate::coordinator::{LAST_SUMMARY, Recorder, RunControl, remove_last_summary};
use crate::registry::{AwsExecution, Claim};
use anyhow::{Result, bail};
use cosmicai_engine::pipeline::{Resumed, RunSummary, Stores, checked_plan, earlier_measures};
use cosmicai_engine::store::{LocalStore, ObjectStore, join};
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::{RunRequest, RunStatus};
use std::path::Path;

/// An AWS run checked for resuming: its stack, its plan as Initialize will
/// read it, and the ranks its earlier attempts finished.
pub struct AwsResumable {
    aws: Aws,
    run_id: String,
    request: RunRequest,
    resumed: Resumed,
}

impl std::fmt::Debug for AwsResumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsResumable")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// Resumes AWS run `run_id` of the registry under `root` on the stack it ran
/// on, and follows the resuming execution to its end as a run is followed.
pub fn resume_on_aws(
    root: &Path,
    run_id: &str,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
) -> Result<RunSummary> {
    let checked = aws_resumable(root, run_id)?;
    resume_checked_on_aws(root, checked, control, observe)
}

/// Checks that AWS run `run_id` of the registry under `root` can be resumed
/// on its stack, reading what Initialize will read (its plan, its partitions,
/// its ranks' measures); says why not, by name, where it cannot. Nothing is
/// started, claimed or removed: the API answers with this before it resumes.
pub fn aws_resumable(root: &Path, run_id: &str) -> Result<AwsResumable> {
    let (_, run, info) = crate::registry::open_run(root, run_id)?;
    let Some(recorded) = run.aws else {
        bail!("run {run_id} did not run on AWS");
    };
    match info.status {
        RunStatus::Running => bail!(
            "run {run_id} is being followed (its execution may be running): wait for its end, or cancel it"
        ),
        // Its follower lost contact: the execution may still be running.
        RunStatus::Interrupted => bail!(
            "run {run_id} was left interrupted (its execution may still be running on AWS): `cosmicai runs --follow {run_id}` follows it to its end; resume it then if it did not finish"
        ),
        RunStatus::Succeeded => bail!(
            "run {run_id} succeeded: every rank left its results ({} objects), so there is nothing to resume",
            info.objects.unwrap_or(0)
        ),
        status if !crate::coordinator::may_resume(status) => {
            bail!("run {run_id} is {}", status.name())
        }
        _ => {}
    }
    let aws = Aws::connect(recorded.config.clone())?;
    let deployed = Deployed::read(&aws);
    if let Some(why) = deployed.cannot_resume() {
        bail!(
            "run {run_id}: the stack's state machine {} {why}",
            aws.config.state_machine_arn
        );
    }
    // What Initialize would refuse after the last summary is gone: refused here.
    deployed.check_bucket(&aws)?;
    let request = run.request;
    if let Some(prefix) = &deployed.results_prefix {
        super::run::check_result_path(&request, prefix)?;
    }
    refuse_if_busy(&aws, &request, run_id)?;
    // What Initialize will find, read here first: the plan, the partitions
    // unchanged (a refusal before anything starts), which ranks finished.
    let data = request
        .data_bucket
        .as_deref()
        .map(|bucket| aws.other_bucket(bucket))
        .transpose()?;
    let data: &dyn ObjectStore = match &data {
        Some(other) => other,
        None => &aws.s3,
    };
    let stores = Stores {
        data,
        results: &aws.s3,
    };
    // Told from the measures alone (the ranks' results are read by
    // Initialize, in the bucket's region, not downloaded here).
    let payload = checked_plan(stores, &request, run_id)?;
    // Its ranks as the stack's workers run them now (deployed again since?).
    super::run::refuse_unrunnable(&payload, &deployed)?;
    let earlier = earlier_measures(&aws.s3, &payload)?;
    Ok(AwsResumable {
        aws,
        run_id: run_id.to_string(),
        request,
        resumed: Resumed { payload, earlier },
    })
}

/// [`resume_on_aws`] of a run [`aws_resumable`] has checked: claims its row,
/// starts the resuming execution and follows it to its end.
pub fn resume_checked_on_aws(
    root: &Path,
    checked: AwsResumable,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
) -> Result<RunSummary> {
    let AwsResumable {
        aws,
        run_id,
        request,
        resumed,
    } = checked;
    let run_id = run_id.as_str();
    // Cancelled while it was checked (the API's cancel): nothing is claimed,
    // removed or started, and the row stays as it ended.
    if control.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(crate::coordinator::Cancelled(format!(
            "the resume of run {run_id} was cancelled before its execution started: nothing ran"
        ))
        .into());
    }
    let to_run = resumed.to_run().len();
    let kept = (0..request.world_size).filter(|&r| resumed.kept(r)).count();
    // Checked and taken in one write: two launchers resuming one run would
    // start two executions over the same ranks.
    let registry = crate::registry::Registry::in_folder(root)?;
    match registry.claim_to_resume(run_id)? {
        Claim::Taken => {}
        Claim::FollowedBy(pid) => bail!("run {run_id} is being run by process {pid} already"),
        Claim::NotInterrupted => {
            bail!("run {run_id} has ended since it was checked: nothing to resume")
        }
    }
    let mut recorder =
        Recorder::for_claimed(registry, root, run_id, request.world_size, control, observe)?;
    if let Err(e) = recorder.start(&request, &resumed.payload.ranks) {
        return recorder.end(Err(e));
    }
    recorder.println(&format!(
        "resuming run {run_id} on AWS: keeping the results of {} that finished before; running {}",
        cosmicai_shared::counted(kept, "rank"),
        cosmicai_shared::counted(to_run, "rank")
    ));
    let outcome = start_resuming(&aws, run_id, &request, root, &mut recorder).and_then(|arn| {
        follow(
            &aws,
            &request,
            run_id,
            &arn,
            &LocalStore::new(root),
            &mut recorder,
            &resumed.earlier,
        )
    });
    recorder.end(outcome)
}

/// Removes the last attempt's summary (in the bucket and here: a resume cut
/// short is then summarized anew, not closed from it) and starts the
/// resuming execution; its ARN.
fn start_resuming(
    aws: &Aws,
    run_id: &str,
    request: &RunRequest,
    root: &Path,
    recorder: &mut Recorder,
) -> Result<String> {
    for old in LAST_SUMMARY {
        aws.s3.delete(&join(&request.result_path, old))?;
    }
    remove_last_summary(&root.join(&request.result_path))?;
    let name = resuming_name(run_id, now_s());
    let mut input = serde_json::to_value(request)?;
    if let Some(fields) = input.as_object_mut() {
        fields.insert(cosmicai_shared::aws::RESUME_OF.into(), run_id.into());
    }
    let arn = start_execution(aws, &name, &input.to_string(), &mut |execution| {
        recorder.record_aws(&AwsExecution {
            config: aws.config.clone(),
            execution_arn: execution.to_string(),
        })
    })?;
    Ok(arn)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The resuming execution's name: the run's, then `-resume-` and the time,
/// within Step Functions' 80 characters (an execution's name is its own
/// forever: each resume needs another).
fn resuming_name(run_id: &str, now_s: u64) -> String {
    let suffix = format!("-resume-{now_s}");
    let room = 80usize.saturating_sub(suffix.len());
    let head: String = run_id.chars().take(room).collect();
    format!("{head}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resuming_execution_is_named_after_its_run_within_80_characters() {
        assert_eq!(
            resuming_name("run-1765000000-42-000000", 1_800_000_000),
            "run-1765000000-42-000000-resume-1800000000"
        );
        let long = "x".repeat(80);
        let name = resuming_name(&long, 1_800_000_000);
        assert_eq!(name.len(), 80);
        assert!(name.ends_with("-resume-1800000000"), "{name}");
    }
}
