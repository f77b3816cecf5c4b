//! `cosmicai run`: the whole pipeline on this machine, one process per rank.

use crate::registry::Registry;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use cosmicai_engine::executor::{
    ExecutorConfig, ExecutorEvent, WorkerCommand, execute_cancellable,
};
use cosmicai_engine::pipeline::{RunSummary, estimate, initialize, plan, summarize};
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::{Device, RunRequest};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai run --data data/demo/partitions --world-size 4 --batch-size 512\n  \
    cosmicai run --data data/demo/partitions --world-size 2 --batch-size 256 --file-limit 4 --json\n\n\
    Results follow CAI's layout under --data: RESULT_PATH/payload.json, RESULT_PATH/<rank>.json,\n\
    RESULT_PATH/combined_data.json, plus summary.json (metrics, cost) and predictions/<rank>.safetensors.\n\
    With --json the last line is the run summary (status, ranks, failed_ranks, objects, duration_s,\n\
    samples_per_s, cost_usd, result_path). Runs are recorded in DATA/cosmicai.sqlite (`cosmicai runs`).")]
pub struct RunArgs {
    /// Directory holding the partitions; it is the run's store (results are written inside it).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, required_unless_present = "request")]
    pub world_size: Option<usize>,
    #[arg(long, required_unless_present = "request")]
    pub batch_size: Option<usize>,
    /// A CAI payload as JSON (bucket, data_prefix, file_limit, batch_size, world_size,
    /// result_path, device, memory_mb, model, retries) instead of the flags above.
    #[arg(long, conflicts_with_all = ["world_size", "batch_size", "file_limit", "result_path", "retries", "model", "device", "memory_mb"])]
    pub request: Option<PathBuf>,
    /// Use at most this many partition files.
    #[arg(long)]
    pub file_limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Folder for results, inside --data (default results/<run id>).
    #[arg(long)]
    pub result_path: Option<String>,
    /// Memory per rank in MB, enforced like Lambda's.
    #[arg(long, default_value_t = 2048)]
    pub memory_mb: u32,
    /// Times a failed rank is retried.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Ranks running at once (default: the number of cores), like Lambda's concurrency limit.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// photoz (shipped weights), photoz:PATH, or astromae:PATH (a CAI checkpoint,
    /// .pt or safetensors; the partitions must hold cutouts).
    #[arg(long, default_value = "photoz")]
    pub model: String,
    /// Print the duration and cost estimate (from a calibration of this machine) and stop.
    #[arg(long)]
    pub estimate: bool,
    #[arg(long)]
    pub json: bool,
    /// Where the ranks run: this machine, or AWS Step Functions + Lambda (see infra/aws).
    #[arg(long, value_enum, default_value_t = TargetArg::Local)]
    pub target: TargetArg,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum TargetArg {
    Local,
    Aws,
}

/// The AWS deployment, for `--target aws` (the stack outputs; flags win over the environment).
#[derive(Args, Default)]
pub struct AwsArgs {
    /// The stack's bucket [env: COSMICAI_AWS_BUCKET].
    #[arg(long)]
    pub bucket: Option<String>,
    /// The stack's state machine [env: COSMICAI_STATE_MACHINE_ARN].
    #[arg(long)]
    pub state_machine_arn: Option<String>,
    /// [env: AWS_REGION]
    #[arg(long)]
    pub region: Option<String>,
    /// An S3 + Step Functions endpoint other than AWS (moto, LocalStack) [env: COSMICAI_AWS_ENDPOINT].
    #[arg(long)]
    pub aws_endpoint: Option<String>,
    /// Folder in the bucket the partitions of --data go to.
    #[arg(long, default_value = "partitions")]
    pub s3_prefix: String,
}

impl RunArgs {
    /// A run with the CLI's defaults, for commands that start runs themselves (sweep, bench).
    pub fn new(data: PathBuf, world_size: usize, batch_size: usize, device: DeviceArg) -> Self {
        RunArgs {
            data,
            world_size: Some(world_size),
            batch_size: Some(batch_size),
            request: None,
            file_limit: None,
            device,
            result_path: None,
            memory_mb: 2048,
            retries: 0,
            concurrency: None,
            model: "photoz".into(),
            estimate: false,
            json: false,
            target: TargetArg::Local,
            aws: AwsArgs::default(),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

/// A run id that sorts by time: run-<unix seconds>-<pid>-<sequence in this process>.
pub fn new_run_id() -> String {
    static SEQUENCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("run-{secs}-{}-{n}", std::process::id())
}

pub fn run(args: RunArgs) -> Result<()> {
    if args.estimate {
        return print_estimate(&args);
    }
    let summary = if args.target == TargetArg::Aws {
        execute_aws_run(&args)?
    } else {
        execute_run(&args, false)?
    };
    print_summary(&summary, args.json)
}

/// The request `args` describe, for run `run_id`.
fn request_of(args: &RunArgs, run_id: &str) -> Result<RunRequest> {
    if !args.data.is_dir() {
        bail!("--data {}: not a directory", args.data.display());
    }
    if let Some(path) = &args.request {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --request {}", path.display()))?;
        let request: RunRequest = serde_json::from_str(&text)
            .with_context(|| format!("--request {}: not a valid run request", path.display()))?;
        let problems = request.problems();
        if !problems.is_empty() {
            bail!("--request {}: {}", path.display(), problems.join("; "));
        }
        if request.bucket != "local" {
            bail!(
                "--request {}: bucket '{}': this command runs on the local store (bucket \"local\", data under --data); S3 data is run by the AWS launcher",
                path.display(),
                request.bucket
            );
        }
        return with_local_weights(request);
    }
    let request = RunRequest {
        bucket: "local".into(),
        data_prefix: cai_partitions(&args.data, args.json)?,
        file_limit: args.file_limit,
        batch_size: args.batch_size.unwrap_or(0),
        world_size: args.world_size.unwrap_or(0),
        result_path: args
            .result_path
            .clone()
            .unwrap_or_else(|| format!("results/{run_id}")),
        device: match args.device {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::Cuda,
        },
        memory_mb: args.memory_mb,
        model: args.model.clone(),
        retries: args.retries,
        tolerated_failure_percentage: 100.0,
    };
    if args.target == TargetArg::Aws {
        return Ok(request); // weights named by S3 key, checked by Initialize
    }
    with_local_weights(request)
}

/// Folder of the CAI-converted partitions inside a data directory.
pub const CAI_CACHE: &str = "cai-partitions";

/// The data prefix for `data`: empty, or, when `data` holds CAI `.pt` partitions
/// and no partitions of ours, the folder they are converted into (once: files
/// already converted are skipped). Converting beats reading the pickles in every
/// rank of every run: ranks then memory-map safetensors, as for any dataset.
fn cai_partitions(data: &std::path::Path, quiet: bool) -> Result<String> {
    let listed = |ext: &str| {
        std::fs::read_dir(data).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count()
        })
    };
    let (pt, ours) = (listed("pt"), listed("safetensors"));
    if pt == 0 || ours > 0 {
        return Ok(String::new());
    }
    let out = data.join(CAI_CACHE);
    if !quiet {
        eprintln!(
            "{}: {pt} CAI .pt partitions; converting them into {} (once)",
            data.display(),
            out.display()
        );
    }
    super::partition::import_cai(
        &[data.to_path_buf()],
        &out,
        None,
        cosmicai_shared::Class::Unknown,
        |_, _| {},
    )?;
    Ok(CAI_CACHE.into())
}

/// The request with its model's weight file made absolute (workers may start
/// elsewhere), or an error naming the file when it is not there.
pub fn with_local_weights(mut request: RunRequest) -> Result<RunRequest> {
    let spec = request.model_spec().map_err(anyhow::Error::msg)?;
    if let Some(path) = spec.weights() {
        let absolute = std::fs::canonicalize(path)
            .with_context(|| format!("model '{spec}': weights file {path}"))?;
        let absolute = absolute.display().to_string();
        request.model = match spec {
            ModelSpec::PhotoZ(_) => ModelSpec::PhotoZ(Some(absolute)),
            ModelSpec::AstroMae(_) => ModelSpec::AstroMae(absolute),
        }
        .to_string();
    }
    Ok(request)
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

/// Whether an NVIDIA driver can be loaded (a CUDA build still needs one at run time).
pub fn cuda_driver_present() -> bool {
    // SAFETY: dlopen with a constant name; the handle is closed again at once.
    unsafe {
        let handle = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY);
        if !handle.is_null() {
            libc::dlclose(handle);
        }
        !handle.is_null()
    }
}

/// Runs the whole pipeline; `quiet` hides the progress bars (sweeps show their own).
pub fn execute_run(args: &RunArgs, quiet: bool) -> Result<RunSummary> {
    let run_id = new_run_id();
    let request = request_of(args, &run_id)?;
    let control = RunControl {
        concurrency: args.concurrency,
        quiet,
        cancel: Arc::default(),
    };
    execute_request(&args.data, &request, &run_id, control, &mut |_| {})
}

/// `cosmicai run --target aws`: the partitions of --data on Step Functions + Lambda.
fn execute_aws_run(args: &RunArgs) -> Result<RunSummary> {
    let config = crate::aws::AwsConfig::resolve(
        args.aws.bucket.clone(),
        args.aws.state_machine_arn.clone(),
        args.aws.region.clone(),
        args.aws.aws_endpoint.clone(),
    )?;
    if let Err(e) = cosmicai_shared::run::check_key(&args.aws.s3_prefix) {
        bail!("--s3-prefix '{}' {e}", args.aws.s3_prefix);
    }
    let run_id = new_run_id();
    let request = request_of(args, &run_id)?;
    let aws = crate::aws::Aws::connect(config)?;
    let control = RunControl {
        concurrency: None,
        quiet: args.json,
        cancel: Arc::default(),
    };
    crate::aws::execute_on_aws(
        &aws,
        &args.data,
        &request,
        &args.aws.s3_prefix,
        &run_id,
        control,
        &mut |_| {},
    )
}

/// How a run is driven: by the CLI (bars on the terminal) or the HTTP API (quiet,
/// events to the browser, cancellable).
pub struct RunControl {
    pub concurrency: Option<usize>,
    pub quiet: bool,
    pub cancel: Arc<AtomicBool>,
}

/// Refuses a CUDA run up front when this build or machine cannot run one.
pub fn check_device(device: Device) -> Result<()> {
    if device == Device::Cuda && !cfg!(feature = "cuda") {
        bail!(
            "device cuda: this cosmicai was built without CUDA (build with --features cuda); no rank was started"
        );
    }
    if device == Device::Cuda && !cuda_driver_present() {
        bail!(
            "device cuda: no NVIDIA driver here (libcuda.so.1 cannot be loaded); no rank was started"
        );
    }
    Ok(())
}

/// Runs `request` on the local store rooted at `root` as run `run_id`, recording it
/// in the registry; `observe` sees every executor event as it happens.
pub fn execute_request(
    root: &std::path::Path,
    request: &RunRequest,
    run_id: &str,
    control: RunControl,
    observe: &mut dyn FnMut(&ExecutorEvent),
) -> Result<RunSummary> {
    let (args_concurrency, quiet) = (control.concurrency, control.quiet);
    let run_id = run_id.to_string();
    let request = request.clone();
    check_device(request.device)?;
    let store = LocalStore::new(root);
    let started = Instant::now();
    let payload = initialize(&store, &request, &run_id)?;
    let init_s = started.elapsed().as_secs_f64();
    let registry = Registry::open(&root.join("cosmicai.sqlite"))?;
    registry.start(&run_id, &request)?;

    let (concurrency, threads) = concurrency_and_threads(args_concurrency, request.world_size);
    let command = WorkerCommand {
        program: std::env::current_exe().context("finding the cosmicai executable for workers")?,
        args: vec![
            "worker".into(),
            "--store".into(),
            root.display().to_string(),
            "--result-path".into(),
            request.result_path.clone(),
        ],
        envs: vec![("RAYON_NUM_THREADS".into(), threads.to_string())],
    };
    let config = ExecutorConfig {
        concurrency,
        memory_mb: request.memory_mb,
        retries: request.retries,
    };

    let bars = if quiet {
        MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    };
    let overall = bars.add(ProgressBar::new(request.world_size as u64));
    overall.set_style(
        ProgressStyle::with_template(
            "run {msg} [{bar:30.green/blue}] {pos}/{len} ranks {elapsed}",
        )?
        .progress_chars("=> "),
    );
    overall.set_message(run_id.clone());
    let rank_style = ProgressStyle::with_template("  rank {prefix:>3} {spinner} {msg}")?;
    let rank_bars: Vec<ProgressBar> = (0..request.world_size)
        .map(|r| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(rank_style.clone());
            bar.set_prefix(r.to_string());
            bar.set_message(format!("queued ({} files)", payload.ranks[r].len()));
            bar
        })
        .collect();
    let measures = execute_cancellable(
        &command,
        request.world_size,
        config,
        control.cancel,
        |event| {
            observe(event);
            let result = match event {
                ExecutorEvent::Started { rank, attempt } => {
                    rank_bars[*rank].set_message(format!("starting (attempt {attempt})"));
                    rank_bars[*rank].enable_steady_tick(std::time::Duration::from_millis(120));
                    registry.rank_update(&run_id, *rank, "running", None, *attempt, None)
                }
                ExecutorEvent::Ready { rank } => {
                    rank_bars[*rank].set_message("model ready");
                    Ok(())
                }
                ExecutorEvent::Objects { rank, objects } => {
                    rank_bars[*rank].set_message(format!("{objects} objects"));
                    Ok(())
                }
                ExecutorEvent::Finished(m) => {
                    rank_bars[m.rank].finish_with_message(format!(
                        "done: {} objects in {:.2} s, {:.0} MB",
                        m.objects, m.duration_s, m.peak_rss_mb
                    ));
                    overall.inc(1);
                    registry.rank_update(&run_id, m.rank, "succeeded", Some(m), m.attempts, None)
                }
                ExecutorEvent::Failed {
                    rank,
                    attempt,
                    error,
                    retrying,
                } => {
                    let what = if *retrying { "retrying" } else { "failed" };
                    rank_bars[*rank].set_message(format!("{what}: {error}"));
                    if !retrying {
                        rank_bars[*rank].abandon();
                        overall.inc(1);
                    }
                    registry.rank_update(&run_id, *rank, what, None, *attempt, Some(error))
                }
            };
            if let Err(e) = result {
                let _ = bars.println(format!("registry: {e:#}"));
            }
        },
    );
    overall.finish_and_clear();

