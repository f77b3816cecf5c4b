//! A run's duration and cost before it starts: its plan priced at this machine's
//! calibrated rate.

use anyhow::{Result, bail};
use cosmicai_engine::pipeline::{Estimate, plan};
use cosmicai_engine::predict::Cutouts;
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::run::RunRequest;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// This machine's measured rates, by model, precision, threads per worker and
/// batch size:
/// an AstroMAE run is about a hundred times slower an object than PhotoZ, and a
/// rate measured at one world size's threads is not another's. A server keeps
/// them; the CLI measures afresh.
#[derive(Default)]
pub struct Rates(Mutex<HashMap<String, (f64, f64)>>);

/// What `request` would take on the data directory `root` with `concurrency`
/// ranks at once, at this machine's rate for its model (measured once, kept in
/// `rates`). Plan errors come back as
/// [`cosmicai_engine::pipeline::PipelineError`]s (the request's fault).
pub fn estimate(
    root: &Path,
    request: &RunRequest,
    concurrency: Option<usize>,
    rates: &Rates,
) -> Result<Estimate> {
    // Calibrated on this machine: a CUDA run it cannot start has no estimate here.
    if request.device == cosmicai_shared::run::Device::Cuda
        && let Some(why) = cosmicai_engine::system::cuda_unavailable()
    {
        return Err(
            cosmicai_engine::pipeline::PipelineError::Invalid(vec![format!("device cuda: {why}")])
                .into(),
        );
    }
    let store = LocalStore::new(root);
    let payload = plan(&store, request, "estimate")?;
    // Threads are shared among the ranks that start a worker, as in the run.
    let working = (0..payload.ranks.len())
        .filter(|&rank| payload.reads_files(rank))
        .count();
    let (concurrency, threads) = super::concurrency_and_threads(concurrency, working);
    let key = format!(
        "{}|{}|{threads}|{}",
        request.model,
        request.precision.name(),
        calibration_batch(request)
    );
    // Held while measuring: concurrent first callers wait for one measurement
    // instead of each running their own on the same cores.
    let mut known = rates.0.lock().unwrap_or_else(|e| e.into_inner());
    // A failed calibration is an error, not an estimate from made-up rates.
    let (rate, cold) = match known.get(&key) {
        Some(c) => *c,
        None => {
            let measured = measure_rate(request, threads)?;
            *known.entry(key).or_insert(measured)
        }
    };
    drop(known);
    Ok(cosmicai_engine::pipeline::estimate(
        &store,
        &payload,
        rate,
        cold,
        concurrency,
        threads,
    )?)
}

/// The batch size a calibration runs (the request's, up to 512): a rate at
/// batch 1 is not one at 512.
fn calibration_batch(request: &RunRequest) -> usize {
    request.batch_size.clamp(1, 512)
}

/// Objects the calibration infers at most, and the time it stops after.
const CALIBRATION_OBJECTS: usize = 16_384;
const CALIBRATION_S: f64 = 2.0;

/// This machine's rate for one worker (its share of the cores) running
/// `request`'s model, and a worker's cold start (starting the program and
/// loading the model).
fn measure_rate(request: &RunRequest, threads: usize) -> Result<(f64, f64)> {
    let start = Instant::now();
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("calibration: cannot start cosmicai");
    }
    let device = Default::default();
    let spec = request.model_spec().map_err(anyhow::Error::msg)?;
    let model = RedshiftModel::<crate::models::Cpu>::load(&spec, &device, true)
        .and_then(|m| m.in_precision(request.precision, true))
        .map_err(|e| anyhow::anyhow!("calibration: model '{spec}': {e}"))?;
    let cold_start_s = start.elapsed().as_secs_f64();
    let batch = calibration_batch(request);
    let magnitudes: Vec<[f32; 5]> = (0..batch)
        .map(|i| {
            let x = (i % 97) as f32 / 97.0;
            [19.0 + x, 18.0 + x, 17.5 + x, 17.2 + x, 17.0 + x]
        })
        .collect();
    // The crop AstroMAE reads, for a model that looks at pixels.
    let side = cosmicai_model::crop::CROP;
    let pixels: Vec<f32> = (0..batch * 5 * side * side)
        .map(|i| ((i % 89) as f32 / 89.0) * 0.1)
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let rate = pool.install(|| -> Result<f64> {
        let start = Instant::now();
        let mut done = 0;
        // Whole batches, until enough objects or time have passed.
        while done < CALIBRATION_OBJECTS
            && (done == 0 || start.elapsed().as_secs_f64() < CALIBRATION_S)
        {
            let cutouts = model.reads_cutouts().then_some(Cutouts {
                pixels: &pixels,
                height: side,
                width: side,
            });
            model
                .predict(&magnitudes, cutouts, batch, &device)
                .map_err(|e| anyhow::anyhow!("calibration: {e}"))?;
            done += batch;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    })?;
    Ok((rate, cold_start_s))
}
