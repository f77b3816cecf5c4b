//! Where a run's partitions are read from: the deployment's own bucket, beside
//! the results, or the template's `InputBucket`, read in place (a CAI user's
//! data, 12.6 GB to 1,000 GB, never copied). The workers' role may read that
//! one bucket besides their own, and write only their own.

use crate::{S3Settings, StageError};
use cosmicai_engine::pipeline::Stores;
use cosmicai_engine::store::ObjectStore;
use cosmicai_engine::store::s3::S3Store;
use cosmicai_shared::run::RunRequest;

/// The store of `request`'s `data_bucket`, where it names a bucket other than
/// the run's own (`None`: the partitions are beside the results). `allowed` is
/// the template's `InputBucket` (set, maybe empty, wherever the template
/// deployed the function; unset elsewhere, where no role narrows what is read):
/// another bucket is refused by name, not left to an S3 AccessDenied.
pub(crate) fn data_store(
    settings: &S3Settings,
    request: &RunRequest,
    allowed: Option<&str>,
) -> Result<Option<S3Store>, StageError> {
    let Some(bucket) = request
        .data_bucket
        .as_deref()
        .filter(|b| *b != request.bucket)
    else {
        return Ok(None);
    };
    readable_data_bucket(bucket, &request.bucket, allowed).map_err(StageError::invalid)?;
    settings
        .connect_data(bucket)
        .map(Some)
        .map_err(StageError::invalid)
}

/// Whether the workers may read partitions from `bucket` (see [`data_store`]):
/// where the template narrows what they read (`allowed` set), its rule.
pub(crate) fn readable_data_bucket(
    bucket: &str,
    run_bucket: &str,
    allowed: Option<&str>,
) -> Result<(), String> {
    match allowed {
        Some(input) => cosmicai_shared::run::check_input_bucket(bucket, run_bucket, input),
        None => Ok(()),
    }
}

/// Refuses a data bucket in another region than the function's (see
/// [`S3Store::in_another_region`]).
pub(crate) fn in_our_region(data: &S3Store) -> Result<(), StageError> {
    match data.in_another_region() {
        None => Ok(()),
        Some((theirs, ours)) => Err(StageError::invalid(format!(
            "data_bucket '{}' is in {theirs}, this deployment in {ours}: deploy the stack in {theirs} to read the partitions where they are, \
             or copy them into its bucket",
            data.bucket()
        ))),
    }
}

/// The stores of a run: its partitions from `data` where they are in another
/// bucket, else beside its results in `results`.
pub(crate) fn stores<'a>(results: &'a S3Store, data: Option<&'a S3Store>) -> Stores<'a> {
    Stores {
        data: data.map_or(results as &dyn ObjectStore, |d| d),
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_templates_input_bucket_is_read_besides_the_runs_own() {
        assert!(readable_data_bucket("cai-data", "stack", Some("cai-data")).is_ok());
        // No template narrowing what is read (a local test harness): not refused here.
        assert!(readable_data_bucket("cai-data", "stack", None).is_ok());
        let e = readable_data_bucket("cai-data", "stack", Some("")).unwrap_err();
        assert!(e.contains("InputBucket=cai-data"), "{e}");
    }

    #[test]
    fn a_request_without_another_bucket_reads_its_own() {
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "bucket": "stack", "data_bucket": "stack", "batch_size": 1,
            "world_size": 1, "result_path": "results/r"
        }))
        .unwrap();
        // Named the run's own bucket, or none: no second store, nothing refused.
        assert!(
            data_store(&S3Settings::default(), &request, Some(""))
                .unwrap()
                .is_none()
        );
        let none = RunRequest {
            data_bucket: None,
            ..request.clone()
        };
        assert!(
            data_store(&S3Settings::default(), &none, Some(""))
                .unwrap()
                .is_none()
        );
        let other = RunRequest {
            data_bucket: Some("cai-data".into()),
            ..request
        };
        let e = data_store(&S3Settings::default(), &other, Some(""))
            .err()
            .unwrap();
        assert_eq!(e.kind, "InvalidRequest");
    }
}
