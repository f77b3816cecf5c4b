//! CosmicAI on AWS Lambda: the pipeline's three stages behind one handler.
//!
//! The Step Functions state machine (`infra/aws/statemachine.asl.json`) calls the
//! same function three ways, tagged by `stage` ([`StageEvent`]):
//! 1. `initialize`: plan the run from the CAI payload, write `payload.json` and the
//!    Map's items (one [`RankItem`] per rank) to `plan.json`, which the Distributed
//!    Map reads from S3;
//! 2. `infer`: one rank, exactly as a local worker runs it (`engine::pipeline::infer_rank`),
//!    answering with Lambda-style measures ([`RankMeasure`]);
//! 3. `summarize`: `combined_data.json` and `summary.json`, with the failed ranks and cost.
//!
//! The handler is thin on purpose: all pipeline logic is in `cosmicai-engine`,
//! so a run on AWS and a run on a laptop give the same files.

use cosmicai_engine::cost::{Children, billed_ms};
use cosmicai_engine::pipeline::{
    Payload, PipelineError, RANK_STOP_S, RankEvent, check_rank_time, infer_rank, initialize_with,
    measures_key, payload_key, plan_key, summarize_with,
};
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::s3::{S3Config, S3Store};
use cosmicai_engine::store::{ObjectStore, PARALLEL_GETS, StoreError, for_each_fetched, join};
use cosmicai_model::weights::Weights;
use cosmicai_shared::aws::{
    InitializeOutput, RankItem, StageEvent, SummarizeEvent, SummarizeOutput,
};
use cosmicai_shared::cai_payload::{PartitionsIn, translate};
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::{Device, Precision, RankMeasure, RunRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The CPU backend the Lambda runs the model on.
pub type Cpu = burn::backend::NdArray<f32>;

/// How the handler reaches S3: AWS itself (the default) or another endpoint in tests.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub region: Option<String>,
    /// `COSMICAI_S3_ENDPOINT`: an S3-compatible endpoint instead of AWS.
    pub endpoint: Option<String>,
    /// Static credentials (tests); `None` uses the Lambda role through the provider chain.
    pub static_credentials: Option<(String, String)>,
    /// `COSMICAI_RESULTS_PREFIX`: the deployment's results, left out of listings
    /// of the folders above it. A CAI payload's `data_prefix ""` lists the whole
    /// bucket, and every past run's files would grow that listing past what
    /// Initialize can read in its 15 minutes.
    pub results_prefix: Option<String>,
}

impl S3Settings {
    /// From the Lambda environment: `AWS_REGION` and, for tests, `COSMICAI_S3_ENDPOINT`.
    pub fn from_env() -> Self {
        S3Settings {
            region: std::env::var("AWS_REGION").ok(),
            endpoint: std::env::var("COSMICAI_S3_ENDPOINT").ok(),
            static_credentials: None,
            results_prefix: std::env::var("COSMICAI_RESULTS_PREFIX").ok(),
        }
    }

    fn connect(&self, bucket: &str) -> Result<S3Store, String> {
        if bucket == "local" || bucket.trim().is_empty() {
            return Err(format!(
                "bucket '{bucket}': a run on AWS reads its partitions from an S3 bucket; name it in the payload"
            ));
        }
        S3Store::connect(S3Config {
            bucket: bucket.into(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            static_credentials: self.static_credentials.clone(),
            unlisted: self.results_prefix.clone(),
        })
        .map_err(|e| e.to_string())
    }
}

/// A stage's failure, reported to Step Functions as `errorType` / `errorMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct StageError {
    /// `InvalidRequest` (never retried by the state machine) or `StageFailed`.
    pub kind: &'static str,
    pub message: String,
}

impl StageError {
    fn invalid(message: impl Into<String>) -> Self {
        StageError {
            kind: "InvalidRequest",
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        StageError {
            kind: "StageFailed",
            message: message.into(),
        }
    }

    /// Not retried by the state machine: a retry would start past the deadline too.
    /// A rank stopped for time: never retried.
    pub const OUT_OF_TIME: &'static str = "RankOutOfTime";

    fn out_of_time(message: impl Into<String>) -> Self {
        StageError {
            kind: Self::OUT_OF_TIME,
            message: message.into(),
        }
    }
}

impl From<PipelineError> for StageError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Invalid(_) => StageError::invalid(e.to_string()),
            other => StageError::failed(other.to_string()),
        }
    }
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Process start, for the cold start of the first invocation.
static PROCESS_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// INIT's end (the model loaded): the cold start billed is from the process
/// start to here, not the idle wait for the first call after it.
static INIT_END: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// Whether this process has served an Infer yet (the next one is warm).
static WARM: AtomicBool = AtomicBool::new(false);

/// Marks the process start; call first thing in `main`.
pub fn mark_process_start() {
    PROCESS_START.get_or_init(Instant::now);
}

/// Marks INIT's end; call in `main` just before the runtime takes events.
pub fn mark_init_end() {
    INIT_END.get_or_init(Instant::now);
}

