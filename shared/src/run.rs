//! A pipeline run: the CAI request payload, per-rank results and the summary.
//!
//! Field names follow the CAI pipeline so its users feel at home: the payload
//! (`bucket`, `data_prefix`, `file_limit`, `batch_size`, `world_size`,
//! `result_path`) and the per-rank result keys such as `"sample_persec"`.

use serde::{Deserialize, Serialize};

/// Where a rank runs its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

impl Device {
    /// The name used on the wire and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// The number format of a model's products. On CUDA, bf16 and f16 run burn's
/// half-precision kernels (tensor cores), with weights and activations stored
/// in that format. On the CPU, AstroMAE runs fp32 or bf16 (the transformer's
/// products with bf16 inputs and f32 sums: AVX-512 BF16 where the CPU has it,
/// the fp32 kernels on bf16-rounded values where not); PhotoZ runs fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
    F16,
}

impl Precision {
    /// The name used on the wire and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }
}

/// What to run: CAI's payload plus Lambda-like settings. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// `local` for the local store, or an S3 bucket name.
    #[serde(default = "default_bucket")]
    pub bucket: String,
    /// The S3 bucket holding the partitions, where it is not `bucket`: read in
    /// place, never written (a CAI user's data bucket; on AWS the template's
    /// `InputBucket`). Results go to `bucket` either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bucket: Option<String>,
    /// Folder (key prefix) holding the partitions.
    #[serde(default)]
    pub data_prefix: String,
    /// Use at most this many partition files (all when absent).
    #[serde(default)]
    pub file_limit: Option<usize>,
    pub batch_size: usize,
    pub world_size: usize,
    /// Folder for `payload.json`, `<rank>.json`, `combined_data.json` and `summary.json`.
    pub result_path: String,
    #[serde(default)]
    pub device: Device,
    /// `fp32` (the default), or `bf16` / `f16` on device cuda.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// Memory per rank in MB, enforced like Lambda's setting (128 to 10,240).
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    /// `photoz` (the shipped weights), `photoz:PATH` for other weights, or
    /// `astromae:PATH` for a CAI checkpoint (see [`crate::model::ModelSpec`]).
    #[serde(default = "default_model")]
    pub model: String,
    /// Times a failed rank is started again.
    #[serde(default)]
    pub retries: u32,
    /// The share of ranks planned a file (percent) that may fail with the run
    /// still `partial`; past it the run is `failed` (on AWS the Map stops early
    /// there). Failed ranks are reported in the summary either way.
    #[serde(default = "default_tolerated")]
    pub tolerated_failure_percentage: f64,
    /// Seconds one attempt of a rank may run before it is killed, on the local
    /// executor (by default ten times the plan's bound on its slowest rank, and
    /// at least ten minutes). On AWS the Infer task's own timeout applies.
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

fn default_bucket() -> String {
    "local".into()
}

fn default_memory() -> u32 {
    2048
}

fn default_tolerated() -> f64 {
    100.0
}

fn default_model() -> String {
    "photoz".into()
}

/// The longest `timeout_s` a request may ask for: a week.
pub const MAX_TIMEOUT_S: f64 = 7.0 * 24.0 * 3600.0;

/// Most ranks a run may have. CAI sets world_size to its file count, and its
/// 1,000 GB is 40,000 files of 25 MB: a Distributed Map takes any number of
/// items (its 10,000 is the default of child executions at once, which
/// MaxConcurrency bounds separately).
pub const MAX_WORLD_SIZE: usize = 100_000;

/// The most objects in one batch: a batch's cutouts are in memory at once
/// (80 KB an object at 64 x 64), so 16,384 is 1.3 GB before the model's own
/// memory; CAI's runs use 512.
pub const MAX_BATCH_SIZE: usize = 16_384;

/// S3 keys stop at 1,024 bytes (Amazon S3 User Guide, "Naming Amazon S3 objects"):
/// the longest key a run writes under its result path, `/predictions/<rank>.safetensors`
/// at rank 99,999, takes 30 of them; this leaves room for more.
pub const MAX_RESULT_PATH_BYTES: usize = 960;

