//! A sweep: the same run over several world sizes and devices, one after another,
//! each recorded like any run. The CLI's `sweep` and the API's sweeps both use it.

use super::{Executor, RunControl, execute, new_run_id};
use anyhow::Result;
use cosmicai_shared::api::{RunEvent, SweepRow};
use cosmicai_shared::run::RunRequest;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs each request in turn (each gets its own run id and result path) and hands
/// `on_row` its row as it finishes; stops at the first run that cannot go on.
/// `on_event` sees each run's events under its id, ending with its `Finished` or
/// `Error` (the server streams them to the run's page, as for any run).
/// Setting `cancel` stops the running run and starts no more.
pub fn sweep(
    root: &Path,
    requests: &[RunRequest],
    cancel: Arc<AtomicBool>,
    mut on_event: impl FnMut(&str, &RunEvent),
    mut on_row: impl FnMut(&SweepRow),
) -> Result<Vec<SweepRow>> {
    let mut rows = Vec::with_capacity(requests.len());
    for request in requests {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let run_id = new_run_id();
        let request = RunRequest {
            result_path: format!("results/{run_id}"),
            ..request.clone()
        };
        let control = RunControl {
            quiet: true,
            cancel: cancel.clone(),
        };
        let local = Executor::Local { concurrency: None };
        // A panic is this run's error (its page and row end with it), not the
        // sweep's alone.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            execute(root, &request, &run_id, &local, control, &mut |e| {
                on_event(&run_id, e)
            })
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("run {run_id} panicked")));
        on_event(&run_id, &super::last_event(&outcome));
        // An error's row is closed already: by the coordinator, or, after a
        // panic, by its Recorder's drop (interrupted).
        let s = outcome?;
        let row = SweepRow {
            world_size: request.world_size,
            device: request.device,
            run_id,
            status: s.status,
            objects: s.objects,
            duration_s: s.duration_s,
            samples_per_s: s.samples_per_s,
            cost_usd: s.cost_usd,
        };
        on_row(&row);
        rows.push(row);
    }
    Ok(rows)
}
