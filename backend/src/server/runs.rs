//! Runs started from the API: each runs on its own thread with the same code as
//! `cosmicai run`, and its events are kept for the live view (Server-Sent Events).

use super::error::Error;
use super::guard::{MemoryBudget, Slot};
use super::models::ServedModels;
use crate::aws::AwsConfig;
use crate::coordinator::{self, Executor, RunControl, check_device};
use cosmicai_shared::api::{RunEvent, RunLaunch, Target};
use cosmicai_shared::run::{RunRequest, RunStatus, check_key};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A run this server started: its events so far and how to stop it.
pub struct LiveRun {
    events: Mutex<Vec<RunEvent>>,
    /// Number of events, for waiting on the next one.
    count: watch::Sender<usize>,
    pub cancel: Arc<AtomicBool>,
    /// The sweep that runs it, which alone can stop it.
    pub sweep: Option<String>,
}

/// `event` as the API gives it: its error without the host's paths.
pub(super) fn redacted(mut event: RunEvent) -> RunEvent {
    if let RunEvent::RankFailed { error, .. } | RunEvent::Error { error } = &mut event {
        *error = super::error::redact(error);
    }
    event
}

impl LiveRun {
    fn new(sweep: Option<String>) -> Self {
        LiveRun {
            events: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            cancel: Arc::default(),
            sweep,
        }
    }

    fn push(&self, event: RunEvent) {
        let event = redacted(event);
        let n = {
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            events.push(event);
            events.len()
        };
        self.count.send_replace(n);
    }

    /// At most `limit` events from number `from` on, and how many there are.
    pub fn events_page(&self, from: usize, limit: usize) -> (Vec<RunEvent>, usize) {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let page = events.iter().skip(from).take(limit).cloned().collect();
        (page, events.len())
    }

    /// How many events there are so far.
    pub fn len(&self) -> usize {
        *self.count.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Whether these events are not run `row`'s now: they ended, and the
    /// registry says otherwise (the run resumed by another process since,
    /// running or ended in its turn).
    pub fn is_stale(&self, row: RunStatus) -> bool {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        match events.last() {
            Some(RunEvent::Finished { status }) => *status != row,
            Some(RunEvent::Error { .. }) => row == RunStatus::Running,
            _ => false,
        }
    }

    pub fn is_over(&self) -> bool {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events
            .last()
            .is_some_and(|e| matches!(e, RunEvent::Finished { .. } | RunEvent::Error { .. }))
    }
}

/// Most ranks of a run on this machine (the API's; the CLI takes more).
pub const MAX_LOCAL_WORLD_SIZE: usize = 10_000;

/// Most times a failed rank is started again.
pub const MAX_RETRIES: u32 = 10;

/// Runs kept in memory (with their events) before finished ones are dropped.
const KEPT: usize = 64;

type LiveRuns = Arc<Mutex<HashMap<String, Arc<LiveRun>>>>;

/// Adds run `id`; finished runs live on in the registry, their events need not.
fn insert(all: &LiveRuns, id: &str, live: Arc<LiveRun>) {
    let mut all = all.lock().unwrap_or_else(|e| e.into_inner());
    if all.len() >= KEPT {
        all.retain(|_, run| !run.is_over());
    }
    all.insert(id.to_string(), live);
}

#[derive(Default)]
pub struct Runs {
    live: LiveRuns,
    /// The AWS deployment runs with target `aws` go to (from the environment at start).
    aws: Option<AwsConfig>,
}

impl Runs {
    pub fn new(aws: Option<AwsConfig>) -> Self {
        Runs {
            live: LiveRuns::default(),
            aws,
        }
    }