impl RunRequest {
    /// Every problem with the request, each naming its field; empty when valid.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.world_size == 0 {
            problems.push("world_size must be at least 1".to_string());
        }
        if self.world_size > MAX_WORLD_SIZE {
            problems.push(format!(
                "world_size {} is more than {MAX_WORLD_SIZE} workers",
                self.world_size
            ));
        }
        if self.batch_size == 0 {
            problems.push("batch_size must be at least 1".to_string());
        }
        if self.batch_size > MAX_BATCH_SIZE {
            problems.push(format!(
                "batch_size {} is more than {MAX_BATCH_SIZE} objects",
                self.batch_size
            ));
        }
        if self.file_limit == Some(0) {
            problems.push("file_limit must be at least 1 when given".to_string());
        }
        if !(128..=10_240).contains(&self.memory_mb) {
            problems.push(format!(
                "memory_mb {} is outside Lambda's 128 to 10,240 MB",
                self.memory_mb
            ));
        }
        if !(0.0..=100.0).contains(&self.tolerated_failure_percentage) {
            problems.push(format!(
                "tolerated_failure_percentage {} is outside 0 to 100",
                self.tolerated_failure_percentage
            ));
        }
        if let Some(t) = self.timeout_s
            && !(t > 0.0 && t <= MAX_TIMEOUT_S)
        {
            problems.push(format!(
                "timeout_s {t}: give more than 0 and at most {MAX_TIMEOUT_S} seconds (7 days)"
            ));
        }
        if self.device == Device::Cpu {
            let astromae = matches!(self.model_spec(), Ok(crate::model::ModelSpec::AstroMae(_)));
            match self.precision {
                Precision::Fp32 => {}
                Precision::Bf16 if astromae => {}
                Precision::Bf16 => problems.push(
                    "precision bf16 on device cpu runs AstroMAE only: PhotoZ computes in fp32 there (bf16 runs it on device cuda)".to_string(),
                ),
                Precision::F16 => problems.push(
                    "precision f16 runs on device cuda only: on the CPU use fp32, or bf16 for AstroMAE".to_string(),
                ),
            }
        }
        if self.bucket.trim().is_empty() {
            problems.push("bucket is empty (use \"local\" for the local store)".to_string());
        }
        if let Some(data) = &self.data_bucket {
            if let Err(e) = check_bucket_name(data) {
                problems.push(format!("data_bucket '{data}' {e}"));
            } else if self.bucket == "local" {
                problems.push(format!(
                    "data_bucket '{data}': a local run reads its partitions from its data folder; data_bucket is for a run on AWS"
                ));
            }
        }
        for (field, value) in [
            ("data_prefix", &self.data_prefix),
            ("result_path", &self.result_path),
        ] {
            if let Err(e) = check_key(value) {
                problems.push(format!("{field} '{value}' {e}"));
            } else if value.contains("://") {
                // `s3://bucket/x` names a bucket too (the request's `bucket`
                // does that): as a key it would be folders `s3:` and the bucket.
                problems.push(format!(
                    "{field} '{value}' is an address, not a key: give the folder inside the bucket (for s3://BUCKET/x, the key is x and the bucket BUCKET)"
                ));
            }
        }
        if self.result_path.trim_matches('/').is_empty() {
            problems.push("result_path is empty".to_string());
        }
        if self.result_path.len() > MAX_RESULT_PATH_BYTES {
            problems.push(format!(
                "result_path is {} bytes long: at most {MAX_RESULT_PATH_BYTES}, so that the keys under it stay within S3's 1,024",
                self.result_path.len()
            ));
        }
        if let Err(e) = self.model_spec() {
            problems.push(e);
        }
        problems
    }

    /// The bucket the partitions are read from: `data_bucket`, else `bucket`.
    pub fn partitions_bucket(&self) -> &str {
        self.data_bucket.as_deref().unwrap_or(&self.bucket)
    }

    /// Where the partitions are, for people: the data folder of a local run,
    /// `s3://BUCKET/FOLDER` of one on S3 (the run's bucket, or its data bucket).
    pub fn data_location(&self) -> String {
        if self.bucket == "local" {
            return self.data_prefix.clone();
        }
        format!(
            "s3://{}/{}",
            self.partitions_bucket(),
            self.data_prefix.trim_matches('/')
        )
    }

    /// The parsed `model` field.
    pub fn model_spec(&self) -> Result<crate::model::ModelSpec, String> {
        crate::model::ModelSpec::parse(&self.model)
    }
}

