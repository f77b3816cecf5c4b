//! Sweeps from the API: the same run over several world sizes and devices, one
//! after another on a thread, each recorded like any run. A sweep is kept in
//! memory while this server holds it, and in the registry as it goes, so it is
//! found again after a restart.

use super::error::Error;
use super::guard::Slot;
use super::runs::request_of;
use crate::coordinator::{check_device, concurrency_and_threads, sweep};
use cosmicai_shared::api::{RunLaunch, SweepInfo, SweepLaunch, Target};
use cosmicai_shared::run::Device;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Most world sizes a sweep takes, and the largest of them (the API's
/// document states both).
pub const MAX_SWEEP_RUNS: usize = 8;
pub const MAX_SWEEP_WORLD_SIZE: usize = 64;

/// A sweep's lists, checked before any of its runs is.
pub fn check_shape(launch: &SweepLaunch) -> Result<(), String> {
    let n = launch.world_sizes.len();
    if !(1..=MAX_SWEEP_RUNS).contains(&n) {
        return Err(format!(
            "world_sizes: give 1 to {MAX_SWEEP_RUNS} world sizes, not {n}"
        ));
    }
    if let Some(w) = launch
        .world_sizes
        .iter()
        .find(|w| !(1..=MAX_SWEEP_WORLD_SIZE).contains(*w))
    {
        return Err(format!(
            "world_sizes: {w} is outside 1 to {MAX_SWEEP_WORLD_SIZE}"
        ));
    }
    if launch.devices.len() > 2 {
        return Err("devices: give cpu, cuda or both".into());
    }
    Ok(())
}

/// Sweeps kept in memory before finished ones are dropped.
const KEPT: usize = 64;

#[derive(Default)]
pub struct Sweeps {
    all: Mutex<HashMap<String, Arc<LiveSweep>>>,
}

struct LiveSweep {
    info: Mutex<SweepInfo>,
    cancel: Arc<AtomicBool>,
    /// What its runs read: kept from eviction between one run and the next.
    data_prefix: String,
}

impl LiveSweep {
    fn info(&self) -> SweepInfo {
        self.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Why a sweep could not be cancelled.
pub enum CancelError {
    Unknown,
    Over,
}

impl Sweeps {
    /// The data prefixes of the sweeps still running: a selection one reads
    /// must outlive the gaps between its runs, when no run of it is running.
    pub fn running_data_prefixes(&self) -> Vec<String> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.values()
            .filter(|s| s.info().state == "running")
            .map(|s| s.data_prefix.clone())
            .collect()
    }

    /// The sweeps held here and those `stored` in the registry (the newest
    /// [`KEPT`] of each), newest first: ids carry their start's time. A sweep
    /// held here is as it stands now, its stored row a step behind.
    pub fn list(&self, stored: Vec<SweepInfo>) -> Vec<SweepInfo> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<SweepInfo> = all.values().map(|s| s.info()).collect();
        list.extend(stored.into_iter().filter(|s| !all.contains_key(&s.id)));
        list.sort_by(|a, b| b.id.cmp(&a.id));
        list.truncate(KEPT.max(all.len()));
        list
    }

    /// Sweep `id` as held here (the API asks the registry for one that is not).
    pub fn get(&self, id: &str) -> Option<SweepInfo> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.get(id).map(|s| s.info())
    }

    /// Stops sweep `id`: its running run is cancelled, and no more start.
    pub fn cancel(&self, id: &str) -> Result<(), CancelError> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let sweep = all.get(id).ok_or(CancelError::Unknown)?;
        let info = sweep.info.lock().unwrap_or_else(|e| e.into_inner());
        if info.state != "running" {
            return Err(CancelError::Over);
        }
        sweep.cancel.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Checks every run of the sweep first, then starts it as sweep `id` of
    /// `state`'s sweeps, holding `slot` and the memory of its widest run until
    /// it ends; or says what is wrong.
    pub fn start(
        state: &super::AppState,
        launch: &SweepLaunch,
        id: &str,
        slot: Slot,
    ) -> Result<(), Error> {
        let (data_dir, models, runs, budget) =
            (&state.data_dir, &state.models, &state.runs, &state.memory);
        let invalid = |e: String| Error(axum::http::StatusCode::UNPROCESSABLE_ENTITY, e);
        check_shape(launch).map_err(invalid)?;
        let devices = if launch.devices.is_empty() {
            vec![Device::Cpu]
        } else {
            launch.devices.clone()
        };
        let id = id.to_string();
        let mut plan = Vec::new();
        for &device in &devices {
            check_device(device).map_err(|e| invalid(format!("{e:#}")))?;
            for &world_size in &launch.world_sizes {
                let run = RunLaunch {
                    target: Target::Local,
                    data_prefix: launch.data_prefix.clone(),
                    file_limit: launch.file_limit,
                    world_size,
                    batch_size: launch.batch_size,
                    device,
                    precision: Default::default(),
                    memory_mb: launch.memory_mb,
                    retries: 0,
                    model: launch.model.clone(),
                    timeout_s: None,
                    s3_data: None,
                };
                plan.push(request_of(data_dir, models, &run, &id).map_err(invalid)?);
            }
        }
        // Each run measures its world size, so the widest must fit whole. The
        // runs differ only in world size and device: their files are one plan's.
        let files = crate::coordinator::planned_files(data_dir, &plan[0]);
        let widest = plan
            .iter()
            .map(|r| {
                let working = crate::coordinator::working_ranks(r.world_size, files);
                concurrency_and_threads(None, working).0.min(working.max(1))
            })
            .max()
            .unwrap_or(1);
        let memory = budget.reserve(plan[0].memory_mb, widest, widest)?;
        let live = Arc::new(LiveSweep {
            info: Mutex::new(SweepInfo {
                id: id.clone(),
                state: "running".into(),
                planned: plan.len(),
                rows: Vec::new(),
                error: None,
                running: None,
            }),
            cancel: Arc::default(),
            data_prefix: plan[0].data_prefix.clone(),
        });
        {
            let mut all = state.sweeps.all.lock().unwrap_or_else(|e| e.into_inner());
            if all.len() >= KEPT {
                all.retain(|_, s| s.info().state == "running");
            }
            all.insert(id.clone(), live.clone());
        }
        let root = data_dir.to_path_buf();
        let mut follow = runs.follow_sweep(&id);
        let shown = live.clone();
        let on_event = move |run: &str, event: &cosmicai_shared::api::RunEvent| {
            use cosmicai_shared::api::RunEvent::{Error, Finished};
            let over = matches!(event, Finished { .. } | Error { .. });
            // Followed first: a run the sweep names as running is one this
            // server can be asked about (its cancel answers 409, not 404).
            follow(run, event);
            shown.info.lock().unwrap_or_else(|e| e.into_inner()).running =
                (!over).then(|| run.to_string());
        };
        // Kept before its id is given out: a restart right after still finds it.
        let stored = Stored::open(&root);
        stored.save(&live.info());
        std::thread::spawn(move || {
            // A panic is the sweep's error, as for a run: it still ends, and
            // its selection can go.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sweep(&root, &plan, live.cancel.clone(), on_event, |row| {
                    let info = {
                        let mut info = live.info.lock().unwrap_or_else(|e| e.into_inner());
                        info.rows.push(row.clone());
                        info.clone()
                    };
                    stored.save(&info);
                })
            }))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the sweep panicked")));
            drop(memory);
            drop(slot);
            // Decided under the lock `cancel` takes: a cancel answered 202
            // always ends the sweep `cancelled`.
            let mut info = live.info.lock().unwrap_or_else(|e| e.into_inner());
            let cancelled = live.cancel.load(Ordering::Relaxed);
            match outcome {
                // Whatever the sweep returned: a cancel can stop it with an
                // error (a CAI conversion stops so), and is still a cancel.
                _ if cancelled => info.state = "cancelled".into(),
                Ok(_) => info.state = "finished".into(),
                Err(e) => {
                    info.state = "failed".into();
                    info.error = Some(super::error::redact(&format!("{e:#}")));
                }
            }
            info.running = None;
            stored.save(&info);
        });
        Ok(())
    }
}