/// An event as Step Functions sends it. An Initialize whose request is CAI's own
/// payload (an execution started with CAI's input file) is read as CAI's, as
/// `cosmicai run --request` reads it: partitions from its `data_bucket`, its
/// script settings set aside, each with a note in the function's log, and the
/// AstroMAE the deployment preloads (`COSMICAI_MODEL`) where it names no model.
/// A deployment preloading PhotoZ (the template's default) refuses it by name:
/// CAI's payload is for AstroMAE.
pub fn parse_event(mut value: serde_json::Value) -> Result<StageEvent, StageError> {
    if value.get("stage").and_then(serde_json::Value::as_str) == Some("initialize")
        && let Some(request) = value.get_mut("request")
    {
        let preloaded = std::env::var("COSMICAI_MODEL").ok();
        let model = preloaded
            .as_deref()
            .filter(|m| m.starts_with("astromae:"))
            .map(|m| {
                (
                    m,
                    "the AstroMAE this deployment preloads (template parameter Model)",
                )
            });
        let (ours, notes) = translate(request.take(), PartitionsIn::DataBucket, model)
            .map_err(|e| StageError::invalid(format!("request: {e}")))?;
        for note in notes {
            eprintln!("request: {note}");
        }
        *request = ours;
    }
    serde_json::from_value(value)
        .map_err(|e| StageError::invalid(format!("not a stage event: {e}")))
}

/// Handles one event. Blocking work: call it from a blocking thread.
pub fn handle(settings: &S3Settings, event: StageEvent) -> Result<serde_json::Value, StageError> {
    if !matches!(event, StageEvent::Infer(_)) {
        // This process has served a call: an Infer after it starts warm. (The
        // INIT before an Initialize or a Summarize, two calls a run, is not priced.)
        WARM.store(true, Ordering::SeqCst);
    }
    let value = match event {
        StageEvent::Initialize {
            run_id,
            request,
            worker_memory_mb,
        } => serde_json::to_value(initialize_stage(
            settings,
            &run_id,
            &request,
            worker_memory_mb.as_deref(),
        )?),
        StageEvent::Infer(item) => serde_json::to_value(infer_stage(settings, &item)?),
        StageEvent::Summarize(event) => serde_json::to_value(summarize_stage(settings, &event)?),
    };
    value.map_err(|e| StageError::failed(e.to_string()))
}

