//! `cosmicai run`: the whole pipeline on this machine, one process per rank.

use crate::coordinator::{self, AwsData, Executor, RunControl, new_run_id, with_local_weights};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use cosmicai_engine::pipeline::RunSummary;
use cosmicai_shared::cai_payload::PartitionsIn;
use cosmicai_shared::run::{Device, Precision, RankMeasure, RunRequest};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai run --data data/demo/partitions --world-size 4 --batch-size 512\n  \
    cosmicai run --data data/demo/partitions --world-size 2 --batch-size 256 --file-limit 4 --json\n  \
    cosmicai run --data data/demo/partitions --resume run-1765000000-4242-000000\n\n\
    Results follow CAI's layout under --data: RESULT_PATH/payload.json, RESULT_PATH/<rank>.json,\n\
    RESULT_PATH/combined_data.json, plus summary.json (metrics, cost) and predictions/<rank>.safetensors.\n\
    With --json the last line is the run summary (status, ranks, failed_ranks, objects, duration_s,\n\
    samples_per_s, cost_usd, cost, metrics, per_rank, result_path, ...; summary.json has it whole). Runs are recorded in DATA/cosmicai.sqlite (`cosmicai runs`).")]
pub struct RunArgs {
    /// Directory holding the partitions; it is the run's store (results are written
    /// inside it). With --s3-data, only where the results and the run registry go.
    #[arg(long)]
    pub data: PathBuf,
    /// Ranks: the partition files are shared among this many workers (CAI's split).
    #[arg(long, required_unless_present_any = ["request", "resume"])]
    pub world_size: Option<usize>,
    /// Objects a worker predicts at once.
    #[arg(long, required_unless_present_any = ["request", "resume"])]
    pub batch_size: Option<usize>,
    /// Resumes run ID of --data's registry, which did not finish (interrupted,
    /// cancelled, failed or partial): its ranks that left their results are
    /// kept, the others run again under its plan, and it is summarized whole.
    /// An AWS run is resumed on the stack it ran on (a new execution runs
    /// its unfinished ranks; the stack must be deployed from this version).
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = [
        "world_size", "batch_size", "request", "file_limit", "device", "precision",
        "result_path", "memory_mb", "retries", "timeout", "model", "estimate", "target",
        "bucket", "state_machine_arn", "region", "aws_endpoint", "s3_data",
    ])]
    pub resume: Option<String>,
    /// A CAI payload as JSON (bucket, data_prefix, file_limit, batch_size, world_size,
    /// result_path, device, precision, memory_mb, model, retries, timeout_s,
    /// tolerated_failure_percentage) instead of the flags above.
    /// CAI's own payload file is read too: its buckets and script settings are set
    /// aside (the partitions come from --data), and world_size defaults to file_limit.
    /// --model fills in the model of a payload that names none (CAI's never does).
    /// --result-path replaces its result_path (CAI's names one folder for every run),
    /// and --world-size, --batch-size and --file-limit its own (another world size
    /// without editing the file). `-` reads it from standard input.
    #[arg(long, conflicts_with_all = ["retries", "timeout", "device", "precision", "memory_mb"])]
    pub request: Option<PathBuf>,
    /// Use at most this many partition files.
    #[arg(long)]
    pub file_limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// The number format of the model's products: bf16 needs --device cuda or an
    /// AstroMAE model (on the CPU: AVX-512 BF16 where the CPU has it); f16 needs --device cuda.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// Folder for results, inside --data (default `results/<run id>`); with
    /// --request, in place of the payload's.
    #[arg(long)]
    pub result_path: Option<String>,
    /// Memory per rank in MB, enforced like Lambda's.
    #[arg(long, default_value_t = 2048)]
    pub memory_mb: u32,
    /// Times a failed rank is retried.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Seconds one attempt of a rank may run before it is killed (default: ten
    /// times the plan's bound on its slowest rank, at least ten minutes).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Ranks running at once (default: the number of cores), like Lambda's concurrency limit.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub concurrency: Option<usize>,
    /// photoz (shipped weights; the default), photoz:PATH, or astromae:PATH (a CAI
    /// checkpoint, .pt or safetensors; the partitions must hold cutouts).
    #[arg(long)]
    pub model: Option<String>,
    /// Print the duration and cost estimate (from a calibration of this machine) and stop.
    #[arg(long)]
    pub estimate: bool,
    /// Print the run's summary as one JSON line (no progress bars).
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
    /// Partitions already in the stack's bucket (ours, or CAI's .pt), under this
    /// folder (or s3://BUCKET/FOLDER: another bucket, read in place, which the
    /// stack must name as its InputBucket): nothing is uploaded, and --data is
    /// only where the results and the run registry go.
    #[arg(long, value_name = "FOLDER", conflicts_with = "s3_prefix")]
    pub s3_data: Option<String>,
}

