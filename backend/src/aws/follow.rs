//! Start an execution and follow it: DescribeExecution, GetExecutionHistory and
//! DescribeMapRun for the state, the ranks' `measures/<rank>.json` for progress.

use super::{Aws, sdk_error};
use crate::coordinator::Recorder;
use crate::registry::AwsExecution;
use anyhow::{Context, Result, bail};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use cosmicai_engine::pipeline::{Payload, PayloadOf, RunSummary, measures_key, read_payload};
use cosmicai_engine::store::{
    LocalStore, ObjectStore, PARALLEL_GETS, StoreError, for_each_fetched, join,
};
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::{RankMeasure, RunRequest};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The follower gave up watching an execution that may still be running: the
/// run is left `interrupted`, to be followed again, not `failed`.
#[derive(Debug)]
pub struct LostContact(pub String);

impl std::fmt::Display for LostContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LostContact {}

/// AWS knows no execution of that ARN: its launcher recorded the ARN, then
/// died (or was refused) before StartExecution reached AWS, or the execution
/// ended longer ago than Step Functions keeps histories (90 days). Either way
/// there is nothing to wait for.
#[derive(Debug)]
pub struct NeverStarted(pub String);

impl std::fmt::Display for NeverStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NeverStarted {}

/// The ARN StartExecution gives execution `name` of `state_machine_arn`
/// (Step Functions' own form: `arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME`).
/// A version's or alias's ARN (`…:stateMachine:MACHINE:3`) starts executions
/// named under the machine itself, so its qualifier is left out.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    let machine: Vec<&str> = state_machine_arn.split(':').take(7).collect();
    format!(
        "{}:{name}",
        machine
            .join(":")
            .replacen(":stateMachine:", ":execution:", 1)
    )
}

/// What the CLI's bar shows while a run is on AWS.
#[derive(Debug, Clone, Default, PartialEq)]
struct AwsProgress {
    /// RUNNING, SUCCEEDED, FAILED, ABORTED, TIMED_OUT.
    pub status: String,
    /// The Distributed Map's item counts, once it started.
    pub succeeded: i64,
    pub failed: i64,
    pub running: i64,
    pub total: i64,
    /// Items that ended any way: succeeded, failed, timed out or aborted.
    pub ended: i64,
}

/// What the execution's history told so far.
#[derive(Default)]
struct History {
    map_run_arn: Option<String>,
    /// Whether Summarize (or SummarizeFailedMap) was entered.
    summarize_entered: bool,
    /// The Map run's failure (over its tolerance), where it failed.
    map_failure: Option<String>,
    /// The last task failure's cause (a rank's error, after retries).
    last_failure: Option<String>,
}

