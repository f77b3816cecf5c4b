//! The local executor's run: Initialize here, one `cosmicai worker` process per
//! rank, Summarize here.

use super::record::Recorder;
use anyhow::{Context, Result};
use cosmicai_engine::cost::Children;
use cosmicai_engine::cost::billed_ms;
use cosmicai_engine::executor::{ExecutorConfig, WorkerCommand, execute_cancellable};
use cosmicai_engine::pipeline::{Payload, RunSummary, initialize, measures_key, summarize_with};
use cosmicai_engine::store::{LocalStore, ObjectStore};
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::{RankMeasure, RunRequest};
use std::path::Path;
use std::time::{Duration, Instant};

/// The shortest default rank timeout: start-up and a slow disk must fit.
const MIN_DEFAULT_TIMEOUT_S: f64 = 600.0;

pub fn execute(
    root: &Path,
    request: &RunRequest,
    run_id: &str,
    concurrency: Option<usize>,
    recorder: &mut Recorder,
) -> Result<RunSummary> {
    let store = LocalStore::new(root);
    let started = Instant::now();
    let request = &super::with_converted_data(root, request, recorder, "")?;
    let payload = initialize(&store, request, run_id)?;
    let initialize_s = started.elapsed().as_secs_f64();
    for note in &payload.notes {
        recorder.println(&format!("note: {note}"));
    }
    recorder.start(request, &payload.ranks)?;
    let earlier = vec![None; request.world_size];
    run_ranks(
        root,
        &payload,
        earlier,
        concurrency,
        recorder,
        started,
        initialize_s,
    )
}

/// Runs the ranks of `payload`'s planned run, then Summarize over all of them.
/// `earlier[rank]` is what an earlier attempt of the run left of a rank
/// ([`mod@super::resume`]): a finished rank's measures (kept: it does not run
/// again), or a failed one's (it runs again, its attempts billed with them).
pub fn run_ranks(
    root: &Path,
    payload: &Payload,
    earlier: Vec<Option<RankMeasure>>,
    concurrency: Option<usize>,
    recorder: &mut Recorder,
    started: Instant,
    initialize_s: f64,
) -> Result<RunSummary> {
    let store = LocalStore::new(root);
    let (request, run_id) = (&payload.request, payload.run_id.as_str());
    let finished = |rank: usize| {
        earlier
            .get(rank)
            .and_then(Option::as_ref)
            .filter(|m| m.error.is_none())
    };
    // Ranks planned no file (CAI's payloads set world_size to file_limit, so
    // 40,000 ranks may share 11 files) start no worker, as on AWS they are no
    // Map item: done at once, with nothing read. Ranks an earlier attempt
    // finished are done with their own measures.
    let (working, idle): (Vec<usize>, Vec<usize>) = (0..request.world_size)
        .filter(|&rank| finished(rank).is_none())
        .partition(|&rank| payload.reads_files(rank));
    let kept: Vec<RankMeasure> = (0..request.world_size)
        .filter_map(|rank| finished(rank).cloned())
        .collect();
    let done_before: Vec<RankMeasure> = idle
        .iter()
        .map(|&rank| RankMeasure::nothing_read(rank, run_id))
        .chain(kept.iter().cloned())
        .collect();
    recorder.events(
        &done_before
            .iter()
            .flat_map(|measure| {
                [
                    RunEvent::RankStarted {
                        rank: measure.rank,
                        attempt: measure.attempts.max(1),
                    },
                    RunEvent::RankFinished {
                        measure: measure.clone(),
                    },
                ]
            })
            .collect::<Vec<_>>(),
    );

    let (concurrency, threads) = super::concurrency_and_threads(concurrency, working.len());
    // No more ranks at once than the host's memory holds at memory_mb each.
    let host_mb = cosmicai_engine::system::memory_mb();
    let concurrency = if host_mb > 0.0 {
        concurrency.min(((host_mb / f64::from(request.memory_mb.max(1))) as usize).max(1))
    } else {
        concurrency
    };
    let command = WorkerCommand {
        program: std::env::current_exe().context("finding the cosmicai executable for workers")?,
        args: vec![
            "worker".into(),
            "--store".into(),
            root.display().to_string(),
            "--result-path".into(),
            request.result_path.clone(),
        ],
        envs: vec![("RAYON_NUM_THREADS".into(), threads.to_string())],
    };
    let config = ExecutorConfig {
        concurrency,
        memory_mb: request.memory_mb,
        retries: request.retries,
        timeout: Some(rank_timeout(request, payload)),
    };
    let cancel = recorder.cancel.clone();
    // A rank that failed before runs again, billed for its earlier attempts too.
    let with_carried = |m: RankMeasure| {
        let rank = m.rank;
        m.after(earlier.get(rank).and_then(Option::as_ref))
    };
    let mut measures = execute_cancellable(
        &command,
        request.world_size,
        &working,
        config,
        cancel,
        |event| {
            if let RunEvent::RankFinished { measure } = event {
                keep_measure(
                    &store,
                    run_id,
                    &request.result_path,
                    &with_carried(measure.clone()),
                    recorder,
                );
            }
            recorder.event(event)
        },
    );
    for &rank in &working {
        let measure = with_carried(std::mem::take(&mut measures[rank]));
        // A rank that failed for good keeps what its attempts were billed, for
        // a resume to add to (one never started was billed nothing).
        if measure.error.is_some() && measure.billed_duration_ms > 0 {
            keep_measure(&store, run_id, &request.result_path, &measure, recorder);
        }
        measures[rank] = measure;
    }
    for measure in done_before {
        let rank = measure.rank;
        measures[rank] = measure;
    }
    // A finished CPU rank is billed as a Lambda of the request's memory would
    // bill it: its share of vCPUs may be less than what the rank used here (a
    // GPU rank is an instance's time, billed as measured).
    if request.device == cosmicai_shared::run::Device::Cpu {
        for m in measures.iter_mut().filter(|m| m.error.is_none()) {
            let lambda_s = cosmicai_engine::cost::lambda_duration_s(
                m.duration_s,
                m.cpu_time_s,
                request.memory_mb,
            );
            m.billed_duration_ms += billed_ms(lambda_s).saturating_sub(billed_ms(m.duration_s));
        }
    }
    // Every worker has ended (its process group killed): what a killed attempt
    // was writing can go.
    cosmicai_engine::store::sweep_temporaries(&root.join(&request.result_path));
    let summarize_started = Instant::now();
    let duration_s = started.elapsed().as_secs_f64();
    let kept: Vec<usize> = kept.iter().map(|m| m.rank).collect();
    let summary = summarize_with(
        &store,
        payload,
        &measures,
        (duration_s, initialize_s, summarize_started),
        Children::for_device(request.device),
        &kept,
    )?;
    // A rank Summarize found without readable results (its predictions
    // damaged since) is kept as failed, its billing with it: a resume runs it again.
    for &rank in &summary.failed_ranks {
        if measures[rank].error.is_none() {
            let failed = RankMeasure {
                error: Some("its results could not be read at Summarize".into()),
                ..measures[rank].clone()
            };
            keep_measure(&store, run_id, &request.result_path, &failed, recorder);
        }
    }
    Ok(summary)
}

