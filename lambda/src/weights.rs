//! The model a rank runs: its weights read from S3 (or the shipped PhotoZ),
//! checked once at Initialize, and kept by a warm container between calls.

use crate::{Cpu, S3Settings, StageError};
use cosmicai_engine::placement::Placement;
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::ObjectStore;
use cosmicai_engine::store::s3::S3Store;
use cosmicai_model::weights::Weights;
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::Precision;
use std::sync::{Arc, Mutex};

/// Whether `key` is an object of `store` (HeadObject: a listing of its folder
/// would read the whole bucket for a key at its root).
pub(crate) fn object_exists(store: &S3Store, key: &str) -> Result<bool, String> {
    store.exists(key).map_err(|e| e.to_string())
}

/// Whether the workers may read weights from `bucket`: the run's own, the
/// template's `WeightsBucket` or its `InputBucket` (CAI keeps its checkpoint
/// beside its data). `weights` and `data` are those parameters: set, maybe
/// empty, wherever the template deployed the function; unset elsewhere, where
/// no role narrows what is read.
pub(crate) fn readable_weights_bucket(
    bucket: &str,
    run_bucket: &str,
    weights: Option<&str>,
    data: Option<&str>,
) -> Result<(), String> {
    let Some(weights) = weights else {
        return Ok(());
    };
    let readable: Vec<&str> = [Some(weights), data]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    if bucket == run_bucket || readable.contains(&bucket) {
        return Ok(());
    }
    Err(format!(
        "the workers may read weights only from the run's bucket '{run_bucket}'{}, not '{bucket}': \
         copy them into the run's bucket, or deploy the template with WeightsBucket={bucket}",
        readable
            .iter()
            .map(|b| format!(" and '{b}'"))
            .collect::<String>()
    ))
}

/// Where weights named `path` live: `s3://BUCKET/KEY`, or a key in the run's bucket.
pub(crate) fn weights_location(path: &str, run_bucket: &str) -> (String, String) {
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
pub(crate) fn load_model<B: burn::prelude::Backend>(
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

/// Reads the weights `spec` names and builds its model, for Initialize: a
/// failed read may be retried, a file that holds no such model may not.
pub(crate) fn check_weights(
    settings: &S3Settings,
    store: &S3Store,
    spec: &ModelSpec,
) -> Result<(), StageError> {
    let Some(weights) = read_weights(settings, store, spec)? else {
        return Ok(());
    };
    let weights = weights.map_err(|e| StageError::invalid(format!("model '{spec}': {e}")))?;
    cosmicai_engine::redshift_model::check_weights(spec, &weights).map_err(StageError::invalid)
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

pub(crate) fn cached_cpu_model(
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
    let on = Placement::Cpu(precision);
    let model = load_model::<Cpu>(settings, store, spec, &Default::default(), on.fused())?;
    let model = Arc::new(on.finish(model).map_err(StageError::invalid)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preload_precision_is_bf16_or_fp32() {
        assert_eq!(preload_precision(Some("bf16")), Precision::Bf16);
        for other in [None, Some(""), Some("fp32"), Some("f16"), Some("BF16x")] {
            assert_eq!(preload_precision(other), Precision::Fp32, "{other:?}");
        }
    }

    #[test]
    fn weights_are_read_only_from_buckets_the_role_can_read() {
        assert!(readable_weights_bucket("data", "data", Some(""), Some("")).is_ok());
        assert!(readable_weights_bucket("models", "data", Some("models"), None).is_ok());
        assert!(readable_weights_bucket("models", "data", None, None).is_ok());
        // CAI's checkpoint beside its data, in the template's InputBucket.
        assert!(readable_weights_bucket("cai-data", "stack", Some(""), Some("cai-data")).is_ok());
        let e = readable_weights_bucket("other", "data", Some(""), Some("")).unwrap_err();
        assert!(
            e.contains("only from the run's bucket 'data', not 'other'"),
            "{e}"
        );
        assert!(e.contains("WeightsBucket=other"), "{e}");
        let e =
            readable_weights_bucket("other", "data", Some("models"), Some("cai-data")).unwrap_err();
        assert!(e.contains("'data' and 'models' and 'cai-data'"), "{e}");
    }
}
