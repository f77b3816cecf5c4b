//! Downloading frames into the cache: a few at a time, retried with backoff and
//! jitter, resumed where a transfer broke off, and checked before they count.
//!
//! A frame enters the cache only as a whole, checked file (a complete bzip2 stream
//! holding a FITS image with a WCS), renamed into place after an fsync, so a
//! file named `frame-*.fits.bz2` in the cache is always usable and a second fetch
//! trusts it. Partial transfers wait as `*.part` files for the next attempt.

use super::{FrameCache, SdssField};
use crate::imagery::frame::Frame;
use cosmicai_shared::Band;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The Science Archive Server's root of DR17 corrected frames.
pub const DEFAULT_ARCHIVE: &str = "https://data.sdss.org/sas/dr17/eboss/photoObj/frames";

/// The environment variable naming a mirror of [`DEFAULT_ARCHIVE`].
pub const ARCHIVE_ENV: &str = "COSMICAI_SDSS_ARCHIVE";

/// No SDSS frame is near this (they are 3 to 4 MB compressed): a server sending
/// more is not serving frames, and the transfer stops there.
pub const MAX_FRAME_DOWNLOAD: u64 = 64 << 20;

/// How a fetch talks to the archive.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Base URL; a frame is at `{archive}/{rerun}/{run}/{camcol}/{file}`.
    pub archive: String,
    /// Transfers at once.
    pub concurrency: usize,
    /// Tries per frame, the first included.
    pub attempts: u32,
    /// First backoff; doubled each retry (capped at 30 s), then a random
    /// fraction of it taken ("full jitter"), so many clients do not retry in step.
    pub backoff: Duration,
    pub connect_timeout: Duration,
    /// The longest wait for the next bytes of a response.
    pub read_timeout: Duration,
    /// Most bytes the cache may hold, downloads in progress included.
    pub budget: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            archive: DEFAULT_ARCHIVE.into(),
            concurrency: 4,
            attempts: 5,
            backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            budget: 20_000_000_000,
        }
    }
}

/// One band of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FrameJob {
    pub field: SdssField,
    pub band: Band,
}

/// What became of one frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Already in the cache: nothing was requested.
    Cached,
    Downloaded {
        bytes: u64,
        attempts: u32,
    },
    /// The archive has no such frame (404, 403 or 410): not retried.
    Missing {
        status: u16,
    },
    /// Taking it would pass the budget.
    OverBudget,
    Failed {
        attempts: u32,
        error: String,
    },
}

/// What a fetch did, frame by frame.
#[derive(Debug, Clone, Serialize)]
pub struct FetchReport {
    pub frames: Vec<(FrameJob, Outcome)>,
    pub downloaded_bytes: u64,
    pub seconds: f64,
}

impl FetchReport {
    pub fn count(&self, kind: fn(&Outcome) -> bool) -> usize {
        self.frames.iter().filter(|(_, o)| kind(o)).count()
    }
}

/// What a fetch tells its caller as it goes (for a progress bar).
#[derive(Debug, Clone, Copy)]
pub enum FetchEvent {
    /// A transfer learnt the frame's size (what it still has to receive).
    Sized { remaining: u64 },
    /// Bytes arrived.
    Received(u64),
    /// A frame is done, whatever the outcome.
    Done,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("archive URL {url:?}: {problem}")]
    Archive { url: String, problem: String },
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

