//! Watching a local run that another process coordinates (`cosmicai runs
//! --follow ID` from a second terminal, beside the CLI or the server that runs
//! it): its ranks as its registry rows record them, then its summary. Nothing
//! is claimed: the run stays its coordinator's, and ending the watch leaves it
//! running.

use crate::registry::{Registry, ended_summary, open_run};
use anyhow::{Result, bail};
use cosmicai_engine::pipeline::RunSummary;
use cosmicai_shared::run::RunStatus;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;
use std::time::Duration;

/// How often the registry is read again.
const POLL: Duration = Duration::from_millis(500);

/// Watches local run `run_id` of the registry under `root` until it ends (at
/// once where it has), with a bar on the terminal unless `quiet`; its summary,
/// or why it has none.
pub fn watch(root: &Path, run_id: &str, quiet: bool) -> Result<RunSummary> {
    let (_, run, mut info) = open_run(root, run_id)?;
    if run.aws.is_some() {
        bail!("run {run_id} runs on AWS: it is followed, not watched");
    }
    let bar = ProgressBar::with_draw_target(
        Some(info.world_size as u64),
        if quiet || info.status != RunStatus::Running {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "run {prefix} [{bar:30.green/blue}] {pos}/{len} ranks ended {elapsed} {msg}",
        )?
        .progress_chars("=> "),
    );
    bar.set_prefix(run_id.to_string());
    while info.status == RunStatus::Running {
        // Opened anew each time: an opening marks a run whose coordinator has
        // died interrupted, which this watch would otherwise wait on for ever.
        let registry = Registry::in_folder(root)?;
        let progress = registry.rank_progress(run_id)?;
        bar.set_position((progress.succeeded + progress.failed) as u64);
        bar.set_message(format!(
            "{} running, {} failed, {} objects",
            progress.running, progress.failed, progress.objects
        ));
        info = match registry.info(run_id)? {
            Some(info) => info,
            None => bail!("run {run_id}: its row left the registry"),
        };
        if info.status == RunStatus::Running {
            drop(registry);
            std::thread::sleep(POLL);
        }
    }
    bar.finish_and_clear();
    match ended_summary(root, run_id, &info.result_path) {
        // A summary of the run's last end (an earlier one is replaced by a resume).
        Some(summary) if info.status != RunStatus::Interrupted => Ok(summary),
        _ => bail!(
            "run {run_id} ended {} without a summary{}",
            info.status.name(),
            info.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
    }
}
