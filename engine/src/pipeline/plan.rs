//! Initialize: list partitions, apply `file_limit`, plan ranks, write the payload.

use super::{PipelineError, payload_key};
use crate::partition::EXTENSION;
use crate::store::ObjectStore;
use cosmicai_shared::run::{Device, RunRequest};
use serde::{Deserialize, Serialize};

/// `result_path/payload.json`: the request and which files each rank reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub run_id: String,
    pub request: RunRequest,
    /// Partition keys with their sizes in bytes, in order.
    pub files: Vec<(String, u64)>,
    /// `ranks[r]` = the keys rank r reads (possibly none).
    pub ranks: Vec<Vec<String>>,
}

/// CAI's initializer: rank r reads the next `ceil(files left / ranks left)`
/// files, in order, so ranks differ by at most one file (10 files on 4 ranks:
/// 3, 3, 2, 2). With fewer files than ranks, CAI hands files round again
/// (`rank % files`), which counts their objects twice in the combined results;
/// here the extra ranks get none and exit at once.
pub fn plan_ranks(files: &[String], world_size: usize) -> Vec<Vec<String>> {
    let mut start = 0;
    (0..world_size)
        .map(|r| {
            let take = (files.len() - start).div_ceil(world_size - r);
            let keys = files[start..start + take].to_vec();
            start += take;
            keys
        })
        .collect()
}

/// Validates the request, lists and plans the partitions, and writes the payload.
pub fn initialize(
    store: &dyn ObjectStore,
    request: &RunRequest,
    run_id: &str,
) -> Result<Payload, PipelineError> {
    initialize_with(store, request, run_id, |_| Ok(()))
}

/// [`initialize`], with `check` of the plan before anything is written (the AWS
/// Initialize refuses ranks that could outlive their execution): a refused plan
/// leaves the result path unused.
pub fn initialize_with(
    store: &dyn ObjectStore,
    request: &RunRequest,
    run_id: &str,
    check: impl FnOnce(&Payload) -> Result<(), PipelineError>,
) -> Result<Payload, PipelineError> {
    let payload = plan(store, request, run_id)?;
    check(&payload)?;
    // A result path holds one run: reusing it would mix an older run's rank files
    // and measures into this one's summary.
    let key = payload_key(&request.result_path);
    match store.get(&key) {
        Ok(bytes) => {
            let owner = serde_json::from_slice::<Payload>(&bytes)
                .map(|p| format!("run {}", p.run_id))
                .unwrap_or_else(|_| "another run".into());
            return Err(PipelineError::Invalid(vec![format!(
                "result_path '{}' already holds the results of {owner}: give each run its own result_path",
                request.result_path
            )]));
        }
        Err(crate::store::StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let json =
        serde_json::to_vec_pretty(&payload).map_err(|e| PipelineError::Other(e.to_string()))?;
    store.put(&payload_key(&request.result_path), &json)?;
    Ok(payload)
}

/// Initialize without writing anything: the plan a run would follow (for estimates).
pub fn plan(
    store: &dyn ObjectStore,
    request: &RunRequest,
    run_id: &str,
) -> Result<Payload, PipelineError> {
    let problems = request.problems();
    if !problems.is_empty() {
        return Err(PipelineError::Invalid(problems));
    }
    if request.device == Device::Cuda && !cfg!(feature = "cuda") {
        // Only the build is checked: the plan may be made where the ranks do not run.
        return Err(PipelineError::Invalid(vec![format!(
            "device cuda: {}",
            crate::system::BUILT_WITHOUT_CUDA
        )]));
    }
    let listing = store.list(&request.data_prefix)?;
    // Result folders (any folder holding a payload.json) hold predictions, not partitions.
    let result_dirs: Vec<String> = listing
        .iter()
        .filter_map(|o| o.key.strip_suffix("payload.json"))
        .map(str::to_string)
        .chain(std::iter::once(format!(
            "{}/",
            request.result_path.trim_end_matches('/')
        )))
        .collect();
    let mut files: Vec<(String, u64)> = listing
        .into_iter()
        .filter(|o| o.key.ends_with(&format!(".{EXTENSION}")))
        .filter(|o| !result_dirs.iter().any(|d| o.key.starts_with(d.as_str())))
        .map(|o| (o.key, o.size))
        .collect();
    if files.is_empty() {
        return Err(PipelineError::Invalid(vec![format!(
            "data_prefix '{}' holds no partition files (*.{EXTENSION}) in {}",
            request.data_prefix,
            store.describe()
        )]));
    }
    if let Some(limit) = request.file_limit {
        files.truncate(limit);
    }
    let keys: Vec<String> = files.iter().map(|(k, _)| k.clone()).collect();
    Ok(Payload {
        run_id: run_id.to_string(),
        request: request.clone(),
        ranks: plan_ranks(&keys, request.world_size),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i}.safetensors")).collect()
    }

    /// A store with one partition, and a request over it.
    fn one_partition() -> (tempfile::TempDir, crate::store::LocalStore, RunRequest) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        store.put("data/a.safetensors", b"x").unwrap();
        let request: RunRequest = serde_json::from_str(
            r#"{"data_prefix":"data","batch_size":1,"world_size":1,"result_path":"results/r"}"#,
        )
        .unwrap();
        (dir, store, request)
    }

    #[test]
    fn a_used_result_path_is_refused() {
        let (_dir, store, request) = one_partition();
        initialize(&store, &request, "first").unwrap();
        let e = initialize(&store, &request, "second")
            .unwrap_err()
            .to_string();
        assert!(e.contains("already holds the results of run first"), "{e}");
    }

    #[test]
    fn a_plan_refused_by_its_check_leaves_the_result_path_unused() {
        let (_dir, store, request) = one_partition();
        let refused = initialize_with(&store, &request, "first", |_| {
            Err(PipelineError::Invalid(vec!["too slow".into()]))
        });
        assert!(refused.unwrap_err().to_string().contains("too slow"));
        // Nothing was written: the same result path is free for the next try.
        initialize(&store, &request, "second").unwrap();
    }

    #[test]
    fn ceil_split_like_cai() {
        // CAI's initializer.py: ceil(files left / ranks left) per rank.
        let plan = plan_ranks(&files(10), 4);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2, 2]);
        assert_eq!(plan[3], ["8.safetensors", "9.safetensors"]);
        let plan = plan_ranks(&files(9), 4);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2, 2, 2]);
        // More ranks than files: the extra ranks get nothing.
        let plan = plan_ranks(&files(2), 4);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 0, 0]);
        // Every file exactly once, in order.
        for (n, ranks) in [(7, 3), (100, 7), (1, 1), (0, 3), (10_000, 9_999)] {
            let plan = plan_ranks(&files(n), ranks);
            assert_eq!(plan.len(), ranks);
            assert_eq!(plan.concat(), files(n));
        }
    }
}
