//! What the Step Functions state machine and the Lambda handler say to each other.
//!
//! One `bootstrap` binary handles every stage; the state machine tags each
//! event with its `stage`. The execution's input is the CAI payload itself (a
//! [`RunRequest`]), so CAI's users start runs exactly as before.

use crate::run::{Device, RunRequest};
use serde::{Deserialize, Serialize};

/// An event the state machine sends the handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum StageEvent {
    /// Plan the run: list the partitions, write `payload.json`, name the ranks.
    Initialize {
        /// The execution's name (the run id).
        run_id: String,
        request: RunRequest,
        /// The workers' memory as the template gave it (`MemorySize`, written
        /// into the state machine's definition, where launchers read it too).
        /// The function's own figure, where Lambda gives one, comes first.
        #[serde(default)]
        worker_memory_mb: Option<String>,
        /// The workers' `/tmp` as the template gave it (`EphemeralStorageMB`):
        /// a partition read whole must fit there.
        #[serde(default)]
        worker_storage_mb: Option<String>,
        /// The bucket the workers may read partitions from in place (the
        /// template's `InputBucket`; empty for none), where launchers read it too.
        #[serde(default)]
        input_bucket: Option<String>,
        /// The run this execution resumes (its input named it `resume_of`):
        /// the execution runs that run's unfinished ranks under its plan and
        /// id, where `run_id` is the resuming execution's own name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_of: Option<String>,
    },
    /// One Map item: run one rank.
    Infer(RankItem),
    /// Gather the ranks into `combined_data.json` and `summary.json`.
    Summarize(SummarizeEvent),
}

/// The key of a resuming execution's input (beside its run's request) that
/// names the run it resumes: `cosmicai run --resume` starts such executions.
pub const RESUME_OF: &str = "resume_of";

/// One item of the Distributed Map: which rank of which run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankItem {
    pub run_id: String,
    pub bucket: String,
    pub result_path: String,
    pub rank: usize,
    /// Where the rank runs: `cpu` on Lambda, `cuda` as an AWS Batch GPU job.
    #[serde(default)]
    pub device: Device,
    /// When the Map's Infer state was entered (`$$.State.EnteredTime`, RFC 3339). A
    /// Lambda rank stops by the Express execution's end counted from it, so it never
    /// runs on, holding concurrency, or writes after Summarize has read. Absent in the
    /// plan and on AWS Batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_at: Option<String>,
}

/// Initialize's answer. The Map reads its items, one [`RankItem`] per rank, from the
/// JSON array at `plan_key` (an S3 ItemReader), so this answer stays the same small
/// size at any world size: Step Functions refuses state payloads over 256 KiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitializeOutput {
    pub run_id: String,
    pub bucket: String,
    pub result_path: String,
    /// Key of the plan: a JSON array of [`RankItem`]s.
    pub plan_key: String,
    /// Number of ranks (items in the plan).
    pub ranks: usize,
    /// `cpu` ranks run on Lambda, `cuda` ranks on AWS Batch (the state machine's Device choice).
    pub device: Device,
    /// The Map's MaxConcurrency: the request's world size.
    pub max_concurrency: usize,
    /// The Map's ToleratedFailurePercentage, from the request's `tolerated_failure_percentage`.
    pub tolerated_failure_percentage: f64,
    pub files: usize,
    pub duration_s: f64,
}

/// What Summarize is given. Each rank's measures are read from
/// `result_path/measures/<rank>.json` (written by Infer, on Lambda or Batch), so the
/// Map's own output stays small at any world size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummarizeEvent {
    pub run_id: String,
    pub bucket: String,
    pub result_path: String,
    /// The execution's start time (RFC 3339), for the run's wall time.
    #[serde(default)]
    pub started: Option<String>,
    /// Initialize's own duration, billed like any invocation.
    #[serde(default)]
    pub initialize_s: f64,
    /// Set when the Map failed as a whole (too many failed items).
    #[serde(default)]
    pub map_error: Option<ItemError>,
    /// The stack's ChildExecutionType (EXPRESS or STANDARD), which prices the
    /// CPU Map's children; absent from an older stack's events (EXPRESS).
    #[serde(default)]
    pub child_execution_type: Option<String>,
}

/// A Step Functions error object (`Error`, `Cause`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemError {
    #[serde(default, rename = "Error")]
    pub error: Option<String>,
    #[serde(default, rename = "Cause")]
    pub cause: Option<String>,
}

/// Summarize's answer, also the execution's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummarizeOutput {
    pub run_id: String,
    pub status: crate::run::RunStatus,
    pub objects: usize,
    /// How many ranks failed.
    #[serde(default)]
    pub failed: usize,
    /// The first of them (at most 1,000: this answer goes through the state
    /// machine); `summary.json` names them all.
    pub failed_ranks: Vec<usize>,
    pub cost_usd: f64,
    /// Key of `summary.json`.
    pub summary_key: String,
}

/// Step Functions' limit on any state's input or output (256 KiB of UTF-8 text).
pub const STATE_PAYLOAD_LIMIT: usize = 262_144;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_stage() {
        let text =
            r#"{"stage":"infer","run_id":"r","bucket":"b","result_path":"results/r","rank":3}"#;
        let parsed: StageEvent = serde_json::from_str(text).unwrap();
        let item = RankItem {
            run_id: "r".into(),
            bucket: "b".into(),
            result_path: "results/r".into(),
            rank: 3,
            device: Device::Cpu,
            entered_at: None,
        };
        assert_eq!(parsed, StageEvent::Infer(item));
        let wrong = r#"{"stage":"train","run_id":"r"}"#;
        assert!(serde_json::from_str::<StageEvent>(wrong).is_err());
    }

    #[test]
    fn a_failed_map_reaches_summarize_as_an_error_object() {
        let text = r#"{"stage":"summarize","run_id":"r","bucket":"b","result_path":"p",
            "started":"2026-01-01T00:00:00Z","initialize_s":0.5,
            "map_error":{"Error":"States.ExceedToleratedFailureThreshold","Cause":"2 of 4 failed"}}"#;
        let StageEvent::Summarize(event) = serde_json::from_str(text).unwrap() else {
            panic!("not a summarize event")
        };
        assert_eq!(
            event.map_error.unwrap().cause.as_deref(),
            Some("2 of 4 failed")
        );
    }
}
