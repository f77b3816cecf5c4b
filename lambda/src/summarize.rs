//! Summarize: every rank's measures gathered (a rank with none failed),
//! `combined_data.json` and `summary.json` written, the bill added up.

use crate::deadline::seconds_since;
use crate::{S3Settings, StageError, its_payload};
use cosmicai_engine::cost::Children;
use cosmicai_engine::pipeline::{kept_by_plan, stored_measures, summarize_with};
use cosmicai_engine::store::join;
use cosmicai_shared::aws::{SummarizeEvent, SummarizeOutput};
use std::time::Instant;

/// Most failed ranks Summarize names in its answer (all are in `summary.json`): the
/// answer goes through the state machine, whose payloads stop at 256 KiB.
pub(crate) const FAILED_RANKS_LISTED: usize = 1000;

/// Summarize: every rank's result gathered, failures named, the bill added up.
pub(crate) fn summarize_stage(
    settings: &S3Settings,
    event: &SummarizeEvent,
) -> Result<SummarizeOutput, StageError> {
    let started = Instant::now();
    let store = settings
        .connect(&event.bucket)
        .map_err(StageError::invalid)?;
    let payload = its_payload(&store, &event.result_path, &event.run_id)?;
    // A rank without measures failed (or the Map stopped before it ran).
    let map_failure = event
        .map_error
        .as_ref()
        .map(|e| describe(e.error.as_deref(), e.cause.as_deref()))
        .unwrap_or_else(|| "the rank's Map item failed".into());
    let measures = stored_measures(&store, &payload, &map_failure)
        .map_err(|e| StageError::failed(e.to_string()))?;
    let duration_s = event
        .started
        .as_deref()
        .and_then(seconds_since)
        .unwrap_or_else(|| measures.iter().map(|m| m.duration_s).fold(0.0, f64::max));
    let children = Children::deployed(
        payload.request.device,
        event.child_execution_type.as_deref(),
    );
    // A resumed run's Map ran only the ranks its plan names: the others
    // finished in an earlier execution, and its speed is over this one's.
    let kept = kept_by_plan(&store, &payload);
    let summary = summarize_with(
        &store,
        &payload,
        &measures,
        (duration_s, event.initialize_s, started),
        children,
        &kept,
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
}