/// A deployment's functions write only under its results prefix (the
/// template's `ResultsPrefix`, by their IAM policy): `result_path` must lie there.
/// Initialize checks it, and the launcher before it uploads anything.
pub fn check_results_prefix(result_path: &str, prefix: &str) -> Result<(), String> {
    let prefix = format!("{}/", prefix.trim_matches('/'));
    if result_path.starts_with(&prefix) {
        return Ok(());
    }
    Err(format!(
        "result_path '{result_path}' is outside '{prefix}': this deployment writes results only there (template parameter ResultsPrefix)"
    ))
}

/// Whether a stack whose own bucket is `stack`, deployed with `InputBucket`
/// `input` (empty for none), may read partitions in place from `bucket`: its
/// workers' role reads no other. The refusal says what to deploy (one
/// `InputBucket` at a time) or copy instead. Initialize and the launcher both
/// ask it.
pub fn check_input_bucket(bucket: &str, stack: &str, input: &str) -> Result<(), String> {
    let input = input.trim();
    if bucket == stack || bucket == input {
        return Ok(());
    }
    let (readable, replaced) = if input.is_empty() {
        (format!("its own bucket '{stack}' only"), String::new())
    } else {
        (
            format!("its own bucket '{stack}' and its InputBucket '{input}' only"),
            format!(" (in place of '{input}': it names one)"),
        )
    };
    Err(format!(
        "data bucket '{bucket}': the stack's workers may read partitions from {readable}: deploy the template with InputBucket={bucket}{replaced} to read them where they are, or copy them into its bucket (aws s3 sync s3://{bucket}/FOLDER s3://{stack}/FOLDER) and name the folder there"
    ))
}

/// S3's rules for a general purpose bucket's name: 3 to 63 characters of
/// lowercase letters, digits, dots and hyphens, starting and ending with a
/// letter or digit, no two dots in a row (nor a dot beside a hyphen, which
/// virtual-hosted addresses refuse), not an IPv4 address, and none of the
/// prefixes and suffixes S3 keeps for itself.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let problem = if !(3..=63).contains(&name.len()) {
        "is not 3 to 63 characters long"
    } else if !name.chars().all(allowed) {
        "holds characters S3 refuses in a bucket name (lowercase letters, digits, '.' and '-' only)"
    } else if !edge(name.chars().next()) || !edge(name.chars().last()) {
        "must start and end with a letter or a digit"
    } else if name.contains("..") {
        "holds two dots in a row"
    } else if name.contains(".-") || name.contains("-.") {
        "holds a dot beside a hyphen"
    } else if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| name.starts_with(p))
        || ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .any(|s| name.ends_with(s))
    {
        "starts or ends as S3's own names do (xn--, sthree-, -s3alias, --ol-s3, ...)"
    } else if name.parse::<std::net::Ipv4Addr>().is_ok() {
        "is an IP address, not a bucket name"
    } else {
        return Ok(());
    };
    Err(format!(
        "{problem}: give the bucket's name, as in s3://NAME/"
    ))
}

/// A store key must stay inside the store: relative, no `..`, no backslashes or NULs.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.starts_with('/') {
        return Err("is absolute: give a path inside the store");
    }
    if key.contains('\\') || key.contains('\0') {
        return Err("contains a backslash or NUL");
    }
    if key.split('/').any(|part| part == "..") {
        return Err("contains '..': it would leave the store");
    }
    Ok(())
}

