//! Resume: what the ranks of an unfinished run left, so that only those that
//! did not finish run again. A run of 10,000 ranks stopped at rank 9,000 (a closed laptop, a
//! cancel, a rank out of memory) keeps what it paid for.

use super::{Payload, PayloadOf, PipelineError, Stores, measures_key, rank_key, read_payload};
use crate::store::{ObjectStore, PARALLEL_GETS, StoreError, for_each_fetched};
use cosmicai_shared::aws::RankItem;
use cosmicai_shared::run::{RankMeasure, RankResult, RunRequest};
use std::collections::{HashMap, HashSet};

/// An unfinished run's plan, checked for resuming, and what its ranks left
/// ([`earlier_ranks`]).
#[derive(Debug)]
pub struct Resumed {
    pub payload: Payload,
    pub earlier: Vec<Option<RankMeasure>>,
}

impl Resumed {
    /// Whether rank `rank` finished in an earlier attempt (it does not run again).
    pub fn kept(&self, rank: usize) -> bool {
        self.earlier
            .get(rank)
            .and_then(Option::as_ref)
            .is_some_and(|m| m.error.is_none())
    }

    /// The ranks that run again: planned a file, not finished before.
    pub fn to_run(&self) -> Vec<usize> {
        (0..self.payload.request.world_size)
            .filter(|&rank| self.payload.reads_files(rank) && !self.kept(rank))
            .collect()
    }
}

/// The plan run `run_id` wrote under `request`'s result path, checked for a
/// resume of `request` (the request it was started with; its `memory_mb` may
/// differ: a stack redeployed with more memory resumes ranks that ran out of
/// it), its partitions unchanged since, and what its ranks left. Refusals
/// name the file and what is wrong.
pub fn resume_plan(
    stores: Stores,
    request: &RunRequest,
    run_id: &str,
) -> Result<Resumed, PipelineError> {
    let payload = checked_plan(stores, request, run_id)?;
    let earlier = earlier_ranks(stores.results, &payload)?;
    Ok(Resumed { payload, earlier })
}

/// [`resume_plan`]'s checks alone: the run's plan, for `request`, over
/// partitions unchanged since.
pub fn checked_plan(
    stores: Stores,
    request: &RunRequest,
    run_id: &str,
) -> Result<Payload, PipelineError> {
    let path = &request.result_path;
    let invalid = |why: String| PipelineError::Invalid(vec![why]);
    let payload = match read_payload(stores.results, path, Some(run_id))? {
        PayloadOf::Its(payload) => *payload,
        PayloadOf::Missing => {
            return Err(invalid(format!(
                "run {run_id} has no plan at '{path}/payload.json': it ended before its ranks were planned (or the file was removed since), so it cannot be resumed; start it anew"
            )));
        }
        PayloadOf::Unreadable(e) => {
            return Err(invalid(format!("run {run_id}: '{path}/payload.json': {e}")));
        }
        PayloadOf::OtherRun(other) => {
            return Err(invalid(format!(
                "run {run_id}: '{path}/payload.json' is run {other}'s plan, not its own"
            )));
        }
    };
    // Compared as written and read back (a float may not survive JSON exactly).
    let comparable = |r: &RunRequest| {
        serde_json::to_value(RunRequest {
            memory_mb: 0,
            ..r.clone()
        })
        .ok()
    };
    if comparable(&payload.request) != comparable(request)
        || payload.ranks.len() != payload.request.world_size
    {
        return Err(invalid(format!(
            "run {run_id}: '{path}/payload.json' is not the plan of the request resumed (edited since?): it cannot be resumed"
        )));
    }
    unchanged_partitions(stores.data, &payload)?;
    Ok(payload)
}

