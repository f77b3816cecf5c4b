//! How a stage fails, in the two kinds the state machine tells apart.

use cosmicai_engine::pipeline::PipelineError;

/// A stage's failure, reported to Step Functions as `errorType` / `errorMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct StageError {
    /// `InvalidRequest` (never retried by the state machine) or `StageFailed`.
    pub kind: &'static str,
    pub message: String,
}

impl StageError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StageError {
            kind: "InvalidRequest",
            message: message.into(),
        }
    }

    pub(crate) fn failed(message: impl Into<String>) -> Self {
        StageError {
            kind: "StageFailed",
            message: message.into(),
        }
    }

    /// A rank stopped for time: never retried by the state machine, since a
    /// retry would start past the deadline too.
    pub const OUT_OF_TIME: &'static str = "RankOutOfTime";

    pub(crate) fn out_of_time(message: impl Into<String>) -> Self {
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