/// How long the follower keeps retrying failed AWS calls before it gives up
/// watching (the execution itself is not stopped).
fn patience() -> Duration {
    let s = std::env::var("COSMICAI_AWS_PATIENCE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600u64);
    Duration::from_secs(s.clamp(1, 86_400))
}

fn poll_interval() -> Duration {
    let ms = std::env::var("COSMICAI_AWS_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000u64);
    Duration::from_millis(ms.clamp(50, 60_000))
}

/// Starts `request` (its partitions already in the bucket) as execution `run_id`
/// and follows it to the end; `recorder` gets each rank's start, end or failure and
/// the Map's counts. Cancelling stops the execution. The results end up under `local` too.
pub fn start_and_follow(
    aws: &Aws,
    request: &RunRequest,
    run_id: &str,
    local: &LocalStore,
    recorder: &mut Recorder,
) -> Result<RunSummary> {
    refuse_if_busy(aws, request, run_id)?;
    let input = serde_json::to_string(request)?;
    let arn = start_execution(aws, run_id, &input, &mut |arn| {
        recorder.record_aws(&AwsExecution {
            config: aws.config.clone(),
            execution_arn: arn.to_string(),
        })
    })?;
    follow(aws, request, run_id, &arn, local, recorder, &[])
}

/// Starts execution `name` of the stack's state machine with `input`; its
/// ARN. `record` keeps the ARN before the call: a launcher that dies while it
/// is on the wire (or before its answer is written) leaves a run that can be
/// followed again, not an execution billing where no row points.
pub(super) fn start_execution(
    aws: &Aws,
    name: &str,
    input: &str,
    record: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<String> {
    let predicted = execution_arn(&aws.config.state_machine_arn, name);
    record(&predicted)?;
    let started = aws
        .s3
        .block_on(
            aws.sfn
                .start_execution()
                .state_machine_arn(&aws.config.state_machine_arn)
                .name(name)
                .input(input)
                .send(),
        )
        .map_err(|e| anyhow::anyhow!("StartExecution {name}: {}", sdk_error(&e)))?;
    let arn = started.execution_arn().to_string();
    if arn != predicted {
        record(&arn)?;
    }
    Ok(arn)
}

/// Refuses CPU run `run_id` while another execution of the stack's state
/// machine runs: its ranks would share the workers' reserved concurrency, and
/// the invocations past it are throttled until their retries run out (the
/// second run's ranks would fail in bulk). GPU ranks queue on AWS Batch
/// instead, and are not refused. Launchers whose role may not list executions
/// (`states:ListExecutions`) are warned, not stopped.
pub fn refuse_if_busy(aws: &Aws, request: &RunRequest, run_id: &str) -> Result<()> {
    if request.device != cosmicai_shared::run::Device::Cpu {
        return Ok(());
    }
    let listed = aws.s3.block_on(
        aws.sfn
            .list_executions()
            .state_machine_arn(&aws.config.state_machine_arn)
            .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
            // Its own execution (a launcher started again) may be one of them.
            .max_results(2)
            .send(),
    );
    let running = match listed {
        Ok(listed) => listed,
        Err(e) => {
            crate::say!(
                "warning: ListExecutions: {}; whether another run holds the workers was not checked",
                sdk_error(&e)
            );
            return Ok(());
        }
    };
    match running.executions().iter().find(|e| e.name() != run_id) {
        Some(other) => anyhow::bail!(
            "run {run_id} not started: execution {} of this stack is running ({}), and its \
             ranks hold the workers' concurrency (a second run's would be throttled and \
             fail); wait for it to end, or stop it (`aws stepfunctions stop-execution \
             --execution-arn {}`)",
            other.name(),
            other.execution_arn(),
            other.execution_arn()
        ),
        None => Ok(()),
    }
}

/// Follows execution `arn` of `request` to its end (also for a run reattached
/// after its launcher stopped), then copies its results into `local`. An
/// execution resuming the run is handed what its `earlier` attempts left (as
/// [`earlier_measures`](cosmicai_engine::pipeline::earlier_measures) reads it;
/// none otherwise): their finished ranks are shown done at once, and their
/// failed ranks' measures (there until the rank runs again) are not read as
/// this attempt's.
pub fn follow(
    aws: &Aws,
    request: &RunRequest,
    run_id: &str,
    arn: &str,
    local: &LocalStore,
    recorder: &mut Recorder,
    earlier: &[Option<RankMeasure>],
) -> Result<RunSummary> {
    let cancel = recorder.cancel.clone();
    let world = request.world_size;
    let mut poll = Poll::default();
    let (kept, failed): (Vec<&RankMeasure>, Vec<&RankMeasure>) =
        earlier.iter().flatten().partition(|m| m.error.is_none());
    poll.stale = failed.iter().map(|m| (m.rank, (*m).clone())).collect();
    let done: Vec<RunEvent> = kept
        .iter()
        .flat_map(|m| {
            [
                RunEvent::RankStarted {
                    rank: m.rank,
                    attempt: m.attempts.max(1),
                },
                RunEvent::RankFinished {
                    measure: (*m).clone(),
                },
            ]
        })
        .collect();
    poll.preseeded = kept.iter().map(|m| (m.rank, (*m).clone())).collect();
    poll.finished = poll.preseeded.keys().copied().collect();
    recorder.events(&done);
    // A failed call (throttling, a network blip) is retried with backoff: the
    // execution goes on billing whether or not we are watching it.
    let mut failing_since: Option<std::time::Instant> = None;
    let mut backoff = poll_interval();
    let (status, error) = loop {
        match poll.once(
            aws,
            request,
            run_id,
            arn,
            cancel.load(Ordering::Relaxed),
            recorder,
        ) {
            Ok(Some(ended)) => break ended,
            Ok(None) => {
                failing_since = None;
                backoff = poll_interval();
            }
            Err(e) if e.is::<NeverStarted>() => return Err(e),
            Err(e) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > patience() {
                    return Err(LostContact(format!(
                        "lost contact with execution {arn} for {:.0} s ({e:#}); it may still \
                         be running: `cosmicai runs --follow {run_id}` reattaches",
                        since.elapsed().as_secs_f64()
                    ))
                    .into());
                }
                recorder.status(format!(
                    "on AWS: {e:#}; retrying in {:.1} s",
                    backoff.as_secs_f64()
                ));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        }
        std::thread::sleep(poll_interval());
    };
    // Ranks on their functions when this launcher stopped the execution run on
    // (a function cannot be stopped), billed: their measures are waited for, as
    // the state machine waits after a failed Map, so the summary counts them.
    // A run reattached after its launcher stopped it waits out what is left
    // of that wait, by AWS's clock: how many ranks ran on is not known there.
    let by_a_cancel = poll.stop_sent || error.as_deref() == Some(CANCEL_CAUSE);
    if status == ExecutionStatus::Aborted
        && by_a_cancel
        && !poll.summarize_entered
        && request.device == cosmicai_shared::run::Device::Cpu
    {
        wait_for_ranks_in_flight(aws, request, run_id, &mut poll, recorder);
    }
    let finished = poll.finished;
    for rank in (0..world).filter(|r| !finished.contains(r)) {
        recorder.event(&RunEvent::RankFailed {
            rank,
            attempt: 1,
            error: error
                .clone()
                .unwrap_or_else(|| format!("the execution ended {}", status.as_str())),
            retrying: false,
        });
    }
    // Only a plan this run wrote makes what lies under its result path its own:
    // Initialize refuses a result_path that holds another run's results.
    let ended = status.as_str().to_string();
    let failure = error.map(|e| format!(": {e}")).unwrap_or_default();
    if !wrote_its_payload(aws, request, run_id).map_err(|e| lost(run_id, &e))? {
        if by_a_cancel {
            return Err(crate::coordinator::Cancelled(format!(
                "execution {run_id} was stopped by its cancel before its plan was written: no rank ran"
            ))
            .into());
        }
        bail!(
            "execution {run_id} ended {ended} with no plan of its own under {}{failure}",
            request.result_path
        );
    }
    // Stopped by a cancel (this launcher's, or the one it reattaches to) before
    // its Summarize: summarized here. One whose Summarize had begun is left to
    // it (a function runs on past a stop, and two writers would mix files).
    if status == ExecutionStatus::Aborted && by_a_cancel && !poll.summarize_entered {
        // A rank that left no measures was cancelled, or failed with the Map.
        let missing = poll
            .map_failure
            .clone()
            .unwrap_or_else(|| cosmicai_engine::executor::CANCELLED.into());
        summarize_cancelled(aws, request, run_id, poll.ran_s, &missing)
            .map_err(|e| lost(run_id, &e))?;
    }
    copy_results(aws, &request.result_path, local, run_id)?;
    let summary: RunSummary = match local.get(&join(&request.result_path, "summary.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).context("reading the run's summary.json")?,
        Err(StoreError::NotFound { .. }) if by_a_cancel => {
            return Err(crate::coordinator::Cancelled(format!(
                "execution {run_id} was stopped by its cancel and has no summary{failure}"
            ))
            .into());
        }
        Err(StoreError::NotFound { .. }) => {
            bail!("execution {run_id} ended {ended} without a summary{failure}")
        }
        Err(e) => return Err(e.into()),
    };
    if summary.run_id != run_id {
        bail!(
            "{}/summary.json is run {}'s, not {run_id}'s",
            request.result_path,
            summary.run_id
        );
    }
    Ok(summary)
}

/// How long after its stop a cancelled execution's ranks in flight are waited
/// for: a Lambda rank stops itself [`RANK_STOP_S`](cosmicai_engine::pipeline::RANK_STOP_S) after its Infer began, and
/// then writes its files (with their retries): 360 s, as the state machine's
/// `RanksStopping` waits after a failed Map.
const IN_FLIGHT_WAIT_S: f64 = cosmicai_engine::pipeline::RANK_STOP_S + 80.0;

/// Waits until the ranks on their functions when the execution was stopped
/// have left their measures (each shown as it comes), at most
/// [`IN_FLIGHT_WAIT_S`] from the stop; a listing that fails ends the wait (the
/// summary then counts those ranks cancelled). Reattached, with no count of
/// them, it waits out the rest of that time by AWS's clock.
fn wait_for_ranks_in_flight(
    aws: &Aws,
    request: &RunRequest,
    run_id: &str,
    poll: &mut Poll,
    recorder: &mut Recorder,
) {
    let (deadline, ended) = match (poll.stopped_at, poll.stop_date_s) {
        (Some(at), _) => (
            at + Duration::from_secs_f64(IN_FLIGHT_WAIT_S),
            Some(poll.finished_at_stop + poll.in_flight_at_stop),
        ),
        (None, Some(stopped)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let left = (stopped + IN_FLIGHT_WAIT_S - now).clamp(0.0, IN_FLIGHT_WAIT_S);
            (
                std::time::Instant::now() + Duration::from_secs_f64(left),
                None,
            )
        }
        (None, None) => return,
    };
    let waiting = |poll: &Poll| {
        std::time::Instant::now() < deadline && ended.is_none_or(|n| poll.finished.len() < n)
    };
    if waiting(poll) {
        recorder.println(&format!(
            "execution {run_id} stopped; ranks on their functions then run on (billed): their results are waited for, at most {:.0} s (Ctrl-C again leaves them to `cosmicai runs --follow {run_id}`)",
            deadline.saturating_duration_since(std::time::Instant::now()).as_secs_f64()
        ));
    }
    while waiting(poll) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        recorder.status(match ended {
            Some(n) => format!(
                "stopped on AWS: waiting for {} ranks still on their functions (billed), at most {:.0} s more",
                n.saturating_sub(poll.finished.len()),
                left.as_secs_f64()
            ),
            None => format!(
                "stopped on AWS: waiting {:.0} s more for ranks still on their functions (billed)",
                left.as_secs_f64()
            ),
        });
        std::thread::sleep(
            relist_after(request.world_size)
                .max(poll_interval())
                .min(left),
        );
        let Ok(measures) = new_measures(aws, request, run_id, &poll.finished) else {
            return;
        };
        poll.record(measures, recorder);
    }
}

/// The cause a cancel gives StopExecution: a run reattached after its launcher
/// stopped it is told by it.
const CANCEL_CAUSE: &str = "cancelled by the user";

/// A run its user cancelled on AWS: its execution stopped before Summarize,
/// so what finished is summarized here, as a local run's cancel does, and
/// written where Summarize writes (`combined_data.json`, `summary.json`). A
/// rank that left no measures failed with `missing`; `ran_s` is how long the
/// execution ran, as AWS says. Priced as the stack's Summarize
/// would have: the rank attempts that left measures, this Summarize's time as
/// a function's, Initialize's (not known here) left out.
fn summarize_cancelled(
    aws: &Aws,
    request: &RunRequest,
    run_id: &str,
    ran_s: Option<f64>,
    missing: &str,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let summary_key = cosmicai_engine::store::join(&request.result_path, "summary.json");
    match aws.s3.get_head(&summary_key, 1) {
        // Summarize ran before the stop (or an earlier follow summarized).
        Ok(_) => return Ok(()),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    let Some(payload) = its_payload(aws, request, run_id).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let measures = cosmicai_engine::pipeline::stored_measures(&aws.s3, &payload, missing)
        .map_err(|e| e.to_string())?;
    let duration_s =
        ran_s.unwrap_or_else(|| measures.iter().map(|m| m.duration_s).fold(0.0, f64::max));
    let deployed = super::run::Deployed::read(aws);
    let children = cosmicai_engine::cost::Children::deployed(
        request.device,
        deployed.child_execution_type.as_deref(),
    );
    if children == cosmicai_engine::cost::Children::Express
        && deployed.child_execution_type.is_none()
    {
        crate::say!(
            "warning: the ranks' child executions priced as EXPRESS, the template's default: the state machine's definition does not say which ({})",
            deployed
                .unread
                .as_deref()
                .unwrap_or("deployed before it named ChildExecutionType")
        );
    }
    // A resumed run's Map ran the ranks its plan names; the others were kept.
    let kept = cosmicai_engine::pipeline::kept_by_plan(&aws.s3, &payload);
    cosmicai_engine::pipeline::summarize_with(
        &aws.s3,
        &payload,
        &measures,
        (duration_s, 0.0, started),
        children,
        &kept,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The results are safe in the bucket: an AWS call that failed leaves the run
/// to be followed again (interrupted), not failed.
fn lost(run_id: &str, e: &dyn std::fmt::Display) -> anyhow::Error {
    LostContact(format!(
        "copying the results of {run_id} back failed ({e}); `cosmicai runs --follow {run_id}` copies them again"
    ))
    .into()
}

/// Whether the run's `payload.json` is there and names `run_id`.
fn wrote_its_payload(aws: &Aws, request: &RunRequest, run_id: &str) -> Result<bool, StoreError> {
    its_payload(aws, request, run_id).map(|plan| plan.is_some())
}

/// The run's `payload.json`, if it is there and names `run_id`.
fn its_payload(
    aws: &Aws,
    request: &RunRequest,
    run_id: &str,
) -> Result<Option<Payload>, StoreError> {
    read_payload(&aws.s3, &request.result_path, Some(run_id)).map(PayloadOf::its)
}

/// The least time between two listings of a run's measures while it runs.
fn relist_after(world_size: usize) -> Duration {
    Duration::from_millis((world_size as u64).clamp(1_000, 10_000))
}

/// What one look at the execution has found so far.
#[derive(Default)]
struct Poll {
    finished: BTreeSet<usize>,
    announced: bool,
    empty_ranks_done: bool,
    /// The Map's ended items when the measures were last listed, and when.
    listed_at: Option<(i64, std::time::Instant)>,
    stop_sent: bool,
    /// Whether a Summarize state was entered (its function may still be
    /// writing the summary after a stop).
    summarize_entered: bool,
    /// Why the Map failed, where it did.
    map_failure: Option<String>,
    /// The Map's running items when this launcher stopped the execution:
    /// ranks on their functions then, which run on past the stop.
    in_flight_at_stop: usize,
    /// Ranks seen finished when the stop was sent, and when it was.
    finished_at_stop: usize,
    stopped_at: Option<std::time::Instant>,
    /// When AWS says the execution stopped (Unix seconds), once it has, and
    /// how long it ran.
    stop_date_s: Option<f64>,
    ran_s: Option<f64>,
    /// A resumed run's ranks whose measures are an earlier attempt's (a
    /// failed rank's, or a kept one's that runs again), until it writes its own.
    stale: std::collections::HashMap<usize, RankMeasure>,
    /// A resumed run's ranks shown done from an earlier attempt's measures.
    preseeded: BTreeMap<usize, RankMeasure>,
}

impl Poll {
    /// Ranks' measures found: each rank finished (or failed where it says so).
    fn record(&mut self, measures: Vec<RankMeasure>, recorder: &mut Recorder) {
        let events: Vec<RunEvent> = measures
            .into_iter()
            // An earlier attempt's failure, until its rank has run again.
            .filter(|m| self.stale.get(&m.rank) != Some(m))
            .map(|measure| {
                self.finished.insert(measure.rank);
                event_of(measure)
            })
            .collect();
        recorder.events(&events);
    }

    /// One look: stop it if cancelled, its status, the Map's counts and the ranks
    /// finished since the last look. `Some((status, error))` once it has ended.
    fn once(
        &mut self,
        aws: &Aws,
        request: &RunRequest,
        run_id: &str,
        arn: &str,
        cancelled: bool,
        recorder: &mut Recorder,
    ) -> Result<Option<(ExecutionStatus, Option<String>)>> {
        let described = aws
            .s3
            .block_on(aws.sfn.describe_execution().execution_arn(arn).send())
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_does_not_exist())
                {
                    anyhow::Error::new(NeverStarted(format!(
                        "execution {arn} is unknown to AWS: its start never reached AWS (nothing ran there or was billed), or its history is past the 90 days Step Functions keeps"
                    )))
                } else {
                    anyhow::anyhow!("DescribeExecution {arn}: {}", sdk_error(&e))
                }
            })?;
        let history = read_history(aws, arn)?;
        self.summarize_entered = history.summarize_entered;
        self.map_failure.clone_from(&history.map_failure);
        let mut shown = AwsProgress {
            status: described.status().as_str().to_string(),
            ..Default::default()
        };
        if let Some(map_run) = &history.map_run_arn {
            let run = aws
                .s3
                .block_on(aws.sfn.describe_map_run().map_run_arn(map_run).send())
                .map_err(|e| anyhow::anyhow!("DescribeMapRun {map_run}: {}", sdk_error(&e)))?;
            if let Some(c) = run.item_counts() {
                (shown.succeeded, shown.failed, shown.running, shown.total) =
                    (c.succeeded(), c.failed(), c.running(), c.total());
                shown.ended = c.succeeded() + c.failed() + c.timed_out() + c.aborted();
            }
            if !self.announced {
                // Ranks shown kept from their measures alone that the resuming
                // Map runs again (Initialize found their results damaged):
                // running, not done, their old measures not taken for new.
                if !self.preseeded.is_empty()
                    && let Some(plan) = its_payload(aws, request, run_id)?
                    && let Some(running) =
                        cosmicai_engine::pipeline::ranks_of_map_plan(&aws.s3, &plan)
                {
                    for (rank, measure) in
                        self.preseeded.iter().filter(|(r, _)| running.contains(r))
                    {
                        self.finished.remove(rank);
                        self.stale.insert(*rank, measure.clone());
                    }
                }
                self.announced = true;
                let started: Vec<RunEvent> = (0..request.world_size)
                    .filter(|r| !self.finished.contains(r))
                    .map(|rank| RunEvent::RankStarted { rank, attempt: 1 })
                    .collect();
                recorder.events(&started);
            }
            // Ranks planned no file are no Map item (more ranks than files): done
            // at once, with nothing read. Until the plan has been read (a failed
            // call is tried again at the next look).
            if !self.empty_ranks_done {
                if let Some(plan) = its_payload(aws, request, run_id)? {
                    let empty: Vec<RunEvent> = (0..request.world_size)
                        .filter(|&r| plan.reads_nothing(r))
                        .filter(|r| self.finished.insert(*r))
                        .map(|rank| RunEvent::RankFinished {
                            measure: RankMeasure::nothing_read(rank, run_id),
                        })
                        .collect();
                    recorder.events(&empty);
                }
                self.empty_ranks_done = true;
            }
        }
        // A rank writes its measures before its Map item ends: they are listed
        // again only when more items have ended (or the execution has), and
        // at most every millisecond per rank (1 to 10 s): while hundreds of
        // ranks end each minute the count moves at almost every look, and a
        // listing is a LIST a thousand ranks.
        let ended = shown.ended;
        let over = *described.status() != ExecutionStatus::Running;
        let due = match self.listed_at {
            None => true,
            Some((at, when)) => at != ended && when.elapsed() >= relist_after(request.world_size),
        };
        // The look that stops the execution lists first: what finished by the
        // stop is told from what runs on past it.
        let stopping = cancelled && !self.stop_sent && !over && !self.summarize_entered;
        let measures = if over || due || stopping {
            // Marked listed only once it was: a failed listing is made again.
            let measures = new_measures(aws, request, run_id, &self.finished)?;
            self.listed_at = Some((ended, std::time::Instant::now()));
            measures
        } else {
            Vec::new()
        };
        self.record(measures, recorder);
        recorder.status(format!(
            "on AWS: {} (map items: {} done, {} failed, {} running of {})",
            shown.status, shown.succeeded, shown.failed, shown.running, shown.total
        ));
        // Stopped only while it runs, and not once Summarize has begun (every
        // rank has ended then: the run ends as it would have). The ranks on
        // their functions at the stop are those the Map counts running after
        // the listing above (one ending between the two is counted neither
        // way, and found by the wait).
        if stopping {
            let running = match &history.map_run_arn {
                Some(map_run) => aws
                    .s3
                    .block_on(aws.sfn.describe_map_run().map_run_arn(map_run).send())
                    .map_err(|e| anyhow::anyhow!("DescribeMapRun {map_run}: {}", sdk_error(&e)))?
                    .item_counts()
                    .map_or(0, |c| c.running()),
                None => 0,
            };
            aws.s3
                .block_on(
                    aws.sfn
                        .stop_execution()
                        .execution_arn(arn)
                        .cause(CANCEL_CAUSE)
                        .send(),
                )
                .map_err(|e| anyhow::anyhow!("StopExecution {arn}: {}", sdk_error(&e)))?;
            self.stop_sent = true;
            self.in_flight_at_stop = usize::try_from(running).unwrap_or(0);
            self.finished_at_stop = self.finished.len();
            self.stopped_at = Some(std::time::Instant::now());
        }
        if *described.status() == ExecutionStatus::Running {
            return Ok(None);
        }
        self.stop_date_s = described
            .stop_date()
            .map(aws_sdk_sfn::primitives::DateTime::as_secs_f64);
        self.ran_s = self
            .stop_date_s
            .map(|stop| stop - described.start_date().as_secs_f64())
            .filter(|s| *s >= 0.0);
        let error = match (described.error(), described.cause()) {
            (Some(e), Some(c)) if !e.is_empty() => Some(format!("{e}: {c}")),
            (_, Some(c)) => Some(c.to_string()),
            (Some(e), None) => Some(e.to_string()),
            (None, None) => history.last_failure,
        };
        Ok(Some((described.status().clone(), error)))
    }
}

fn read_history(aws: &Aws, arn: &str) -> Result<History> {
    let mut history = History::default();
    let mut token = None;
    loop {
        let page = aws
            .s3
            .block_on(
                aws.sfn
                    .get_execution_history()
                    .execution_arn(arn)
                    .set_next_token(token)
                    .send(),
            )
            .map_err(|e| anyhow::anyhow!("GetExecutionHistory {arn}: {}", sdk_error(&e)))?;
        for event in page.events() {
            match event.r#type() {
                HistoryEventType::MapRunStarted => {
                    history.map_run_arn = event
                        .map_run_started_event_details()
                        .and_then(|d| d.map_run_arn())
                        .map(str::to_string);
                }
                HistoryEventType::TaskStateEntered
                    if event
                        .state_entered_event_details()
                        .is_some_and(|d| d.name().starts_with("Summarize")) =>
                {
                    history.summarize_entered = true;
                }
                HistoryEventType::MapRunFailed => {
                    let details = event.map_run_failed_event_details();
                    history.map_failure = Some(
                        match (
                            details.and_then(|d| d.error()),
                            details.and_then(|d| d.cause()),
                        ) {
                            (Some(e), Some(c)) => format!("{e}: {c}"),
                            (e, c) => c.or(e).unwrap_or("the Map failed").to_string(),
                        },
                    );
                }
                HistoryEventType::TaskFailed => {
                    if let Some(d) = event.task_failed_event_details() {
                        history.last_failure = Some(format!(
                            "{}: {}",
                            d.error().unwrap_or("TaskFailed"),
                            d.cause().unwrap_or("")
                        ));
                    }
                }
                HistoryEventType::LambdaFunctionFailed => {
                    if let Some(d) = event.lambda_function_failed_event_details() {
                        history.last_failure = d.cause().map(str::to_string);
                    }
                }
                _ => {}
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(history);
        }
    }
}

/// The event a rank's measures tell: finished, or failed where the rank wrote
/// why (a rank stopped for time records its error and what it was billed).
fn event_of(measure: RankMeasure) -> RunEvent {
    match &measure.error {
        Some(error) => RunEvent::RankFailed {
            rank: measure.rank,
            attempt: measure.attempts.max(1),
            error: error.clone(),
            retrying: false,
        },
        None => RunEvent::RankFinished { measure },
    }
}

/// Measures written by ranks not seen yet.
fn new_measures(
    aws: &Aws,
    request: &RunRequest,
    run_id: &str,
    seen: &BTreeSet<usize>,
) -> Result<Vec<RankMeasure>> {
    let folder = join(&request.result_path, "measures");
    let keys: Vec<String> = aws
        .s3
        .list(&folder)?
        .into_iter()
        .filter_map(|object| {
            let rank = object
                .key
                .rsplit('/')
                .next()
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|n| n.parse::<usize>().ok())?;
            (!seen.contains(&rank) && rank < request.world_size)
                .then(|| measures_key(&request.result_path, rank))
        })
        .collect();
    let mut out = Vec::new();
    for_each_fetched(&aws.s3, &keys, PARALLEL_GETS, |_, fetched| {
        // Only this run's measures (a rank's file names its run).
        if let Ok(m) = serde_json::from_slice::<RankMeasure>(&fetched?)
            && m.is_of_run(run_id)
        {
            out.push(m);
        }
        Ok::<_, StoreError>(())
    })?;
    Ok(out)
}

/// Copies everything under the run's result path from the bucket to the local
/// store, [`PARALLEL_GETS`] objects at a time: a run of 10,000 ranks leaves over
/// 30,000 of them, which one at a time would take minutes of round trips.
fn copy_results(aws: &Aws, result_path: &str, local: &LocalStore, run_id: &str) -> Result<()> {
    let keys: Vec<String> = aws
        .s3
        .list(result_path)
        .map_err(|e| lost(run_id, &e))?
        .into_iter()
        .map(|object| object.key)
        // A console's folder marker (`x/`), or a key no local file can take, is not a result.
        .filter(|key| !key.ends_with('/') && cosmicai_shared::run::check_key(key).is_ok())
        .collect();
    // Written without a sync each (two per object, most of the copy's time at
    // 30,000 objects), then made durable at once: the run is marked done only
    // after, so a power cut before leaves it to be followed, and copied, again.
    // The summary comes last, synced, once the rest is durable: a reader that
    // finds it (the API's results) finds every file it names whole.
    let summary = cosmicai_engine::store::join(result_path, "summary.json");
    let (last, rest): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| *k == summary);
    for_each_fetched(&aws.s3, &rest, PARALLEL_GETS, |i, fetched| {
        let key = &rest[i];
        let bytes = fetched.map_err(|e| lost(run_id, &e))?;
        local
            .put_unsynced(key, &bytes)
            .with_context(|| format!("writing the run's {key} here"))?;
        Ok::<_, anyhow::Error>(())
    })?;
    local
        .sync()
        .with_context(|| format!("syncing the run's results in {}", local.root().display()))?;
    for key in &last {
        let bytes = aws.s3.get(key).map_err(|e| lost(run_id, &e))?;
        local
            .put(key, &bytes)
            .with_context(|| format!("writing the run's {key} here"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_execution_is_named_under_its_machine_not_a_version_or_alias() {
        let machine = "arn:aws:states:us-east-1:123456789012:stateMachine:cosmicai";
        let want = "arn:aws:states:us-east-1:123456789012:execution:cosmicai:run-1";
        assert_eq!(execution_arn(machine, "run-1"), want);
        assert_eq!(execution_arn(&format!("{machine}:3"), "run-1"), want);
        assert_eq!(execution_arn(&format!("{machine}:live"), "run-1"), want);
    }

    #[test]
    fn measures_are_listed_at_most_every_ms_per_rank_between_1_and_10_s() {
        let s = |ranks| relist_after(ranks).as_secs_f64();
        assert_eq!(
            (s(3), s(2_500), s(10_000), s(40_000)),
            (1.0, 2.5, 10.0, 10.0)
        );
    }

    #[test]
    fn a_rank_that_wrote_its_error_is_failed_not_finished() {
        let done = RankMeasure {
            rank: 3,
            attempts: 1,
            ..Default::default()
        };
        assert!(
            matches!(event_of(done.clone()), RunEvent::RankFinished { measure } if measure.rank == 3)
        );
        let stopped = RankMeasure {
            error: Some("the rank stopped 281 s after its Infer state began".into()),
            ..done
        };
        match event_of(stopped) {
            RunEvent::RankFailed {
                rank,
                attempt,
                error,
                retrying,
            } => {
                assert_eq!((rank, attempt, retrying), (3, 1, false));
                assert!(error.contains("281 s"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A cancelled run's launcher waits for its ranks in flight as long as the
    /// state machine waits for them after a failed Map.
    #[test]
    fn a_cancel_waits_as_long_as_the_state_machine_after_a_failed_map() {
        let asl: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../infra/aws/statemachine.asl.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            asl["States"]["RanksStopping"]["Seconds"].as_f64(),
            Some(IN_FLIGHT_WAIT_S)
        );
    }
}