/// What the ranks' measures alone say an earlier attempt of `payload`'s run
/// left (one listing of `measures/`, one read a rank found there): what
/// [`earlier_ranks`] reads first, without its reads of every finished rank's
/// results. A launcher far from the bucket shows what a resume will keep
/// with it; the resume itself reads it all.
pub fn earlier_measures(
    store: &dyn ObjectStore,
    payload: &Payload,
) -> Result<Vec<Option<RankMeasure>>, StoreError> {
    let path = &payload.request.result_path;
    let held: HashSet<String> = store
        .list(&crate::store::join(path, "measures"))?
        .into_iter()
        .map(|o| normal(&o.key))
        .collect();
    let ranks: Vec<usize> = (0..payload.request.world_size)
        .filter(|&rank| {
            payload.reads_files(rank) && held.contains(&normal(&measures_key(path, rank)))
        })
        .collect();
    let keys: Vec<String> = ranks.iter().map(|&rank| measures_key(path, rank)).collect();
    let mut earlier = vec![None; payload.request.world_size];
    for_each_fetched(store, &keys, PARALLEL_GETS, |i, fetched| {
        let rank = ranks[i];
        earlier[rank] = match fetched {
            Ok(bytes) => serde_json::from_slice::<RankMeasure>(&bytes)
                .ok()
                .filter(|m| m.rank == rank && m.is_of_run(&payload.run_id)),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(())
    })?;
    Ok(earlier)
}

/// Refuses a resume of `payload`'s run where a planned partition is gone or
/// changed size since it was planned: kept and new ranks would mix two
/// datasets in one run. One listing of the data folder (a file replaced by
/// one of the same size is not told apart).
pub fn unchanged_partitions(
    data: &dyn ObjectStore,
    payload: &Payload,
) -> Result<(), PipelineError> {
    let listed: HashMap<String, u64> = data
        .list(&payload.request.data_prefix)?
        .into_iter()
        .map(|o| (normal(&o.key), o.size))
        .collect();
    let run_id = &payload.run_id;
    for (key, planned) in &payload.files {
        match listed.get(&normal(key)) {
            Some(now) if now == planned => {}
            Some(now) => {
                return Err(PipelineError::Invalid(vec![format!(
                    "run {run_id}: partition '{key}' changed since the run was planned ({planned} bytes then, {now} now): a resume would mix two datasets; start a new run"
                )]));
            }
            None => {
                return Err(PipelineError::Invalid(vec![format!(
                    "run {run_id}: partition '{key}' is gone since the run was planned: a resume would leave its ranks without it; put it back, or start a new run"
                )]));
            }
        }
    }
    Ok(())
}

/// The ranks of `payload`'s run that an earlier attempt finished, as the
/// Map's plan (`plan.json`, which a resume writes with only the ranks it
/// runs) leaves them out: every rank planned a file that is no item of it.
/// None where there is no plan of the Map (a local run) or it cannot be read.
pub fn kept_by_plan(store: &dyn ObjectStore, payload: &Payload) -> Vec<usize> {
    let Some(running) = ranks_of_map_plan(store, payload) else {
        return Vec::new();
    };
    (0..payload.request.world_size)
        .filter(|&rank| payload.reads_files(rank) && !running.contains(&rank))
        .collect()
}

/// The ranks the Map's plan (`plan.json`) of `payload`'s run names; `None`
/// where there is none, it cannot be read, or it is another run's.
pub fn ranks_of_map_plan(store: &dyn ObjectStore, payload: &Payload) -> Option<HashSet<usize>> {
    let bytes = store
        .get(&super::plan_key(&payload.request.result_path))
        .ok()?;
    let items: Vec<RankItem> = serde_json::from_slice(&bytes).ok()?;
    if items.iter().any(|item| item.run_id != payload.run_id) {
        return None;
    }
    Some(items.iter().map(|item| item.rank).collect())
}

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

    #[test]
    fn a_resume_takes_its_runs_own_plan_over_unchanged_partitions_and_its_map_plan_tells_the_kept()
    {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 8, "world_size": 3, "result_path": "results/r", "data_prefix": "p"
        }))
        .unwrap();
        for i in 0..3 {
            store.put(&format!("p/{i}.safetensors"), &[0; 10]).unwrap();
        }
        let payload = Payload {
            run_id: "r".into(),
            request: request.clone(),
            files: (0..3).map(|i| (format!("p/{i}.safetensors"), 10)).collect(),
            ranks: (0..3).map(|i| vec![format!("p/{i}.safetensors")]).collect(),
            bytes_per_object: None,
            notes: Vec::new(),
        };
        let stores = Stores::one(&store);
        let refused = |request: &RunRequest, run: &str| match resume_plan(stores, request, run) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("resumed: {r:?}"),
        };
        // Never planned.
        assert!(refused(&request, "r").contains("has no plan"));
        let write = |payload: &Payload| {
            store
                .put(
                    &super::super::payload_key("results/r"),
                    &serde_json::to_vec(payload).unwrap(),
                )
                .unwrap();
        };
        write(&payload);
        // Another run's plan, or another request than the one planned.
        assert!(refused(&request, "s").contains("run r's plan"));
        let other = RunRequest {
            batch_size: 16,
            ..request.clone()
        };
        assert!(refused(&other, "r").contains("not the plan of the request resumed"));
        // More memory (a stack redeployed for ranks that ran out of it): resumed.
        let more = RunRequest {
            memory_mb: request.memory_mb * 2,
            ..request.clone()
        };
        let resumed = resume_plan(stores, &more, "r").unwrap();
        assert_eq!(resumed.to_run(), vec![0, 1, 2]);
        // Rank 1 left its measures, but no readable result: it runs again
        // (the test above has the ranks kept).
        store
            .put(
                &measures_key("results/r", 1),
                &serde_json::to_vec(&RankMeasure {
                    rank: 1,
                    run_id: "r".into(),
                    ..Default::default()
                })
                .unwrap(),
            )
            .unwrap();
        store.put(&rank_key("results/r", 1), b"{}").unwrap();
        assert_eq!(
            resume_plan(stores, &request, "r").unwrap().to_run(),
            vec![0, 1, 2]
        );
        // A partition changed or gone since the plan: refused by name.
        store.put("p/2.safetensors", &[0; 11]).unwrap();
        let e = refused(&request, "r");
        assert!(
            e.contains("'p/2.safetensors' changed") && e.contains("10 bytes then, 11 now"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("p/2.safetensors")).unwrap();
        assert!(refused(&request, "r").contains("'p/2.safetensors' is gone"));
        // The Map's plan names the ranks a resuming execution runs: the rest were kept.
        assert!(
            kept_by_plan(&store, &payload).is_empty(),
            "no plan: none kept"
        );
        let item = |rank: usize, run: &str| RankItem {
            run_id: run.into(),
            bucket: "b".into(),
            result_path: "results/r".into(),
            rank,
            device: Default::default(),
            entered_at: None,
        };
        let plan = |items: Vec<RankItem>| {
            store
                .put(
                    &super::super::plan_key("results/r"),
                    &serde_json::to_vec(&items).unwrap(),
                )
                .unwrap();
        };
        plan(vec![item(0, "r"), item(1, "r"), item(2, "r")]);
        assert!(
            kept_by_plan(&store, &payload).is_empty(),
            "a first run's plan"
        );
        plan(vec![item(2, "r")]);
        assert_eq!(kept_by_plan(&store, &payload), vec![0, 1]);
        plan(vec![item(2, "s")]);
        assert!(
            kept_by_plan(&store, &payload).is_empty(),
            "another run's plan"
        );
    }
}
