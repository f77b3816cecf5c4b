//! Infer: one rank, as a local worker runs it (`engine::pipeline::infer_rank`),
//! measured as Lambda bills it: its duration, a cold call's INIT, its CPU time.

use crate::data::{data_store, stores};
use crate::deadline::RankDeadline;
use crate::weights::cached_cpu_model;
#[cfg(feature = "cuda")]
use crate::weights::load_model;
use crate::{Cpu, S3Settings, StageError, its_payload};
use cosmicai_engine::cost::billed_ms;
use cosmicai_engine::pipeline::{
    Payload, PipelineError, RANK_STOP_S, RankEvent, Stores, infer_rank, measures_key,
};
#[cfg(feature = "cuda")]
use cosmicai_engine::placement::OnBackend;
use cosmicai_engine::placement::Placement;
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::ObjectStore;
#[cfg(feature = "cuda")]
use cosmicai_engine::store::s3::S3Store;
use cosmicai_shared::aws::RankItem;
use cosmicai_shared::run::{Device, RankMeasure};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Process start, for the cold start of the first invocation.
static PROCESS_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// INIT's end (the model loaded): the cold start billed is from the process
/// start to here, not the idle wait for the first call after it.
static INIT_END: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// Whether this process has served an Infer yet (the next one is warm).
pub(crate) static WARM: AtomicBool = AtomicBool::new(false);

/// Marks the process start; call first thing in `main`.
pub fn mark_process_start() {
    PROCESS_START.get_or_init(Instant::now);
}

/// Marks INIT's end; call in `main` just before the runtime takes events.
pub fn mark_init_end() {
    INIT_END.get_or_init(Instant::now);
}