impl AwsArgs {
    /// Where the run's partitions come from, in `bucket` (the stack's).
    fn data(&self, bucket: &str) -> Result<AwsData> {
        let Some(given) = &self.s3_data else {
            if let Err(e) = cosmicai_shared::run::check_key(&self.s3_prefix) {
                bail!("--s3-prefix '{}' {e}", self.s3_prefix);
            }
            return Ok(AwsData::Upload(self.s3_prefix.clone()));
        };
        crate::aws::data_in_s3("--s3-data", given, bucket).map(AwsData::InBucket)
    }
}

impl RunArgs {
    /// A run with the CLI's defaults, for commands that start runs themselves (sweep, bench).
    pub fn new(data: PathBuf, world_size: usize, batch_size: usize, device: DeviceArg) -> Self {
        RunArgs {
            data,
            world_size: Some(world_size),
            batch_size: Some(batch_size),
            request: None,
            resume: None,
            file_limit: None,
            device,
            precision: PrecisionArg::Fp32,
            result_path: None,
            memory_mb: 2048,
            retries: 0,
            timeout: None,
            concurrency: None,
            model: None,
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

#[derive(Clone, Copy, Debug, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionArg {
    Fp32,
    Bf16,
    F16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::Fp32 => Precision::Fp32,
            PrecisionArg::Bf16 => Precision::Bf16,
            PrecisionArg::F16 => Precision::F16,
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    if args.aws.s3_data.is_some() && (args.target != TargetArg::Aws || args.estimate) {
        bail!(
            "--s3-data names partitions already in S3: it needs --target aws (and estimates only local data)"
        );
    }
    if args.estimate {
        return print_estimate(&args);
    }
    let summary = if let Some(run_id) = &args.resume {
        resume_run(&args, run_id)?
    } else if args.target == TargetArg::Aws {
        execute_aws_run(&args)?
    } else {
        execute_run(&args, false, true)?
    };
    print_summary(&summary, args.json)?;
    super::succeeded(&summary.run_id, summary.status)
}

/// The payload file `path`, or standard input for `-`; at most 1 MB (a payload
/// is a few hundred bytes: anything larger is not one).
fn read_request(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    const MAX_BYTES: u64 = 1 << 20;
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(path)
                .with_context(|| format!("reading --request {}", path.display()))?,
        )
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading --request {}", path.display()))?;
    if bytes.len() as u64 > MAX_BYTES {
        bail!("--request {}: over 1 MB: not a run request", path.display());
    }
    String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "--request {}: not UTF-8 text: not a run request",
            path.display()
        )
    })
}