    /// Keeps the events of sweep `sweep`'s runs as this server's own runs' are
    /// (their pages stream them): hand it each run's events under its id.
    pub fn follow_sweep(&self, sweep: &str) -> impl FnMut(&str, &RunEvent) + Send + 'static {
        let (all, sweep) = (self.live.clone(), sweep.to_string());
        let mut current: Option<(String, Arc<LiveRun>)> = None;
        move |id, event| {
            let live = match &current {
                Some((run, live)) if run == id => live.clone(),
                _ => {
                    let live = Arc::new(LiveRun::new(Some(sweep.clone())));
                    insert(&all, id, live.clone());
                    current = Some((id.to_string(), live.clone()));
                    live
                }
            };
            live.push(event.clone());
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveRun>> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Validates `launch` and starts it as run `id`, holding `slot`, and for a
    /// local run its share of `budget`, until it ends; or says what is wrong
    /// with the request (422) or the server's load (429).
    pub fn start(
        &self,
        data_dir: &Path,
        models: &ServedModels,
        launch: &RunLaunch,
        id: &str,
        slot: Slot,
        budget: &Arc<MemoryBudget>,
    ) -> Result<(), Error> {
        let invalid = |e: String| Error(axum::http::StatusCode::UNPROCESSABLE_ENTITY, e);
        let request = request_of(data_dir, models, launch, id).map_err(invalid)?;
        // Data already in the bucket: its folder, checked before anything starts.
        let in_bucket = match (&launch.s3_data, launch.target, &self.aws) {
            (None, ..) => None,
            (Some(_), Target::Local, _) => {
                return Err(invalid(
                    "s3_data names partitions already in S3, for the AWS deployment: give target aws, or data_prefix for data here".into(),
                ));
            }
            (Some(given), Target::Aws, Some(config)) => Some(
                crate::aws::data_in_s3("s3_data", given, &config.bucket)
                    .map_err(|e| invalid(format!("{e:#}")))?,
            ),
            (Some(_), Target::Aws, None) => None,
        };
        let (aws, memory) = match (launch.target, &self.aws) {
            (Target::Local, _) => {
                check_device(request.device).map_err(|e| invalid(format!("{e:#}")))?;
                // As many ranks at once as the cores and the free budget allow,
                // counting only ranks that start a worker (those planned a file).
                let working = coordinator::working_ranks(
                    request.world_size,
                    coordinator::planned_files(data_dir, &request),
                );
                let (ranks, _) = coordinator::concurrency_and_threads(None, working);
                let ranks = ranks.min(working.max(1));
                (None, Some(budget.reserve(request.memory_mb, 1, ranks)?))
            }
            // Lambda has no GPU: cuda ranks go to the stack's AWS Batch queue.
            (Target::Aws, Some(config)) => (Some(config.clone()), None),
            (Target::Aws, None) => return Err(invalid("target aws: this server has no AWS deployment; start it with COSMICAI_AWS_BUCKET and COSMICAI_STATE_MACHINE_ARN set (the outputs of infra/aws/template.yaml), or run with target local".into())),
        };
        let live = Arc::new(LiveRun::new(None));
        insert(&self.live, id, live.clone());
        // Its row before its id is given out: GET /api/runs/{id} finds it at
        // once, and while it is planned (a conversion, an upload: minutes).
        if let Err(e) = crate::registry::Registry::in_folder(data_dir)
            .and_then(|registry| registry.start(id, &request))
        {
            // Never started: not left in memory as a run that never ends.
            self.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            return Err(Error::internal(e));
        }
        let (root, run_id) = (data_dir.to_path_buf(), id.to_string());
        std::thread::spawn(move || {
            let control = RunControl {
                quiet: true,
                cancel: live.cancel.clone(),
            };
            // The dataset goes to the same folder name in the bucket.
            let executor = match aws {
                None => Ok(Executor::Local {
                    concurrency: memory.as_ref().map(|m| m.ranks()),
                }),
                Some(config) => crate::aws::Aws::connect(config).map(|aws| Executor::Aws {
                    aws: Box::new(aws),
                    data: match in_bucket {
                        Some(data) => coordinator::AwsData::InBucket(data),
                        None => coordinator::AwsData::Upload(request.data_prefix.clone()),
                    },
                }),
            };
            // A panic in the run is its error: the stream still ends and the
            // slot is still freed (the executor has stopped its workers first).
            let outcome = executor.and_then(|executor| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    coordinator::execute(&root, &request, &run_id, &executor, control, &mut |e| {
                        live.push(e.clone())
                    })
                }))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the run's coordinator panicked")))
            });
            // The coordinator closes the row of a run it ran; one it never
            // started, or a local one that panicked, is closed here (an AWS one
            // left interrupted is followed again at the next start).
            // A run that wrote its own summary.json (then failed to close its
            // row, or panicked after) is closed from that summary, not failed.
            if let Err(e) = &outcome
                && !e.is::<crate::aws::LostContact>()
            {
                let _ = crate::registry::Registry::in_folder(&root).and_then(|registry| {
                    match crate::registry::ended_summary(&root, &run_id, &request.result_path) {
                        Some(summary) => registry.finish(&summary),
                        None => registry.fail_if_running(&run_id, &format!("{e:#}")),
                    }
                });
            }
            let last = crate::coordinator::last_event(&outcome);
            // Free the slot first: whoever saw the run end may start the next.
            drop(memory);
            drop(slot);
            live.push(last);
        });
        Ok(())
    }
}