/// One rank's result, `result_path/<rank>.json`, with CAI's keys plus CloudWatch-like figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RankResult {
    pub rank: usize,
    /// The run that wrote this file (a result path never mixes runs).
    #[serde(default)]
    pub run_id: String,
    #[serde(rename = "total_cpu_time (seconds)")]
    pub total_time_s: f64,
    #[serde(rename = "total_cpu_memory (MB)")]
    pub memory_mb: f64,
    #[serde(rename = "execution_time (seconds/batch)")]
    pub execution_time_per_batch_s: f64,
    pub num_batches: usize,
    pub batch_size: usize,
    pub device: Device,
    /// The number format the model computed in (absent in CAI's files: fp32).
    #[serde(default)]
    pub precision: Precision,
    pub throughput_bps: f64,
    pub sample_persec: f64,
    pub result_path: String,
    /// The partitions this rank read: written as CAI writes it, a key where
    /// the rank read one file and a list where several (read either way).
    #[serde(with = "one_or_many")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub data_path: Vec<String>,
    pub objects: usize,
    /// Objects whose cutout the model's image branch read (0 for a magnitudes-only model).
    #[serde(default)]
    pub objects_with_cutouts: usize,
    /// The model that ran (`photoz`, `photoz:PATH`, `astromae:PATH`).
    #[serde(default)]
    pub model: String,
    /// What computed it: burn and its backend, or AstroMAE's fused kernels on
    /// the CPU or the GPU, with their number format (absent in CAI's files).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernels: String,
    /// Bytes the rank read from a remote store (S3); 0 where its partitions were
    /// local files. A model that reads no cutouts reads only the catalog columns.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub downloaded_bytes: u64,
    /// The GET requests those reads took (priced in the run's cost).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub partition_gets: u64,
    pub system: SystemInfo,
}

impl RankResult {
    /// Whether this is run `run_id`'s result: CAI's files, which carry no run
    /// id, count as the run's.
    pub fn is_of_run(&self, run_id: &str) -> bool {
        self.run_id.is_empty() || self.run_id == run_id
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The machine a rank ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemInfo {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gb: f64,
    pub os: String,
}

/// What the executor measured around a rank, like Lambda's REPORT line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RankMeasure {
    pub rank: usize,
    /// The run measured, where the measures are stored apart (`measures/<rank>.json` on AWS).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    pub attempts: u32,
    pub duration_s: f64,
    /// Lambda bills whole milliseconds: those of every attempt of the rank
    /// (a failed one too, locally; on AWS, a cold call's INIT too).
    pub billed_duration_ms: u64,
    /// Process start to model ready.
    pub init_duration_s: f64,
    /// Process start to the first batch done (the cold start).
    pub first_batch_s: f64,
    pub cpu_time_s: f64,
    pub peak_rss_mb: f64,
    pub objects: usize,
    pub samples_per_s: f64,
    pub bits_per_s: f64,
    /// Set when the rank failed for good.
    pub error: Option<String>,
}

impl RankMeasure {
    /// Rank `rank` of run `run_id`, planned no file: done with nothing read
    /// and never tried (no Map item on AWS, no worker locally).
    pub fn nothing_read(rank: usize, run_id: &str) -> Self {
        RankMeasure {
            rank,
            run_id: run_id.to_string(),
            ..Default::default()
        }
    }

    /// Whether this is run `run_id`'s measure: one written before measures
    /// carried their run's id (its `run_id` empty) counts as the run's.
    pub fn is_of_run(&self, run_id: &str) -> bool {
        self.run_id.is_empty() || self.run_id == run_id
    }

