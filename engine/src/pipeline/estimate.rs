//! Before launch: how long a run will take and what it will cost, from a
//! calibration of this machine's samples/s and worker cold start.

use super::{Payload, PipelineError};
use crate::cost::{billed_ms, run_cost};
use crate::partition::PartitionFile;
use crate::store::ObjectStore;
pub use cosmicai_shared::run::Estimate;
use cosmicai_shared::run::RankMeasure;

/// Estimates `payload`'s run: each rank planned files takes `cold_start_s + objects /
/// samples_per_s` (one planned none takes nothing), ranks are scheduled `concurrency` at a time, the bill uses the same prices as real runs.
/// A CPU rank's inference keeps its `threads` busy, so it is billed, as a
/// run's ranks are, for the time a Lambda of the run's memory (and its share
/// of vCPUs) would take.
pub fn estimate(
    store: &dyn ObjectStore,
    payload: &Payload,
    samples_per_s: f64,
    cold_start_s: f64,
    concurrency: usize,
    threads: usize,
) -> Result<Estimate, PipelineError> {
    let mut objects_per_rank = Vec::new();
    for keys in &payload.ranks {
        let mut n: usize = 0;
        for key in keys {
            n = n.saturating_add(match store.local_path(key) {
                Some(path) if crate::cai::is_cai_key(key) => crate::cai::cai_objects(&path)
                    .map_err(|e| PipelineError::Other(e.to_string()))?,
                Some(path) => PartitionFile::open(&path)?.len(),
                // Remote objects: assume the average catalog object size.
                None => payload
                    .files
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(0, |(_, size)| {
                        (*size as usize) / crate::partition::bytes_per_object(None)
                    }),
            });
        }
        objects_per_rank.push(n);
    }
    let rate = samples_per_s.max(1e-9);
    // A rank planned no file starts no worker (and is no Map item): it takes no
    // slot's time, where a cold start for each of 40,000 idle ranks would.
    let durations: Vec<f64> = objects_per_rank
        .iter()
        .zip(&payload.ranks)
        .map(|(&n, keys)| {
            if keys.is_empty() {
                0.0
            } else {
                cold_start_s + n as f64 / rate
            }
        })
        .collect();
    // Greedy schedule: each rank starts on the slot that frees first.
    let mut slots = vec![0.0f64; concurrency.max(1)];
    for d in &durations {
        let first = slots
            .iter_mut()
            .min_by(|a, b| a.total_cmp(b))
            .expect("at least one slot");
        *first += d;
    }
    let cpu = payload.request.device == cosmicai_shared::run::Device::Cpu;
    let measures: Vec<RankMeasure> = durations
        .iter()
        .enumerate()
        .map(|(rank, &d)| RankMeasure {
            rank,
            attempts: 1,
            duration_s: d,
            billed_duration_ms: billed_ms(if cpu && d > 0.0 {
                // Its inference keeps the worker's threads busy; its cold start does not.
                let infer = d - cold_start_s;
                cold_start_s
                    + crate::cost::lambda_duration_s(
                        infer,
                        infer * threads as f64,
                        payload.request.memory_mb,
                    )
            } else {
                d
            }),
            ..Default::default()
        })
        .collect();
    let files_per_rank: Vec<usize> = payload.ranks.iter().map(Vec::len).collect();
    let mut cost = run_cost(
        &measures,
        &files_per_rank,
        &[cold_start_s, cold_start_s],
        payload.request.memory_mb,
        // As a local run's summary prices it: this machine's architecture.
        crate::cost::ARM64,
        crate::cost::Children::for_device(payload.request.device),
    );
    crate::cost::price_storage(&mut cost, payload.data_bytes());
    Ok(Estimate {
        ranks: payload.ranks.len(),
        objects: objects_per_rank.iter().sum(),
        objects_per_rank,
        calibration_samples_per_s: samples_per_s,
        cold_start_s,
        concurrency,
        duration_s: slots.into_iter().fold(0.0, f64::max),
        cost_usd: cost.total_usd,
        cost,
    })
}