/// A run checked for resuming, with what it holds while it runs.
enum CheckedResume {
    /// Its ranks run here, in the memory reserved for them.
    Local(Box<coordinator::Resumable>, super::guard::Reservation),
    /// A new execution of its stack runs them.
    Aws(Box<crate::aws::AwsResumable>),
}

impl Runs {
    /// Whether runs with target `aws` can be started (and AWS runs resumed).
    pub fn has_aws(&self) -> bool {
        self.aws.is_some()
    }

    /// Resumes run `id` of `data_dir`'s registry (see [`coordinator::resume`];
    /// an AWS run on a new execution of its stack), holding `slot`, and for a
    /// local run the memory of the ranks it may run, until it ends; or says why
    /// it cannot (409), the server's load (429), or that its bucket did not
    /// answer (503). Checks that end after `deadline` start nothing (the
    /// caller was told the request timed out).
    pub fn resume(
        &self,
        data_dir: &Path,
        id: &str,
        slot: Slot,
        budget: &Arc<MemoryBudget>,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let conflict = |e: String| Error(axum::http::StatusCode::CONFLICT, e);
        let live = Arc::new(LiveRun::new(None));
        // Its place is taken under the lock (two resumes of one run at once:
        // the registry's claim cannot tell this process from itself); the
        // checks, which read files (an AWS run's: its bucket), run outside it.
        let previous = {
            let mut all = self.live.lock().unwrap_or_else(|e| e.into_inner());
            match all.get(id) {
                Some(run) if !run.is_over() => {
                    return Err(conflict(format!(
                        "run {id} is running: cancel it first, or wait for its end"
                    )));
                }
                Some(run) if run.sweep.is_some() => {
                    return Err(conflict(format!(
                        "run {id} is part of sweep {}: its runs are the sweep's (run a new sweep)",
                        run.sweep.as_deref().unwrap_or_default()
                    )));
                }
                _ => {}
            }
            all.insert(id.to_string(), live.clone())
        };
        let checked = self
            .check_resume(data_dir, id, budget)
            .and_then(|checked| match std::time::Instant::now() > deadline {
                false => Ok(checked),
                true => Err(Error(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "run {id}: its checks took longer than the API waits (a slow bucket, or many ranks' measures to read): nothing was started; try again, or resume it with `cosmicai run --data DATA_DIR --resume {id}`"
                    ),
                )),
            });
        let checked = match checked {
            Ok(checked) => checked,
            Err(e) => {
                // A stream opened on it meanwhile ends; its place is given
                // back (the run's earlier events with it).
                live.push(RunEvent::Error { error: e.1.clone() });
                let mut all = self.live.lock().unwrap_or_else(|e| e.into_inner());
                if all.get(id).is_some_and(|run| Arc::ptr_eq(run, &live)) {
                    match previous {
                        Some(previous) => all.insert(id.to_string(), previous),
                        None => all.remove(id),
                    };
                }
                return Err(e);
            }
        };
        let root = data_dir.to_path_buf();
        std::thread::spawn(move || {
            let control = RunControl {
                quiet: true,
                cancel: live.cancel.clone(),
            };
            // The coordinator closes the row once it has claimed it; before
            // that (another process resuming it) the row is not this run's
            // to close. A panic is the run's error, and its recorder leaves
            // the row interrupted (an AWS one is followed again at the next start).
            let mut observe = |e: &RunEvent| live.push(e.clone());
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match checked {
                    CheckedResume::Local(resumable, memory) => {
                        let concurrency = Some(memory.ranks());
                        let outcome = coordinator::resume_checked(
                            &root,
                            *resumable,
                            concurrency,
                            control,
                            &mut observe,
                            started,
                        );
                        drop(memory);
                        outcome
                    }
                    CheckedResume::Aws(checked) => {
                        crate::aws::resume_checked_on_aws(&root, *checked, control, &mut observe)
                    }
                }))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the run's coordinator panicked")));
            let last = crate::coordinator::last_event(&outcome);
            drop(slot);
            live.push(last);
        });
        Ok(())
    }

    /// What [`Runs::resume`] checks before it answers: the run can be resumed
    /// here, and (a local run) the memory of its ranks is free.
    fn check_resume(
        &self,
        data_dir: &Path,
        id: &str,
        budget: &Arc<MemoryBudget>,
    ) -> Result<CheckedResume, Error> {
        let conflict = |e: String| Error(axum::http::StatusCode::CONFLICT, e);
        let refused = |e: anyhow::Error| conflict(super::error::redact(&format!("{e:#}")));
        let (_, run, _) = crate::registry::open_run(data_dir, id).map_err(refused)?;
        if run.aws.is_some() {
            if self.aws.is_none() {
                return Err(conflict(format!(
                    "run {id} ran on AWS, and this server has no AWS deployment: start it with COSMICAI_AWS_BUCKET and COSMICAI_STATE_MACHINE_ARN set, or resume the run with `cosmicai run --data DATA_DIR --resume {id}`"
                )));
            }
            // On the stack it ran on (as the CLI resumes it, and as this
            // server follows it again at start). A bucket that did not answer
            // is no conflict: the same request may pass in a minute.
            return crate::aws::aws_resumable(data_dir, id)
                .map(|checked| CheckedResume::Aws(Box::new(checked)))
                .map_err(|e| {
                    let unreachable = e.chain().any(|cause| {
                        matches!(
                            cause.downcast_ref::<cosmicai_engine::store::StoreError>(),
                            Some(
                                cosmicai_engine::store::StoreError::Io { .. }
                                    | cosmicai_engine::store::StoreError::Changed { .. }
                            )
                        )
                    });
                    match unreachable {
                        true => Error(
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            super::error::redact(&format!("{e:#}")),
                        ),
                        false => refused(e),
                    }
                });
        }
        let resumable = coordinator::resumable(data_dir, id).map_err(refused)?;
        let working = resumable.working();
        if resumable.payload.request.world_size > MAX_LOCAL_WORLD_SIZE {
            return Err(conflict(format!(
                "run {id} has {} ranks, more than this server runs ({MAX_LOCAL_WORLD_SIZE}): resume it with `cosmicai run --resume`",
                resumable.payload.request.world_size
            )));
        }
        let (ranks, _) = coordinator::concurrency_and_threads(None, working);
        let memory = budget.reserve(
            resumable.payload.request.memory_mb,
            1,
            ranks.min(working.max(1)),
        )?;
        Ok(CheckedResume::Local(Box::new(resumable), memory))
    }
}