/// The request `args` describe, for run `run_id`.
pub fn request_of(args: &RunArgs, run_id: &str) -> Result<RunRequest> {
    if !args.data.exists() {
        bail!("--data {}: no such folder", args.data.display());
    }
    if !args.data.is_dir() {
        bail!("--data {}: a file, not a folder", args.data.display());
    }
    if let Some(path) = &args.request {
        let text = read_request(path)?;
        let invalid = || format!("--request {}: not a valid run request", path.display());
        // A file saved by Windows' Notepad may start with a byte-order mark.
        let mut payload: serde_json::Value =
            serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(&text))
                .with_context(invalid)?;
        if let (Some(model), Some(fields)) = (&args.model, payload.as_object_mut()) {
            match fields.get("model") {
                Some(named) if named != model.as_str() => bail!(
                    "--request {}: it names model {named}, and --model {model}: keep one",
                    path.display()
                ),
                _ => {
                    fields.insert("model".into(), model.as_str().into());
                }
            }
        }
        // Run again with the same payload: its one result_path holds the first
        // run's; a sweep by hand changes its world size. Set before the payload
        // is read, so CAI's rules (world_size from file_limit) see them.
        if let Some(fields) = payload.as_object_mut() {
            let flags = [
                (
                    "result_path",
                    args.result_path.as_deref().map(serde_json::Value::from),
                ),
                ("world_size", args.world_size.map(serde_json::Value::from)),
                ("batch_size", args.batch_size.map(serde_json::Value::from)),
                ("file_limit", args.file_limit.map(serde_json::Value::from)),
            ];
            for (key, value) in flags {
                if let Some(value) = value {
                    fields.insert(key.into(), value);
                }
            }
        }
        let (payload, notes) =
            cosmicai_shared::cai_payload::translate(payload, PartitionsIn::Data, None)
                .map_err(|e| anyhow::anyhow!("--request {}: {e}", path.display()))?;
        for note in notes {
            crate::say!("--request {}: {note}", path.display());
        }
        // A CAI payload trimmed to the keys ours shares reads as ours: its
        // model is PhotoZ, the default, and said so (CAI's would be AstroMAE).
        if payload.get("model").is_none() {
            crate::say!(
                "--request {}: model not given: photoz, the default (for an AstroMAE checkpoint, give --model astromae:PATH)",
                path.display()
            );
        }
        // The field at fault is named: `world_size: invalid type: string "4"`.
        let request: RunRequest =
            serde_path_to_error::deserialize(payload).with_context(invalid)?;
        let problems = request.problems();
        if !problems.is_empty() {
            bail!("--request {}: {}", path.display(), problems.join("; "));
        }
        if request.bucket != "local" {
            bail!(
                "--request {}: bucket '{}': this command runs on the local store (bucket \"local\", data under --data); S3 data is run by the AWS launcher (--target aws). A CAI payload's bucket (its scripts') is set aside where the payload keeps CAI's script keys, or drop it",
                path.display(),
                request.bucket
            );
        }
        if args.target == TargetArg::Aws {
            return Ok(request); // local weights go up with the run, keys are Initialize's
        }
        return with_local_weights(request);
    }
    let request = RunRequest {
        bucket: "local".into(),
        data_bucket: None,
        data_prefix: String::new(),
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
        precision: args.precision.into(),
        memory_mb: args.memory_mb,
        model: args.model.clone().unwrap_or_else(|| "photoz".into()),
        retries: args.retries,
        tolerated_failure_percentage: 100.0,
        timeout_s: args.timeout,
    };
    if args.target == TargetArg::Aws {
        return Ok(request); // local weights go up with the run, keys are Initialize's
    }
    with_local_weights(request)
}