/// Initialize: validate, plan, write `payload.json`, hand the Map its items.
pub fn initialize_stage(
    settings: &S3Settings,
    run_id: &str,
    request: &RunRequest,
    worker_memory_mb: Option<&str>,
) -> Result<InitializeOutput, StageError> {
    let started = Instant::now();
    // Lambda's own figure for this function (the workers' too), else the one
    // the state machine was deployed with.
    let function_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").ok();
    let request = &with_function_memory(request, function_mb.as_deref().or(worker_memory_mb));
    let spec = request.model_spec().map_err(StageError::invalid)?;
    // The function may write only under the deployment's results prefix (its IAM policy).
    if let Ok(prefix) = std::env::var("COSMICAI_RESULTS_PREFIX") {
        let prefix = format!("{}/", prefix.trim_matches('/'));
        if !request.result_path.starts_with(&prefix) {
            return Err(StageError::invalid(format!(
                "result_path '{}' is outside '{prefix}': this deployment writes results only there (template parameter ResultsPrefix)",
                request.result_path
            )));
        }
        // Past runs' predictions are partitions to a listing: never data.
        let data = format!("{}/", request.data_prefix.trim_matches('/'));
        if data.starts_with(&prefix) {
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
    // A model whose weights cannot be found fails here, before any rank is paid for.
    if let Some(path) = spec.weights() {
        let (bucket, key) = weights_location(path, &request.bucket);
        readable_weights_bucket(
            &bucket,
            &request.bucket,
            std::env::var("COSMICAI_WEIGHTS_BUCKET").ok().as_deref(),
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
    // CPU ranks run in Express children, stopped at 5 minutes, GPU ranks in Batch
    // attempts stopped at an hour: a plan whose ranks could run longer is
    // refused before anything is written or paid for.
    let payload = initialize_with(&store, request, run_id, check_rank_time)?;
    let plan = plan_key(&request.result_path);
    let json = serde_json::to_vec(&plan_items(run_id, &payload))
        .map_err(|e| StageError::failed(e.to_string()))?;
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
    Ok(initialize_output(
        run_id,
        request,
        payload.files.len(),
        started.elapsed().as_secs_f64(),
        ceiling,
    ))
}

/// The request as the ranks will run it: Lambda gives every worker the function's
/// memory (the template's MemorySize), whatever `memory_mb` says, so the time
/// check, `payload.json` and the bill use that. GPU ranks run on Batch: unchanged.
pub fn with_function_memory(request: &RunRequest, function_mb: Option<&str>) -> RunRequest {
    let mut request = request.clone();
    let function_mb = function_mb.and_then(|mb| mb.trim().parse::<u32>().ok());
    if let Some(mb) = function_mb
        && request.device == Device::Cpu
        && mb != request.memory_mb
    {
        eprintln!(
            "memory_mb {}: this deployment's workers have {mb} MB (template parameter MemorySize); the run is planned and priced at {mb} MB",
            request.memory_mb
        );
        request.memory_mb = mb;
    }
    request
}

/// The Map's items: one per rank planned a file, written to `plan.json` (never
/// through the state). With more ranks than files, the others read nothing:
/// each would still cost a child execution, a Lambda call and its writes, and
/// Summarize counts them as done with no objects.
pub fn plan_items(run_id: &str, payload: &Payload) -> Vec<RankItem> {
    let request = &payload.request;
    (0..request.world_size)
        .filter(|&rank| payload.ranks.get(rank).is_some_and(|keys| !keys.is_empty()))
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

/// Most ranks worth running at once: CPU ranks up to the function's reserved
/// concurrency (more would only be throttled), GPU ranks up to the jobs the
/// compute environment's vCPUs hold (`GpuMaxVcpus` over a job's 4). More GPU
/// ranks at once would only wait in the queue, each a `SubmitJob` against
/// Batch's 50 a second and a `.sync` task Step Functions keeps polling.
/// Most CPU ranks at once, from the template's `MaxConcurrency` and
/// `ReservedConcurrency` (0 = not given): the smaller of those given (the
/// reservation caps the function whatever the Map asks), else 10 where neither
/// is. A template older than `COSMICAI_RESERVED_CONCURRENCY` put its
/// reservation in `COSMICAI_MAX_CONCURRENCY`.
pub fn cpu_ceiling(max: Option<&str>, reserved: Option<&str>) -> Option<usize> {
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

pub fn concurrency_ceiling(
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

/// Initialize's answer to the state machine: the same few fields at any world size.
pub fn initialize_output(
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
            .max(1),
        tolerated_failure_percentage: request.tolerated_failure_percentage,
        files,
        duration_s,
    }
}

/// Most failed ranks Summarize names in its answer (all are in `summary.json`): the
/// answer goes through the state machine, whose payloads stop at 256 KiB.
pub const FAILED_RANKS_LISTED: usize = 1000;

fn read_payload(store: &S3Store, result_path: &str, run_id: &str) -> Result<Payload, StageError> {
    let key = payload_key(result_path);
    let bytes = store
        .get(&key)
        .map_err(|e| StageError::failed(format!("{key}: {e}")))?;
    let payload: Payload = serde_json::from_slice(&bytes)
        .map_err(|e| StageError::failed(format!("{key}: not a payload: {e}")))?;
    if payload.run_id != run_id {
        return Err(StageError::invalid(format!(
            "{key} belongs to run {}, not {run_id}: give each run its own result_path",
            payload.run_id
        )));
    }
    Ok(payload)
}

/// Infer: one rank on this function's CPU, measured like Lambda's REPORT line.
pub fn infer_stage(settings: &S3Settings, item: &RankItem) -> Result<RankMeasure, StageError> {
    let started = Instant::now();
    let cold = !WARM.swap(true, Ordering::SeqCst);
    let cold_start_s = match (cold, PROCESS_START.get(), INIT_END.get()) {
        (true, Some(start), Some(end)) => end.duration_since(*start).as_secs_f64(),
        (true, Some(start), None) => start.elapsed().as_secs_f64(),
        _ => 0.0,
    };
    let deadline = item
        .entered_at
        .as_deref()
        .map(RankDeadline::after)
        .transpose()?;
    deadline.as_ref().map(RankDeadline::check).transpose()?;
    let store = settings
        .connect(&item.bucket)
        .map_err(StageError::invalid)?;
    let payload = read_payload(&store, &item.result_path, &item.run_id)?;
    if payload.request.device == Device::Cuda && !cfg!(feature = "cuda") {
        return Err(StageError::invalid(
            "device cuda: Lambda has no GPU; CUDA runs go to the AWS Batch queue of the template",
        ));
    }
    let mut first_batch_s = None;
    let usage_before = cpu_seconds();
    let spec = payload.request.model_spec().map_err(StageError::invalid)?;
    let computed = (|| -> Result<_, StageError> {
        Ok(match payload.request.device {
            // Loaded once per container: warm invocations reuse it.
            Device::Cpu => {
                let model = cached_cpu_model(settings, &store, &spec, payload.request.precision)?;
                run_rank::<Cpu>(
                    &store,
                    &payload,
                    item.rank,
                    &model,
                    (started, deadline.as_ref()),
                    &mut first_batch_s,
                )?
            }
            // AstroMAE in fp32 or bf16 with COSMICAI_CUDA_KERNELS=fused: the fused schedule on
            // cuBLAS, its weights read as for the CPU.
            #[cfg(feature = "cuda")]
            Device::Cuda
                if cosmicai_engine::gpu_astromae::takes(&spec, payload.request.precision) =>
            {
                let model = load_model::<Cpu>(settings, &store, &spec, &Default::default(), true)?
                    .on_gpu(payload.request.precision)
                    .map_err(StageError::failed)?;
                // A Batch job has no Express execution to outlive: no deadline.
                let first = &mut first_batch_s;
                run_rank(&store, &payload, item.rank, &model, (started, None), first)?
            }
            #[cfg(feature = "cuda")]
            Device::Cuda => {
                use burn::backend::Cuda;
                use burn::tensor::{bf16, f16};
                let (rank, first) = (item.rank, &mut first_batch_s);
                match payload.request.precision {
                    Precision::Fp32 => run_cuda::<Cuda<f32>>(
                        settings, &store, &spec, &payload, rank, started, first,
                    )?,
                    Precision::Bf16 => run_cuda::<Cuda<bf16>>(
                        settings, &store, &spec, &payload, rank, started, first,
                    )?,
                    Precision::F16 => run_cuda::<Cuda<f16>>(
                        settings, &store, &spec, &payload, rank, started, first,
                    )?,
                }
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => unreachable!("refused above"),
        })
    })();
    let result = match computed {
        Ok(result) => result,
        Err(e) => {
            // Stopped for time (never retried): its measure says why, and what
            // its Lambda call was billed; Summarize reads it once the Map item
            // has failed. Best effort: the error is what matters.
            // Only well before the task's timeout (a batch that ran on past it has
            // been given up on: Summarize may have read), and only where no
            // attempt left its measures (a retried call still running must not
            // overwrite a later attempt's success).
            let in_time = deadline.is_some_and(|d| d.used_s() < RANK_STOP_S + 5.0);
            if let Some(stopped) =
                stopped_measure(item, &e, started.elapsed().as_secs_f64(), cold_start_s)
                    .filter(|_| in_time)
            {
                let stopped = RankMeasure {
                    cpu_time_s: cpu_seconds() - usage_before,
                    peak_rss_mb: cosmicai_engine::system::peak_rss_mb(),
                    ..stopped
                };
                if let Ok(json) = serde_json::to_vec_pretty(&stopped) {
                    let _ = store.put_if_absent(&measures_key(&item.result_path, item.rank), &json);
                }
            }
            return Err(e);
        }
    };
    let duration_s = started.elapsed().as_secs_f64();
    let measure = RankMeasure {
        rank: item.rank,
        run_id: item.run_id.clone(),
        attempts: 1,
        duration_s,
        // Lambda bills the INIT before a cold call too (this custom runtime's
        // always; every on-demand function's since August 2025): for AstroMAE,
        // its weights read from S3 and built.
        billed_duration_ms: billed_ms(duration_s + cold_start_s),
        init_duration_s: cold_start_s + result.1,
        first_batch_s: cold_start_s + first_batch_s.unwrap_or(duration_s),
        cpu_time_s: cpu_seconds() - usage_before,
        peak_rss_mb: cosmicai_engine::system::peak_rss_mb(),
        objects: result.0.objects,
        samples_per_s: result.0.objects as f64 / duration_s.max(1e-9),
        bits_per_s: result.0.throughput_bps,
        error: None,
    };
    let key = measures_key(&item.result_path, item.rank);
    let json =
        serde_json::to_vec_pretty(&measure).map_err(|e| StageError::failed(e.to_string()))?;
    store
        .put(&key, &json)
        .map_err(|e| StageError::failed(format!("{key}: {e}")))?;
    Ok(measure)
}

/// The measure a rank that failed with `e` after `duration_s` leaves: only one
/// stopped for time (never retried, so its measure is its last), with its error
/// and what its call was billed (its INIT, `init_s`, too). Other failures are
/// retried, or are the run's.
fn stopped_measure(
    item: &RankItem,
    e: &StageError,
    duration_s: f64,
    init_s: f64,
) -> Option<RankMeasure> {
    (e.kind == StageError::OUT_OF_TIME).then(|| RankMeasure {
        rank: item.rank,
        run_id: item.run_id.clone(),
        attempts: 1,
        duration_s,
        billed_duration_ms: billed_ms(duration_s + init_s),
        init_duration_s: init_s,
        error: Some(e.message.clone()),
        ..Default::default()
    })
}

/// One rank on the GPU in the number format `B` computes in; the model is
/// loaded per invocation (a Batch job runs one rank).
#[cfg(feature = "cuda")]
fn run_cuda<B: burn::prelude::Backend>(
    settings: &S3Settings,
    store: &S3Store,
    spec: &ModelSpec,
    payload: &Payload,
    rank: usize,
    started: Instant,
    first_batch_s: &mut Option<f64>,
) -> Result<(cosmicai_shared::run::RankResult, f64), StageError>
where
    cosmicai_model::astromae::AstroMae<B>: Sync,
{
    let device = Default::default();
    let model = load_model::<B>(settings, store, spec, &device, false)?;
    // A Batch job has no Express execution to outlive: no deadline.
    run_rank(store, payload, rank, &model, (started, None), first_batch_s)
}

/// Runs the rank with `model` (ready now) on backend `B`, stopping between batches
/// at `deadline`; also returns when the model was ready, since the invocation started.
fn run_rank<B: burn::prelude::Backend>(
    store: &S3Store,
    payload: &Payload,
    rank: usize,
    model: &RedshiftModel<B>,
    (started, deadline): (Instant, Option<&RankDeadline>),
    first_batch_s: &mut Option<f64>,
) -> Result<(cosmicai_shared::run::RankResult, f64), StageError>
where
    cosmicai_model::astromae::AstroMae<B>: Sync,
{
    let ready_s = started.elapsed().as_secs_f64();
    let device = B::Device::default();
    let mut late = None;
    let result = infer_rank::<B>(
        store,
        payload,
        rank,
        model,
        &device,
        cosmicai_engine::system::system_info(),
        |event| {
            if let RankEvent::Objects(_) = event {
                first_batch_s.get_or_insert_with(|| started.elapsed().as_secs_f64());
            }
            match deadline.map(RankDeadline::check) {
                Some(Err(e)) => {
                    let message = e.message.clone();
                    late = Some(e);
                    Err(PipelineError::Other(message))
                }
                _ => Ok(()),
            }
        },
    );
    match (result, late) {
        (Ok(result), _) => Ok((result, ready_s)),
        (Err(_), Some(late)) => Err(late),
        (Err(e), None) => Err(e.into()),
    }
}

/// When a Lambda rank must stop: [`RANK_STOP_S`] after its Infer state was
/// entered, checked after each batch and before its files are written. Step
/// Functions times the task out at
/// [`EXPRESS_RANK_TIMEOUT_S`](cosmicai_engine::pipeline::EXPRESS_RANK_TIMEOUT_S) and stops the Express
/// child at 5 minutes, but not the Lambda call it made, which would run on to the
/// function's own timeout, holding reserved concurrency and perhaps writing its
/// rank after Summarize has read.
#[derive(Debug, Clone, Copy)]
pub struct RankDeadline {
    entered_epoch_s: f64,
}

impl RankDeadline {
    /// From `$$.State.EnteredTime` (RFC 3339, `Z` or an offset).
    pub fn after(entered_at: &str) -> Result<Self, StageError> {
        epoch_seconds(entered_at)
            .map(|entered_epoch_s| RankDeadline { entered_epoch_s })
            .ok_or_else(|| {
                StageError::invalid(format!("entered_at '{entered_at}' is not an RFC 3339 time"))
            })
    }

    /// Seconds since the rank's Infer state began.
    pub fn used_s(&self) -> f64 {
        aws_smithy_types::DateTime::from(std::time::SystemTime::now()).as_secs_f64()
            - self.entered_epoch_s
    }

    /// An error once the rank has had its time.
    pub fn check(&self) -> Result<(), StageError> {
        let used = self.used_s();
        if used < RANK_STOP_S {
            return Ok(());
        }
        Err(StageError::out_of_time(format!(
            "the rank stopped {used:.0} s after its Infer state began, at the {RANK_STOP_S:.0} s \
             it may use of an Express child execution; it wrote no results. A larger \
             world_size gives each rank fewer files"
        )))
    }
}

/// Whether `key` is an object of `store` (HeadObject: a listing of its folder
/// would read the whole bucket for a key at its root).
fn object_exists(store: &S3Store, key: &str) -> Result<bool, String> {
    store.exists(key).map_err(|e| e.to_string())
}

/// Whether the workers may read weights from `bucket`: the run's own, or the
/// template's `WeightsBucket` (`allowed`: set, maybe empty, wherever the template
/// deployed the function; unset elsewhere, where no role narrows what is read).
pub fn readable_weights_bucket(
    bucket: &str,
    run_bucket: &str,
    allowed: Option<&str>,
) -> Result<(), String> {
    match allowed {
        Some(allowed) if bucket != run_bucket && bucket != allowed.trim() => Err(format!(
            "the workers may read weights only from the data bucket '{run_bucket}'{}, not '{bucket}': \
             copy them into the data bucket, or deploy the template with WeightsBucket={bucket}",
            if allowed.trim().is_empty() {
                String::new()
            } else {
                format!(" and '{}'", allowed.trim())
            }
        )),
        _ => Ok(()),
    }
}

/// Where weights named `path` live: `s3://BUCKET/KEY`, or a key in the run's bucket.
pub fn weights_location(path: &str, run_bucket: &str) -> (String, String) {
    match path
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((bucket, key)) => (bucket.to_string(), key.to_string()),
        None => (
            run_bucket.to_string(),
            path.trim_start_matches('/').to_string(),
        ),
    }
}

/// The model `spec` names: the shipped PhotoZ, or weights read from S3.
fn load_model<B: burn::prelude::Backend>(
    settings: &S3Settings,
    store: &S3Store,
    spec: &ModelSpec,
    device: &B::Device,
    cpu: bool,
) -> Result<RedshiftModel<B>, StageError> {
    let Some(weights) = read_weights(settings, store, spec)? else {
        return RedshiftModel::load(spec, device, cpu).map_err(StageError::failed);
    };
    let weights = weights.map_err(StageError::failed)?;
    RedshiftModel::from_weights(spec, &weights, device, cpu).map_err(StageError::failed)
}

/// The deployment's role lets its workers read its own bucket only: a request
/// for another (CAI's payload naming CAI's `data_bucket`) is refused by name,
/// with the copy to make, not left to an S3 AccessDenied.
fn own_bucket(request: &RunRequest, own: Option<&str>) -> Result<(), StageError> {
    match own.filter(|own| !own.is_empty()) {
        Some(own) if request.bucket != own => {
            let folder = Some(request.data_prefix.trim_matches('/'))
                .filter(|f| !f.is_empty())
                .unwrap_or("FOLDER");
            Err(StageError::invalid(format!(
                "bucket '{}': this deployment's workers read its own bucket, {own}, only; copy the partitions in first (aws s3 sync s3://{}/{folder} s3://{own}/{folder}) and name {own} as the bucket (CAI's data_bucket)",
                request.bucket, request.bucket
            )))
        }
        _ => Ok(()),
    }
}

/// Reads the weights `spec` names and builds its model, for Initialize: a
/// failed read may be retried, a file that holds no such model may not.
fn check_weights(
    settings: &S3Settings,
    store: &S3Store,
    spec: &ModelSpec,
) -> Result<(), StageError> {
    let Some(weights) = read_weights(settings, store, spec)? else {
        return Ok(());
    };
    let weights = weights.map_err(|e| StageError::invalid(format!("model '{spec}': {e}")))?;
    RedshiftModel::<Cpu>::from_weights(spec, &weights, &Default::default(), false)
        .map(drop)
        .map_err(|e| StageError::invalid(format!("model '{spec}': {e}; no rank was started")))
}

/// The weight file `spec` names, from S3 (`None` for the shipped PhotoZ): a
/// failed GET is the error, a file that is no weight file the inner one.
fn read_weights(
    settings: &S3Settings,
    store: &S3Store,
    spec: &ModelSpec,
) -> Result<Option<Result<Weights, String>>, StageError> {
    let Some(path) = spec.weights() else {
        return Ok(None);
    };
    let (bucket, key) = weights_location(path, store.bucket());
    let bytes = if bucket == store.bucket() {
        store.get(&key)
    } else {
        settings
            .connect(&bucket)
            .map_err(StageError::invalid)?
            .get(&key)
    }
    .map_err(|e| StageError::failed(format!("model '{spec}': s3://{bucket}/{key}: {e}")))?;
    Ok(Some(
        Weights::from_file_bytes(format!("s3://{bucket}/{key}"), bytes).map_err(|e| e.to_string()),
    ))
}

/// The CPU model of this container, loaded by its first invocation (or at init,
/// see [`preload`]) and kept while later invocations name the same model.
type CpuModel = Arc<RedshiftModel<Cpu>>;
static MODEL: Mutex<Option<(String, CpuModel)>> = Mutex::new(None);

fn cached_cpu_model(
    settings: &S3Settings,
    store: &S3Store,
    spec: &ModelSpec,
    precision: Precision,
) -> Result<CpuModel, StageError> {
    let name = format!("{}|{spec}|{}", store.bucket(), precision.name());
    let mut cache = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((cached, model)) = cache.as_ref()
        && *cached == name
    {
        return Ok(model.clone());
    }
    let model = Arc::new(
        load_model::<Cpu>(settings, store, spec, &Default::default(), true)?
            .in_precision(precision, true)
            .map_err(StageError::invalid)?,
    );
    *cache = Some((name, model.clone()));
    Ok(model)
}

/// Loads the model of `COSMICAI_MODEL` (with `COSMICAI_MODEL_BUCKET` for keys), in
/// the precision of `COSMICAI_PRECISION`, during the Lambda init phase, so the
/// first invocation finds it ready. Errors are left for that invocation to report.
pub fn preload(settings: &S3Settings) {
    let (Ok(model), Ok(bucket)) = (
        std::env::var("COSMICAI_MODEL"),
        std::env::var("COSMICAI_MODEL_BUCKET"),
    ) else {
        return;
    };
    let Ok(spec) = ModelSpec::parse(&model) else {
        return;
    };
    // PhotoZ runs fp32 on the CPU whatever the template says.
    let precision = match spec {
        ModelSpec::AstroMae(_) => {
            preload_precision(std::env::var("COSMICAI_PRECISION").ok().as_deref())
        }
        ModelSpec::PhotoZ(_) => Precision::Fp32,
    };
    if let Ok(store) = settings.connect(&bucket) {
        let _ = cached_cpu_model(settings, &store, &spec, precision);
    }
}

/// The precision a container preloads its model in: the template's `Precision`
/// (fp32 or bf16, the CPU's two), fp32 when unset or anything else. A run in
/// the other one reloads the model on its first invocation.
fn preload_precision(value: Option<&str>) -> Precision {
    match value.map(str::trim) {
        Some("bf16") => Precision::Bf16,
        _ => Precision::Fp32,
    }
}

/// Summarize: every rank's result gathered, failures named, the bill added up.
pub fn summarize_stage(
    settings: &S3Settings,
    event: &SummarizeEvent,
) -> Result<SummarizeOutput, StageError> {
    let started = Instant::now();
    let store = settings
        .connect(&event.bucket)
        .map_err(StageError::invalid)?;
    let payload = read_payload(&store, &event.result_path, &event.run_id)?;
    let world = payload.request.world_size;
    // A rank without measures failed (or the Map stopped before it ran).
    let map_failure = event
        .map_error
        .as_ref()
        .map(|e| describe(e.error.as_deref(), e.cause.as_deref()));
    // Ranks planned no file were no Map item: done, with nothing read.
    let mut measures: Vec<RankMeasure> = (0..world)
        .map(|rank| RankMeasure {
            rank,
            run_id: event.run_id.clone(),
            ..Default::default()
        })
        .collect();
    let ran: Vec<usize> = (0..world)
        .filter(|&rank| payload.ranks.get(rank).is_some_and(|keys| !keys.is_empty()))
        .collect();
    let keys: Vec<String> = ran
        .iter()
        .map(|&rank| measures_key(&event.result_path, rank))
        .collect();
    for_each_fetched(&store, &keys, PARALLEL_GETS, |i, fetched| {
        let rank = ran[i];
        let measure = match fetched {
            // Measures of another run under the same path are not this run's ranks.
            Ok(bytes) => serde_json::from_slice::<RankMeasure>(&bytes)
                .ok()
                .filter(|m| m.run_id.is_empty() || m.run_id == event.run_id),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(StageError::failed(e.to_string())),
        };
        measures[rank] = measure.unwrap_or_else(|| RankMeasure {
            rank,
            attempts: 1,
            error: Some(
                map_failure
                    .clone()
                    .unwrap_or_else(|| "the rank's Map item failed".into()),
            ),
            ..Default::default()
        });
        Ok(())
    })?;
    let duration_s = event
        .started
        .as_deref()
        .and_then(seconds_since)
        .unwrap_or_else(|| measures.iter().map(|m| m.duration_s).fold(0.0, f64::max));
    let children = Children::deployed(
        payload.request.device,
        event.child_execution_type.as_deref(),
    );
    let summary = summarize_with(
        &store,
        &payload,
        &measures,
        duration_s,
        event.initialize_s,
        started,
        children,
    )?;
    let summary_key = join(&payload.request.result_path, "summary.json");
    Ok(SummarizeOutput {
        run_id: summary.run_id,
        status: summary.status,
        objects: summary.objects,
        failed: summary.failed_ranks.len(),
        failed_ranks: summary
            .failed_ranks
            .into_iter()
            .take(FAILED_RANKS_LISTED)
            .collect(),
        cost_usd: summary.cost_usd,
        summary_key,
    })
}

fn describe(error: Option<&str>, cause: Option<&str>) -> String {
    match (error, cause) {
        (Some(e), Some(c)) if !e.is_empty() => format!("{e}: {c}"),
        (_, Some(c)) => c.to_string(),
        (Some(e), None) => e.to_string(),
        (None, None) => "the Map failed".into(),
    }
}

/// Seconds from an RFC 3339 time (the execution's start) until now.
fn seconds_since(rfc3339: &str) -> Option<f64> {
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    let s = now.as_secs_f64() - epoch_seconds(rfc3339)?;
    (s >= 0.0).then_some(s)
}

/// Seconds since 1970 of an RFC 3339 time.
fn epoch_seconds(rfc3339: &str) -> Option<f64> {
    use aws_smithy_types::date_time::{DateTime, Format};
    // Smithy reads `Z` times; an offset (`+00:00`, as moto writes) is applied by hand.
    let split = rfc3339
        .len()
        .checked_sub(6)
        .and_then(|i| rfc3339.split_at_checked(i));
    let (utc, offset_s) = match split {
        Some((time, offset))
            if (offset.starts_with('+') || offset.starts_with('-'))
                && offset.as_bytes()[3] == b':' =>
        {
            let hours: f64 = offset[1..3].parse().ok()?;
            let minutes: f64 = offset[4..].parse().ok()?;
            let sign = if offset.starts_with('-') { -1.0 } else { 1.0 };
            (format!("{time}Z"), sign * (hours * 3600.0 + minutes * 60.0))
        }
        _ => (rfc3339.to_string(), 0.0),
    };
    let time = DateTime::from_str(&utc, Format::DateTime).ok()?;
    Some(time.as_secs_f64() - offset_s)
}

/// User plus system CPU time of this process.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return 0.0;
        }
        usage.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(usage.ru_utime) + s(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_described_with_error_and_cause() {
        assert_eq!(
            describe(
                Some("States.ExceedToleratedFailureThreshold"),
                Some("2 of 4")
            ),
            "States.ExceedToleratedFailureThreshold: 2 of 4"
        );
        assert_eq!(describe(Some(""), Some("boom")), "boom");
        assert_eq!(describe(None, None), "the Map failed");
    }

    #[test]
    fn a_request_for_another_bucket_is_refused_with_the_copy_to_make() {
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "bucket": "cosmicai-data", "data_prefix": "100MB/", "batch_size": 512,
            "world_size": 4, "result_path": "results/r"
        }))
        .unwrap();
        let e = own_bucket(&request, Some("stack-bucket")).unwrap_err();
        assert_eq!(e.kind, "InvalidRequest");
        assert!(
            e.message
                .contains("aws s3 sync s3://cosmicai-data/100MB s3://stack-bucket/100MB"),
            "{}",
            e.message
        );
        // Its own bucket, or no bucket named to the function: no refusal.
        assert!(own_bucket(&request, Some("cosmicai-data")).is_ok());
        assert!(own_bucket(&request, None).is_ok());
        assert!(own_bucket(&request, Some("")).is_ok());
    }

    #[test]
    fn the_preload_precision_is_bf16_or_fp32() {
        assert_eq!(preload_precision(Some("bf16")), Precision::Bf16);
        for other in [None, Some(""), Some("fp32"), Some("f16"), Some("BF16x")] {
            assert_eq!(preload_precision(other), Precision::Fp32, "{other:?}");
        }
    }

    #[test]
    fn weights_are_read_only_from_buckets_the_role_can_read() {
        assert!(readable_weights_bucket("data", "data", Some("")).is_ok());
        assert!(readable_weights_bucket("models", "data", Some("models")).is_ok());
        assert!(readable_weights_bucket("models", "data", None).is_ok());
        let e = readable_weights_bucket("other", "data", Some("")).unwrap_err();
        assert!(
            e.contains("only from the data bucket 'data', not 'other'"),
            "{e}"
        );
        assert!(e.contains("WeightsBucket=other"), "{e}");
        let e = readable_weights_bucket("other", "data", Some("models")).unwrap_err();
        assert!(e.contains("'data' and 'models'"), "{e}");
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
        let mut gpu = request.clone();
        gpu.device = Device::Cuda;
        assert_eq!(with_function_memory(&gpu, Some("2048")).memory_mb, 10240);
    }

    #[test]
    fn a_rank_stopped_for_time_leaves_its_error_and_bill() {
        let item = RankItem {
            run_id: "r".into(),
            bucket: "b".into(),
            result_path: "results/r".into(),
            rank: 4,
            device: Device::Cpu,
            entered_at: None,
        };
        let late = StageError::out_of_time("the rank stopped 281 s after its Infer state began");
        let m = stopped_measure(&item, &late, 279.5, 0.0).unwrap();
        assert_eq!(
            (m.rank, m.run_id.as_str(), m.billed_duration_ms),
            (4, "r", 279_500)
        );
        assert!(m.error.unwrap().contains("281 s"));
        // A cold call is billed its INIT too.
        let cold = stopped_measure(&item, &late, 279.5, 1.25).unwrap();
        assert_eq!(cold.billed_duration_ms, 280_750);
        // A retried failure leaves nothing: a later attempt may still succeed.
        assert!(stopped_measure(&item, &StageError::failed("S3 timed out"), 3.0, 0.0).is_none());
    }

    #[test]
    fn a_rank_stops_once_its_express_time_is_used() {
        use aws_smithy_types::date_time::{DateTime, Format};
        let ago = |s: i64| {
            let now = DateTime::from(std::time::SystemTime::now()).secs();
            DateTime::from_secs(now - s).fmt(Format::DateTime).unwrap()
        };
        assert!(RankDeadline::after(&ago(0)).unwrap().check().is_ok());
        assert!(RankDeadline::after(&ago(-60)).unwrap().check().is_ok()); // a clock ahead
        assert!(
            RankDeadline::after(&ago(RANK_STOP_S as i64 - 5))
                .unwrap()
                .check()
                .is_ok()
        );
        let late = RankDeadline::after(&ago(RANK_STOP_S as i64 + 1))
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(late.kind, "RankOutOfTime");
        assert!(late.message.contains("it wrote no results"), "{late}");
        // As moto writes it, with an offset.
        let moto = RankDeadline::after("2020-01-01T00:00:00.176423+00:00").unwrap();
        assert_eq!(moto.check().unwrap_err().kind, "RankOutOfTime");
        let bad = RankDeadline::after("soon").unwrap_err();
        assert_eq!(bad.kind, "InvalidRequest");
        assert!(bad.message.contains("entered_at 'soon'"), "{bad}");
    }

    #[test]
    fn rfc3339_start_times_are_read() {
        assert!(seconds_since("2020-01-01T00:00:00Z").is_some_and(|s| s > 1e8));
        let z = seconds_since("2020-01-01T00:00:00Z").unwrap();
        let moto = seconds_since("2020-01-01T00:00:00.176423+00:00").unwrap();
        assert!((z - moto - 0.176423).abs() < 0.01, "{z} {moto}");
        // 02:00 at +02:00 is midnight UTC.
        let east = seconds_since("2020-01-01T02:00:00+02:00").unwrap();
        assert!((z - east).abs() < 0.01, "{z} {east}");
        assert!(seconds_since("yesterday").is_none());
        assert!(seconds_since("2020-01-01T00:00:00Zéé").is_none());
        assert!(seconds_since("2999-01-01T00:00:00Z").is_none());
    }

    /// Every state input and output of a run at CAI's largest size (1,000 GB in
    /// partitions of 25 MB: 40,000 ranks) stays under Step Functions' 256 KiB.
    #[test]
    fn state_payloads_stay_under_256_kib_at_40000_ranks() {
        use cosmicai_shared::aws::STATE_PAYLOAD_LIMIT;
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "bucket": "a-bucket-name-of-the-longest-kind-allowed-by-s3-0123456789abcdef",
            "data_prefix": "sdss/partitions/".repeat(8),
            "batch_size": 512, "world_size": 40_000,
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
            run_id: run_id.clone(),
            request: request.clone(),
            files: Vec::new(),
            ranks: vec![vec!["p.safetensors".to_string()]; 40_000],
        };
        let items = plan_items(&run_id, &payload);
        assert_eq!(items.len(), 40_000);
        assert!(items.iter().all(|i| size!(i) < 2 * 1024));
        assert!(serde_json::to_vec(&items).unwrap().len() > STATE_PAYLOAD_LIMIT);
        // Summarize's answer when every rank failed.
        let output = SummarizeOutput {
            run_id: run_id.clone(),
            status: cosmicai_shared::run::RunStatus::Failed,
            objects: 0,
            failed: 40_000,
            failed_ranks: (0..40_000).take(FAILED_RANKS_LISTED).collect(),
            cost_usd: 1.0,
            summary_key: format!("{}/summary.json", request.result_path),
        };
        assert!(size!(output) < 16 * 1024, "{} bytes", size!(output));
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
    }

    #[test]
    fn a_local_bucket_is_refused_before_any_connection() {
        let err = S3Settings::default().connect("local").err().unwrap();
        assert!(err.contains("bucket 'local'"), "{err}");
    }
}
