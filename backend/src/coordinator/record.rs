//! What a run leaves behind as it goes: registry rows, bars on the terminal and
//! the events the API streams, all from the same rank events.

use crate::registry::Registry;
use anyhow::Result;
use cosmicai_engine::pipeline::RunSummary;
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::RunRequest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// How a run is driven: by the CLI (bars on the terminal) or the API (quiet,
/// events to the browser, cancellable).
#[derive(Default)]
pub struct RunControl {
    pub quiet: bool,
    pub cancel: Arc<AtomicBool>,
}

/// Above this many ranks the terminal shows the overall bar only.
const RANK_BARS_UP_TO: usize = 32;

pub struct Recorder<'a> {
    registry: Registry,
    run_id: String,
    pub cancel: Arc<AtomicBool>,
    bars: MultiProgress,
    overall: ProgressBar,
    ranks: Vec<ProgressBar>,
    observe: &'a mut dyn FnMut(&RunEvent),
    /// Objects each rank has done so far, and their sum: what the overall bar
    /// says where there are too many ranks for a bar each.
    objects: Vec<usize>,
    objects_total: usize,
    /// Whether [`Recorder::end`] closed the run's row.
    ended: bool,
}

impl<'a> Recorder<'a> {
    /// A recorder for run `run_id`, which this process has just claimed in
    /// `registry` (to follow or resume it): where none can be made, the row
    /// is left interrupted, not running under a process that will not run it.
    pub fn for_claimed(
        registry: Registry,
        root: &Path,
        run_id: &str,
        world_size: usize,
        control: RunControl,
        observe: &'a mut dyn FnMut(&RunEvent),
    ) -> Result<Self> {
        Self::new(root, run_id, world_size, control, observe).inspect_err(|e| {
            let _ = registry.interrupt(run_id, &format!("{e:#}"));
        })
    }

    pub fn new(
        root: &Path,
        run_id: &str,
        world_size: usize,
        control: RunControl,
        observe: &'a mut dyn FnMut(&RunEvent),
    ) -> Result<Self> {
        let registry = Registry::in_folder(root)?;
        let bars = if control.quiet {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        } else {
            MultiProgress::new()
        };
        let overall = bars.add(ProgressBar::new(world_size as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "run {prefix} [{bar:30.green/blue}] {pos}/{len} ranks {elapsed} {msg}",
            )?
            .progress_chars("=> "),
        );
        overall.set_prefix(run_id.to_string());
        // Its clock moves while no rank ends (a rank of minutes, hundreds of them).
        overall.enable_steady_tick(std::time::Duration::from_millis(500));
        let rank_style = ProgressStyle::with_template("  rank {prefix:>3} {spinner} {msg}")?;
        let ranks = (0..world_size)
            .take_while(|_| world_size <= RANK_BARS_UP_TO)
            .map(|r| {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(rank_style.clone());
                bar.set_prefix(r.to_string());
                bar
            })
            .collect();
        Ok(Recorder {
            registry,
            run_id: run_id.to_string(),
            cancel: control.cancel,
            bars,
            overall,
            ranks,
            observe,
            objects: vec![0; world_size],
            objects_total: 0,
            ended: false,
        })
    }

    /// The run's row, once its ranks are planned (`request` as the ranks see it,
    /// `ranks` the files of each).
    pub fn start(&self, request: &RunRequest, ranks: &[Vec<String>]) -> Result<()> {
        for (bar, files) in self.ranks.iter().zip(ranks) {
            bar.set_message(format!("queued ({} files)", files.len()));
        }
        self.registry.start(&self.run_id, request)?;
        if !ranks.is_empty() {
            self.registry.set_planned(&self.run_id)?;
        }
        Ok(())
    }

    /// When the run started, where that was before this process took it in
    /// (seconds since the Unix epoch).
    pub fn set_created_at(&self, secs: i64) -> Result<()> {
        self.registry.set_created_at(&self.run_id, secs)
    }

    /// Where the run executes on AWS, kept so it can be followed again.
    pub fn record_aws(&self, aws: &crate::registry::AwsExecution) -> Result<()> {
        self.registry.set_aws(&self.run_id, aws)
    }