/// Runs the whole pipeline on this machine; `quiet` hides the progress bars (sweeps show their own).
/// `on_signal`: Ctrl-C cancels it ([`crate::interrupt`]); a benchmark's runs
/// leave the signal as it is.
pub fn execute_run(args: &RunArgs, quiet: bool, on_signal: bool) -> Result<RunSummary> {
    let run_id = new_run_id();
    let request = request_of(args, &run_id)?;
    let control = RunControl {
        quiet,
        ..Default::default()
    };
    if on_signal {
        crate::interrupt::cancel_on_signal(control.cancel.clone());
    }
    if request.device == Device::Cpu
        && request.precision == Precision::Bf16
        && !cosmicai_model::astromae::fused::bf16::native()
    {
        // Same answers, no gain: say so before the user waits for it.
        crate::say!(
            "note: this CPU has no AVX-512 BF16 (or COSMICAI_CPU_BF16=off), so --precision bf16 runs its bf16-rounded products on the fp32 kernels, a little slower than fp32 (0.87-0.94x where measured): use fp32"
        );
    }
    let local = Executor::Local {
        concurrency: args.concurrency,
    };
    coordinator::execute(&args.data, &request, &run_id, &local, control, &mut |_| {})
}

/// `cosmicai run --resume ID`: run ID's unfinished ranks, then its summary.
fn resume_run(args: &RunArgs, run_id: &str) -> Result<RunSummary> {
    let control = RunControl {
        quiet: args.json,
        ..Default::default()
    };
    crate::interrupt::cancel_on_signal(control.cancel.clone());
    coordinator::resume(&args.data, run_id, args.concurrency, control, &mut |_| {})
}

/// `cosmicai run --target aws`: the partitions of --data on Step Functions + Lambda.
fn execute_aws_run(args: &RunArgs) -> Result<RunSummary> {
    let config = crate::aws::AwsConfig::resolve(
        args.aws.bucket.clone(),
        args.aws.state_machine_arn.clone(),
        args.aws.region.clone(),
        args.aws.aws_endpoint.clone(),
    )?;
    let data = args.aws.data(&config.bucket)?;
    if matches!(data, AwsData::InBucket(_)) {
        // Only where the results and the registry go: made if it is not there.
        std::fs::create_dir_all(&args.data)
            .with_context(|| format!("--data {}", args.data.display()))?;
    }
    let run_id = new_run_id();
    let request = request_of(args, &run_id)?;
    let aws = Executor::Aws {
        aws: Box::new(crate::aws::Aws::connect(config)?),
        data,
    };
    let control = RunControl {
        quiet: args.json,
        ..Default::default()
    };
    // Ctrl-C stops the upload, or the execution (no rank starts after; those
    // on their functions are waited for), and what finished is summarized; a
    // second exits at once (`runs --follow` reattaches, and summarizes a
    // stopped execution).
    crate::interrupt::cancel_on_signal(control.cancel.clone());
    coordinator::execute(&args.data, &request, &run_id, &aws, control, &mut |_| {})
}

fn print_estimate(args: &RunArgs) -> Result<()> {
    let request = request_of(args, "estimate")?;
    let e = coordinator::estimate(&args.data, &request, args.concurrency, &Default::default())?;
    if args.json {
        return crate::output::emit(&(serde_json::to_string(&e)? + "\n"));
    }
    crate::output::emit(&format!(
        "estimate: {} objects over {} ({} at a time): about {:.2} s, ${:.6} at AWS prices\n  (calibrated {:.0} objects/s per worker, cold start {:.3} s; Lambda{} {:.2} GB-s)\n",
        e.objects,
        cosmicai_shared::counted(e.ranks, "rank"),
        e.concurrency,
        e.duration_s,
        e.cost_usd,
        e.calibration_samples_per_s,
        e.cold_start_s,
        e.cost
            .lambda_architecture
            .as_ref()
            .map_or(String::new(), |a| format!(" on {a}")),
        e.cost.lambda_gb_s
    ))
}