/// Keeps a rank's measures beside its results (`measures/<rank>.json`, as
/// AWS's ranks leave theirs), as they were measured, so that a resumed run
/// keeps a finished rank and bills it as it ran, and bills a failed one's
/// attempts. One that cannot be written is said, and its rank would run again.
fn keep_measure(
    store: &LocalStore,
    run_id: &str,
    result_path: &str,
    measure: &RankMeasure,
    recorder: &Recorder,
) {
    let measure = RankMeasure {
        run_id: run_id.to_string(),
        ..measure.clone()
    };
    let kept = serde_json::to_vec(&measure)
        .map_err(|e| e.to_string())
        .and_then(|json| {
            store
                .put(&measures_key(result_path, measure.rank), &json)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = kept {
        recorder.println(&format!(
            "warning: rank {}: its measures were not kept ({e}); a resume of this run would run it again",
            measure.rank
        ));
    }
}

/// How long one attempt of a rank may run: the request's `timeout_s`, else ten
/// times the plan's bound on its slowest rank (a bound for a Lambda of the
/// request's memory; a rank on a busy laptop may be slower), at least ten minutes.
fn rank_timeout(request: &RunRequest, payload: &cosmicai_engine::pipeline::Payload) -> Duration {
    let seconds = request.timeout_s.unwrap_or_else(|| {
        cosmicai_engine::pipeline::slowest_rank(payload)
            .map_or(0.0, |slowest| 10.0 * slowest.seconds)
            .max(MIN_DEFAULT_TIMEOUT_S)
    });
    Duration::from_secs_f64(seconds)
}