    /// This measure with the attempts and billed time of `earlier`, the same
    /// rank's measure from an earlier attempt of the run where it failed: a
    /// resumed rank is billed for every try.
    pub fn after(mut self, earlier: Option<&RankMeasure>) -> Self {
        if let Some(earlier) = earlier.filter(|e| e.error.is_some() && e.rank == self.rank) {
            self.attempts += earlier.attempts;
            self.billed_duration_ms += earlier.billed_duration_ms;
        }
        self
    }
}

/// `result_path/summary.json`: what the API's run results carry, and `cosmicai
/// run --json`'s last line in part (all but the request's batch size, memory
/// and files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    pub ranks: usize,
    pub failed_ranks: Vec<usize>,
    pub objects: usize,
    /// Objects the model's image branch saw (0 for a magnitudes-only model).
    #[serde(default)]
    pub objects_with_cutouts: usize,
    /// The model that ran (`photoz`, `photoz:PATH`, `astromae:PATH`).
    #[serde(default)]
    pub model: String,
    /// False for a model without a class prediction (AstroMAE): predictions carry
    /// redshifts only, and `metrics.class_accuracy` is absent.
    #[serde(default = "yes")]
    pub predicts_class: bool,
    pub duration_s: f64,
    pub samples_per_s: f64,
    pub cost_usd: f64,
    pub result_path: String,
    pub device: Device,
    /// The number format the model computed in.
    #[serde(default)]
    pub precision: Precision,
    /// What computed the model, as its ranks recorded it (distinct values,
    /// joined by "; "; empty where no rank said).
    #[serde(default)]
    pub kernels: String,
    pub batch_size: usize,
    pub memory_mb: u32,
    pub files: usize,
    pub cost: Cost,
    /// Accuracy over predictions whose object has a spectroscopic label.
    pub metrics: Option<crate::metrics::Evaluation>,
    pub per_rank: Vec<RankMeasure>,
    /// Ranks whose results an earlier, unfinished attempt of this run left,
    /// kept and not run again (`cosmicai run --resume`); `duration_s` and
    /// `samples_per_s` are then the last attempt's, and the cost every rank's.
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub resumed_ranks: usize,
}

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

fn yes() -> bool {
    true
}

/// A run's duration and cost before it starts (`cosmicai run --estimate`,
/// `POST /api/estimate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Estimate {
    pub ranks: usize,
    pub objects: usize,
    pub objects_per_rank: Vec<usize>,
    /// One worker's calibrated inference rate.
    pub calibration_samples_per_s: f64,
    pub cold_start_s: f64,
    pub concurrency: usize,
    /// Wall time: ranks run `concurrency` at a time.
    pub duration_s: f64,
    pub cost_usd: f64,
    pub cost: Cost,
}

/// Cost of a run at AWS prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cost {
    pub lambda_gb_s: f64,
    pub lambda_compute_usd: f64,
    /// The Lambda architecture its GB-seconds are priced at (`arm64` costs a
    /// fifth less than `x86_64`): the function's own on AWS, this machine's for
    /// a local run or an estimate. Absent in summaries written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_architecture: Option<String>,
    pub lambda_requests: u64,
    pub lambda_requests_usd: f64,
    pub state_transitions: u64,
    /// EXPRESS child executions (CPU ranks), billed per request and duration.
    #[serde(default)]
    pub express_executions: u64,
    /// Their duration at the 64 MB Express bills at least.
    #[serde(default)]
    pub express_gb_s: f64,
    /// Transitions, and EXPRESS children's requests and duration.
    pub step_functions_usd: f64,
    /// GPU ranks (AWS Batch jobs): seconds of GPU instance time their work took
    /// (the instance's start and idle time are not known here, so not counted).
    #[serde(default)]
    pub gpu_instance_s: f64,
    #[serde(default)]
    pub gpu_instance_usd: f64,
    pub s3_put_list: u64,
    pub s3_get: u64,
    pub s3_usd: f64,
    pub total_usd: f64,
    /// Bytes of the partitions the run was planned (whole, as they are kept,
    /// though a catalog-only rank reads a share of each).
    #[serde(default)]
    pub data_bytes: u64,
    /// Keeping them in S3 Standard, USD a month: a bill of its own while the
    /// data stays in the bucket, not in `total_usd`.
    #[serde(default)]
    pub storage_usd_month: f64,
}

