//! The local executor: each rank is its own OS process (`cosmicai worker`), so
//! duration, CPU time and peak memory are measured per rank the way Lambda and
//! CloudWatch report them. At most `concurrency` ranks run at once (Lambda's
//! concurrency limit); a rank over `memory_mb` is killed with an out-of-memory
//! error; a failed rank is retried up to `retries` times; a rank past `timeout`
//! is stopped.
//!
//! No worker outlives its run: each is the leader of its own process group, which
//! is killed as a whole when the rank ends (so a worker's own children go too),
//! and each gets SIGKILL from the kernel when its coordinator dies, however it
//! dies (`PR_SET_PDEATHSIG`). `attempt.rs` runs one worker; this file schedules them.
//!
//! Workers talk back on stdout, one JSON object a line:
//! `{"event":"ready"}` once the model is loaded, `{"event":"objects","objects":N}`
//! after the first batch and then as they go, `{"event":"done","objects":N,"throughput_bps":B,"peak_rss_mb":M}` at the end.

mod attempt;

use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::RankMeasure;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// The error of ranks stopped by a cancel.
pub const CANCELLED: &str = "cancelled";

/// How to start a worker; the executor appends `--rank N`.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Extra environment, e.g. the worker's thread count.
    pub envs: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
pub struct ExecutorConfig {
    pub concurrency: usize,
    /// Resident memory a worker may use, in MB; past it the worker is killed.
    pub memory_mb: u32,
    pub retries: u32,
    /// Wall-clock time one attempt may take; past it the worker is killed.
    pub timeout: Option<Duration>,
}

/// A line a worker writes on stdout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum WorkerMessage {
    Ready,
    Objects {
        objects: usize,
    },
    Done {
        objects: usize,
        throughput_bps: f64,
        /// The worker's own peak RSS (`VmHWM`), read just before it ends. The
        /// kernel's `ru_maxrss` of a child includes the memory of the parent it
        /// was forked from (a server's gigabyte), so it cannot be used.
        #[serde(default)]
        peak_rss_mb: Option<f64>,
    },
}

/// When a worker stops early: the caller's cancel, or the executor's own halt
/// (a panic on the way), which must not read as the caller's cancel.
#[derive(Clone, Default)]
struct Stop {
    cancel: Arc<AtomicBool>,
    halt: Arc<AtomicBool>,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.halt.load(Ordering::Relaxed)
    }
}

enum Message {
    Event(RunEvent),
    Ended {
        rank: usize,
        attempt: u32,
        outcome: Result<RankMeasure, String>,
        /// The attempt's wall time, billed like any call (a failed one too).
        spent_s: f64,
    },
}

/// Runs ranks `0..world_size` and returns one measure per rank (with `error` set
/// for ranks that failed for good). Events arrive in order on the calling thread.
/// Events are the API's rank events ([`RunEvent::RankStarted`] to
/// [`RunEvent::RankFailed`]): one type from here to the registry, terminal and browser.
pub fn execute(
    command: &WorkerCommand,
    world_size: usize,
    config: ExecutorConfig,
    on_event: impl FnMut(&RunEvent),
) -> Vec<RankMeasure> {
    let every_rank: Vec<usize> = (0..world_size).collect();
    execute_cancellable(
        command,
        world_size,
        &every_rank,
        config,
        Arc::default(),
        on_event,
    )
}