/// Infer: one rank on this function's CPU, measured like Lambda's REPORT line.
pub(crate) fn infer_stage(
    settings: &S3Settings,
    item: &RankItem,
) -> Result<RankMeasure, StageError> {
    let started = Instant::now();
    // A sandbox runs one invocation at a time: a download left in its /tmp is
    // an earlier invocation's that was killed (out of memory or time), and
    // would otherwise count against this one's ephemeral storage.
    let freed = cosmicai_engine::pipeline::clear_downloads();
    if freed > 0 {
        eprintln!("removed {freed} bytes of downloads a killed invocation left in /tmp");
    }
    let cold = !WARM.swap(true, Ordering::SeqCst);
    let cold_start_s = match (cold, PROCESS_START.get(), INIT_END.get()) {
        (true, Some(start), Some(end)) => end.duration_since(*start).as_secs_f64(),
        (true, Some(start), None) => start.elapsed().as_secs_f64(),
        _ => 0.0,
    };
    let deadline = item
        .entered_at
        .as_deref()
        .map(RankDeadline::after)
        .transpose()?;
    deadline.as_ref().map(RankDeadline::check).transpose()?;
    let store = settings
        .connect(&item.bucket)
        .map_err(StageError::invalid)?;
    let payload = its_payload(&store, &item.result_path, &item.run_id)?;
    // Initialize checked the data bucket against the template's InputBucket.
    let input_bucket = std::env::var("COSMICAI_INPUT_BUCKET").ok();
    let data_store = data_store(settings, &payload.request, input_bucket.as_deref())?;
    let stores = stores(&store, data_store.as_ref());
    if payload.request.device == Device::Cuda && !cfg!(feature = "cuda") {
        return Err(StageError::invalid(
            "device cuda: Lambda has no GPU; CUDA runs go to the AWS Batch queue of the template",
        ));
    }
    let mut first_batch_s = None;
    let usage_before = cpu_seconds();
    let placement = Placement::of(&payload.request).map_err(StageError::invalid)?;
    let computed = match placement {
        // Loaded once per container: warm invocations reuse it.
        Placement::Cpu(precision) => {
            let spec = payload.request.model_spec().map_err(StageError::invalid)?;
            cached_cpu_model(settings, &store, &spec, precision).and_then(|model| {
                run_rank::<Cpu>(
                    stores,
                    &payload,
                    item.rank,
                    &model,
                    (started, deadline.as_ref()),
                    &mut first_batch_s,
                )
            })
        }
        // An AWS Batch job: one rank, its model loaded for it.
        #[cfg(feature = "cuda")]
        _ => placement.run(GpuRank {
            settings,
            store: &store,
            stores,
            payload: &payload,
            rank: item.rank,
            started,
            first_batch_s: &mut first_batch_s,
        }),
    };
    let result = match computed {
        Ok(result) => result,
        Err(e) => {
            // Stopped for time (never retried): its measure says why, and what
            // its Lambda call was billed; Summarize reads it once the Map item
            // has failed. Best effort: the error is what matters.
            // Only well before the task's timeout (a batch that ran on past it has
            // been given up on: Summarize may have read), and only where no
            // attempt left its measures (a retried call still running must not
            // overwrite a later attempt's success).
            let in_time = deadline.is_some_and(|d| d.used_s() < RANK_STOP_S + 5.0);
            if let Some(stopped) =
                stopped_measure(item, &e, started.elapsed().as_secs_f64(), cold_start_s)
                    .filter(|_| in_time)
            {
                let stopped = RankMeasure {
                    cpu_time_s: cpu_seconds() - usage_before,
                    peak_rss_mb: cosmicai_engine::system::peak_rss_mb(),
                    ..stopped
                };
                let key = measures_key(&item.result_path, item.rank);
                match earlier_failure(&store, &key, item) {
                    // A resumed rank stopped again: both attempts billed.
                    Some(earlier) => {
                        if let Ok(json) = serde_json::to_vec_pretty(&stopped.after(Some(&earlier)))
                        {
                            let _ = store.put(&key, &json);
                        }
                    }
                    None => {
                        if let Ok(json) = serde_json::to_vec_pretty(&stopped) {
                            let _ = store.put_if_absent(&key, &json);
                        }
                    }
                }
            }
            return Err(e);
        }
    };
    let duration_s = started.elapsed().as_secs_f64();
    let measure = RankMeasure {
        rank: item.rank,
        run_id: item.run_id.clone(),
        attempts: 1,
        duration_s,
        // Lambda bills the INIT before a cold call too (this custom runtime's
        // always; every on-demand function's since August 2025): for AstroMAE,
        // its weights read from S3 and built.
        billed_duration_ms: billed_ms(duration_s + cold_start_s),
        init_duration_s: cold_start_s + result.1,
        first_batch_s: cold_start_s + first_batch_s.unwrap_or(duration_s),
        cpu_time_s: cpu_seconds() - usage_before,
        peak_rss_mb: cosmicai_engine::system::peak_rss_mb(),
        objects: result.0.objects,
        samples_per_s: result.0.objects as f64 / duration_s.max(1e-9),
        bits_per_s: result.0.throughput_bps,
        error: None,
    };
    let key = measures_key(&item.result_path, item.rank);
    // A rank of a resumed run that failed for good before (stopped for time)
    // left its measures: its attempts are billed with this one.
    let measure = measure.after(earlier_failure(&store, &key, item).as_ref());
    let json =
        serde_json::to_vec_pretty(&measure).map_err(|e| StageError::failed(e.to_string()))?;
    store
        .put(&key, &json)
        .map_err(|e| StageError::failed(format!("{key}: {e}")))?;
    Ok(measure)
}

/// The measures an earlier attempt of `item`'s rank left at `key` where it
/// failed for good (a resumed run's rank stopped for time before): its
/// attempts and billed time go with this attempt's.
fn earlier_failure(store: &dyn ObjectStore, key: &str, item: &RankItem) -> Option<RankMeasure> {
    store
        .get(key)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<RankMeasure>(&bytes).ok())
        .filter(|m| m.rank == item.rank && m.is_of_run(&item.run_id) && m.error.is_some())
}

/// The measure a rank that failed with `e` after `duration_s` leaves: only one
/// stopped for time (never retried, so its measure is its last), with its error
/// and what its call was billed (its INIT, `init_s`, too). Other failures are
/// retried, or are the run's.
fn stopped_measure(
    item: &RankItem,
    e: &StageError,
    duration_s: f64,
    init_s: f64,
) -> Option<RankMeasure> {
    (e.kind == StageError::OUT_OF_TIME).then(|| RankMeasure {
        rank: item.rank,
        run_id: item.run_id.clone(),
        attempts: 1,
        duration_s,
        billed_duration_ms: billed_ms(duration_s + init_s),
        init_duration_s: init_s,
        error: Some(e.message.clone()),
        ..Default::default()
    })
}

