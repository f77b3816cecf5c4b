//! `cosmicai sweep`: the same run over several world sizes (and devices), as a CSV and a chart.

use super::run::{DeviceArg, RunArgs, request_of};
use crate::coordinator::{check_device, sweep};
use crate::plot::{SweepPoint, sweep_chart};
use anyhow::{Context, Result, bail};
use clap::Args;
use cosmicai_shared::api::SweepRow;
use cosmicai_shared::run::RunStatus;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Example:\n  \
    cosmicai sweep --data data/demo/partitions --world-sizes 1,2,4 --batch-size 512\n\n\
    Writes sweep.csv and sweep.png (duration and cost against world size, a line per device)\n\
    in --out (default DATA/sweeps/sweep-<time>).")]
pub struct SweepArgs {
    /// Directory holding the partitions, as for `cosmicai run`.
    #[arg(long)]
    pub data: PathBuf,
    /// World sizes to run, comma separated ("1,2,4" or "1, 2, 4").
    #[arg(long, value_delimiter = ',', required = true, value_parser = world_size)]
    pub world_sizes: Vec<usize>,
    /// Devices to run, comma separated (cpu, cuda).
    #[arg(long, value_delimiter = ',', value_enum, default_value = "cpu")]
    pub devices: Vec<DeviceArg>,
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    #[arg(long)]
    pub file_limit: Option<usize>,
    #[arg(long, default_value_t = 2048)]
    pub memory_mb: u32,
    /// photoz, photoz:PATH or astromae:PATH (as in `cosmicai run`).
    #[arg(long, default_value = "photoz")]
    pub model: String,
    /// Folder for sweep.csv and sweep.png (default DATA/sweeps/sweep-TIME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an earlier sweep's sweep.csv and sweep.png in --out.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object (the folder and each run's row) instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// One world size of the list, spaces around it allowed.
fn world_size(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

pub fn run(args: SweepArgs) -> Result<()> {
    if args.world_sizes.is_empty() || args.world_sizes.contains(&0) {
        bail!("--world-sizes needs world sizes of at least 1, e.g. 1,2,4");
    }
    if args.devices.iter().any(|d| matches!(d, DeviceArg::Cuda)) {
        check_device(cosmicai_shared::run::Device::Cuda)?;
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.data.join(format!("sweeps/sweep-{stamp}")));
    // An earlier sweep's table and chart are not written over unasked (checked
    // before any run, not after them all).
    let earlier = out.join("sweep.csv");
    if earlier.exists() && !args.force {
        bail!(
            "--out {}: holds an earlier sweep ({}); pass --force to replace it, or give another --out",
            out.display(),
            earlier.display()
        );
    }
    cosmicai_engine::partition::create_dir_synced(&out)
        .with_context(|| format!("creating {}", out.display()))?;
    let total = args.world_sizes.len() * args.devices.len();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("sweep [{bar:30.cyan/blue}] {pos}/{len} runs {msg}")?
            .progress_chars("=> "),
    );
    let mut requests = Vec::new();
    for &device in &args.devices {
        for &world_size in &args.world_sizes {
            let run_args = RunArgs {
                file_limit: args.file_limit,
                memory_mb: args.memory_mb,
                model: Some(args.model.clone()),
                ..RunArgs::new(args.data.clone(), world_size, args.batch_size, device)
            };
            requests.push(request_of(&run_args, "sweep")?);
        }
    }
    let cancel = std::sync::Arc::<std::sync::atomic::AtomicBool>::default();
    crate::interrupt::cancel_on_signal(cancel.clone());
    let rows = sweep(
        &args.data,
        &requests,
        cancel,
        |_, _| {},
        |row| {
            bar.set_message(format!("{} x{}", row.device.name(), row.world_size));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let mut csv =
        String::from("world_size,device,run_id,status,objects,duration_s,samples_per_s,cost_usd\n");
    for r in &rows {
        csv += &format!(
            "{},{},{},{},{},{:.6},{:.3},{:.9}\n",
            r.world_size,
            r.device.name(),
            r.run_id,
            r.status.name(),
            r.objects,
            r.duration_s,
            r.samples_per_s,
            r.cost_usd
        );
    }
    cosmicai_engine::partition::write_atomically(&out.join("sweep.csv"), csv.as_bytes())
        .with_context(|| format!("writing {}", out.join("sweep.csv").display()))?;
    // A run that did not succeed measures no world size: the CSV has it, the
    // chart leaves it out.
    let points: Vec<SweepPoint> = rows
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .map(|r| SweepPoint {
            world_size: r.world_size,
            device: r.device.name().to_string(),
            duration_s: r.duration_s,
            cost_usd: r.cost_usd,
        })
        .collect();
    // Nothing succeeded, nothing to draw: the CSV and the exit code say why.
    if !points.is_empty() {
        sweep_chart(
            &out.join("sweep.png"),
            &points,
            "CosmicAI sweep: duration and cost vs world size",
        )?;
    }
    if args.json {
        crate::output::emit(&(serde_json::json!({ "out": out, "runs": rows }).to_string() + "\n"))?;
    } else {
        let left_out = rows.len() - points.len();
        let chart = if points.is_empty() {
            " (no chart: no run succeeded)".to_string()
        } else if left_out > 0 {
            format!(
                " and {} ({left_out} runs that did not succeed are left out of it)",
                out.join("sweep.png").display()
            )
        } else {
            format!(" and {}", out.join("sweep.png").display())
        };
        crate::output::emit(&format!(
            "{csv}wrote {}{chart}\n",
            out.join("sweep.csv").display()
        ))?;
    }
    outcome(&rows, requests.len(), crate::interrupt::interrupted())
}

/// The sweep's exit: the first run that did not succeed sets it; an
/// interrupt (exit 130) between runs says how many ran and how many never
/// started.
fn outcome(rows: &[SweepRow], planned: usize, interrupted: bool) -> Result<()> {
    // A sweep prints its table, not its runs' summaries.
    let shown = |also: String| {
        Some(format!(
            "its row is in the sweep's table above, and its summary in its result_path{also}"
        ))
    };
    let never = planned.saturating_sub(rows.len());
    match rows.iter().find(|r| r.status != RunStatus::Succeeded) {
        Some(r) => Err(super::NotSucceeded {
            run_id: r.run_id.clone(),
            status: r.status,
            shown: shown(if never > 0 {
                format!("; {never} of the sweep's {planned} runs never started")
            } else {
                String::new()
            }),
        }
        .into()),
        None if interrupted && rows.is_empty() => {
            bail!("the sweep was interrupted before its first run ended")
        }
        None if interrupted && rows.len() < planned => bail!(
            "the sweep was interrupted after {} of its {planned} runs, each of which succeeded; the other {} never started",
            rows.len(),
            planned - rows.len()
        ),
        // Every run ran: the last was interrupted after its ranks had ended.
        None => match rows.last().filter(|_| interrupted) {
            Some(r) => Err(super::NotSucceeded {
                run_id: r.run_id.clone(),
                status: r.status,
                shown: shown(String::new()),
            }
            .into()),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cosmicai_shared::run::Device;

    fn row(run_id: &str, status: RunStatus) -> SweepRow {
        SweepRow {
            world_size: 1,
            device: Device::Cpu,
            run_id: run_id.into(),
            status,
            objects: 1,
            duration_s: 1.0,
            samples_per_s: 1.0,
            cost_usd: 0.0,
        }
    }

    #[test]
    fn an_interrupted_sweep_says_what_ran_and_what_never_started() {
        let ok = [
            row("a", RunStatus::Succeeded),
            row("b", RunStatus::Succeeded),
        ];
        assert!(outcome(&ok, 2, false).is_ok());
        let between = outcome(&ok, 3, true).unwrap_err().to_string();
        assert!(
            between.contains("after 2 of its 3 runs")
                && between.contains("the other 1 never started"),
            "{between}"
        );
        let last = outcome(&ok, 2, true).unwrap_err().to_string();
        assert!(
            last.contains("run b was interrupted after every rank"),
            "{last}"
        );
        let none = outcome(&[], 2, true).unwrap_err().to_string();
        assert!(none.contains("before its first run ended"), "{none}");
        let failed = [
            row("a", RunStatus::Succeeded),
            row("b", RunStatus::Cancelled),
        ];
        let cancelled = outcome(&failed, 3, true).unwrap_err().to_string();
        assert!(
            cancelled.contains("run b ended cancelled: its row is in the sweep's table above")
                && cancelled.contains("1 of the sweep's 3 runs never started"),
            "{cancelled}"
        );
        assert!(!cancelled.contains("summary above"), "{cancelled}");
    }
}
