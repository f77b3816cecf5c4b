//! CosmicAI on AWS Lambda: the pipeline's three stages behind one handler.
//!
//! The Step Functions state machine (`infra/aws/statemachine.asl.json`) calls the
//! same function three ways, tagged by `stage` ([`StageEvent`]):
//! 1. `initialize`: plan the run from the CAI payload, write `payload.json` and the
//!    Map's items (one [`RankItem`](cosmicai_shared::aws::RankItem) per rank) to `plan.json`, which the Distributed
//!    Map reads from S3;
//! 2. `infer`: one rank, exactly as a local worker runs it (`engine::pipeline::infer_rank`),
//!    answering with Lambda-style measures ([`RankMeasure`](cosmicai_shared::run::RankMeasure));
//! 3. `summarize`: `combined_data.json` and `summary.json`, with the failed ranks and cost.
//!
//! The handler is thin on purpose: the pipeline's logic is in `cosmicai-engine`,
//! so a run on AWS and a run on a laptop give the same files. What is here is
//! what Lambda and Step Functions add: S3 as the store, the deployment's limits
//! (its bucket, results prefix, memory and concurrency), a rank's deadline, the
//! model kept by a warm container, and the measures Lambda bills by.

mod data;
mod deadline;
mod error;
mod infer;
mod initialize;
mod settings;
mod summarize;
mod weights;

pub use error::StageError;
pub use infer::{mark_init_end, mark_process_start};
pub use settings::S3Settings;
pub use weights::preload;

use cosmicai_engine::pipeline::{Payload, PayloadOf, payload_key};
use cosmicai_engine::store::s3::S3Store;
use cosmicai_shared::aws::StageEvent;
use cosmicai_shared::cai_payload::translate_on_deployment;
use std::sync::atomic::Ordering;

/// The CPU backend the Lambda runs the model on.
pub use cosmicai_engine::redshift_model::Cpu;

/// An event as Step Functions sends it. An Initialize whose request is CAI's own
/// payload (an execution started with CAI's input file) is read as CAI's, as
/// `cosmicai run --request` reads it: partitions from its `data_bucket`, its
/// script settings set aside, each with a note in the function's log, and the
/// AstroMAE the deployment preloads (`COSMICAI_MODEL`) where it names no model.
/// A deployment preloading PhotoZ (the template's default) refuses it by name:
/// CAI's payload is for AstroMAE. A request that names no `bucket` writes its
/// results to the deployment's (`COSMICAI_MODEL_BUCKET`), as CAI's payload,
/// whose buckets hold its data and scripts, always does here.
pub fn parse_event(value: serde_json::Value) -> Result<StageEvent, StageError> {
    parse_event_in(
        value,
        std::env::var("COSMICAI_MODEL").ok().as_deref(),
        std::env::var("COSMICAI_MODEL_BUCKET").ok().as_deref(),
    )
}

/// [`parse_event`] in a deployment preloading `preloaded`, whose bucket is `own`.
fn parse_event_in(
    mut value: serde_json::Value,
    preloaded: Option<&str>,
    own: Option<&str>,
) -> Result<StageEvent, StageError> {
    if value.get("stage").and_then(serde_json::Value::as_str) == Some("initialize")
        && let Some(request) = value.get_mut("request")
    {
        // A resuming execution's input is its run's request with the run
        // named (`cosmicai run --resume`): set apart, not read as the request's.
        let resume_of = request
            .as_object_mut()
            .and_then(|fields| fields.remove(RESUME_OF));
        if let Some(of) = &resume_of
            && of.as_str().is_none_or(str::is_empty)
        {
            return Err(StageError::invalid(format!(
                "request: {RESUME_OF} must name the run to resume, not {of}"
            )));
        }
        let model = preloaded.filter(|m| m.starts_with("astromae:")).map(|m| {
            (
                m,
                "the AstroMAE this deployment preloads (template parameter Model)",
            )
        });
        let (ours, notes) = translate_on_deployment(request.take(), model, own)
            .map_err(|e| StageError::invalid(format!("request: {e}")))?;
        for note in notes {
            eprintln!("request: {note}");
        }
        *request = ours;
        if let (Some(of), Some(fields)) = (resume_of, value.as_object_mut()) {
            fields.insert("resume_of".into(), of);
        }
    }
    serde_json::from_value(value)
        .map_err(|e| StageError::invalid(format!("not a stage event: {e}")))
}

/// The key of a resuming execution's input that names the run it resumes.
pub use cosmicai_shared::aws::RESUME_OF;

