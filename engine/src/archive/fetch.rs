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
        /// Received over all attempts (a resumed transfer's first part included).
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
    /// A frame's first transfer learnt its size (what it still has to receive,
    /// in place of the caller's estimate); sent once per frame.
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

/// The archive root as requests use it, or why it cannot be one.
pub fn check_archive(url: &str) -> Result<String, FetchError> {
    let archive = url.trim_end_matches('/').to_string();
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
    // The URL is written into every fetched cutout's source, which the explorer
    // shows to anyone: no secret may ride in it.
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() {
        let mut shown = parsed.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        return Err(FetchError::Archive {
            url: shown.to_string(),
            problem: "holds a user name, password or query: the archive's URL is shown with every cutout fetched from it, so it may carry no credentials (serve a mirror that needs none)".into(),
        });
    }
    Ok(archive)
}

/// Downloads the frames of `jobs` that the cache lacks. Per-frame failures are
/// outcomes in the report, not errors: one missing frame does not stop the rest.
pub fn fetch(
    cache: &FrameCache,
    jobs: &[FrameJob],
    options: &FetchOptions,
    events: Arc<dyn Fn(FetchEvent) + Send + Sync>,
) -> Result<FetchReport, FetchError> {
    let archive = check_archive(&options.archive)?;
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
    // Two jobs for one file (one field under two reruns) would race on its
    // `.part`: each file is fetched once, and its jobs share the outcome.
    let mut slot = std::collections::HashMap::new();
    let mut unique = Vec::new();
    for &job in jobs {
        slot.entry(job.field.frame_file(job.band))
            .or_insert_with(|| {
                unique.push(job);
                unique.len() - 1
            });
    }
    let shared = Arc::new(Shared {
        client,
        archive,
        options: options.clone(),
        dir: cache.dir().to_path_buf(),
        used: Mutex::new(cache.bytes()),
        events,
        // A check holds a whole decompressed frame (12 MiB) and a core.
        checks: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
    });
    let frames = runtime.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
        let mut tasks = Vec::with_capacity(unique.len());
        for &job in &unique {
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
        for (task, job) in tasks.into_iter().zip(&unique) {
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
    let frames = jobs
        .iter()
        .map(|job| {
            (
                *job,
                frames[slot[&job.field.frame_file(job.band)]].1.clone(),
            )
        })
        .collect();
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
    checks: tokio::sync::Semaphore,
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
        let mut progress = Progress::default();
        for attempt in 1..=self.options.attempts.max(1) {
            if attempt > 1 {
                let cap = self
                    .options
                    .backoff
                    .saturating_mul(1 << (attempt - 2).min(16))
                    .min(Duration::from_secs(30));
                tokio::time::sleep(cap.mul_f64(rng.random::<f64>())).await;
            }
            match self.attempt(&url, &part, job.band, &mut progress).await {
                Ok(()) => {
                    let final_path = self.dir.join(&file);
                    return match publish(&part, &final_path) {
                        Ok(()) => Outcome::Downloaded {
                            bytes: progress.received,
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
    /// once it is complete.
    async fn attempt(
        &self,
        url: &str,
        part: &Path,
        band: Band,
        progress: &mut Progress,
    ) -> Result<(), Attempt> {
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
        let content_range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(ContentRange::parse);
        let length = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_big = |total: u64| {
            Attempt::Stop(Outcome::Failed {
                attempts: 1,
                error: format!(
                    "{url} is {total} bytes, more than any SDSS frame ({} MiB at most)",
                    MAX_FRAME_DOWNLOAD >> 20
                ),
            })
        };
        // Where this response's bytes go, and the whole file's size if known.
        let (start, expected_total) = match status {
            StatusCode::OK => {
                if have > 0 {
                    // The server ignored the Range: the part starts over.
                    self.discard(part);
                }
                (0, length)
            }
            StatusCode::PARTIAL_CONTENT => match content_range {
                Some(ContentRange::Bytes { start, end, total })
                    if start == have
                        && end >= start
                        && length.is_none_or(|l| Some(l) == (end - start).checked_add(1))
                        && total.is_none_or(|t| Some(t) == end.checked_add(1)) =>
                {
                    (have, end.checked_add(1))
                }
                range => {
                    self.discard(part);
                    return Err(Attempt::Retry(format!(
                        "asked to resume at byte {have}, the server answered the range {range:?} \
                         with Content-Length {length:?}"
                    )));
                }
            },
            StatusCode::RANGE_NOT_SATISFIABLE => {
                if have > 0 && content_range == Some(ContentRange::Unsatisfied { total: have }) {
                    // The part is the whole file: a transfer that ended just
                    // before its check. Check it now.
                    return self.check(part, band).await;
                }
                self.discard(part);
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
        if let Some(total) = expected_total
            && total > MAX_FRAME_DOWNLOAD
        {
            self.discard(part);
            return Err(too_big(total));
        }
        // Reserve what is still to come (an estimate where the size is not
        // given, grown as bytes pass it), and give back what did not arrive.
        let remaining = expected_total.map(|t| t - start);
        let mut reserved = remaining.unwrap_or(super::plan::ESTIMATED_FRAME_BYTES);
        if !self.reserve(reserved) {
            return Err(Attempt::Stop(Outcome::OverBudget));
        }
        if !progress.sized {
            progress.sized = true;
            (self.events)(FetchEvent::Sized {
                remaining: reserved,
            });
        }
        let received = self
            .receive(&mut response, part, start, &mut reserved)
            .await;
        let got = received.as_ref().map_or_else(|(n, _)| *n, |n| *n);
        progress.received += got;
        self.release(reserved.saturating_sub(got));
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
        self.check(part, band).await
    }

    /// Checks a complete part: a whole bzip2 stream holding the band's FITS
    /// frame with a WCS. A part that is not one is discarded for a fresh try.
    async fn check(&self, part: &Path, band: Band) -> Result<(), Attempt> {
        // The check decompresses the whole frame: off the async thread, and
        // no more at once than there are cores.
        let _permit = self.checks.acquire().await;
        let path = part.to_path_buf();
        let checked = tokio::task::spawn_blocking(move || Frame::check_compressed(&path, band))
            .await
            .map_err(|e| Attempt::Retry(format!("the check did not finish: {e}")))?;
        if let Err(e) = checked {
            self.discard(part);
            return Err(Attempt::Retry(format!("not a usable frame: {e}")));
        }
        Ok(())
    }

    /// Appends the response body to `part` from byte `start`; the error carries
    /// the bytes written before it.
    async fn receive(
        &self,
        response: &mut reqwest::Response,
        part: &Path,
        start: u64,
        reserved: &mut u64,
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
            let after = got + chunk.len() as u64;
            if start + after > MAX_FRAME_DOWNLOAD {
                self.discard(part);
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
            // Past the estimate of a response without a length: reserve as it comes.
            if after > *reserved {
                if !self.reserve(after - *reserved) {
                    return Err((got, Attempt::Stop(Outcome::OverBudget)));
                }
                *reserved = after;
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
        match used.checked_add(bytes) {
            Some(total) if total <= self.options.budget => {
                *used = total;
                true
            }
            _ => false,
        }
    }

    /// Removes a part, and its bytes from what the budget counts.
    fn discard(&self, part: &Path) {
        if let Ok(meta) = std::fs::metadata(part) {
            self.release(meta.len());
        }
        let _ = std::fs::remove_file(part);
    }

    fn release(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(bytes);
    }
}

/// A response's Content-Range (RFC 9110 §14.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentRange {
    /// `bytes 100-199/200`, or `bytes 100-199/*` where the length is unknown.
    Bytes {
        start: u64,
        end: u64,
        total: Option<u64>,
    },
    /// `bytes */200`: sent with a 416.
    Unsatisfied {
        total: u64,
    },
    Invalid,
}

impl ContentRange {
    fn parse(value: &str) -> ContentRange {
        let parse = || -> Option<ContentRange> {
            let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
            let total = match total.trim() {
                "*" => None,
                t => Some(t.parse().ok()?),
            };
            if range.trim() == "*" {
                return Some(ContentRange::Unsatisfied { total: total? });
            }
            let (start, end) = range.split_once('-')?;
            Some(ContentRange::Bytes {
                start: start.trim().parse().ok()?,
                end: end.trim().parse().ok()?,
                total,
            })
        };
        parse().unwrap_or(ContentRange::Invalid)
    }
}

/// A checked part becomes the frame: synced, renamed, the directory synced.
fn publish(part: &Path, frame: &Path) -> std::io::Result<()> {
    std::fs::File::open(part)?.sync_all()?;
    std::fs::rename(part, frame)?;
    let dir = frame.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// What one frame's attempts have done so far.
#[derive(Default)]
struct Progress {
    /// Whether its size has been told to the caller.
    sized: bool,
    received: u64,
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
    use super::ContentRange::{self, *};

    #[test]
    fn an_archive_url_carries_no_credentials() {
        assert!(super::check_archive("https://data.sdss.org/sas/dr17/").is_ok());
        for url in [
            "https://me:secret@mirror.example/frames",
            "https://me@mirror.example/frames",
            "https://mirror.example/frames?token=secret",
        ] {
            let e = super::check_archive(url).unwrap_err().to_string();
            assert!(e.contains("no credentials") && !e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn content_ranges() {
        let parse = ContentRange::parse;
        assert_eq!(
            parse("bytes 100-199/200"),
            Bytes {
                start: 100,
                end: 199,
                total: Some(200)
            }
        );
        assert_eq!(
            parse("bytes 100-199/*"),
            Bytes {
                start: 100,
                end: 199,
                total: None
            }
        );
        assert_eq!(parse("bytes */200"), Unsatisfied { total: 200 });
        for bad in [
            "items 1-2/3",
            "bytes 1-2",
            "bytes */*",
            "bytes 1-x/3",
            "bytes 99999999999999999999-1/2",
        ] {
            assert_eq!(parse(bad), Invalid, "{bad}");
        }
    }
}