/// The pipeline request for `launch`, checked; paths never leave `data_dir`.
pub fn request_of(
    data_dir: &Path,
    models: &ServedModels,
    launch: &RunLaunch,
    id: &str,
) -> Result<RunRequest, String> {
    let data_prefix = launch
        .data_prefix
        .clone()
        .unwrap_or_else(|| "catalog".into());
    let request = RunRequest {
        bucket: "local".into(),
        data_bucket: None,
        data_prefix: data_prefix.trim_matches('/').to_string(),
        file_limit: launch.file_limit,
        batch_size: launch.batch_size,
        world_size: launch.world_size,
        result_path: format!("results/{id}"),
        device: launch.device,
        precision: launch.precision,
        memory_mb: launch.memory_mb.unwrap_or(2048),
        model: models.resolve(launch.model.as_deref())?,
        retries: launch.retries,
        tolerated_failure_percentage: 100.0,
        timeout_s: launch.timeout_s,
    };
    let mut problems = request.problems();
    if let Some(prefix) = launch.data_prefix.as_deref()
        && problems.is_empty()
        && let Err(e) = check_data_prefix(prefix)
    {
        problems.push(e);
    }
    let host_mb = cosmicai_engine::system::memory_mb();
    if launch.target == Target::Local && host_mb > 0.0 && f64::from(request.memory_mb) > host_mb {
        problems.push(format!(
            "memory_mb {} is more than this host's {host_mb:.0} MB",
            request.memory_mb
        ));
    }
    // Ranks run here one process each, their events kept in memory: CAI's
    // rank-per-file world sizes are for AWS.
    if launch.target == Target::Local && request.world_size > MAX_LOCAL_WORLD_SIZE {
        problems.push(format!(
            "world_size {}: at most {MAX_LOCAL_WORLD_SIZE} ranks on this machine (target aws takes up to {})",
            request.world_size,
            cosmicai_shared::run::MAX_WORLD_SIZE
        ));
    }
    if launch.retries > MAX_RETRIES {
        problems.push(format!(
            "retries {} is more than {MAX_RETRIES}",
            launch.retries
        ));
    }
    // Data already in the bucket is not read here: no local dataset needed.
    let in_bucket = launch.target == Target::Aws && launch.s3_data.is_some();
    if problems.is_empty() && !in_bucket && !dataset_dir(data_dir, &request.data_prefix).is_dir() {
        problems.push(format!(
            "data_prefix '{}': no such dataset in the data directory",
            request.data_prefix
        ));
    }
    if problems.is_empty()
        && !in_bucket
        && let Some(e) = lacks_cutouts(data_dir, &request.data_prefix, &request.model)
    {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(request)
    } else {
        Err(problems.join("; "))
    }
}

