//! A run's duration and cost before it starts: its plan priced at this machine's
//! calibrated rate.

use anyhow::{Result, bail};
use cosmicai_engine::pipeline::{Estimate, plan};
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::run::RunRequest;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// What `request` would take on the data directory `root` with `concurrency`
/// ranks at once. `calibration` holds this machine's rate once measured (a
/// server keeps it; the CLI measures afresh). Plan errors come back as
/// [`cosmicai_engine::pipeline::PipelineError`]s (the request's fault).
pub fn estimate(
    root: &Path,
    request: &RunRequest,
    concurrency: Option<usize>,
    calibration: &OnceLock<(f64, f64)>,
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
    let (concurrency, threads) = super::concurrency_and_threads(concurrency, request.world_size);
    // A failed calibration is an error, not an estimate from made-up rates.
    let (rate, cold) = match calibration.get() {
        Some(c) => *c,
        None => {
            let measured = calibrate(threads)?;
            *calibration.get_or_init(|| measured)
        }
    };
    Ok(cosmicai_engine::pipeline::estimate(
        &store,
        &payload,
        rate,
        cold,
        concurrency,
    )?)
}

/// This machine's rate for one worker (its share of the cores) and a worker's cold start.
fn calibrate(threads: usize) -> Result<(f64, f64)> {
    let start = Instant::now();
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()?;
    let model = crate::models::load_photoz(None)?;
    let cold_start_s = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("calibration: cannot start cosmicai");
    }
    let magnitudes: Vec<[f32; 5]> = (0..16_384)
        .map(|i| {
            let x = (i % 97) as f32 / 97.0;
            [19.0 + x, 18.0 + x, 17.5 + x, 17.2 + x, 17.0 + x]
        })
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let rate = pool.install(|| {
        let start = Instant::now();
        let n = cosmicai_engine::predict::predict_photoz::<crate::models::Cpu>(
            &model,
            &magnitudes,
            512,
            &Default::default(),
        )
        .len();
        n as f64 / start.elapsed().as_secs_f64()
    });
    Ok((rate, cold_start_s))
}