/// The ranks that did not finish, by why: "2 failed", or for a cancelled run
/// "1 failed, 2 stopped by the cancel, 17 never started" (its `failed_ranks`
/// counts them all).
fn unfinished(failed_ranks: &[usize], per_rank: &[RankMeasure]) -> String {
    let cancelled = cosmicai_engine::executor::CANCELLED;
    // per_rank is in rank order: found at its index, else looked for.
    let ended = |rank: usize| {
        per_rank
            .get(rank)
            .filter(|m| m.rank == rank)
            .or_else(|| per_rank.iter().find(|m| m.rank == rank))
    };
    let (mut failed, mut stopped, mut never) = (0, 0, 0);
    for &rank in failed_ranks {
        match ended(rank) {
            Some(m) if m.error.as_deref() == Some(cancelled) && m.attempts == 0 => never += 1,
            Some(m) if m.error.as_deref() == Some(cancelled) => stopped += 1,
            _ => failed += 1,
        }
    }
    let mut parts = vec![format!("{failed} failed")];
    if stopped > 0 {
        parts.push(format!("{stopped} stopped by the cancel"));
    }
    if never > 0 {
        parts.push(format!("{never} never started"));
    }
    parts.join(", ")
}

pub fn print_summary(s: &RunSummary, json: bool) -> Result<()> {
    if json {
        let line = json!({
            "run_id": s.run_id, "status": s.status, "ranks": s.ranks, "failed_ranks": s.failed_ranks,
            "objects": s.objects, "objects_with_cutouts": s.objects_with_cutouts, "model": s.model, "device": s.device, "precision": s.precision, "kernels": s.kernels, "predicts_class": s.predicts_class, "duration_s": s.duration_s, "samples_per_s": s.samples_per_s,
            "cost_usd": s.cost_usd, "cost": s.cost, "result_path": s.result_path, "metrics": s.metrics, "per_rank": s.per_rank,
            "resumed_ranks": s.resumed_ranks,
        });
        return crate::output::emit(&format!("{line}\n"));
    }
    let mut out = String::new();
    // A resumed run's time is its last attempt's: said with that attempt's
    // objects, not the run's (which would read as a speed it never had).
    let timing = if s.resumed_ranks > 0 {
        format!(
            "; this attempt predicted {:.0} objects in {:.2} s",
            s.samples_per_s * s.duration_s,
            s.duration_s
        )
    } else {
        format!(" in {:.2} s", s.duration_s)
    };
    crate::line!(
        out,
        "{} {}: {} objects, {} ({}){timing}, {:.0} objects/s",
        s.run_id,
        s.status.name(),
        s.objects,
        cosmicai_shared::counted(s.ranks, "rank"),
        unfinished(&s.failed_ranks, &s.per_rank),
        s.samples_per_s
    );
    if s.resumed_ranks > 0 {
        crate::line!(
            out,
            "  resumed: {} kept from an earlier attempt (the time above is this attempt's; the cost is every rank's)",
            cosmicai_shared::counted(s.resumed_ranks, "rank")
        );
    }
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
    if !s.kernels.is_empty() {
        crate::line!(
            out,
            "  on {} in {}: {}",
            s.device.name(),
            s.precision.name(),
            s.kernels
        );
    }
    crate::line!(
        out,
        "  rank  attempts  duration_s  init_s  cpu_s  peak_MB  objects  error"
    );
    // Ranks planned no file (more ranks than files) are one line a stretch:
    // 40,000 ranks over 11 files is 11 lines and one more, not 40,000.
    let never_tried = |m: &RankMeasure| m.attempts == 0 && m.error.is_none();
    let mut ranks = s.per_rank.iter().peekable();
    while let Some(m) = ranks.next() {
        let mut last = m.rank;
        while never_tried(m) && ranks.peek().is_some_and(|n| never_tried(n)) {
            last = ranks.next().map_or(last, |n| n.rank);
        }
        if last != m.rank {
            crate::line!(
                out,
                "  {:>4}  ranks {}-{last}: planned no file, so none read anything ({} ranks)",
                m.rank,
                m.rank,
                last - m.rank + 1
            );
            continue;
        }
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
    let metrics = s.metrics.as_ref();
    // Only the shipped PhotoZ is known to have trained on the bundled catalogs.
    let shipped = s.model.is_empty() || s.model == "photoz";
    if let Some(g) = metrics.and_then(|m| m.galaxy.as_ref()) {
        crate::line!(
            out,
            "  galaxies (every labelled object{}): n {} NMAD {:.4} bias {:+.4} outliers(0.15) {:.3}",
            if shipped {
                ", training split included"
            } else {
                ""
            },
            g.n,
            g.nmad,
            g.bias,
            g.outlier_frac_0_15
        );
        // The validation split: objects PhotoZ's training left out.
        if let Some(h) = metrics
            .and_then(|m| m.held_out.as_ref())
            .and_then(|h| h.galaxy.as_ref())
        {
            crate::line!(
                out,
                "  galaxies held out (the validation split, never trained on): n {} NMAD {:.4} bias {:+.4} outliers(0.15) {:.3}",
                h.n,
                h.nmad,
                h.bias,
                h.outlier_frac_0_15
            );
        }
    } else if let Some(a) = metrics.and_then(|m| m.all.as_ref()) {
        // Partitions without classes (CAI's .pt files import as UNKNOWN): every
        // object with a spectroscopic redshift, whatever its class.
        crate::line!(
            out,
            "  objects with a spectroscopic redshift (no class known, so not galaxies alone): n {} NMAD {:.4} bias {:+.4} outliers(0.15) {:.3}",
            a.n,
            a.nmad,
            a.bias,
            a.outlier_frac_0_15
        );
    }
    if let Some(m) = metrics.filter(|m| m.synthetic > 0) {
        crate::line!(
            out,
            "  {} objects are SYNTHETIC (rendered from their labels): left out of every figure above, which are on real labels only",
            m.synthetic
        );
    }
    if let Some(m) = metrics.filter(|m| m.unscored > 0) {
        crate::line!(
            out,
            "  {} objects with a spectroscopic redshift got no finite prediction: left out of the figures above",
            m.unscored
        );
    }
    let gpu = if s.cost.gpu_instance_s > 0.0 {
        format!(
            ", GPU instances {:.1} s ${:.6}",
            s.cost.gpu_instance_s, s.cost.gpu_instance_usd
        )
    } else {
        String::new()
    };
    crate::line!(
        out,
        "  cost at AWS prices: ${:.6} (Lambda{} {:.2} GB-s ${:.6}, {} requests, {} transitions, S3 ${:.6}{gpu})",
        s.cost.total_usd,
        s.cost
            .lambda_architecture
            .as_ref()
            .map_or(String::new(), |a| format!(" {a}")),
        s.cost.lambda_gb_s,
        s.cost.lambda_compute_usd,
        s.cost.lambda_requests,
        s.cost.state_transitions,
        s.cost.s3_usd
    );
    if s.cost.data_bytes > 0 {
        crate::line!(
            out,
            "  keeping its {} of partitions in S3 Standard would cost ${:.6} a month, beside the run",
            cosmicai_engine::size::format_size(s.cost.data_bytes),
            s.cost.storage_usd_month
        );
    }
    crate::line!(out, "  results: {}", s.result_path);
    crate::output::emit(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_runs_unfinished_ranks_are_told_apart() {
        let rank = |rank: usize, attempts: u32, error: Option<&str>| RankMeasure {
            rank,
            attempts,
            error: error.map(str::to_string),
            ..Default::default()
        };
        let cancelled = Some(cosmicai_engine::executor::CANCELLED);
        let per_rank = [
            rank(0, 1, None),
            rank(1, 2, Some("worker exited 1")),
            rank(2, 1, cancelled),
            rank(3, 0, cancelled),
            rank(4, 0, cancelled),
        ];
        assert_eq!(
            unfinished(&[1, 2, 3, 4], &per_rank),
            "1 failed, 1 stopped by the cancel, 2 never started"
        );
        assert_eq!(unfinished(&[], &per_rank), "0 failed");
        // A rank missing from the measures is a failure.
        assert_eq!(unfinished(&[7], &per_rank), "1 failed");
    }
}