/// [`execute`], stopped early when `cancel` is set: running workers are killed and
/// queued ranks never start; both end with the error `cancelled`.
///
/// Only the ranks in `ranks` start a worker (a plan of more ranks than files
/// leaves ranks with nothing to read); the others keep an empty measure.
pub fn execute_cancellable(
    command: &WorkerCommand,
    world_size: usize,
    ranks: &[usize],
    config: ExecutorConfig,
    cancel: Arc<AtomicBool>,
    mut on_event: impl FnMut(&RunEvent),
) -> Vec<RankMeasure> {
    let (tx, rx) = mpsc::channel();
    let mut queue: VecDeque<(usize, u32)> = ranks
        .iter()
        .filter(|&&r| r < world_size)
        .map(|&r| (r, 1))
        .collect();
    let starting = queue.len();
    let mut measures: Vec<RankMeasure> = (0..world_size)
        .map(|rank| RankMeasure {
            rank,
            ..Default::default()
        })
        .collect();
    let (mut running, mut finished) = (0, 0);
    // Milliseconds billed for each rank's failed attempts so far.
    let mut billed_before = vec![0u64; world_size];
    // A panic on the way (in `on_event`, say) must not leave workers running
    // past their run, and the memory the caller reserved for them let go:
    // they are halted, and waited for, before it goes on.
    let stop = Stop {
        cancel: cancel.clone(),
        halt: Arc::default(),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while finished < starting {
            while cancel.load(Ordering::Relaxed) && running == 0 {
                let Some((rank, attempt)) = queue.pop_front() else {
                    break;
                };
                on_event(&RunEvent::RankFailed {
                    rank,
                    attempt,
                    error: CANCELLED.into(),
                    retrying: false,
                });
                // Never started: its earlier attempts (none, for a rank never
                // tried) are what was called and billed.
                measures[rank] = RankMeasure {
                    billed_duration_ms: billed_before[rank],
                    ..failed_for_good(rank, attempt - 1, CANCELLED.into())
                };
                finished += 1;
            }
            if finished == starting {
                break;
            }
            while running < config.concurrency.max(1) && !cancel.load(Ordering::Relaxed) {
                let Some((rank, attempt)) = queue.pop_front() else {
                    break;
                };
                on_event(&RunEvent::RankStarted { rank, attempt });
                let (command, tx, stop) = (command.clone(), tx.clone(), stop.clone());
                std::thread::spawn(move || {
                    let events = tx.clone();
                    let report = move |event| {
                        let _ = events.send(Message::Event(event));
                    };
                    let started = std::time::Instant::now();
                    // Every attempt ends in `Ended`, a panicking one too: the
                    // loop counts on it.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        attempt::run(&command, rank, &config, &stop, report)
                    }))
                    .unwrap_or_else(|_| Err("the rank's watcher panicked".into()));
                    let _ = tx.send(Message::Ended {
                        rank,
                        attempt,
                        outcome,
                        spent_s: started.elapsed().as_secs_f64(),
                    });
                });
                // Counted once it runs (a panic above started nothing to wait for).
                running += 1;
            }
            let Ok(message) = rx.recv() else { break };
            match message {
                Message::Event(event) => on_event(&event),
                Message::Ended {
                    rank,
                    attempt,
                    outcome,
                    spent_s,
                } => {
                    running -= 1;
                    match outcome {
                        Ok(mut measure) => {
                            measure.attempts = attempt;
                            // Earlier attempts were billed too, as a retried call is.
                            measure.billed_duration_ms += billed_before[rank];
                            on_event(&RunEvent::RankFinished {
                                measure: measure.clone(),
                            });
                            measures[rank] = measure;
                            finished += 1;
                        }
                        Err(error) => {
                            billed_before[rank] += crate::cost::billed_ms(spent_s);
                            let retries_left = attempt <= config.retries;
                            let retrying = retries_left && !cancel.load(Ordering::Relaxed);
                            on_event(&RunEvent::RankFailed {
                                rank,
                                attempt,
                                error: error.clone(),
                                retrying,
                            });
                            if retrying {
                                queue.push_back((rank, attempt + 1));
                            } else {
                                // A retry the cancel prevented ends the rank as the
                                // cancel's, like a queued one (its attempt's own
                                // error went out in the event above).
                                let error = if retries_left {
                                    CANCELLED.to_string()
                                } else {
                                    error
                                };
                                // Its last attempt's time, as long as it ran
                                // (a kill leaves no other measure of it).
                                measures[rank] = RankMeasure {
                                    billed_duration_ms: billed_before[rank],
                                    duration_s: spent_s,
                                    ..failed_for_good(rank, attempt, error)
                                };
                                finished += 1;
                            }
                        }
                    }
                }
            }
        }
    }));
    if let Err(panic) = outcome {
        stop.halt.store(true, Ordering::Relaxed);
        // Only the attempts' senders are left: past the last, recv ends.
        drop(tx);
        while running > 0 {
            match rx.recv() {
                Ok(Message::Ended { .. }) => running -= 1,
                Ok(Message::Event(_)) => {}
                Err(_) => break,
            }
        }
        std::panic::resume_unwind(panic);
    }
    measures
}

/// The measure of a rank that will not be tried again.
fn failed_for_good(rank: usize, attempts: u32, error: String) -> RankMeasure {
    RankMeasure {
        rank,
        attempts,
        error: Some(error),
        ..Default::default()
    }
}