    /// Whether the run shows no progress bars (quiet: a server's run, `--json`).
    pub fn is_quiet(&self) -> bool {
        self.bars.is_hidden()
    }

    /// A bar above the run's own for work before its ranks start (`n` files),
    /// hidden where the run is quiet.
    pub fn files_bar(&self, n: usize, label: &str) -> ProgressBar {
        let bar = self.bars.insert(0, ProgressBar::new(n as u64));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30.cyan/blue}] {pos}/{len} files {elapsed} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        bar
    }

    /// A line above the bars (or on stderr when they are hidden).
    pub fn println(&self, line: &str) {
        if self.bars.is_hidden() {
            crate::say!("{line}");
        } else {
            let _ = self.bars.println(line);
        }
    }

    /// What the overall bar says after its counts (the AWS Map's state, say).
    pub fn status(&self, message: String) {
        self.overall.set_message(message);
    }

    pub fn event(&mut self, event: &RunEvent) {
        (self.observe)(event);
        let bar = |rank: usize| self.ranks.get(rank);
        let recorded = match event {
            RunEvent::RankStarted { rank, attempt } => {
                if let Some(b) = bar(*rank) {
                    b.set_message(format!("starting (attempt {attempt})"));
                    b.enable_steady_tick(std::time::Duration::from_millis(120));
                }
                self.registry
                    .rank_update(&self.run_id, *rank, "running", None, *attempt, None)
            }
            RunEvent::RankReady { rank } => {
                bar(*rank).inspect(|b| b.set_message("model ready"));
                Ok(())
            }
            RunEvent::RankObjects { rank, objects } => {
                bar(*rank).inspect(|b| b.set_message(format!("{objects} objects")));
                if let Some(seen) = self.objects.get_mut(*rank) {
                    self.objects_total = self.objects_total - *seen + objects;
                    *seen = *objects;
                    if self.ranks.is_empty() {
                        let total = self.objects_total;
                        self.overall.set_message(format!("{total} objects so far"));
                    }
                }
                Ok(())
            }
            RunEvent::RankFinished { measure: m } => {
                bar(m.rank).inspect(|b| {
                    b.finish_with_message(format!(
                        "done: {} objects in {:.2} s, {:.0} MB",
                        m.objects, m.duration_s, m.peak_rss_mb
                    ))
                });
                self.overall.inc(1);
                self.registry.rank_update(
                    &self.run_id,
                    m.rank,
                    "succeeded",
                    Some(m),
                    m.attempts,
                    None,
                )
            }
            RunEvent::RankFailed {
                rank,
                attempt,
                error,
                retrying,
            } => {
                let what = if *retrying { "retrying" } else { "failed" };
                bar(*rank).inspect(|b| b.set_message(format!("{what}: {error}")));
                if !retrying {
                    bar(*rank).inspect(|b| b.abandon());
                    self.overall.inc(1);
                }
                self.registry
                    .rank_update(&self.run_id, *rank, what, None, *attempt, Some(error))
            }
            RunEvent::Finished { .. } | RunEvent::Error { .. } => Ok(()),
        };
        if let Err(e) = recorded {
            self.println(&format!("registry: {e:#}"));
        }
    }

    /// Several events at once, their registry rows written in one transaction.
    pub fn events(&mut self, events: &[RunEvent]) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.registry.begin() {
            self.println(&format!("registry: {e:#}"));
        }
        for event in events {
            self.event(event);
        }
        if let Err(e) = self.registry.commit() {
            self.println(&format!("registry: {e:#}"));
        }
    }

    /// Closes the run's row with its summary or its error, and clears the bars.
    pub fn end(mut self, outcome: Result<RunSummary>) -> Result<RunSummary> {
        self.ended = true;
        self.overall.finish_and_clear();
        let _ = self.bars.clear();
        match outcome {
            Ok(summary) => {
                // The run ended and its summary is on disk: a row that cannot
                // be closed now (a full disk) does not make it a failure. The
                // registry's next opening closes it from that summary.
                if let Err(e) = self.registry.finish(&summary) {
                    // Not left `running` under a live server's pid: interrupted,
                    // it is closed from its summary when the registry is next
                    // opened (an AWS run is followed again instead).
                    let why = format!("{}: {e:#}", crate::registry::UNCLOSED);
                    let _ = self.registry.interrupt(&self.run_id, &why);
                    self.println(&format!(
                        "warning: run {}: {why}; it is closed when the registry is next opened",
                        self.run_id
                    ));
                }
                Ok(summary)
            }
            // Still running on AWS, unwatched: left to be followed again.
            // A row that cannot be written says so, and the run's own error
            // is the one returned: a registry error in its place would have
            // the caller close a lost AWS run as failed, never followed again.
            Err(e) if e.is::<crate::aws::LostContact>() => {
                if let Err(r) = self.registry.interrupt(&self.run_id, &format!("{e:#}")) {
                    self.println(&format!("warning: run {}: its row: {r:#}", self.run_id));
                }
                Err(e)
            }
            Err(e) => {
                // Stopped by its user on the way (an upload, an AWS execution
                // stopped before its summary): cancelled, not failed.
                let why = crate::output::chain(&e);
                let closed = if e.is::<super::Cancelled>() {
                    self.registry.cancel(&self.run_id, &why)
                } else {
                    self.registry.fail(&self.run_id, &why)
                };
                if let Err(r) = closed {
                    self.println(&format!("warning: run {}: its row: {r:#}", self.run_id));
                }
                Err(e)
            }
        }
    }
}

