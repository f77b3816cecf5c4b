//! One attempt of one rank: start a `cosmicai worker`, read its reports, watch
//! its memory and time, and turn how it ended into a [`RankMeasure`] or an error.

use super::{CANCELLED, ExecutorConfig, Stop, WorkerCommand, WorkerMessage};
use crate::cost::billed_ms;
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::RankMeasure;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most of a worker's stderr kept for its error message: a worker that
/// logs gigabytes must not make its coordinator hold them.
const STDERR_KEPT: usize = 64 * 1024;
/// How often a running worker's memory is read.
const POLL: Duration = Duration::from_millis(5);
/// Workers run at this niceness: below the coordinator and the server.
const WORKER_NICENESS: libc::c_int = 10;
/// How long the output readers may take to end once the worker is gone.
const PIPE_GRACE: Duration = Duration::from_secs(5);
/// The longest protocol line kept; longer lines are read and dropped.
const LINE_KEPT: u64 = 64 * 1024;

/// Starts one worker for `rank` and watches it to the end.
pub(super) fn run(
    command: &WorkerCommand,
    rank: usize,
    config: &ExecutorConfig,
    stop: &Stop,
    report: impl Fn(RunEvent) + Send + 'static,
) -> Result<RankMeasure, String> {
    let start = Instant::now();
    let mut child = spawn(command, rank, config.memory_mb)?;
    let _group = KilledOnUnwind(child.id() as libc::pid_t);
    let stdout = child.stdout.take().ok_or("worker has no stdout")?;
    let stderr = child.stderr.take().ok_or("worker has no stderr")?;
    let reports = read_reports(stdout, rank, start, report);
    let errors = std::thread::spawn(move || stderr_tail(stderr));
    let ended = watch(&mut child, config, stop, start);
    let duration = start.elapsed();
    // The watch has reaped the worker and killed its group, so its pipes are
    // closed and both readers end, unless a process that left the group
    // (setsid) still holds them: then the rank does not wait for it.
    let (Some(reports), Some(stderr)) = (joined(reports), joined(errors)) else {
        return Err(format!(
            "rank {rank}: a process outside the worker's group keeps its output open"
        ));
    };
    let ended = ended?;
    measure(rank, config, ended, duration, reports, &stderr)
}

/// The thread's result, waiting at most [`PIPE_GRACE`] for it to end.
fn joined<T>(thread: JoinHandle<T>) -> Option<T> {
    let deadline = Instant::now() + PIPE_GRACE;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    if thread.is_finished() {
        thread.join().ok()
    } else {
        None
    }
}

