//! Initialize: the run planned from its request, `payload.json` and the Map's
//! items (`plan.json`) written, and every refusal made before a rank is paid for.

use crate::data::{data_store, in_our_region, stores};
use crate::weights::{check_weights, object_exists, readable_weights_bucket, weights_location};
use crate::{S3Settings, StageError};
use cosmicai_engine::pipeline::{
    Payload, check_rank_time, check_room, initialize_with, plan_key, resume_plan,
};
use cosmicai_engine::store::ObjectStore;
use cosmicai_shared::aws::{InitializeOutput, RankItem};
use cosmicai_shared::run::{Device, RunRequest};
use std::time::Instant;

/// The workers as the state machine's definition gives them (the template's
/// `MemorySize` and `EphemeralStorageMB`); `None` from a stack deployed before.
#[derive(Clone, Copy, Default)]
pub(crate) struct Workers<'a> {
    pub memory_mb: Option<&'a str>,
    pub storage_mb: Option<&'a str>,
    /// The template's `InputBucket`, as the definition gives it (the
    /// function's own `COSMICAI_INPUT_BUCKET` comes first).
    pub input_bucket: Option<&'a str>,
}

/// Initialize: validate, plan, write `payload.json`, hand the Map its items.
pub(crate) fn initialize_stage(
    settings: &S3Settings,
    run_id: &str,
    request: &RunRequest,
    workers: Workers,
    resume_of: Option<&str>,
) -> Result<InitializeOutput, StageError> {
    // A resuming execution (its own name in `run_id`) works for the run it resumes.
    let run_id = resume_of.unwrap_or(run_id);
    let started = Instant::now();
    // Lambda's own figure for this function (the workers' too), else the one
    // the state machine was deployed with.
    let function_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").ok();
    let request = &with_function_memory(request, function_mb.as_deref().or(workers.memory_mb));
    // A GPU run's execution name names its Batch jobs, which take fewer characters.
    if request.device == Device::Cuda {
        batch_job_names(run_id)?;
    }
    let storage_mb = workers
        .storage_mb
        .and_then(cosmicai_engine::pipeline::storage_mb);
    let spec = request.model_spec().map_err(StageError::invalid)?;
    // The function may write only under the deployment's results prefix (its IAM policy).
    if let Ok(prefix) = std::env::var("COSMICAI_RESULTS_PREFIX") {
        cosmicai_shared::run::check_results_prefix(&request.result_path, &prefix)
            .map_err(StageError::invalid)?;
        let prefix = format!("{}/", prefix.trim_matches('/'));
        // Past runs' predictions are partitions to a listing: never data.
        let data = format!("{}/", request.data_prefix.trim_matches('/'));
        if request.partitions_bucket() == request.bucket && data.starts_with(&prefix) {
            return Err(StageError::invalid(format!(
                "data_prefix '{}' is inside '{prefix}', where this deployment keeps its runs' results: give the folder that holds the partitions",
                request.data_prefix
            )));
        }
    }
    own_bucket(
        request,
        std::env::var("COSMICAI_MODEL_BUCKET").ok().as_deref(),
    )?;
    let store = settings
        .connect(&request.bucket)
        .map_err(StageError::invalid)?;
    // The template's InputBucket: the one other bucket the workers may read.
    let input_bucket = std::env::var("COSMICAI_INPUT_BUCKET")
        .ok()
        .or(workers.input_bucket.map(str::to_string));
    let data_store = data_store(settings, request, input_bucket.as_deref())?;
    if let Some(data) = &data_store {
        in_our_region(data)?;
    }
    let stores = stores(&store, data_store.as_ref());
    // A model whose weights cannot be found fails here, before any rank is paid for.
    if let Some(path) = spec.weights() {
        let (bucket, key) = weights_location(path, &request.bucket);
        readable_weights_bucket(
            &bucket,
            &request.bucket,
            std::env::var("COSMICAI_WEIGHTS_BUCKET").ok().as_deref(),
            input_bucket.as_deref(),
        )
        .map_err(|e| StageError::invalid(format!("model '{spec}': {e}")))?;
        let found = if bucket == request.bucket {
            object_exists(&store, &key)
        } else {
            settings
                .connect(&bucket)
                .and_then(|other| object_exists(&other, &key))
        };
        match found {
            // Built once here: a file that holds no such model (an optimizer
            // state, another network) fails the run by name, before its ranks
            // each load it and fail.
            Ok(true) => check_weights(settings, &store, &spec)?,
            Ok(false) => {
                return Err(StageError::invalid(format!(
                    "model '{spec}': no object s3://{bucket}/{key}; upload the weights first"
                )));
            }
            Err(e) => return Err(StageError::failed(format!("model '{spec}': {e}"))),
        }
    }
    let (items, files, tolerated) = match resume_of {
        // The run's own plan, its partitions unchanged, its ranks that finished
        // before kept: the Map runs the others only.
        Some(_) => {
            let resumed = resume_plan(stores, request, run_id)?;
            // Checked at this deployment's memory and /tmp (redeployed since?).
            let at = Payload {
                request: RunRequest {
                    memory_mb: request.memory_mb,
                    ..resumed.payload.request.clone()
                },
                ..resumed.payload.clone()
            };
            if let Some(mb) = storage_mb {
                check_room(&at, mb)?;
            }
            check_rank_time(&at)?;
            let planned = plan_items(run_id, &resumed.payload);
            let working = planned.len();
            let items: Vec<RankItem> = planned
                .into_iter()
                .filter(|item| !resumed.kept(item.rank))
                .collect();
            eprintln!(
                "resuming run {run_id}: {} of {working} ranks run again, the others finished before",
                items.len()
            );
            let files = items
                .iter()
                .map(|item| resumed.payload.ranks.get(item.rank).map_or(0, Vec::len))
                .sum();
            let tolerated =
                resumed_tolerance(request.tolerated_failure_percentage, working, items.len());
            (items, files, tolerated)
        }
        None => {
            // CPU ranks run in Express children, stopped at 5 minutes, GPU ranks in Batch
            // attempts stopped at an hour: a plan whose ranks could run longer is
            // refused before anything is written or paid for.
            let payload = initialize_with(stores, request, run_id, |payload| {
                if let Some(mb) = storage_mb {
                    check_room(payload, mb)?;
                }
                check_rank_time(payload)
            })?;
            // In the function's log; the payload keeps them for whoever follows the run.
            for note in &payload.notes {
                eprintln!("note: {note}");
            }
            let files = payload.files.len();
            (
                plan_items(run_id, &payload),
                files,
                request.tolerated_failure_percentage,
            )
        }
    };
    let plan = plan_key(&request.result_path);
    let json = serde_json::to_vec(&items).map_err(|e| StageError::failed(e.to_string()))?;
    store
        .put(&plan, &json)
        .map_err(|e| StageError::failed(format!("{plan}: {e}")))?;
    let cpu = cpu_ceiling(
        std::env::var("COSMICAI_MAX_CONCURRENCY").ok().as_deref(),
        std::env::var("COSMICAI_RESERVED_CONCURRENCY")
            .ok()
            .as_deref(),
    );
    let ceiling = concurrency_ceiling(
        request.device,
        cpu.map(|n| n.to_string()).as_deref(),
        std::env::var("COSMICAI_GPU_MAX_VCPUS").ok().as_deref(),
    );
    let request = &RunRequest {
        tolerated_failure_percentage: tolerated,
        ..request.clone()
    };
    Ok(initialize_output(
        run_id,
        request,
        files,
        started.elapsed().as_secs_f64(),
        ceiling,
    ))
}