/// Lifecycle of a run in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// Finished, but some ranks failed for good.
    Partial,
    Failed,
    /// Cut short by a crash or a kill of the coordinator.
    Interrupted,
    /// Stopped by its user (a cancel, Ctrl-C) before it ended: what finished
    /// is summarized.
    Cancelled,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Partial,
            RunStatus::Failed,
            RunStatus::Interrupted,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|r| r.name() == s)
    }
}

/// CAI's `data_path`: a string for one key, a list for several; scripts that
/// split it as a path get the string they expect.
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(keys: &[String], s: S) -> Result<S::Ok, S::Error> {
        match keys {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(key) => vec![key],
            OneOrMany::Many(keys) => keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RunRequest {
        RunRequest {
            bucket: "local".into(),
            data_bucket: None,
            data_prefix: String::new(),
            file_limit: None,
            batch_size: 512,
            world_size: 2,
            result_path: "results/r1".into(),
            device: Device::Cpu,
            precision: Precision::Fp32,
            memory_mb: 2048,
            model: "photoz".into(),
            retries: 0,
            tolerated_failure_percentage: 100.0,
            timeout_s: None,
        }
    }

    #[test]
    fn only_the_stacks_own_bucket_and_its_input_bucket_are_read_in_place() {
        assert!(check_input_bucket("stack", "stack", "").is_ok());
        assert!(check_input_bucket("cai-data", "stack", " cai-data ").is_ok());
        let e = check_input_bucket("cai-data", "stack", "").unwrap_err();
        assert!(e.contains("from its own bucket 'stack' only"), "{e}");
        assert!(e.contains("InputBucket=cai-data to read"), "{e}");
        assert!(
            e.contains("aws s3 sync s3://cai-data/FOLDER s3://stack/FOLDER"),
            "{e}"
        );
        let e = check_input_bucket("other", "stack", "cai-data").unwrap_err();
        assert!(e.contains("and its InputBucket 'cai-data' only"), "{e}");
        assert!(
            e.contains("InputBucket=other (in place of 'cai-data'"),
            "{e}"
        );
    }

    #[test]
    fn a_valid_request_has_no_problems() {
        assert!(request().problems().is_empty());
    }

    #[test]
    fn a_data_bucket_is_an_s3_name_for_a_run_on_aws() {
        let on_aws = |data: &str| RunRequest {
            bucket: "stack-bucket".into(),
            data_bucket: Some(data.into()),
            ..request()
        };
        assert!(on_aws("cai-data.v2").problems().is_empty());
        assert_eq!(on_aws("cai-data").partitions_bucket(), "cai-data");
        assert_eq!(request().partitions_bucket(), "local");
        let in_place = RunRequest {
            data_prefix: "100MB/".into(),
            ..on_aws("cai-data")
        };
        assert_eq!(in_place.data_location(), "s3://cai-data/100MB");
        let in_stack = RunRequest {
            data_bucket: None,
            ..in_place
        };
        assert_eq!(in_stack.data_location(), "s3://stack-bucket/100MB");
        assert_eq!(request().data_location(), "");
        for (bad, why) in [
            ("ab", "3 to 63"),
            ("CAI-Data", "characters S3 refuses"),
            ("s3://cai-data", "characters S3 refuses"),
            ("-cai", "start and end"),
            ("cai..data", "two dots"),
            ("192.168.1.2", "IP address"),
            ("cai.-data", "dot beside a hyphen"),
            ("xn--cai", "S3's own names"),
            ("cai-s3alias", "S3's own names"),
        ] {
            let problems = on_aws(bad).problems().join("; ");
            assert!(
                problems.starts_with(&format!("data_bucket '{bad}' ")) && problems.contains(why),
                "{bad}: {problems}"
            );
        }
        let local = RunRequest {
            data_bucket: Some("cai-data".into()),
            ..request()
        };
        assert!(
            local
                .problems()
                .join("; ")
                .contains("data_bucket is for a run on AWS")
        );
        // Absent from the JSON of a request without one (CAI's layout unchanged).
        assert!(
            !serde_json::to_string(&request())
                .unwrap()
                .contains("data_bucket")
        );
    }

    #[test]
    fn data_path_is_a_key_for_one_file_as_cai_writes_it() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Paths {
            #[serde(with = "one_or_many")]
            data_path: Vec<String>,
        }
        for (keys, json) in [
            (vec!["data/0.pt"], r#"{"data_path":"data/0.pt"}"#),
            (vec!["a", "b"], r#"{"data_path":["a","b"]}"#),
            (vec![], r#"{"data_path":[]}"#),
        ] {
            let paths = Paths {
                data_path: keys.iter().map(|k| k.to_string()).collect(),
            };
            assert_eq!(serde_json::to_string(&paths).unwrap(), json);
            assert_eq!(serde_json::from_str::<Paths>(json).unwrap(), paths);
        }
        // A list of one, as files written before this read.
        let old: Paths = serde_json::from_str(r#"{"data_path":["x"]}"#).unwrap();
        assert_eq!(old.data_path, ["x"]);
    }

    #[test]
    fn an_s3_address_is_no_key() {
        let mut r = request();
        r.result_path = "s3://my-bucket/results/x".into();
        let problems = r.problems().join("; ");
        assert!(
            problems.contains("result_path 's3://my-bucket/results/x' is an address, not a key"),
            "{problems}"
        );
        assert!(check_key("results/x:1").is_ok());
    }

    #[test]
    fn a_batch_past_the_cap_is_refused() {
        let mut r = request();
        r.batch_size = MAX_BATCH_SIZE;
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        r.batch_size = MAX_BATCH_SIZE + 1;
        assert_eq!(
            r.problems(),
            ["batch_size 16385 is more than 16384 objects"]
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut r = request();
        r.world_size = 0;
        r.batch_size = 0;
        r.result_path = "../outside".into();
        r.data_prefix = "/etc".into();
        r.memory_mb = 64;
        r.model = "gpt".into();
        let problems = r.problems().join("; ");
        for field in [
            "world_size",
            "batch_size",
            "result_path",
            "data_prefix",
            "memory_mb",
            "model",
        ] {
            assert!(problems.contains(field), "{field} not named in: {problems}");
        }
    }

    #[test]
    fn a_result_path_too_long_for_s3_keys_is_refused() {
        let mut r = request();
        r.result_path = "r".repeat(MAX_RESULT_PATH_BYTES);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        // Bytes, not characters: S3 counts the key's UTF-8.
        r.result_path = "é".repeat(MAX_RESULT_PATH_BYTES / 2 + 1);
        let problems = r.problems().join("; ");
        assert!(
            problems.contains("result_path is 962 bytes long"),
            "{problems}"
        );
    }

    #[test]
    fn half_precision_is_for_cuda_or_astromae_and_absent_means_fp32() {
        let mut r = request();
        r.precision = Precision::Bf16;
        let problems = r.problems().join("; ");
        assert!(
            problems.contains("precision bf16 on device cpu runs AstroMAE only"),
            "{problems}"
        );
        r.model = "astromae:weights/astromae.pt".into();
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        r.precision = Precision::F16;
        let problems = r.problems().join("; ");
        assert!(
            problems.contains("precision f16 runs on device cuda only"),
            "{problems}"
        );
        r.precision = Precision::Bf16;
        r.model = "photoz".into();
        r.device = Device::Cuda;
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        // A CAI payload has no precision: it reads as fp32, and fp32 is not written back.
        let json = serde_json::to_value(request()).unwrap();
        assert!(json.get("precision").is_none(), "{json}");
        let back: RunRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.precision, Precision::Fp32);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["precision"], "bf16");
    }
}