/// Starts the worker in a process group of its own, to die with its coordinator.
fn spawn(command: &WorkerCommand, rank: usize, memory_mb: u32) -> Result<Child, String> {
    let coordinator = std::process::id();
    let data_limit = data_limit_bytes(memory_mb);
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .arg("--rank")
        .arg(rank.to_string())
        .envs(command.envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: the whole group is killed when the rank ends, and a
        // terminal's Ctrl-C reaches the coordinator, which decides.
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, getppid, setrlimit, setpriority,
    // _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // SIGKILL when the thread that started us (it waits for us) ends,
            // which includes the whole coordinator dying, even by SIGKILL.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The coordinator may have died before the line above took effect.
            if libc::getppid() as u32 != coordinator {
                libc::_exit(1);
            }
            // A hard cap on heap and anonymous memory, so a runaway allocation
            // fails at once rather than swapping the host until a poll sees it.
            // (RLIMIT_AS would count the memory-mapped partitions too.)
            let limit = libc::rlimit {
                rlim_cur: data_limit,
                rlim_max: data_limit,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Ranks are batch work: a server starting them stays responsive
            // (on an idle machine this changes nothing). Failure is harmless.
            libc::setpriority(libc::PRIO_PROCESS, 0, WORKER_NICENESS);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start worker {}: {e}", command.program.display()))
}

/// The worker's data limit: twice its memory setting plus 512 MB. Resident
/// memory, which is what Lambda counts, is enforced by polling at `memory_mb`;
/// this only stops what polling cannot catch in time (memory reserved, not yet
/// touched, or allocated faster than a poll).
fn data_limit_bytes(memory_mb: u32) -> u64 {
    (2 * u64::from(memory_mb) + 512) << 20
}

/// What a worker reported on stdout.
#[derive(Default)]
struct Reports {
    ready: Option<Duration>,
    first_batch: Option<Duration>,
    done: Option<(usize, f64, Option<f64>)>,
}

fn read_reports(
    stdout: impl Read + Send + 'static,
    rank: usize,
    start: Instant,
    report: impl Fn(RunEvent) + Send + 'static,
) -> JoinHandle<Reports> {
    std::thread::spawn(move || {
        let mut reports = Reports::default();
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        // Read to the end whatever comes (invalid UTF-8, endless lines), so
        // the worker never blocks on a full pipe; keep at most LINE_KEPT a line.
        loop {
            line.clear();
            match (&mut stdout).take(LINE_KEPT).read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            let text = String::from_utf8_lossy(&line);
            match serde_json::from_str::<WorkerMessage>(text.trim_end()) {
                Ok(WorkerMessage::Ready) => {
                    reports.ready = Some(start.elapsed());
                    report(RunEvent::RankReady { rank });
                }
                Ok(WorkerMessage::Objects { objects }) => {
                    reports.first_batch.get_or_insert(start.elapsed());
                    report(RunEvent::RankObjects { rank, objects });
                }
                Ok(WorkerMessage::Done {
                    objects,
                    throughput_bps,
                    peak_rss_mb,
                }) => reports.done = Some((objects, throughput_bps, peak_rss_mb)),
                Err(_) => {} // anything else on stdout is the worker's own business
            }
        }
        reports
    })
}

/// The last [`STDERR_KEPT`] bytes of the worker's stderr, read to its end.
fn stderr_tail(mut stderr: impl Read) -> String {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stderr.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > 2 * STDERR_KEPT {
            kept.drain(..kept.len() - STDERR_KEPT);
        }
    }
    let start = kept.len().saturating_sub(STDERR_KEPT);
    String::from_utf8_lossy(&kept[start..]).into_owned()
}

/// Why the watch stopped a worker.
enum Stopped {
    OutOfMemory(f64),
    TimedOut,
}

/// How a worker ended.
struct Ended {
    status: libc::c_int,
    usage: libc::rusage,
    polled_peak_mb: f64,
    stopped: Option<Stopped>,
}

/// Polls the worker until it exits, killing it past its memory or time, or on
/// cancel; then kills what is left of its group and reaps it with its rusage.
fn watch(
    child: &mut Child,
    config: &ExecutorConfig,
    stop: &Stop,
    start: Instant,
) -> Result<Ended, String> {
    let pid = child.id() as libc::pid_t;
    let mut stopped = None;
    let mut polled_peak_mb = 0.0f64;
    loop {
        match exited(pid) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                kill_group(pid);
                let _ = child.wait();
                return Err(format!("lost track of worker {pid}: {e}"));
            }
        }
        if stop.is_set() {
            kill_group(pid);
            let _ = child.wait();
            return Err(CANCELLED.into());
        }
        let rss = crate::system::rss_mb(pid as u32);
        polled_peak_mb = polled_peak_mb.max(rss.unwrap_or(0.0));
        if stopped.is_none() {
            if let Some(rss) = rss.filter(|rss| *rss > f64::from(config.memory_mb)) {
                stopped = Some(Stopped::OutOfMemory(rss));
                kill_group(pid);
            } else if config.timeout.is_some_and(|t| start.elapsed() > t) {
                stopped = Some(Stopped::TimedOut);
                kill_group(pid);
            }
        }
        std::thread::sleep(POLL);
    }
    // The worker is a zombie now, so its group id cannot be reused yet: its
    // own children (if any) go with it.
    kill_group(pid);
    let (status, usage) = reap(pid).map_err(|e| format!("lost track of worker {pid}: {e}"))?;
    Ok(Ended {
        status,
        usage,
        polled_peak_mb,
        stopped,
    })
}

