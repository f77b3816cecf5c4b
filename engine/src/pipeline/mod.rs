//! The CAI pipeline: Initialize → Map over ranks → Summarize.
//!
//! - [`initialize`] lists the partitions, applies `file_limit`, plans which
//!   files each rank reads and writes `result_path/payload.json` (a [`Payload`],
//!   read back with [`read_payload`]);
//! - [`infer_rank`] is one rank: load the model once, stream its partitions in
//!   batches (from S3, only the columns its model reads: `download`), write
//!   `result_path/<rank>.json` and its predictions;
//! - [`summarize`] gathers the ranks into `combined_data.json` and `summary.json`
//!   (accuracy on known labels, totals, cost).
//! - [`earlier_ranks`] tells what the ranks of an unfinished run left (which
//!   finished), so that resuming it runs only the others.
//!
//! The same functions serve the local executor and the Lambda handlers. A run
//! reads its partitions from one store and writes its results to another where
//! its request names a `data_bucket` ([`Stores`]): a CAI user's data is read
//! where it is, never copied.

mod download;
pub use download::clear_downloads;
mod estimate;
mod payload;
mod plan;
mod rank;
mod rank_time;
mod resume;
mod room;
mod summary;

pub(crate) use download::FIRST_READ_BYTES;
pub use estimate::{Estimate, estimate};
pub use payload::{Payload, PayloadOf, read_payload};
pub use plan::{initialize, initialize_with, plan, plan_ranks};
pub use rank::{RankEvent, RankPredictions, encode_predictions, infer_rank, read_predictions};
pub use rank_time::{
    BATCH_ATTEMPT_S, BATCH_JOB_VCPUS, BATCH_RANK_PLANNED_MAX_S, EXPRESS_RANK_TIMEOUT_S,
    LAMBDA_MAX_MEMORY_MB, RANK_PLANNED_MAX_S, RANK_STOP_S, S3_REQUEST_S, SlowestRank,
    check_rank_time, slowest_rank,
};
pub use resume::{
    Resumed, checked_plan, earlier_measures, earlier_ranks, kept_by_plan, ranks_of_map_plan,
    resume_plan, unchanged_partitions,
};
pub use room::{LAMBDA_MAX_STORAGE_MB, check_room, storage_mb};
pub use summary::{RunSummary, stored_measures, summarize, summarize_with};

use crate::store::{ObjectStore, StoreError};

/// Where a run reads its partitions (`data`) and writes everything else
/// (`results`): one store, unless the request names a `data_bucket`.
#[derive(Clone, Copy)]
pub struct Stores<'a> {
    pub data: &'a dyn ObjectStore,
    pub results: &'a dyn ObjectStore,
}

impl<'a> Stores<'a> {
    /// Partitions and results in one store.
    pub fn one(store: &'a dyn ObjectStore) -> Self {
        Stores {
            data: store,
            results: store,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid request: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Partition(#[from] crate::partition::PartitionError),
    #[error("{0}")]
    Other(String),
}

/// Key of the payload written by Initialize.
pub fn payload_key(result_path: &str) -> String {
    crate::store::join(result_path, "payload.json")
}

/// Key of the plan Initialize writes for the AWS Map: a JSON array of rank items.
pub fn plan_key(result_path: &str) -> String {
    crate::store::join(result_path, "plan.json")
}

/// Key of rank `rank`'s result, as CAI names it.
pub fn rank_key(result_path: &str, rank: usize) -> String {
    crate::store::join(result_path, &format!("{rank}.json"))
}

/// Key of rank `rank`'s measures on AWS (Lambda's REPORT figures, as the handler saw them).
pub fn measures_key(result_path: &str, rank: usize) -> String {
    crate::store::join(result_path, &format!("measures/{rank}.json"))
}

/// Key of rank `rank`'s predictions.
pub fn predictions_key(result_path: &str, rank: usize) -> String {
    crate::store::join(result_path, &format!("predictions/{rank}.safetensors"))
}