    let summarize_start = Instant::now();
    let duration_s = started.elapsed().as_secs_f64();
    let mut summary = match summarize(&store, &payload, &measures, duration_s, &[init_s, 0.0]) {
        Ok(s) => s,
        Err(e) => {
            registry.fail(&run_id, &e.to_string())?;
            return Err(e.into());
        }
    };
    // Summarize is billed too: account for its own duration.
    let files_per_rank: Vec<usize> = payload.ranks.iter().map(Vec::len).collect();
    let stages = [init_s, summarize_start.elapsed().as_secs_f64()];
    summary.cost = cosmicai_engine::cost::run_cost(
        &measures,
        &files_per_rank,
        &stages,
        request.memory_mb,
        cosmicai_engine::cost::ARM64,
    );
    summary.cost_usd = summary.cost.total_usd;
    registry.finish(&summary)?;
    Ok(summary)
}

/// This machine's rate for one worker (its share of the cores) and a worker's cold start.
pub fn calibrate(threads: usize) -> Result<(f64, f64)> {
    let start = Instant::now();
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()?;
    let model = crate::models::load_photoz(None)?;
    let cold_start_s = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("calibration: cannot start cosmicai");
    }
    let magnitudes: Vec<[f32; 5]> = (0..16_384)
        .map(|i| {
            let x = (i % 97) as f32 / 97.0;
            [19.0 + x, 18.0 + x, 17.5 + x, 17.2 + x, 17.0 + x]
        })
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let rate = pool.install(|| {
        let start = Instant::now();
        let n = cosmicai_engine::predict::predict_photoz::<crate::models::Cpu>(
            &model,
            &magnitudes,
            512,
            &Default::default(),
        )
        .len();
        n as f64 / start.elapsed().as_secs_f64()
    });
    Ok((rate, cold_start_s))
}