/// Whether `pid` has exited, without reaping it (`WNOWAIT`).
fn exited(pid: libc::pid_t) -> std::io::Result<bool> {
    loop {
        // SAFETY: siginfo_t is plain data, valid when all zeros.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid fills `info`, ours, about our own child.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            // SAFETY: waitid succeeded, so si_pid is set (0 while still running).
            return Ok(unsafe { info.si_pid() } == pid);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reaps the exited worker with its resource usage, retrying on EINTR.
fn reap(pid: libc::pid_t) -> std::io::Result<(libc::c_int, libc::rusage)> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, valid when all zeros.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 fills `status` and `usage`, both ours, for our own child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// SIGKILL to the worker's whole process group (its pid is the group's id).
/// A worker's group, killed if its attempt unwinds (a panic) before the watch
/// has ended it: a retry must not start beside what is left of it.
struct KilledOnUnwind(libc::pid_t);

impl Drop for KilledOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            kill_group(self.0);
        }
    }
}

fn kill_group(pid: libc::pid_t) {
    // SAFETY: signalling the process group our own child leads.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

/// The rank's measure, or the error that says why it failed.
fn measure(
    rank: usize,
    config: &ExecutorConfig,
    ended: Ended,
    duration: Duration,
    reports: Reports,
    stderr: &str,
) -> Result<RankMeasure, String> {
    let memory_mb = config.memory_mb;
    match ended.stopped {
        Some(Stopped::OutOfMemory(rss)) => {
            return Err(format!(
                "rank {rank} ran out of memory: {rss:.0} MB used, memory_mb is {memory_mb} (killed, as Lambda does)"
            ));
        }
        Some(Stopped::TimedOut) => {
            return Err(format!(
                "rank {rank} timed out: still running after {} s (killed)",
                // A tenth of a second shows where the limit is under a minute.
                match config.timeout.unwrap_or_default().as_secs_f64() {
                    s if s < 60.0 => format!("{s:.1}"),
                    s => format!("{s:.0}"),
                }
            ));
        }
        None => {}
    }
    let tail = last_lines(stderr, 3);
    let status = ended.status;
    let succeeded = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !succeeded && allocation_failed(stderr) {
        return Err(format!(
            "rank {rank} ran out of memory: an allocation failed at the worker's data limit of {} MB (memory_mb is {memory_mb}): {tail}",
            data_limit_bytes(memory_mb) >> 20
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
    let Some((objects, throughput_bps, reported_peak_mb)) = reports.done.filter(|_| code == 0)
    else {
        return Err(format!(
            "rank {rank} worker exited with code {code}: {}",
            if tail.is_empty() { "no message" } else { &tail }
        ));
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let duration_s = duration.as_secs_f64();
    let cpu_time_s = seconds(ended.usage.ru_utime) + seconds(ended.usage.ru_stime);
    Ok(RankMeasure {
        rank,
        attempts: 1,
        duration_s,
        billed_duration_ms: billed_ms(duration_s),
        init_duration_s: reports.ready.map_or(0.0, |r| r.as_secs_f64()),
        first_batch_s: reports.first_batch.map_or(0.0, |r| r.as_secs_f64()),
        cpu_time_s,
        // What the worker measured of itself, else what polling saw.
        peak_rss_mb: reported_peak_mb.unwrap_or(ended.polled_peak_mb),
        objects,
        samples_per_s: objects as f64 / duration_s.max(1e-9),
        bits_per_s: throughput_bps,
        error: None,
        ..Default::default()
    })
}

/// Whether the worker died of a failed allocation: Rust's message before it
/// aborts, Python's exception (test workers), or the C library's error text.
fn allocation_failed(stderr: &str) -> bool {
    let mut from = stderr.len().saturating_sub(4096);
    while !stderr.is_char_boundary(from) {
        from += 1;
    }
    let tail = &stderr[from..];
    [
        "memory allocation of",
        "MemoryError",
        "Cannot allocate memory",
    ]
    .iter()
    .any(|m| tail.contains(m))
}

fn last_lines(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text.lines().rev().take(n).collect();
    lines.reverse();
    lines.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_logs_gigabytes_leaves_only_its_tail() {
        let mut log = "noise line\n".repeat(200_000).into_bytes();
        log.extend_from_slice(b"the real error\n");
        let tail = stderr_tail(std::io::Cursor::new(log));
        assert!(tail.len() <= STDERR_KEPT);
        assert_eq!(last_lines(&tail, 1), "the real error");
    }
}
