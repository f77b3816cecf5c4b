//! The run coordinator: one run from request to result, wherever its ranks execute.
//!
//! Every way to start a run comes here: `cosmicai run` and `cosmicai sweep`, the
//! API's runs and sweeps, locally or on AWS. A run goes
//! request → plan (Initialize) → ranks (the [`Executor`]: local processes, or Step
//! Functions + Lambda) → measures → summary (Summarize, with the cost computed
//! once) → registry row; a local run that did not finish is resumed from its
//! plan, its finished ranks kept (`resume`). One [`record::Recorder`] turns the executor's events into
//! registry rows, terminal bars and the API's live events, so they cannot drift.
//!
//! It lives in the backend, not the engine, because it owns the SQLite registry and
//! the AWS launcher; the engine stays free of both.

mod estimate;
mod local;
mod reattach;
mod record;
mod resume;
mod sweep;
mod watch;

pub use estimate::{Rates, estimate};
pub use reattach::{adopt, reattach, reattach_interrupted};
pub use record::{Recorder, RunControl};
pub use resume::{
    LAST_SUMMARY, Resumable, may_resume, remove_last_summary, resumable, resume, resume_checked,
};
pub use sweep::sweep;
pub use watch::watch;

use crate::aws::Aws;
use anyhow::{Context, Result, bail};
use cosmicai_engine::pipeline::RunSummary;
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::{Device, RunRequest};
use std::path::Path;

/// Where a run's ranks execute.
pub enum Executor {
    /// One `cosmicai worker` process per rank on this machine; at most
    /// `concurrency` at once (default: the number of cores).
    Local { concurrency: Option<usize> },
    /// The stack's state machine, over `data` (uploaded first, or already in
    /// the bucket); results come back.
    Aws { aws: Box<Aws>, data: AwsData },
}

/// Where the partitions of a run on AWS come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AwsData {
    /// The local dataset, uploaded to this prefix of the bucket first (only
    /// what is not there yet).
    Upload(String),
    /// Partitions (ours, or CAI's `.pt`) already in S3, in the stack's bucket
    /// or another (a CAI user's data bucket), run where they are: nothing goes up.
    InBucket(crate::aws::DataInS3),
}

/// Runs `request` on the data directory `root` as run `run_id`, recording it in
/// `root/cosmicai.sqlite`; `observe` sees every rank event as it happens.
pub fn execute(
    root: &Path,
    request: &RunRequest,
    run_id: &str,
    executor: &Executor,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
) -> Result<RunSummary> {
    // A request that is invalid, or this machine cannot run, is refused
    // before it has a row.
    let problems = request.problems();
    if !problems.is_empty() {
        return Err(cosmicai_engine::pipeline::PipelineError::Invalid(problems).into());
    }
    if matches!(executor, Executor::Local { .. }) {
        check_device(request.device)?;
    }
    let mut recorder = record::Recorder::new(root, run_id, request.world_size, control, observe)?;
    // Its row from the start: a run that fails while it is planned (a
    // conversion, an upload) is listed with its error, not lost.
    recorder.start(request, &[])?;
    let outcome = match executor {
        Executor::Local { concurrency } => {
            local::execute(root, request, run_id, *concurrency, &mut recorder)
        }
        Executor::Aws { aws, data } => {
            crate::aws::execute_on_aws(aws, root, request, data, run_id, &mut recorder)
        }
    };
    recorder.end(outcome)
}

/// A run stopped by its cancel before it had a summary (in its conversion or
/// upload, or on AWS), raised where the cancel acts: its row is closed
/// `cancelled`. Any other error closes it `failed`, cancel or not.
#[derive(Debug)]
pub struct Cancelled(pub String);

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cancelled {}

/// What a run's live view is told last: its status, as its row and summary
/// say (finished cancelled where its cancel stopped it before a summary), or
/// the error that ended it.
pub fn last_event(outcome: &Result<RunSummary>) -> RunEvent {
    match outcome {
        Ok(summary) => RunEvent::Finished {
            status: summary.status,
        },
        Err(e) if e.is::<Cancelled>() => RunEvent::Finished {
            status: cosmicai_shared::run::RunStatus::Cancelled,
        },
        Err(e) => RunEvent::Error {
            error: crate::output::chain(e),
        },
    }
}