/// The sweep's row in the registry. The sweep goes on where the registry
/// cannot be written (it is then forgotten at a restart, as before rows were
/// kept), and says so on the server's log.
struct Stored(Option<crate::registry::Registry>);

impl Stored {
    fn open(root: &Path) -> Self {
        let path = crate::registry::path(root);
        match crate::registry::Registry::open(&path) {
            Ok(registry) => Stored(Some(registry)),
            Err(e) => {
                crate::say!("warning: sweeps are not kept past a restart: {e:#}");
                Stored(None)
            }
        }
    }

    fn save(&self, info: &SweepInfo) {
        if let Some(registry) = &self.0
            && let Err(e) = registry.save_sweep(info)
        {
            crate::say!(
                "warning: sweep {} is not kept past a restart: {e:#}",
                info.id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(state: &str, data_prefix: &str) -> Arc<LiveSweep> {
        Arc::new(LiveSweep {
            info: Mutex::new(SweepInfo {
                id: "sweep-x".into(),
                state: state.into(),
                planned: 2,
                rows: Vec::new(),
                error: None,
                running: None,
            }),
            cancel: Arc::default(),
            data_prefix: data_prefix.into(),
        })
    }

    #[test]
    fn only_running_sweeps_hold_their_data() {
        let sweeps = Sweeps::default();
        {
            let mut all = sweeps.all.lock().unwrap();
            all.insert("a".into(), live("running", "selections/sel-a"));
            all.insert("b".into(), live("finished", "selections/sel-b"));
            all.insert("c".into(), live("cancelled", "selections/sel-c"));
        }
        assert_eq!(
            sweeps.running_data_prefixes(),
            vec!["selections/sel-a".to_string()]
        );
    }

    /// The document's bounds on a sweep's lists are the ones `check_shape`
    /// enforces: at each bound, and one step past it.
    #[test]
    fn the_documents_bounds_for_a_sweep_are_the_ones_enforced() {
        let doc: serde_json::Value = serde_json::from_str(&crate::server::openapi_json()).unwrap();
        let fields = &doc["components"]["schemas"]["SweepLaunch"]["properties"];
        let n = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
        let sweep = |world_sizes: Vec<usize>, devices: usize| SweepLaunch {
            world_sizes,
            devices: [Device::Cpu, Device::Cuda, Device::Cpu][..devices].to_vec(),
            batch_size: 8,
            data_prefix: None,
            file_limit: None,
            memory_mb: None,
            model: None,
        };
        let sizes = &fields["world_sizes"];
        let (fewest, most) = (n(&sizes["minItems"]), n(&sizes["maxItems"]));
        let (least, largest) = (n(&sizes["items"]["minimum"]), n(&sizes["items"]["maximum"]));
        let devices = n(&fields["devices"]["maxItems"]);
        assert!(check_shape(&sweep(vec![least; fewest], devices)).is_ok());
        assert!(check_shape(&sweep(vec![largest; most], 0)).is_ok());
        for (past, what) in [
            (sweep(vec![1; fewest - 1], 0), "world_sizes"),
            (sweep(vec![1; most + 1], 0), "world_sizes"),
            (sweep(vec![least - 1], 0), "outside"),
            (sweep(vec![largest + 1], 0), "outside"),
            (sweep(vec![1], devices + 1), "devices"),
        ] {
            let e = check_shape(&past).unwrap_err();
            assert!(e.contains(what), "{past:?}: {e}");
        }
    }
}