/// Handles one event. Blocking work: call it from a blocking thread.
pub fn handle(settings: &S3Settings, event: StageEvent) -> Result<serde_json::Value, StageError> {
    if !matches!(event, StageEvent::Infer(_)) {
        // This process has served a call: an Infer after it starts warm. (The
        // INIT before an Initialize or a Summarize, two calls a run, is not priced.)
        infer::WARM.store(true, Ordering::SeqCst);
    }
    let value = match event {
        StageEvent::Initialize {
            run_id,
            request,
            worker_memory_mb,
            worker_storage_mb,
            input_bucket,
            resume_of,
        } => serde_json::to_value(initialize::initialize_stage(
            settings,
            &run_id,
            &request,
            initialize::Workers {
                memory_mb: worker_memory_mb.as_deref(),
                storage_mb: worker_storage_mb.as_deref(),
                input_bucket: input_bucket.as_deref(),
            },
            resume_of.as_deref(),
        )?),
        StageEvent::Infer(item) => serde_json::to_value(infer::infer_stage(settings, &item)?),
        StageEvent::Summarize(event) => {
            serde_json::to_value(summarize::summarize_stage(settings, &event)?)
        }
    };
    value.map_err(|e| StageError::failed(e.to_string()))
}

pub(crate) fn its_payload(
    store: &S3Store,
    result_path: &str,
    run_id: &str,
) -> Result<Payload, StageError> {
    let key = payload_key(result_path);
    let read = cosmicai_engine::pipeline::read_payload(store, result_path, Some(run_id))
        .map_err(|e| StageError::failed(format!("{key}: {e}")))?;
    match read {
        PayloadOf::Its(payload) => Ok(*payload),
        PayloadOf::Missing => Err(StageError::failed(format!(
            "{key}: not in s3://{}: Initialize has not written it",
            store.bucket()
        ))),
        PayloadOf::Unreadable(e) => Err(StageError::failed(format!("{key}: {e}"))),
        PayloadOf::OtherRun(other) => Err(StageError::invalid(format!(
            "{key} belongs to run {other}, not {run_id}: give each run its own result_path"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_of(event: StageEvent) -> cosmicai_shared::run::RunRequest {
        match event {
            StageEvent::Initialize { request, .. } => request,
            other => panic!("not an Initialize: {other:?}"),
        }
    }

    #[test]
    fn a_resuming_executions_input_names_its_run_beside_the_request() {
        let event = |request: serde_json::Value| serde_json::json!({"stage": "initialize", "run_id": "r-resume-1", "request": request});
        let request = serde_json::json!({"bucket": "b", "batch_size": 4, "world_size": 2, "result_path": "results/r"});
        let mut resuming = request.clone();
        resuming[RESUME_OF] = "r".into();
        match parse_event_in(event(resuming), None, Some("b")).unwrap() {
            StageEvent::Initialize {
                run_id,
                resume_of,
                request,
                ..
            } => {
                assert_eq!(
                    (run_id.as_str(), resume_of.as_deref()),
                    ("r-resume-1", Some("r"))
                );
                assert_eq!(request.world_size, 2);
            }
            other => panic!("not an Initialize: {other:?}"),
        }
        // A first execution resumes nothing; a resume naming no run is refused.
        let first = parse_event_in(event(request.clone()), None, Some("b")).unwrap();
        assert!(matches!(
            first,
            StageEvent::Initialize {
                resume_of: None,
                ..
            }
        ));
        let mut nameless = request;
        nameless[RESUME_OF] = serde_json::Value::Null;
        let e = parse_event_in(event(nameless), None, Some("b")).unwrap_err();
        assert!(
            e.message.contains("resume_of must name the run"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_request_without_a_bucket_writes_to_the_deployments() {
        let event = |request: serde_json::Value| serde_json::json!({"stage": "initialize", "run_id": "r", "request": request});
        // CAI's payload: its data bucket read in place, its scripts bucket set
        // aside, the results in the deployment's bucket.
        let cai = event(serde_json::json!({
            "bucket": "cosmicai2", "data_bucket": "cai-data", "script": "s",
            "batch_size": 4, "file_limit": 2, "result_path": "results/r", "model": "photoz"
        }));
        let request = request_of(parse_event_in(cai.clone(), None, Some("stack")).unwrap());
        assert_eq!(
            (request.bucket.as_str(), request.partitions_bucket()),
            ("stack", "cai-data")
        );
        // Without a bucket of its own, refused by name (not read as bucket 'local').
        let e = parse_event_in(cai, None, None).unwrap_err();
        assert!(e.message.contains("COSMICAI_MODEL_BUCKET"), "{}", e.message);
        // Ours, naming a data bucket: kept as given, its bucket too (Initialize
        // then refuses a bucket that is not the deployment's).
        let ours = event(serde_json::json!({
            "bucket": "elsewhere", "data_bucket": "cai-data", "batch_size": 4,
            "world_size": 1, "result_path": "results/r"
        }));
        let request = request_of(parse_event_in(ours, None, Some("stack")).unwrap());
        assert_eq!(
            (request.bucket.as_str(), request.data_bucket.as_deref()),
            ("elsewhere", Some("cai-data"))
        );
        // Ours naming no bucket: the deployment's.
        let plain = event(
            serde_json::json!({"batch_size": 4, "world_size": 1, "result_path": "results/r"}),
        );
        let request = request_of(parse_event_in(plain, None, Some("stack")).unwrap());
        assert_eq!(request.bucket, "stack");
    }
}