/// Downloads the frames of `jobs` that the cache lacks. Per-frame failures are
/// outcomes in the report, not errors: one missing frame does not stop the rest.
pub fn fetch(
    cache: &FrameCache,
    jobs: &[FrameJob],
    options: &FetchOptions,
    events: Arc<dyn Fn(FetchEvent) + Send + Sync>,
) -> Result<FetchReport, FetchError> {
    let archive = options.archive.trim_end_matches('/').to_string();
    let parsed = reqwest::Url::parse(&archive).map_err(|e| FetchError::Archive {
        url: archive.clone(),
        problem: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::Archive {
            url: archive,
            problem: "not an http(s) URL".into(),
        });
    }
    let client = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .user_agent(concat!("cosmicai/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Client(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FetchError::Client(e.to_string()))?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        client,
        archive,
        options: options.clone(),
        dir: cache.dir().to_path_buf(),
        used: Mutex::new(cache.bytes()),
        events,
    });
    let frames = runtime.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
        let mut tasks = Vec::with_capacity(jobs.len());
        for &job in jobs {
            let shared = shared.clone();
            let permits = permits.clone();
            let cached = cache.has_frame(&job.field, job.band);
            tasks.push(tokio::spawn(async move {
                let outcome = if cached {
                    Outcome::Cached
                } else {
                    let _permit = permits.acquire_owned().await;
                    shared.frame(job).await
                };
                (shared.events)(FetchEvent::Done);
                (job, outcome)
            }));
        }
        let mut frames = Vec::with_capacity(tasks.len());
        for (task, job) in tasks.into_iter().zip(jobs) {
            frames.push(task.await.unwrap_or_else(|e| {
                (
                    *job,
                    Outcome::Failed {
                        attempts: 0,
                        error: format!("the transfer task ended: {e}"),
                    },
                )
            }));
        }
        frames
    });
    let downloaded_bytes = frames
        .iter()
        .map(|(_, o)| match o {
            Outcome::Downloaded { bytes, .. } => *bytes,
            _ => 0,
        })
        .sum();
    Ok(FetchReport {
        frames,
        downloaded_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

struct Shared {
    client: reqwest::Client,
    archive: String,
    options: FetchOptions,
    dir: PathBuf,
    /// Bytes the cache holds plus those reserved by transfers under way.
    used: Mutex<u64>,
    events: Arc<dyn Fn(FetchEvent) + Send + Sync>,
}

/// Why one attempt did not finish a frame.
enum Attempt {
    /// Worth another try (5xx, 429, a timeout, a reset, a damaged file).
    Retry(String),
    /// Not worth one.
    Stop(Outcome),
}

impl Shared {
    async fn frame(&self, job: FrameJob) -> Outcome {
        let file = job.field.frame_file(job.band);
        let url = format!("{}/{}", self.archive, job.field.frame_path(job.band));
        let part = self.dir.join(format!("{file}.part"));
        // Jitter needs only differ between clients and frames, not be secret.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                &url,
            );
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut error = String::new();
        for attempt in 1..=self.options.attempts.max(1) {
            if attempt > 1 {
                let cap = self
                    .options
                    .backoff
                    .saturating_mul(1 << (attempt - 2).min(16))
                    .min(Duration::from_secs(30));
                tokio::time::sleep(cap.mul_f64(rng.random::<f64>())).await;
            }
            match self.attempt(&url, &part, job.band).await {
                Ok(bytes) => {
                    let final_path = self.dir.join(&file);
                    return match publish(&part, &final_path) {
                        Ok(()) => Outcome::Downloaded {
                            bytes,
                            attempts: attempt,
                        },
                        Err(e) => Outcome::Failed {
                            attempts: attempt,
                            error: format!("cannot store {}: {e}", final_path.display()),
                        },
                    };
                }
                Err(Attempt::Stop(Outcome::Failed { error, .. })) => {
                    return Outcome::Failed {
                        attempts: attempt,
                        error,
                    };
                }
                Err(Attempt::Stop(outcome)) => return outcome,
                Err(Attempt::Retry(why)) => error = why,
            }
        }
        Outcome::Failed {
            attempts: self.options.attempts.max(1),
            error,
        }
    }

    /// One request: resumes `part` where it ends, and checks the whole file
    /// once it is complete. Returns the bytes this attempt received.
    async fn attempt(&self, url: &str, part: &Path, band: Band) -> Result<u64, Attempt> {
        let have = std::fs::metadata(part).map_or(0, |m| m.len());
        let mut request = self.client.get(url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| Attempt::Retry(format!("request failed: {}", error_chain(&e))))?;
        let status = response.status();
        let start = match status {
            StatusCode::OK => 0,
            StatusCode::PARTIAL_CONTENT => {
                let range = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start);
                if range != Some(have) {
                    discard(part);
                    return Err(Attempt::Retry(format!(
                        "asked to resume at byte {have}, the server answered {range:?}"
                    )));
                }
                have
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // The part is as long as the file or longer: begin again.
                discard(part);
                return Err(Attempt::Retry("resume refused (416), starting over".into()));
            }
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::GONE => {
                return Err(Attempt::Stop(Outcome::Missing {
                    status: status.as_u16(),
                }));
            }
            s if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                return Err(Attempt::Retry(format!("HTTP {s}")));
            }
            s => {
                return Err(Attempt::Stop(Outcome::Failed {
                    attempts: 1,
                    error: format!("HTTP {s} from {url}"),
                }));
            }
        };
        let remaining = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let expected_total = remaining.map(|r| start + r);
        if expected_total.is_some_and(|t| t > MAX_FRAME_DOWNLOAD) {
            return Err(Attempt::Stop(Outcome::Failed {
                attempts: 1,
                error: format!(
                    "{url} is {} bytes, more than any SDSS frame ({} MiB at most)",
                    expected_total.unwrap_or(0),
                    MAX_FRAME_DOWNLOAD >> 20
                ),
            }));
        }
        // Reserve what is still to come (an estimate where the size is not
        // given), and give back what did not arrive.
        let reserve = remaining.unwrap_or(super::plan::ESTIMATED_FRAME_BYTES);
        if !self.reserve(reserve) {
            return Err(Attempt::Stop(Outcome::OverBudget));
        }
        (self.events)(FetchEvent::Sized { remaining: reserve });
        let received = self.receive(&mut response, part, start).await;
        let got = received.as_ref().map_or_else(|(n, _)| *n, |n| *n);
        self.release(reserve.saturating_sub(got));
        if let Err((_, why)) = received {
            return Err(why);
        }
        if let Some(total) = expected_total
            && start + got != total
        {
            return Err(Attempt::Retry(format!(
                "the transfer ended at byte {} of {total}",
                start + got
            )));
        }
        // The check decompresses the whole frame: off the async thread.
        let check = part.to_path_buf();
        let checked = tokio::task::spawn_blocking(move || Frame::check_compressed(&check, band))
            .await
            .map_err(|e| Attempt::Retry(format!("the check did not finish: {e}")))?;
        if let Err(e) = checked {
            // A whole transfer that is not a frame: start the next try afresh.
            discard(part);
            return Err(Attempt::Retry(format!("not a usable frame: {e}")));
        }
        Ok(got)
    }

    /// Appends the response body to `part` from byte `start`; the error carries
    /// the bytes written before it.
    async fn receive(
        &self,
        response: &mut reqwest::Response,
        part: &Path,
        start: u64,
    ) -> Result<u64, (u64, Attempt)> {
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .open(part)
            .and_then(|mut f| {
                f.set_len(start)?;
                std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))?;
                Ok(f)
            });
        let mut file = opened.map_err(|e| {
            (
                0,
                Attempt::Stop(Outcome::Failed {
                    attempts: 1,
                    error: format!("cannot write {}: {e}", part.display()),
                }),
            )
        })?;
        let mut got = 0u64;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    return Err((
                        got,
                        Attempt::Retry(format!(
                            "the transfer broke off after {} bytes: {}",
                            start + got,
                            error_chain(&e)
                        )),
                    ));
                }
            };
            if start + got + chunk.len() as u64 > MAX_FRAME_DOWNLOAD {
                discard(part);
                return Err((
                    got,
                    Attempt::Stop(Outcome::Failed {
                        attempts: 1,
                        error: format!(
                            "more than {} MiB: not an SDSS frame",
                            MAX_FRAME_DOWNLOAD >> 20
                        ),
                    }),
                ));
            }
            // Chunks are small and the disk is local: a blocking write here
            // costs less than handing each chunk to another thread.
            if let Err(e) = file.write_all(&chunk) {
                return Err((
                    got,
                    Attempt::Stop(Outcome::Failed {
                        attempts: 1,
                        error: format!("cannot write {}: {e}", part.display()),
                    }),
                ));
            }
            got += chunk.len() as u64;
            (self.events)(FetchEvent::Received(chunk.len() as u64));
        }
        Ok(got)
    }

    fn reserve(&self, bytes: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if *used + bytes > self.options.budget {
            return false;
        }
        *used += bytes;
        true
    }

    fn release(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(bytes);
    }
}

/// `bytes 100-199/200` → 100.
fn content_range_start(value: &str) -> Option<u64> {
    value
        .strip_prefix("bytes ")?
        .split_once('-')?
        .0
        .trim()
        .parse()
        .ok()
}

/// A checked part becomes the frame: synced, renamed, the directory synced.
fn publish(part: &Path, frame: &Path) -> std::io::Result<()> {
    std::fs::File::open(part)?.sync_all()?;
    std::fs::rename(part, frame)?;
    let dir = frame.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

fn discard(part: &Path) {
    let _ = std::fs::remove_file(part);
}

/// reqwest's errors say "error sending request"; the cause is in the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_ranges() {
        assert_eq!(super::content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(super::content_range_start("bytes */200"), None);
        assert_eq!(super::content_range_start("items 1-2/3"), None);
    }
}