/// Why `model` cannot run on the dataset at `dir`: a model that reads cutouts
/// given a folder whose first partition has none would fail in every rank,
/// after the launch. Folders of CAI `.pt` files (converted at the run) hold
/// cutouts, and are not looked into.
fn lacks_cutouts(data_dir: &Path, data_prefix: &str, model: &str) -> Option<String> {
    use cosmicai_shared::model::ModelSpec;
    let spec = match ModelSpec::parse(model) {
        Ok(spec @ ModelSpec::AstroMae(_)) => spec,
        _ => return None,
    };
    let dir = dataset_dir(data_dir, data_prefix);
    let first = cosmicai_engine::dataset::list_partitions(&dir)
        .ok()?
        .into_iter()
        .next()?;
    let file = cosmicai_engine::partition::PartitionFile::open(&first).ok()?;
    file.image_size().is_none().then(|| {
        format!(
            "model '{}' reads cutouts, and data_prefix '{data_prefix}' has none (magnitudes \
             only): choose a dataset with images (`cosmicai synth` or `cosmicai ingest` makes \
             one), or PhotoZ",
            super::models::name_of(&spec)
        )
    })
}

/// A data prefix spelled one way only (`selections/sel-x`, not
/// `./selections//sel-x`): runs and selections are matched by it (a selection
/// a run reads is kept), and `.` would read the whole data directory.
fn check_data_prefix(prefix: &str) -> Result<(), String> {
    let trimmed = prefix.trim_matches('/');
    if check_key(prefix).is_err()
        || trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return Err(format!(
            "data_prefix {prefix:?} must name a folder inside the data directory, as a/b (no empty parts, none starting with '.')"
        ));
    }
    match trimmed.split('/').next() {
        Some(top @ ("results" | "models")) => Err(format!(
            "data_prefix {prefix:?}: '{top}' is where the server keeps runs' {top}, not partitions"
        )),
        _ => Ok(()),
    }
}