/// One rank on the GPU; the model is loaded per invocation (a Batch job runs
/// one rank), on the backend its placement names.
#[cfg(feature = "cuda")]
struct GpuRank<'a> {
    settings: &'a S3Settings,
    /// The run's own bucket, where its weights are named from.
    store: &'a S3Store,
    stores: Stores<'a>,
    payload: &'a Payload,
    rank: usize,
    started: Instant,
    first_batch_s: &'a mut Option<f64>,
}

#[cfg(feature = "cuda")]
impl OnBackend for GpuRank<'_> {
    type Output = Result<(cosmicai_shared::run::RankResult, f64), StageError>;
    fn on<B: burn::prelude::Backend>(self, placement: Placement) -> Self::Output
    where
        cosmicai_model::astromae::AstroMae<B>: Sync,
    {
        let request = &self.payload.request;
        let spec = request.model_spec().map_err(StageError::invalid)?;
        let model = load_model::<B>(
            self.settings,
            self.store,
            &spec,
            &Default::default(),
            placement.fused(),
        )?;
        let model = placement.finish(model).map_err(StageError::failed)?;
        // A Batch job has no Express execution to outlive: no deadline.
        let (started, first) = (self.started, self.first_batch_s);
        run_rank(
            self.stores,
            self.payload,
            self.rank,
            &model,
            (started, None),
            first,
        )
    }
}

/// Runs the rank with `model` (ready now) on backend `B`, stopping between batches
/// at `deadline`; also returns when the model was ready, since the invocation started.
fn run_rank<B: burn::prelude::Backend>(
    stores: Stores,
    payload: &Payload,
    rank: usize,
    model: &RedshiftModel<B>,
    (started, deadline): (Instant, Option<&RankDeadline>),
    first_batch_s: &mut Option<f64>,
) -> Result<(cosmicai_shared::run::RankResult, f64), StageError>
where
    cosmicai_model::astromae::AstroMae<B>: Sync,
{
    let ready_s = started.elapsed().as_secs_f64();
    let device = B::Device::default();
    let mut late = None;
    let result = infer_rank::<B>(
        stores,
        payload,
        rank,
        model,
        &device,
        cosmicai_engine::system::system_info(),
        |event| {
            if let RankEvent::Objects(_) = event {
                first_batch_s.get_or_insert_with(|| started.elapsed().as_secs_f64());
            }
            match deadline.map(RankDeadline::check) {
                Some(Err(e)) => {
                    let message = e.message.clone();
                    late = Some(e);
                    Err(PipelineError::Other(message))
                }
                _ => Ok(()),
            }
        },
    );
    match (result, late) {
        (Ok(result), _) => Ok((result, ready_s)),
        (Err(_), Some(late)) => Err(late),
        (Err(e), None) => Err(e.into()),
    }
}

/// User plus system CPU time of this process.
pub(crate) fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return 0.0;
        }
        usage.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(usage.ru_utime) + s(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_stopped_for_time_leaves_its_error_and_bill() {
        let item = RankItem {
            run_id: "r".into(),
            bucket: "b".into(),
            result_path: "results/r".into(),
            rank: 4,
            device: Device::Cpu,
            entered_at: None,
        };
        let late = StageError::out_of_time("the rank stopped 281 s after its Infer state began");
        let m = stopped_measure(&item, &late, 279.5, 0.0).unwrap();
        assert_eq!(
            (m.rank, m.run_id.as_str(), m.billed_duration_ms),
            (4, "r", 279_500)
        );
        assert!(m.error.unwrap().contains("281 s"));
        // A cold call is billed its INIT too.
        let cold = stopped_measure(&item, &late, 279.5, 1.25).unwrap();
        assert_eq!(cold.billed_duration_ms, 280_750);
        // A retried failure leaves nothing: a later attempt may still succeed.
        assert!(stopped_measure(&item, &StageError::failed("S3 timed out"), 3.0, 0.0).is_none());
    }
}
