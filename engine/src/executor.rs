//! The local executor: each rank is its own OS process (`cosmicai worker`), so
//! duration, CPU time and peak memory are measured per rank the way Lambda and
//! CloudWatch report them. At most `concurrency` ranks run at once (Lambda's
//! concurrency limit); a rank over `memory_mb` is killed with an out-of-memory
//! error; a failed rank is retried up to `retries` times.
//!
//! Workers talk back on stdout, one JSON object a line:
//! `{"event":"ready"}` once the model is loaded, `{"event":"objects","objects":N}`
//! after the first batch and then as they go, `{"event":"done","objects":N,"throughput_bps":B,"peak_rss_mb":M}` at the end.

use crate::cost::billed_ms;
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::RankMeasure;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

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
    pub memory_mb: u32,
    pub retries: u32,
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

enum Message {
    Event(RunEvent),
    Ended {
        rank: usize,
        attempt: u32,
        outcome: Result<RankMeasure, String>,
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
    execute_cancellable(command, world_size, config, Arc::default(), on_event)
}

/// [`execute`], stopped early when `cancel` is set: running workers are killed and
/// queued ranks never start; both end with the error `cancelled`.
pub fn execute_cancellable(
    command: &WorkerCommand,
    world_size: usize,
    config: ExecutorConfig,
    cancel: Arc<AtomicBool>,
    mut on_event: impl FnMut(&RunEvent),
) -> Vec<RankMeasure> {
    let (tx, rx) = mpsc::channel();
    let mut queue: VecDeque<(usize, u32)> = (0..world_size).map(|r| (r, 1)).collect();
    let mut measures: Vec<RankMeasure> = (0..world_size)
        .map(|rank| RankMeasure {
            rank,
            ..Default::default()
        })
        .collect();
    let (mut running, mut finished) = (0, 0);
    while finished < world_size {
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
            measures[rank] = failed_for_good(rank, attempt, CANCELLED.into());
            finished += 1;
        }
        if finished == world_size {
            break;
        }
        while running < config.concurrency.max(1) && !cancel.load(Ordering::Relaxed) {
            let Some((rank, attempt)) = queue.pop_front() else {
                break;
            };
            running += 1;
            on_event(&RunEvent::RankStarted { rank, attempt });
            let (command, tx, cancel) = (command.clone(), tx.clone(), cancel.clone());
            std::thread::spawn(move || {
                let outcome = run_attempt(&command, rank, config.memory_mb, &cancel, &tx);
                let _ = tx.send(Message::Ended {
                    rank,
                    attempt,
                    outcome,
                });
            });
        }
        let Ok(message) = rx.recv() else { break };
        match message {
            Message::Event(event) => on_event(&event),
            Message::Ended {
                rank,
                attempt,
                outcome,
            } => {
                running -= 1;
                match outcome {
                    Ok(mut measure) => {
                        measure.attempts = attempt;
                        on_event(&RunEvent::RankFinished {
                            measure: measure.clone(),
                        });
                        measures[rank] = measure;
                        finished += 1;
                    }
                    Err(error) => {
                        let retrying = attempt <= config.retries && !cancel.load(Ordering::Relaxed);
                        on_event(&RunEvent::RankFailed {
                            rank,
                            attempt,
                            error: error.clone(),
                            retrying,
                        });
                        if retrying {
                            queue.push_back((rank, attempt + 1));
                        } else {
                            measures[rank] = failed_for_good(rank, attempt, error);
                            finished += 1;
                        }
                    }
                }
            }
        }
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

/// Starts one worker process and watches it to the end.
fn run_attempt(
    command: &WorkerCommand,
    rank: usize,
    memory_mb: u32,
    cancel: &AtomicBool,
    tx: &mpsc::Sender<Message>,
) -> Result<RankMeasure, String> {
    let start = Instant::now();
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .arg("--rank")
        .arg(rank.to_string())
        .envs(command.envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start worker {}: {e}", command.program.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("worker has no stdout")?;
    let mut stderr = child.stderr.take().ok_or("worker has no stderr")?;
    let events = tx.clone();
    let reader = std::thread::spawn(move || {
        let (mut ready, mut first_batch, mut done) = (None, None, None);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match serde_json::from_str::<WorkerMessage>(&line) {
                Ok(WorkerMessage::Ready) => {
                    ready = Some(start.elapsed());
                    let _ = events.send(Message::Event(RunEvent::RankReady { rank }));
                }
                Ok(WorkerMessage::Objects { objects }) => {
                    first_batch.get_or_insert(start.elapsed());
                    let _ = events.send(Message::Event(RunEvent::RankObjects { rank, objects }));
                }
                Ok(WorkerMessage::Done {
                    objects,
                    throughput_bps,
                    peak_rss_mb,
                }) => done = Some((objects, throughput_bps, peak_rss_mb)),
                Err(_) => {} // anything else on stdout is the worker's own business
            }
        }
        (ready, first_batch, done)
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    // Poll the child: enforce memory like Lambda, and collect its rusage at exit.
    let mut out_of_memory = None;
    let mut polled_peak_mb = 0.0f64;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, valid when all zeros.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 fills `status` and `usage`, both ours, for our own child.
        let r = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid as i32 {
            break (status, usage);
        }
        if r < 0 {
            return Err(format!(
                "lost track of worker {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        if cancel.load(Ordering::Relaxed) {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = child.wait();
            let _ = reader.join();
            let _ = errors.join();
            return Err(CANCELLED.into());
        }
        let rss = crate::system::rss_mb(pid);
        polled_peak_mb = polled_peak_mb.max(rss.unwrap_or(0.0));
        if let Some(rss) = rss
            && rss > f64::from(memory_mb)
            && out_of_memory.is_none()
        {
            out_of_memory = Some(rss);
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let duration = start.elapsed();
    let (ready, first_batch, done) = reader.join().unwrap_or((None, None, None));
    let stderr_text = errors.join().unwrap_or_default();
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;

    if let Some(rss) = out_of_memory {
        return Err(format!(
            "rank {rank} ran out of memory: {rss:.0} MB used, memory_mb is {memory_mb} (killed, as Lambda does)"
        ));
    }
    if libc::WIFSIGNALED(status) {
        return Err(format!(
            "rank {rank} worker was killed by signal {}",
            libc::WTERMSIG(status)
        ));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let tail: String = stderr_text
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ");
    let Some((objects, throughput_bps, reported_peak_mb)) = done.filter(|_| code == 0) else {
        return Err(format!(
            "rank {rank} worker exited with code {code}: {}",
            if tail.is_empty() { "no message" } else { &tail }
        ));
    };
    let duration_s = duration.as_secs_f64();
    Ok(RankMeasure {
        rank,
        attempts: 1,
        duration_s,
        billed_duration_ms: billed_ms(duration_s),
        init_duration_s: ready.map_or(0.0, |r| r.as_secs_f64()),
        first_batch_s: first_batch.map_or(0.0, |r| r.as_secs_f64()),
        cpu_time_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // What the worker measured of itself, else what polling saw.
        peak_rss_mb: reported_peak_mb.unwrap_or(polled_peak_mb),
        objects,
        samples_per_s: objects as f64 / duration_s.max(1e-9),
        bits_per_s: throughput_bps,
        error: None,
        ..Default::default()
    })
}