/// The request as the ranks will run it: Lambda gives every worker the function's
/// memory (the template's MemorySize), whatever `memory_mb` says, so the time
/// check, `payload.json` and the bill use that. A GPU run's ranks run on Batch
/// (their time and price do not read it), and its Initialize and Summarize in
/// this function, billed at its memory all the same.
pub(crate) fn with_function_memory(request: &RunRequest, function_mb: Option<&str>) -> RunRequest {
    let mut request = request.clone();
    let function_mb = function_mb.and_then(|mb| mb.trim().parse::<u32>().ok());
    if let Some(mb) = function_mb
        && mb != request.memory_mb
    {
        match request.device {
            Device::Cpu => eprintln!(
                "memory_mb {}: this deployment's workers have {mb} MB (template parameter MemorySize); the run is planned and priced at {mb} MB",
                request.memory_mb
            ),
            Device::Cuda => eprintln!(
                "memory_mb {}: this deployment's function has {mb} MB (template parameter MemorySize); Initialize and Summarize are priced at {mb} MB, the GPU ranks as g5.xlarge time",
                request.memory_mb
            ),
        }
        request.memory_mb = mb;
    }
    request
}

/// The Map's ToleratedFailurePercentage for a resume that runs `rerun` of
/// the run's `working` ranks again: the run tolerates `tolerated` percent of
/// all its ranks failing, so of these (the kept ones finished), that many
/// ranks. Step Functions counts the Map's items alone.
fn resumed_tolerance(tolerated: f64, working: usize, rerun: usize) -> f64 {
    if rerun == 0 {
        return tolerated;
    }
    (tolerated * working as f64 / rerun as f64).min(100.0)
}