/// `request` with its `data_prefix` turned to the converted folder where it
/// names a folder of CAI `.pt` partitions (converted once, here: ranks, local or
/// on Lambda, read ours only); `when` ends the line that says so.
pub fn with_converted_data(
    root: &Path,
    request: &RunRequest,
    recorder: &mut Recorder,
    when: &str,
) -> Result<RunRequest> {
    let mut left_out = Vec::new();
    let recorder = &*recorder;
    // Made only where there are files to convert now: gigabytes take minutes.
    let bar = std::cell::OnceCell::new();
    let converted = cosmicai_engine::cai::converted_prefix_with(
        root,
        &request.data_prefix,
        request.file_limit,
        |n, out| {
            recorder.println(&format!(
                "{}: {n} CAI .pt files; converting them into {} (once){when}",
                root.join(&request.data_prefix).display(),
                out.display()
            ));
            let _ = bar.set(recorder.files_bar(n, "converting CAI .pt files"));
        },
        |file| left_out.push(file.to_owned()),
        |file, _| {
            if let Some(bar) = bar.get() {
                bar.set_message(
                    file.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                );
                bar.inc(1);
            }
        },
        &|| !recorder.cancel.load(std::sync::atomic::Ordering::Relaxed),
    );
    let data_prefix = match converted {
        // Stopped between files by the cancel (the engine says which file).
        Err(e) if e.stopped => return Err(Cancelled(e.to_string()).into()),
        other => other?,
    };
    if let Some(bar) = bar.get() {
        bar.finish_and_clear();
    }
    for file in left_out {
        recorder.println(&format!(
            "{}: a model checkpoint, not a partition: left out of the data",
            file.display()
        ));
    }
    Ok(RunRequest {
        data_prefix,
        ..request.clone()
    })
}

/// A run id that sorts by time: `run-<unix seconds>-<pid>-<sequence in this process>`.
pub fn new_run_id() -> String {
    static SEQUENCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Zero-padded, so ids of one second sort in the order they were made.
    format!("run-{secs}-{}-{n:06}", std::process::id())
}

/// A new sweep's id: a run id's stamp, under its own prefix.
pub fn new_sweep_id() -> String {
    format!("sweep-{}", new_run_id().trim_start_matches("run-"))
}

/// Refuses a CUDA run up front when this build or machine cannot run one.
pub fn check_device(device: Device) -> Result<()> {
    if device == Device::Cuda
        && let Some(why) = cosmicai_engine::system::cuda_unavailable()
    {
        bail!("device cuda: {why}; no rank was started");
    }
    Ok(())
}

/// The partition files `request` plans on the data directory `root` (its
/// `file_limit` taken), whatever its world size; `None` where no plan can be
/// made (the run will say why).
pub fn planned_files(root: &Path, request: &RunRequest) -> Option<usize> {
    let store = cosmicai_engine::store::LocalStore::new(root);
    cosmicai_engine::pipeline::plan(&store, request, "planned-files")
        .ok()
        .map(|p| p.files.len())
}

/// How many of `world_size` ranks start a worker over `files` partition
/// files: those planned a file, one per file at most (`plan_ranks` gives every
/// rank one while there are enough). All of them where the files are unknown.
pub fn working_ranks(world_size: usize, files: Option<usize>) -> usize {
    files.map_or(world_size, |n| world_size.min(n))
}

/// Ranks at once, and CPU threads each worker may use (the cores shared among them).
pub fn concurrency_and_threads(concurrency: Option<usize>, world_size: usize) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let concurrency = concurrency.unwrap_or(cores).max(1);
    (
        concurrency,
        (cores / concurrency.min(world_size.max(1))).max(1),
    )
}

/// The request with its model's weight file made absolute (workers may start
/// elsewhere), or an error naming the file when it is not there or holds no
/// such model: found once here, not by every rank after all have started.
pub fn with_local_weights(mut request: RunRequest) -> Result<RunRequest> {
    let spec = request.model_spec().map_err(anyhow::Error::msg)?;
    if let Some(path) = spec.weights() {
        let absolute = std::fs::canonicalize(path)
            .with_context(|| format!("model '{spec}': weights file {path}"))?;
        let weights = cosmicai_model::weights::Weights::open(&absolute)?;
        cosmicai_engine::redshift_model::check_weights(&spec, &weights)
            .map_err(anyhow::Error::msg)?;
        let absolute = absolute.display().to_string();
        request.model = match spec {
            ModelSpec::PhotoZ(_) => ModelSpec::PhotoZ(Some(absolute)),
            ModelSpec::AstroMae(_) => ModelSpec::AstroMae(absolute),
        }
        .to_string();
    }
    Ok(request)
}