impl Drop for Recorder<'_> {
    /// A recorder dropped before [`Recorder::end`] (a panic, an error on the
    /// way) leaves no row running for ever: it is interrupted, as after a
    /// restart, and an AWS run is followed again.
    fn drop(&mut self) {
        if !self.ended {
            let _ = self
                .registry
                .interrupt_if_running(&self.run_id, "its coordinator stopped before the run ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cosmicai_shared::run::RunStatus;

    #[test]
    fn a_recorder_dropped_before_the_end_leaves_no_row_running() {
        let dir = tempfile::tempdir().unwrap();
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 8, "world_size": 2, "result_path": "results/r"
        }))
        .unwrap();
        let status = |id: &str| {
            Registry::open(&dir.path().join("cosmicai.sqlite"))
                .unwrap()
                .info(id)
                .unwrap()
                .unwrap()
                .status
        };
        let control = || RunControl {
            quiet: true,
            ..Default::default()
        };
        let mut quiet = |_: &RunEvent| {};
        // Given up on the way (a panic unwinding, an error before `end`).
        let recorder = Recorder::new(dir.path(), "dropped", 2, control(), &mut quiet).unwrap();
        recorder.start(&request, &[]).unwrap();
        drop(recorder);
        assert_eq!(status("dropped"), RunStatus::Interrupted);
        // Ended: its own status, left alone by the drop.
        let mut quiet = |_: &RunEvent| {};
        let recorder = Recorder::new(dir.path(), "ended", 2, control(), &mut quiet).unwrap();
        recorder.start(&request, &[]).unwrap();
        let _ = recorder.end(Err(anyhow::anyhow!("refused")));
        assert_eq!(status("ended"), RunStatus::Failed);
        // Ended by an error after its user cancelled it (an upload stopped, an
        // AWS execution stopped before its summary): cancelled.
        let mut quiet = |_: &RunEvent| {};
        let stopping = control();
        let cancel = stopping.cancel.clone();
        let recorder = Recorder::new(dir.path(), "stopped", 2, stopping, &mut quiet).unwrap();
        recorder.start(&request, &[]).unwrap();
        cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = recorder.end(Err(
            super::super::Cancelled("stopped in its upload".into()).into()
        ));
        assert_eq!(status("stopped"), RunStatus::Cancelled);
        // A run that failed on its own while its cancel was on the way: failed.
        let mut quiet = |_: &RunEvent| {};
        let broken = control();
        broken
            .cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let recorder = Recorder::new(dir.path(), "broke", 2, broken, &mut quiet).unwrap();
        recorder.start(&request, &[]).unwrap();
        let _ = recorder.end(Err(anyhow::anyhow!("the disk is full")));
        assert_eq!(status("broke"), RunStatus::Failed);
    }
}