/// Refuses an execution name that would not do as a Batch job name's start:
/// a GPU rank's job is `<execution name>-rank-<rank>`, and job names take
/// letters, digits, hyphens and underscores only, the first a letter or digit
/// (up to 128; SubmitJob's reference), where Step
/// Functions allows execution names with dots and other characters (a console
/// start of CAI's input file may name one so); SubmitJob would fail every rank.
fn batch_job_names(run_id: &str) -> Result<(), StageError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if run_id.chars().all(allowed) && run_id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Ok(());
    }
    Err(StageError::invalid(format!(
        "execution name '{run_id}': a GPU run's execution name starts its AWS Batch job names, which take only letters, digits, '-' and '_', and begin with a letter or digit; start the execution with such a name"
    )))
}

/// The Map's items: one per rank planned a file, written to `plan.json` (never
/// through the state). With more ranks than files, the others read nothing:
/// each would still cost a child execution, a Lambda call and its writes, and
/// Summarize counts them as done with no objects.
pub(crate) fn plan_items(run_id: &str, payload: &Payload) -> Vec<RankItem> {
    let request = &payload.request;
    (0..request.world_size)
        .filter(|&rank| payload.reads_files(rank))
        .map(|rank| RankItem {
            run_id: run_id.to_string(),
            bucket: request.bucket.clone(),
            result_path: request.result_path.clone(),
            rank,
            device: request.device,
            entered_at: None,
        })
        .collect()
}

