//! Resume: which ranks of an unfinished run finished, so that only the others
//! run again. A run of 10,000 ranks stopped at rank 9,000 (a closed laptop, a
//! cancel, a rank out of memory) keeps what it paid for.

use super::{Payload, measures_key, rank_key};
use crate::store::{ObjectStore, PARALLEL_GETS, StoreError, for_each_fetched};
use cosmicai_shared::run::{RankMeasure, RankResult};
use std::collections::HashSet;

/// The measures of `payload`'s ranks that finished, by rank: those whose
/// `measures/<rank>.json` is this run's and names no error, whose
/// `<rank>.json` is this run's result and whose predictions are in the
/// store. `None` for every other rank (planned no file, never started,
/// failed, or its files gone since).
pub fn finished_ranks(
    store: &dyn ObjectStore,
    payload: &Payload,
) -> Result<Vec<Option<RankMeasure>>, StoreError> {
    let request = &payload.request;
    let world = request.world_size;
    // One listing, not three requests a rank: most of a large run's ranks
    // are asked about, and a missing file settles its rank at once.
    let held: HashSet<String> = store
        .list(&request.result_path)?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let candidates: Vec<usize> = (0..world)
        .filter(|&rank| payload.reads_files(rank))
        .filter(|&rank| {
            [
                measures_key(&request.result_path, rank),
                rank_key(&request.result_path, rank),
                super::predictions_key(&request.result_path, rank),
            ]
            .iter()
            .all(|key| held.contains(key))
        })
        .collect();
    let keys: Vec<String> = candidates
        .iter()
        .flat_map(|&rank| {
            [
                measures_key(&request.result_path, rank),
                rank_key(&request.result_path, rank),
            ]
        })
        .collect();
    let run_id = &payload.run_id;
    let mut finished = vec![None; world];
    let mut measure: Option<RankMeasure> = None;
    for_each_fetched(store, &keys, PARALLEL_GETS, |i, fetched| {
        let rank = candidates[i / 2];
        let bytes = match fetched {
            Ok(bytes) => bytes,
            // Gone since the listing: the rank runs again.
            Err(StoreError::NotFound { .. }) => {
                measure = None;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if i % 2 == 0 {
            measure = serde_json::from_slice::<RankMeasure>(&bytes)
                .ok()
                .filter(|m| m.rank == rank && m.is_of_run(run_id) && m.error.is_none());
            return Ok(());
        }
        let result_is_its = serde_json::from_slice::<RankResult>(&bytes)
            .is_ok_and(|r| r.rank == rank && r.is_of_run(run_id));
        if let Some(m) = measure.take().filter(|_| result_is_its) {
            finished[rank] = Some(m);
        }
        Ok(())
    })?;
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::predictions_key;
    use crate::store::LocalStore;

    #[test]
    fn only_ranks_with_their_measures_result_and_predictions_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let request = serde_json::from_value(serde_json::json!({
            "batch_size": 8, "world_size": 6, "result_path": "results/r"
        }))
        .unwrap();
        let payload = Payload {
            run_id: "r".into(),
            request,
            files: (0..5).map(|i| (format!("p/{i}.safetensors"), 10)).collect(),
            // Rank 5 is planned no file.
            ranks: (0..5)
                .map(|i| vec![format!("p/{i}.safetensors")])
                .chain([vec![]])
                .collect(),
            bytes_per_object: None,
            notes: Vec::new(),
        };
        let measure = |rank: usize, run: &str, error: Option<&str>| {
            serde_json::to_vec(&RankMeasure {
                rank,
                run_id: run.into(),
                objects: 7,
                error: error.map(str::to_string),
                ..Default::default()
            })
            .unwrap()
        };
        let result = |rank: usize, run: &str| {
            serde_json::to_vec(&RankResult {
                rank,
                run_id: run.into(),
                total_time_s: 1.0,
                memory_mb: 0.0,
                execution_time_per_batch_s: 1.0,
                num_batches: 1,
                batch_size: 8,
                device: Default::default(),
                precision: Default::default(),
                throughput_bps: 0.0,
                sample_persec: 1.0,
                result_path: "results/r".into(),
                data_path: vec![format!("p/{rank}.safetensors")],
                objects: 7,
                objects_with_cutouts: 0,
                model: String::new(),
                kernels: String::new(),
                downloaded_bytes: 0,
                partition_gets: 0,
                system: Default::default(),
            })
            .unwrap()
        };
        let path = "results/r";
        let write_all = |rank: usize, run: &str, error: Option<&str>| {
            store
                .put(&measures_key(path, rank), &measure(rank, run, error))
                .unwrap();
            store
                .put(&rank_key(path, rank), &result(rank, run))
                .unwrap();
            store.put(&predictions_key(path, rank), b"p").unwrap();
        };
        // 0: finished. 1: failed. 2: another run's measures. 3: no predictions.
        // 4: never started.
        write_all(0, "r", None);
        write_all(1, "r", Some("killed by signal 9"));
        write_all(2, "other", None);
        write_all(3, "r", None);
        std::fs::remove_file(dir.path().join(predictions_key(path, 3))).unwrap();
        let finished = finished_ranks(&store, &payload).unwrap();
        let kept: Vec<usize> = finished
            .iter()
            .enumerate()
            .filter_map(|(rank, m)| m.as_ref().map(|_| rank))
            .collect();
        assert_eq!(kept, vec![0]);
        assert_eq!(finished[0].as_ref().map(|m| m.objects), Some(7));
        // A result file of another run beside this run's measures: runs again.
        store.put(&rank_key(path, 0), &result(0, "other")).unwrap();
        assert!(finished_ranks(&store, &payload).unwrap()[0].is_none());
    }
}