fn dataset_dir(data_dir: &Path, prefix: &str) -> PathBuf {
    data_dir.join(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_in_pages() {
        let live = LiveRun::new(None);
        for rank in 0..2500 {
            live.push(RunEvent::RankReady { rank });
        }
        let rank_of = |e: &RunEvent| match e {
            RunEvent::RankReady { rank } => *rank,
            other => panic!("{other:?}"),
        };
        let (page, total) = live.events_page(0, 1000);
        assert_eq!((page.len(), total), (1000, 2500));
        let (page, _) = live.events_page(2000, 1000);
        assert_eq!(page.len(), 500);
        assert_eq!((rank_of(&page[0]), rank_of(&page[499])), (2000, 2499));
        assert!(live.events_page(usize::MAX, 1000).0.is_empty());
    }

    #[test]
    fn an_attempts_ended_events_are_stale_once_the_run_went_on_elsewhere() {
        let live = LiveRun::new(None);
        live.push(RunEvent::RankStarted {
            rank: 0,
            attempt: 1,
        });
        // Still running here: its own.
        assert!(!live.is_stale(RunStatus::Running));
        live.push(RunEvent::Finished {
            status: RunStatus::Cancelled,
        });
        assert!(!live.is_stale(RunStatus::Cancelled));
        // Resumed by the CLI since: running there, or ended otherwise.
        assert!(live.is_stale(RunStatus::Running));
        assert!(live.is_stale(RunStatus::Succeeded));
    }

    #[test]
    fn a_sweeps_runs_are_followed_each_under_its_id() {
        let runs = Runs::new(None);
        let mut follow = runs.follow_sweep("sweep-1");
        follow("run-a", &RunEvent::RankReady { rank: 0 });
        follow(
            "run-a",
            &RunEvent::Finished {
                status: cosmicai_shared::run::RunStatus::Succeeded,
            },
        );
        follow("run-b", &RunEvent::RankReady { rank: 1 });
        let (a, b) = (runs.get("run-a").unwrap(), runs.get("run-b").unwrap());
        assert_eq!((a.len(), b.len()), (2, 1));
        assert!(a.is_over() && !b.is_over());
        assert_eq!(b.sweep.as_deref(), Some("sweep-1"));
        assert!(runs.get("run-c").is_none());
    }

    #[test]
    fn a_model_that_reads_cutouts_is_refused_data_without_them() {
        use cosmicai_engine::partition::{Partition, write_partition};
        let data = tempfile::tempdir().unwrap();
        for (folder, side) in [("catalog", None), ("cutouts", Some(32))] {
            std::fs::create_dir(data.path().join(folder)).unwrap();
            let path = data.path().join(folder).join("part-000000.safetensors");
            write_partition(path, &Partition::blank(1, side)).unwrap();
        }
        let e = lacks_cutouts(data.path(), "catalog", "astromae:/srv/models/m.pt").unwrap();
        assert!(
            e.contains("model 'astromae:m.pt' reads cutouts, and data_prefix 'catalog' has none"),
            "{e}"
        );
        assert_eq!(
            lacks_cutouts(data.path(), "cutouts", "astromae:/srv/models/m.pt"),
            None
        );
        assert_eq!(lacks_cutouts(data.path(), "catalog", "photoz"), None);
        // A folder of CAI .pt files, or none at all: left to the run to judge.
        assert_eq!(
            lacks_cutouts(data.path(), "nowhere", "astromae:/srv/models/m.pt"),
            None
        );
    }

    #[test]
    fn a_data_prefix_is_spelled_one_way() {
        for good in ["catalog", "selections/sel-1", "cai/", "demo/partitions"] {
            assert_eq!(check_data_prefix(good), Ok(()), "{good}");
        }
        for bad in [
            ".",
            "./",
            "./catalog",
            "selections//sel-1",
            "selections/.tmp-x",
            "..",
            "a/../b",
            "",
            "/",
        ] {
            let e = check_data_prefix(bad).unwrap_err();
            assert!(e.contains("must name a folder"), "{bad}: {e}");
        }
        for kept in ["results", "results/run-1", "models"] {
            let e = check_data_prefix(kept).unwrap_err();
            assert!(e.contains("where the server keeps"), "{kept}: {e}");
        }
    }

    /// Clients and the API fuzzer generate requests from the OpenAPI document:
    /// each bound it states for a run is the one `request_of` enforces, taken
    /// at the bound and one step past it.
    #[test]
    fn the_documents_bounds_for_a_run_are_the_ones_enforced() {
        let doc: serde_json::Value = serde_json::from_str(&crate::server::openapi_json()).unwrap();
        let fields = &doc["components"]["schemas"]["RunLaunch"]["properties"];
        let data = tempfile::tempdir().unwrap();
        let models = ServedModels::load(&[], data.path()).unwrap();
        // On AWS with data already in S3: no local dataset, host memory or
        // local world size comes into it.
        let check = |field: &str, value: serde_json::Value| {
            let mut launch = serde_json::json!({
                "target": "aws", "s3_data": "cai/", "world_size": 1, "batch_size": 1,
            });
            launch[field] = value;
            let launch: RunLaunch = serde_json::from_value(launch).unwrap();
            request_of(data.path(), &models, &launch, "run-1")
        };
        let mut checked = 0;
        for (field, schema) in fields.as_object().unwrap() {
            let bound = |name: &str| schema.get(name).and_then(|b| b.as_f64());
            let steps: Vec<(f64, f64)> = [
                bound("minimum").map(|b| (b, b - 1.0)),
                bound("maximum").map(|b| (b, b + 1.0)),
                bound("exclusiveMinimum").map(|b| (b + 0.5, b)),
            ]
            .into_iter()
            .flatten()
            .collect();
            for (inside, outside) in steps {
                let as_json = |v: f64| match v.fract() == 0.0 && v >= 0.0 {
                    true => serde_json::json!(v as u64),
                    false => serde_json::json!(v),
                };
                if let Err(e) = check(field, as_json(inside)) {
                    panic!("{field} = {inside}, within the document's bounds, refused: {e}");
                }
                // Below zero an unsigned field is not even read: also refused.
                if outside >= 0.0 {
                    let e = check(field, as_json(outside)).unwrap_err();
                    assert!(e.contains(field), "{field} = {outside}: {e}");
                }
                checked += 1;
            }
        }
        // world_size, batch_size, memory_mb, retries (its 0 utoipa's, as a u32)
        // and timeout_s both ways, and file_limit.
        assert_eq!(checked, 11, "{fields}");
    }
}
