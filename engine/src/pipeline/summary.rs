//! Summarize: gather rank results, score predictions, add up the cost.

use super::{Payload, PipelineError, measures_key, predictions_key, rank_key, read_predictions};
use crate::cost::{Children, run_cost};
use crate::metrics::Scorer;
use crate::store::{ObjectStore, PARALLEL_GETS, StoreError, for_each_fetched, join};
pub use cosmicai_shared::run::RunSummary;
use cosmicai_shared::run::{RankMeasure, RankResult, RunStatus};

/// The measures ranks of `payload`'s run wrote to the store (AWS's ranks leave
/// theirs there): a rank planned no file read nothing, and one with none of
/// this run failed with `missing` (why it left none: the Map's failure, a
/// cancel).
pub fn stored_measures(
    store: &dyn ObjectStore,
    payload: &Payload,
    missing: &str,
) -> Result<Vec<RankMeasure>, StoreError> {
    let run_id = &payload.run_id;
    let result_path = &payload.request.result_path;
    let world = payload.request.world_size;
    let mut measures: Vec<RankMeasure> = (0..world)
        .map(|rank| RankMeasure::nothing_read(rank, run_id))
        .collect();
    let ran: Vec<usize> = (0..world)
        .filter(|&rank| payload.reads_files(rank))
        .collect();
    let keys: Vec<String> = ran
        .iter()
        .map(|&rank| measures_key(result_path, rank))
        .collect();
    for_each_fetched(store, &keys, PARALLEL_GETS, |i, fetched| {
        let rank = ran[i];
        let measure = match fetched {
            // Measures of another run under the same path are not this run's ranks.
            Ok(bytes) => serde_json::from_slice::<RankMeasure>(&bytes)
                .ok()
                .filter(|m| m.is_of_run(run_id)),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        measures[rank] = measure.unwrap_or_else(|| RankMeasure {
            rank,
            attempts: 1,
            error: Some(missing.to_string()),
            ..Default::default()
        });
        Ok(())
    })?;
    Ok(measures)
}

/// Reads the rank results written so far, writes `combined_data.json` and `summary.json`.
///
/// `measures` are the executor's figures per rank; `duration_s` is the whole run's wall
/// time; `initialize_s` the Initialize stage's. The Summarize stage is billed from
/// `started` (when it began) to just before `summary.json` is written, so the cost
/// is computed once, here, and every copy of it (the file, the registry, the API) agrees.
pub fn summarize(
    store: &dyn ObjectStore,
    payload: &Payload,
    measures: &[RankMeasure],
    duration_s: f64,
    initialize_s: f64,
    started: std::time::Instant,
) -> Result<RunSummary, PipelineError> {
    let children = Children::for_device(payload.request.device);
    summarize_with(
        store,
        payload,
        measures,
        (duration_s, initialize_s, started),
        children,
        &[],
    )
}

/// [`summarize`], priced with `children` as the Map's child executions (a
/// stack deployed with STANDARD children for its CPU ranks says so), of a
/// run whose ranks `kept` finished in an earlier attempt (a resumed run): its
/// time and speed are this attempt's, over the other ranks' objects.
/// `(duration_s, initialize_s, started)` as [`summarize`] takes them.
pub fn summarize_with(
    store: &dyn ObjectStore,
    payload: &Payload,
    measures: &[RankMeasure],
    (duration_s, initialize_s, started): (f64, f64, std::time::Instant),
    children: Children,
    kept: &[usize],
) -> Result<RunSummary, PipelineError> {
    let request = &payload.request;
    let mut results: Vec<RankResult> = Vec::new();
    let mut failed_ranks = Vec::new();
    // Scored rank by rank: one rank's predictions in memory at a time. A
    // PhotoZ model trained here never saw the validation split: scored apart.
    let photoz = matches!(
        request.model_spec(),
        Ok(cosmicai_shared::model::ModelSpec::PhotoZ(_))
    );
    let mut scorer = if photoz {
        Scorer::with_held_out()
    } else {
        Scorer::default()
    };
    // Ranks planned no file (more ranks than files) read nothing and run nowhere
    // on AWS: not read here, and neither failed nor in the combined results.
    let reading: Vec<usize> = (0..request.world_size)
        .filter(|&rank| payload.ranks.get(rank).is_none_or(|keys| !keys.is_empty()))
        .collect();
    // Each rank's result and predictions, read with many requests in flight (a
    // run may have 10,000 ranks) and scored in rank order.
    let keys: Vec<String> = reading
        .iter()
        .flat_map(|&rank| {
            [
                rank_key(&request.result_path, rank),
                predictions_key(&request.result_path, rank),
            ]
        })
        .collect();
    // A rank whose predictions cannot be read or are missing, and why: failed,
    // in its measure too.
    let mut unreadable: Vec<(usize, String)> = Vec::new();
    let mut result: Option<RankResult> = None;
    for_each_fetched(store, &keys, PARALLEL_GETS, |i, fetched| {
        let rank = reading[i / 2];
        if i % 2 == 0 {
            let failed = measures.get(rank).is_some_and(|m| m.error.is_some());
            result = match fetched {
                // Only this run's own rank files count (older files carry another run id).
                Ok(bytes) if !failed => serde_json::from_slice::<RankResult>(&bytes)
                    .ok()
                    .filter(|r| r.is_of_run(&payload.run_id)),
                Ok(_) | Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(PipelineError::from(e)),
            };
            if result.is_none() {
                failed_ranks.push(rank);
            }
            return Ok(());
        }
        let Some(rank_result) = result.take() else {
            return Ok(());
        };
        match fetched {
            Ok(bytes) => {
                // Unreadable predictions fail their rank, not the summary of the
                // others (every rank is paid for by now).
                let p = match read_predictions(&bytes) {
                    Ok(p) => p,
                    Err(e) => {
                        failed_ranks.push(rank);
                        unreadable.push((rank, format!("its predictions cannot be read: {e}")));
                        return Ok(());
                    }
                };
                for (i, ((z, class), predicted)) in p
                    .redshift
                    .iter()
                    .zip(&p.class)
                    .zip(&p.predicted)
                    .enumerate()
                {
                    if p.is_synthetic(i) {
                        scorer.add_synthetic();
                    } else if let Some(&id) = p.object_id.get(i) {
                        scorer.add_object(id, *z, *class, predicted);
                    } else {
                        scorer.add(*z, *class, predicted);
                    }
                }
            }
            // A rank writes its predictions before its result file, so a result
            // without them has lost them since: failed, like unreadable ones.
            Err(StoreError::NotFound { .. }) => {
                failed_ranks.push(rank);
                unreadable.push((rank, "its predictions file is missing".into()));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        results.push(rank_result);
        Ok(())
    })?;
    let combined =
        serde_json::to_vec_pretty(&results).map_err(|e| PipelineError::Other(e.to_string()))?;
    store.put(&join(&request.result_path, "combined_data.json"), &combined)?;

    let objects: usize = results.iter().map(|r| r.objects).sum();
    let files_per_rank: Vec<usize> = payload.ranks.iter().map(Vec::len).collect();
    let mut cost = run_cost(
        measures,
        &files_per_rank,
        &[initialize_s, started.elapsed().as_secs_f64()],
        request.memory_mb,
        crate::cost::ARM64,
        children,
    );
    // Ranks that read from S3 counted their GETs (two a partition where only the
    // catalog is read); local ranks are priced at one a partition.
    let (files, gets) = results
        .iter()
        .filter(|r| r.partition_gets > 0)
        .fold((0, 0), |(files, gets), r| {
            (files + r.data_path.len() as u64, gets + r.partition_gets)
        });
    crate::cost::price_partition_gets(&mut cost, files, gets);
    crate::cost::price_storage(&mut cost, payload.data_bytes());
    // A rank planned no file fails only where it ran and failed (no runner
    // starts one now; measures from a runner that did may say so).
    failed_ranks.extend(
        (0..request.world_size)
            .filter(|&rank| payload.reads_nothing(rank))
            .filter(|&rank| measures.get(rank).is_some_and(|m| m.error.is_some())),
    );
    failed_ranks.sort_unstable();
    // Past the request's tolerance the run failed, as its AWS Map does
    // (ToleratedFailurePercentage, over the ranks planned a file: the Map's
    // items), even where some ranks left results.
    let items = payload.ranks.iter().filter(|keys| !keys.is_empty()).count();
    let failed_items = failed_ranks
        .iter()
        .filter(|&&rank| payload.reads_files(rank))
        .count();
    let over_tolerance =
        failed_items as f64 * 100.0 > request.tolerated_failure_percentage * items as f64;
    // A rank the executor stopped or never started for a cancel: the run was
    // cancelled, whatever the others did (a cancel after the last rank ended
    // stops nothing, and the run succeeded).
    let cancelled = measures
        .iter()
        .any(|m| m.error.as_deref() == Some(crate::executor::CANCELLED));
    let status = if failed_ranks.is_empty() {
        RunStatus::Succeeded
    } else if cancelled {
        RunStatus::Cancelled
    } else if results.is_empty() || over_tolerance {
        RunStatus::Failed
    } else {
        RunStatus::Partial
    };
    let mut per_rank = measures.to_vec();
    for (rank, error) in unreadable {
        if let Some(m) = per_rank.get_mut(rank) {
            m.error = Some(error);
        }
    }
    // This attempt's objects over this attempt's time: kept ranks' objects
    // were predicted in another.
    let kept: std::collections::HashSet<usize> = kept.iter().copied().collect();
    let objects_now: usize = results
        .iter()
        .filter(|r| !kept.contains(&r.rank))
        .map(|r| r.objects)
        .sum();
    let summary = RunSummary {
        run_id: payload.run_id.clone(),
        status,
        ranks: request.world_size,
        failed_ranks,
        objects,
        objects_with_cutouts: results.iter().map(|r| r.objects_with_cutouts).sum(),
        model: request.model.clone(),
        predicts_class: request.model_spec().is_ok_and(|m| m.predicts_class()),
        duration_s,
        samples_per_s: objects_now as f64 / duration_s.max(1e-9),
        cost_usd: cost.total_usd,
        result_path: request.result_path.clone(),
        device: request.device,
        precision: request.precision,
        kernels: kernels_of(&results),
        batch_size: request.batch_size,
        memory_mb: request.memory_mb,
        files: payload.files.len(),
        cost,
        metrics: (scorer.objects() > 0).then(|| scorer.finish()),
        per_rank,
        resumed_ranks: kept.len(),
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| PipelineError::Other(e.to_string()))?;
    store.put(&join(&request.result_path, "summary.json"), &json)?;
    Ok(summary)
}

/// The distinct `kernels` the ranks recorded, in rank order, joined by "; ".
fn kernels_of(results: &[cosmicai_shared::run::RankResult]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for r in results {
        if !r.kernels.is_empty() && !seen.contains(&r.kernels.as_str()) {
            seen.push(&r.kernels);
        }
    }
    seen.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use cosmicai_shared::run::RunRequest;

    #[test]
    fn a_run_whose_every_reading_rank_failed_is_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 8, "world_size": 3, "result_path": "results/r"
        }))
        .unwrap();
        // Three ranks over one file: ranks 1 and 2 read nothing.
        let payload = Payload {
            bytes_per_object: None,
            notes: Vec::new(),
            run_id: "r".into(),
            request,
            files: vec![("p.safetensors".into(), 1)],
            ranks: vec![vec!["p.safetensors".into()], Vec::new(), Vec::new()],
        };
        let failed = |rank: usize| RankMeasure {
            rank,
            attempts: 1,
            error: Some("no model".into()),
            ..Default::default()
        };
        let done = |rank: usize| RankMeasure {
            rank,
            attempts: 1,
            ..Default::default()
        };
        let summary_of = |measures: &[RankMeasure]| {
            summarize(
                &store,
                &payload,
                measures,
                1.0,
                0.0,
                std::time::Instant::now(),
            )
            .unwrap()
        };
        // On AWS the empty ranks never run: only rank 0 counts, and it failed.
        let aws = summary_of(&[failed(0), done(1), done(2)]);
        assert_eq!((aws.status, aws.failed_ranks), (RunStatus::Failed, vec![0]));
        // Locally every rank starts: an empty rank that failed is named too.
        let local = summary_of(&[failed(0), done(1), failed(2)]);
        assert_eq!(
            (local.status, local.failed_ranks),
            (RunStatus::Failed, vec![0, 2])
        );
        // Stopped by a cancel: cancelled, however the others did, and the
        // stopped rank is named.
        let stopped = RankMeasure {
            error: Some(crate::executor::CANCELLED.into()),
            ..failed(0)
        };
        let cancelled = summary_of(&[stopped, done(1), done(2)]);
        assert_eq!(
            (cancelled.status, cancelled.failed_ranks),
            (RunStatus::Cancelled, vec![0])
        );
    }

    /// AWS's ToleratedFailurePercentage is a strict bound: the Map fails only
    /// when the failed items' share is above it. 1 of 4 planned ranks is 25%.
    #[test]
    fn a_failed_share_exactly_at_the_tolerance_is_partial_and_above_it_failed() {
        use crate::pipeline::{RankPredictions, encode_predictions};
        use crate::predict::Prediction;
        use cosmicai_shared::Class;
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 8, "world_size": 4, "result_path": "results/t"
        }))
        .unwrap();
        // Four ranks of one file each: four Map items.
        let files: Vec<String> = (0..4).map(|i| format!("p{i}.safetensors")).collect();
        let payload = Payload {
            bytes_per_object: None,
            notes: Vec::new(),
            run_id: "t".into(),
            request,
            files: files.iter().map(|f| (f.clone(), 1)).collect(),
            ranks: files.iter().map(|f| vec![f.clone()]).collect(),
        };
        // Every rank left its result and predictions; rank 3's measure says it failed.
        let predictions = encode_predictions(&RankPredictions {
            object_id: vec![1],
            redshift: vec![0.1],
            class: vec![Class::Galaxy],
            predicted: vec![Prediction::from_probabilities([0.7, 0.2, 0.1], 0.1)],
            ..Default::default()
        })
        .unwrap();
        for (rank, file) in files.iter().enumerate() {
            let result = RankResult {
                rank,
                run_id: "t".into(),
                total_time_s: 1.0,
                memory_mb: 0.0,
                execution_time_per_batch_s: 1.0,
                num_batches: 1,
                batch_size: 8,
                device: Default::default(),
                precision: Default::default(),
                throughput_bps: 0.0,
                sample_persec: 1.0,
                result_path: "results/t".into(),
                data_path: vec![file.clone()],
                objects: 1,
                objects_with_cutouts: 0,
                model: String::new(),
                kernels: String::new(),
                downloaded_bytes: 0,
                partition_gets: 0,
                system: Default::default(),
            };
            store
                .put(
                    &rank_key("results/t", rank),
                    &serde_json::to_vec(&result).unwrap(),
                )
                .unwrap();
            store
                .put(&predictions_key("results/t", rank), &predictions)
                .unwrap();
        }
        let measures: Vec<RankMeasure> = (0..4)
            .map(|rank| RankMeasure {
                rank,
                attempts: 1,
                error: (rank == 3).then(|| "failed".to_string()),
                ..Default::default()
            })
            .collect();
        for (tolerated, status) in [
            (25.0, RunStatus::Partial),
            (24.9, RunStatus::Failed),
            (100.0, RunStatus::Partial),
            (0.0, RunStatus::Failed),
        ] {
            let mut payload = payload.clone();
            payload.request.tolerated_failure_percentage = tolerated;
            let summary = summarize(
                &store,
                &payload,
                &measures,
                1.0,
                0.0,
                std::time::Instant::now(),
            )
            .unwrap();
            assert_eq!(
                (summary.status, summary.failed_ranks, summary.objects),
                (status, vec![3], 3),
                "tolerance {tolerated}%"
            );
        }
    }
}