/// Most CPU ranks at once, from the template's `MaxConcurrency` and
/// `ReservedConcurrency` (0 = not given): the smaller of those given (the
/// reservation caps the function whatever the Map asks), else 10 where neither
/// is. A template older than `COSMICAI_RESERVED_CONCURRENCY` put its
/// reservation in `COSMICAI_MAX_CONCURRENCY`.
pub(crate) fn cpu_ceiling(max: Option<&str>, reserved: Option<&str>) -> Option<usize> {
    let given = |v: Option<&str>| {
        v.and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    match (given(max), given(reserved)) {
        (Some(m), Some(r)) => Some(m.min(r)),
        (Some(n), None) | (None, Some(n)) => Some(n),
        (None, None) if reserved.is_some() => Some(10),
        (None, None) => None,
    }
}

/// Most ranks worth running at once: CPU ranks up to the function's reserved
/// concurrency (more would only be throttled), GPU ranks up to the jobs the
/// compute environment's vCPUs hold (`GpuMaxVcpus` over a job's 4). More GPU
/// ranks at once would only wait in the queue, each a `SubmitJob` against
/// Batch's 50 a second and a `.sync` task Step Functions keeps polling.
pub(crate) fn concurrency_ceiling(
    device: Device,
    reserved: Option<&str>,
    gpu_max_vcpus: Option<&str>,
) -> Option<usize> {
    let number = |v: Option<&str>| v.and_then(|v| v.trim().parse::<usize>().ok());
    match device {
        Device::Cpu => number(reserved),
        // Unset (a template older than this code): the template's default, 16.
        Device::Cuda => Some(
            (number(gpu_max_vcpus).unwrap_or(16)
                / cosmicai_engine::pipeline::BATCH_JOB_VCPUS as usize)
                .max(1),
        ),
    }
}

/// The most child executions a Distributed Map runs at once (Step Functions'
/// quota, "MaxConcurrency ... up to 10,000"): a larger figure fails the Map.
const MAP_MAX_CONCURRENCY: usize = 10_000;

/// Initialize's answer to the state machine: the same few fields at any world size.
pub(crate) fn initialize_output(
    run_id: &str,
    request: &RunRequest,
    files: usize,
    duration_s: f64,
    concurrency_ceiling: Option<usize>,
) -> InitializeOutput {
    InitializeOutput {
        run_id: run_id.to_string(),
        bucket: request.bucket.clone(),
        result_path: request.result_path.clone(),
        plan_key: plan_key(&request.result_path),
        ranks: request.world_size,
        device: request.device,
        // The Map's items (ranks planned a file: at most one per file), never
        // above the ceiling: more would only be throttled or queued.
        max_concurrency: request
            .world_size
            .min(files)
            .min(concurrency_ceiling.unwrap_or(usize::MAX))
            .clamp(1, MAP_MAX_CONCURRENCY),
        tolerated_failure_percentage: request.tolerated_failure_percentage,
        files,
        duration_s,
    }
}

/// The deployment's role lets its workers write its own bucket only: a request
/// for another (a CAI user's data bucket named as `bucket`) is refused by name,
/// with the way to read that bucket in place, not left to an S3 AccessDenied.
fn own_bucket(request: &RunRequest, own: Option<&str>) -> Result<(), StageError> {
    match own.filter(|own| !own.is_empty()) {
        Some(own) if request.bucket != own => {
            // Where the request's bucket may hold its partitions, how to read them there.
            let in_place = if request.bucket == "local" || request.data_bucket.is_some() {
                String::new()
            } else {
                format!(
                    ", and '{}' as the data_bucket to read the partitions where they are (template parameter InputBucket)",
                    request.bucket
                )
            };
            Err(StageError::invalid(format!(
                "bucket '{}': this deployment writes its results to its own bucket, {own}, only: name {own} as the bucket (or leave bucket out){in_place}",
                request.bucket
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summarize::FAILED_RANKS_LISTED;
    use cosmicai_shared::aws::SummarizeOutput;

    #[test]
    fn a_request_for_another_results_bucket_is_refused_with_the_data_bucket_to_name() {
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "bucket": "cosmicai-data", "data_prefix": "100MB/", "batch_size": 512,
            "world_size": 4, "result_path": "results/r"
        }))
        .unwrap();
        let e = own_bucket(&request, Some("stack-bucket")).unwrap_err();
        assert_eq!(e.kind, "InvalidRequest");
        assert!(
            e.message.contains("name stack-bucket as the bucket")
                && e.message.contains("'cosmicai-data' as the data_bucket"),
            "{}",
            e.message
        );
        // A request naming its data bucket already, or the local store, is told
        // only which bucket to name.
        for other in [
            RunRequest {
                data_bucket: Some("cai-data".into()),
                ..request.clone()
            },
            RunRequest {
                bucket: "local".into(),
                ..request.clone()
            },
        ] {
            let e = own_bucket(&other, Some("stack-bucket")).unwrap_err();
            assert!(
                e.message.contains("name stack-bucket as the bucket")
                    && !e.message.contains("as the data_bucket"),
                "{}",
                e.message
            );
        }
        // Its own bucket, or no bucket named to the function: no refusal.
        assert!(own_bucket(&request, Some("cosmicai-data")).is_ok());
        assert!(own_bucket(&request, None).is_ok());
        assert!(own_bucket(&request, Some("")).is_ok());
    }

    #[test]
    fn a_run_is_planned_at_the_memory_its_workers_have() {
        let request: RunRequest = serde_json::from_str(
            r#"{"batch_size": 1, "world_size": 1, "result_path": "results/r", "memory_mb": 10240}"#,
        )
        .unwrap();
        assert_eq!(with_function_memory(&request, Some("2048")).memory_mb, 2048);
        // Outside Lambda, or a value that is no number: as asked.
        assert_eq!(with_function_memory(&request, None).memory_mb, 10240);
        assert_eq!(
            with_function_memory(&request, Some("lots")).memory_mb,
            10240
        );
        // A GPU run's Lambda stages are billed at the function's memory too.
        let mut gpu = request.clone();
        gpu.device = Device::Cuda;
        assert_eq!(with_function_memory(&gpu, Some("2048")).memory_mb, 2048);
    }

    /// Every state input and output of a run of the most ranks a request may
    /// ask (CAI's largest size, 1,000 GB in partitions of 25 MB, is 40,000)
    /// stays under Step Functions' 256 KiB.
    #[test]
    fn state_payloads_stay_under_256_kib_at_the_most_ranks() {
        use cosmicai_shared::aws::STATE_PAYLOAD_LIMIT;
        use cosmicai_shared::run::MAX_WORLD_SIZE;
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "bucket": "a-bucket-name-of-the-longest-kind-allowed-by-s3-0123456789abcdef",
            "data_prefix": "sdss/partitions/".repeat(8),
            "batch_size": 512, "world_size": MAX_WORLD_SIZE,
            "result_path": format!("results/{}", "r".repeat(200)),
            "model": format!("astromae:{}", "m".repeat(400)),
        }))
        .unwrap();
        let run_id = "run-".repeat(20);
        macro_rules! size {
            ($v:expr) => {
                serde_json::to_string(&$v).unwrap().len()
            };
        }
        let init = initialize_output(&run_id, &request, 80_000, 12.5, Some(1000));
        assert_eq!(
            init.max_concurrency, 1000,
            "bounded by the reserved concurrency"
        );
        // The execution input, and the state after Initialize (input + its output).
        let state = serde_json::json!({"request": &request, "initialize": {"output": &init}});
        assert!(size!(request) < STATE_PAYLOAD_LIMIT);
        assert!(size!(state) < 8 * 1024, "{} bytes", size!(state));
        // Each Map item (a child execution's input) is one small rank item; the plan
        // itself goes to S3, where it may be large.
        let payload = Payload {
            bytes_per_object: None,
            notes: Vec::new(),
            run_id: run_id.clone(),
            request: request.clone(),
            files: Vec::new(),
            ranks: vec![vec!["p.safetensors".to_string()]; MAX_WORLD_SIZE],
        };
        let items = plan_items(&run_id, &payload);
        assert_eq!(items.len(), MAX_WORLD_SIZE);
        assert!(items.iter().all(|i| size!(i) < 2 * 1024));
        assert!(serde_json::to_vec(&items).unwrap().len() > STATE_PAYLOAD_LIMIT);
        // Summarize's answer when every rank failed.
        let output = SummarizeOutput {
            run_id: run_id.clone(),
            status: cosmicai_shared::run::RunStatus::Failed,
            objects: 0,
            failed: MAX_WORLD_SIZE,
            failed_ranks: (0..MAX_WORLD_SIZE).take(FAILED_RANKS_LISTED).collect(),
            cost_usd: 1.0,
            summary_key: format!("{}/summary.json", request.result_path),
        };
        assert!(size!(output) < 16 * 1024, "{} bytes", size!(output));
    }

    #[test]
    fn a_resume_tolerates_as_many_failed_ranks_as_the_whole_run_would() {
        // 10% of 100 ranks is 10: of the 2 run again, both may fail.
        assert_eq!(resumed_tolerance(10.0, 100, 2), 100.0);
        // Of 40 run again, 10 may: 25%.
        assert_eq!(resumed_tolerance(10.0, 100, 40), 25.0);
        assert_eq!(resumed_tolerance(0.0, 100, 40), 0.0);
        assert_eq!(resumed_tolerance(10.0, 100, 100), 10.0);
        assert_eq!(resumed_tolerance(10.0, 100, 0), 10.0);
    }

    #[test]
    fn cpu_ranks_run_at_most_the_reservation_or_the_max_given() {
        // MaxConcurrency above the reservation: the reservation throttles the rest.
        assert_eq!(cpu_ceiling(Some("500"), Some("100")), Some(100));
        assert_eq!(cpu_ceiling(Some("50"), Some("900")), Some(50));
        assert_eq!(cpu_ceiling(Some("0"), Some("900")), Some(900));
        assert_eq!(cpu_ceiling(Some("40"), Some("0")), Some(40));
        // Nothing reserved and no MaxConcurrency: 10, never unbounded.
        assert_eq!(cpu_ceiling(Some("0"), Some("0")), Some(10));
        // An older template: its reservation in COSMICAI_MAX_CONCURRENCY alone.
        assert_eq!(cpu_ceiling(Some("900"), None), Some(900));
        assert_eq!(cpu_ceiling(None, None), None);
    }

    #[test]
    fn gpu_ranks_run_as_many_at_once_as_the_queue_has_gpus() {
        use Device::{Cpu, Cuda};
        // The template's defaults: 900 reserved, 16 vCPUs of 4-vCPU GPU jobs.
        assert_eq!(concurrency_ceiling(Cpu, Some("900"), Some("16")), Some(900));
        assert_eq!(concurrency_ceiling(Cuda, Some("900"), Some("16")), Some(4));
        assert_eq!(concurrency_ceiling(Cuda, Some("900"), Some("2")), Some(1));
        assert_eq!(concurrency_ceiling(Cuda, Some("900"), None), Some(4));
        assert_eq!(concurrency_ceiling(Cpu, Some("x"), Some("16")), None);
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 512, "world_size": 1000, "result_path": "results/r", "device": "cuda",
        }))
        .unwrap();
        let ceiling = concurrency_ceiling(Cuda, Some("900"), Some("16"));
        assert_eq!(
            initialize_output("r", &request, 10, 1.0, ceiling).max_concurrency,
            4
        );
        // No ceiling given (or a GPU queue of 100,000 vCPUs): never past the Map's 10,000.
        let wide: RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 512, "world_size": 40_000, "result_path": "results/r",
        }))
        .unwrap();
        assert_eq!(
            initialize_output("r", &wide, 40_000, 1.0, None).max_concurrency,
            10_000
        );
    }
}
