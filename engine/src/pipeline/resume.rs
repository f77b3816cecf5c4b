//! Resume: what the ranks of an unfinished run left, so that only those that
//! did not finish run again. A run of 10,000 ranks stopped at rank 9,000 (a closed laptop, a
//! cancel, a rank out of memory) keeps what it paid for.

use super::{Payload, measures_key, rank_key};
use crate::store::{ObjectStore, PARALLEL_GETS, StoreError, for_each_fetched};
use cosmicai_shared::run::{RankMeasure, RankResult};
use std::collections::HashSet;

/// What an earlier attempt of `payload`'s run left of each rank, by rank: the
/// measures of a rank that finished (no error), whose `<rank>.json` is this
/// run's result and whose predictions read, as many as the result counts, to be kept; the
/// measures of a rank that failed for good (its error set), whose attempts were
/// billed and which runs again; `None` for every other rank (planned no file,
/// never started, or its files gone since).
pub fn earlier_ranks(
    store: &dyn ObjectStore,
    payload: &Payload,
) -> Result<Vec<Option<RankMeasure>>, StoreError> {
    let request = &payload.request;
    let world = request.world_size;
    let path = &request.result_path;
    // One listing, not three requests a rank: most of a large run's ranks
    // are asked about, and a missing file settles its rank at once. Keys are
    // compared as the listing spells them (`./results//x` is `results/x`).
    let held: HashSet<String> = store
        .list(path)?
        .into_iter()
        .map(|o| normal(&o.key))
        .collect();
    let has = |key: String| held.contains(&normal(&key));
    let candidates: Vec<usize> = (0..world)
        .filter(|&rank| payload.reads_files(rank) && has(measures_key(path, rank)))
        .collect();
    // A finished rank's predictions are read whole, as Summarize reads them:
    // a damaged file runs its rank again now, not fails it at the summary.
    let keys: Vec<String> = candidates
        .iter()
        .flat_map(|&rank| {
            [
                measures_key(path, rank),
                rank_key(path, rank),
                super::predictions_key(path, rank),
            ]
        })
        .collect();
    let run_id = &payload.run_id;
    let mut earlier = vec![None; world];
    let mut measure: Option<RankMeasure> = None;
    let mut result_objects: Option<usize> = None;
    for_each_fetched(store, &keys, PARALLEL_GETS, |i, fetched| {
        let rank = candidates[i / 3];
        if i % 3 == 2 {
            let (Some(m), Some(objects)) = (measure.take(), result_objects.take()) else {
                return Ok(());
            };
            let readable = match fetched {
                Ok(bytes) => {
                    super::read_predictions(&bytes).is_ok_and(|p| p.predicted.len() == objects)
                }
                Err(StoreError::NotFound { .. }) => false,
                Err(e) => return Err(e),
            };
            if readable {
                earlier[rank] = Some(m);
            }
            return Ok(());
        }
        if i % 3 == 0 {
            measure = match fetched {
                Ok(bytes) => serde_json::from_slice::<RankMeasure>(&bytes)
                    .ok()
                    .filter(|m| m.rank == rank && m.is_of_run(run_id)),
                // Gone since the listing: the rank runs again.
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            return Ok(());
        }
        result_objects = None;
        let Some(m) = measure.as_ref() else {
            return Ok(());
        };
        if m.error.is_some() {
            earlier[rank] = measure.take();
            return Ok(());
        }
        result_objects = match fetched {
            Ok(bytes) => serde_json::from_slice::<RankResult>(&bytes)
                .ok()
                .filter(|r| r.rank == rank && r.is_of_run(run_id))
                .map(|r| r.objects),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(())
    })?;
    Ok(earlier)
}

/// `key` without empty or `.` parts, as a store's listing names it.
fn normal(key: &str) -> String {
    key.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::predictions_key;
    use crate::predict::Prediction;
    use crate::store::LocalStore;
    use cosmicai_shared::Class;

    #[test]
    fn a_rank_finished_where_its_measures_result_and_predictions_are_its_runs() {
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
        // As many predictions as its result counts (7).
        let predictions = crate::pipeline::encode_predictions(&crate::pipeline::RankPredictions {
            object_id: vec![1; 7],
            redshift: vec![0.1; 7],
            class: vec![Class::Galaxy; 7],
            predicted: vec![Prediction::from_probabilities([0.7, 0.2, 0.1], 0.1); 7],
            ..Default::default()
        })
        .unwrap();
        let path = "results/r";
        let write_all = |rank: usize, run: &str, error: Option<&str>| {
            store
                .put(&measures_key(path, rank), &measure(rank, run, error))
                .unwrap();
            store
                .put(&rank_key(path, rank), &result(rank, run))
                .unwrap();
            store
                .put(&predictions_key(path, rank), &predictions)
                .unwrap();
        };
        // 0: finished. 1: failed for good. 2: another run's measures. 3: no
        // predictions. 4: never started.
        write_all(0, "r", None);
        write_all(1, "r", Some("killed by signal 9"));
        write_all(2, "other", None);
        write_all(3, "r", None);
        std::fs::remove_file(dir.path().join(predictions_key(path, 3))).unwrap();
        let earlier = earlier_ranks(&store, &payload).unwrap();
        let known: Vec<(usize, bool)> = earlier
            .iter()
            .enumerate()
            .filter_map(|(rank, m)| m.as_ref().map(|m| (rank, m.error.is_none())))
            .collect();
        // Rank 0 finished; rank 1 failed (billed, to run again).
        assert_eq!(known, vec![(0, true), (1, false)]);
        assert_eq!(earlier[0].as_ref().map(|m| m.objects), Some(7));
        // Predictions cut short (a full disk, a copy stopped): runs again.
        let whole = std::fs::read(dir.path().join(predictions_key(path, 0))).unwrap();
        store
            .put(&predictions_key(path, 0), &whole[..whole.len() / 2])
            .unwrap();
        assert!(earlier_ranks(&store, &payload).unwrap()[0].is_none());
        store.put(&predictions_key(path, 0), &whole).unwrap();
        // A result path spelt another way finds the same files.
        let mut spelt = payload.clone();
        spelt.request.result_path = "./results//r/".into();
        assert!(earlier_ranks(&store, &spelt).unwrap()[0].is_some());
        // A result file of another run beside this run's measures: runs again.
        store.put(&rank_key(path, 0), &result(0, "other")).unwrap();
        assert!(earlier_ranks(&store, &payload).unwrap()[0].is_none());
    }
}