fn print_estimate(args: &RunArgs) -> Result<()> {
    let request = request_of(args, "estimate")?;
    let store = LocalStore::new(&args.data);
    let payload = plan(&store, &request, "estimate")?;
    let (concurrency, threads) = concurrency_and_threads(args.concurrency, request.world_size);
    let (rate, cold) = calibrate(threads)?;
    let e = estimate(&store, &payload, rate, cold, concurrency)?;
    if args.json {
        return crate::output::emit(&(serde_json::to_string(&e)? + "\n"));
    }
    crate::output::emit(&format!(
        "estimate: {} objects over {} ranks ({} at a time): about {:.2} s, ${:.6} at AWS prices\n  (calibrated {:.0} objects/s per worker, cold start {:.3} s; Lambda {:.2} GB-s)\n",
        e.objects,
        e.ranks,
        e.concurrency,
        e.duration_s,
        e.cost_usd,
        e.calibration_samples_per_s,
        e.cold_start_s,
        e.cost.lambda_gb_s
    ))
}

fn print_summary(s: &RunSummary, json: bool) -> Result<()> {
    if json {
        let line = json!({
            "run_id": s.run_id, "status": s.status, "ranks": s.ranks, "failed_ranks": s.failed_ranks,
            "objects": s.objects, "objects_with_cutouts": s.objects_with_cutouts, "model": s.model, "predicts_class": s.predicts_class, "duration_s": s.duration_s, "samples_per_s": s.samples_per_s,
            "cost_usd": s.cost_usd, "result_path": s.result_path, "metrics": s.metrics, "per_rank": s.per_rank,
        });
        return crate::output::emit(&format!("{line}\n"));
    }
    let mut out = String::new();
    crate::line!(
        out,
        "{} {}: {} objects, {} ranks ({} failed) in {:.2} s, {:.0} objects/s",
        s.run_id,
        s.status.name(),
        s.objects,
        s.ranks,
        s.failed_ranks.len(),
        s.duration_s,
        s.samples_per_s
    );
    if !s.predicts_class {
        crate::line!(
            out,
            "  {}: redshifts from the cutouts of {} objects (no class prediction)",
            s.model,
            s.objects_with_cutouts
        );
    } else if s.objects_with_cutouts > 0 {
        crate::line!(
            out,
            "  the model's image branch read the cutouts of {} objects; the rest went on magnitudes alone",
            s.objects_with_cutouts
        );
    }
    crate::line!(
        out,
        "  rank  attempts  duration_s  init_s  cpu_s  peak_MB  objects  error"
    );
    for m in &s.per_rank {
        crate::line!(
            out,
            "  {:>4}  {:>8}  {:>10.3}  {:>6.3}  {:>5.2}  {:>7.0}  {:>7}  {}",
            m.rank,
            m.attempts,
            m.duration_s,
            m.init_duration_s,
            m.cpu_time_s,
            m.peak_rss_mb,
            m.objects,
            m.error.as_deref().unwrap_or("")
        );
    }
    if let Some(g) = s.metrics.as_ref().and_then(|m| m.galaxy.as_ref()) {
        crate::line!(
            out,
            "  galaxies (every labelled object, training split included): n {} NMAD {:.4} bias {:+.4} outliers(0.15) {:.3}",
            g.n,
            g.nmad,
            g.bias,
            g.outlier_frac_0_15
        );
    }
    crate::line!(
        out,
        "  cost at AWS prices: ${:.6} (Lambda {:.2} GB-s ${:.6}, {} requests, {} transitions, S3 ${:.6})",
        s.cost.total_usd,
        s.cost.lambda_gb_s,
        s.cost.lambda_compute_usd,
        s.cost.lambda_requests,
        s.cost.state_transitions,
        s.cost.s3_usd
    );
    crate::line!(out, "  results: {}", s.result_path);
    crate::output::emit(&out)
}
