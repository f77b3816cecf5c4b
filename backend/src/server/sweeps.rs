//! Sweeps from the API: the same run over several world sizes and devices, one
//! after another on a thread, each recorded like any run.

use super::models::ServedModels;
use super::runs::request_of;
use crate::coordinator::{check_device, new_run_id, sweep};
use cosmicai_shared::api::{RunLaunch, SweepInfo, SweepLaunch, Target};
use cosmicai_shared::run::Device;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Sweeps {
    all: Mutex<HashMap<String, Arc<Mutex<SweepInfo>>>>,
}

impl Sweeps {
    pub fn get(&self, id: &str) -> Option<SweepInfo> {
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.get(id)
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Checks every run of the sweep first, then starts it; its id, or what is wrong.
    pub fn start(
        &self,
        data_dir: &Path,
        models: &ServedModels,
        launch: &SweepLaunch,
    ) -> Result<String, String> {
        if launch.world_sizes.is_empty() || launch.world_sizes.len() > 8 {
            return Err(format!(
                "world_sizes: give 1 to 8 world sizes, not {}",
                launch.world_sizes.len()
            ));
        }
        if let Some(w) = launch.world_sizes.iter().find(|w| !(1..=64).contains(*w)) {
            return Err(format!("world_sizes: {w} is outside 1 to 64"));
        }
        let devices = if launch.devices.is_empty() {
            vec![Device::Cpu]
        } else {
            launch.devices.clone()
        };
        if devices.len() > 2 {
            return Err("devices: give cpu, cuda or both".into());
        }
        let id = format!("sweep-{}", new_run_id().trim_start_matches("run-"));
        let mut plan = Vec::new();
        for &device in &devices {
            check_device(device).map_err(|e| format!("{e:#}"))?;
            for &world_size in &launch.world_sizes {
                let run = RunLaunch {
                    target: Target::Local,
                    data_prefix: launch.data_prefix.clone(),
                    file_limit: launch.file_limit,
                    world_size,
                    batch_size: launch.batch_size,
                    device,
                    memory_mb: launch.memory_mb,
                    retries: 0,
                    model: launch.model.clone(),
                };
                plan.push(request_of(data_dir, models, &run, &id)?);
            }
        }
        let info = Arc::new(Mutex::new(SweepInfo {
            id: id.clone(),
            state: "running".into(),
            planned: plan.len(),
            rows: Vec::new(),
            error: None,
        }));
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), info.clone());
        let root = data_dir.to_path_buf();
        std::thread::spawn(move || {
            let outcome = sweep(&root, &plan, |row| {
                info.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .rows
                    .push(row.clone())
            });
            let mut info = info.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok(_) => info.state = "finished".into(),
                Err(e) => {
                    info.state = "failed".into();
                    info.error = Some(format!("{e:#}"));
                }
            }
        });
        Ok(id)
    }
}
