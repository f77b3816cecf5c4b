//! Partitions to the bucket: only those it lacks (same key, size and ETag), each
//! streamed in parts (one part in memory, whatever the file's size), several
//! at a time; and the model's weights, where the run names a local file.

use super::etags::{LocalEtags, Stamp};
use anyhow::{Context, Result};
use cosmicai_engine::pipeline::Payload;
use cosmicai_engine::store::s3::etag_of;
use cosmicai_engine::store::{LocalStore, ObjectStore, join};
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::RunRequest;
use std::collections::HashMap;
use std::io::Seek;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upload {
    pub uploaded: usize,
    pub already_there: usize,
    pub bytes: u64,
    /// Files whose ETag was worked out by reading them (the rest were remembered).
    pub read_for_etag: usize,
}

/// Partitions uploaded at once: one stream rarely fills a link to S3. Each
/// holds one part (8 MiB for files up to 78 GiB) in memory.
const PARALLEL_PUTS: usize = 8;

/// One partition's upload, as a thread finishes it.
enum Sent {
    Uploaded { bytes: u64 },
    AlreadyThere { read: bool },
}

/// Uploads the partitions `plan` lists (keys in `local`) under `s3_prefix` in the
/// bucket, [`PARALLEL_PUTS`] at a time, skipping those already there: the same
/// key, size and ETag (the same bytes: two datasets whose files share names and
/// sizes, as fixed-size partitions do, are told apart). Local ETags are
/// remembered in `etags`, so a rerun reads only files that changed.
/// `progress(done, total)` after each file.
pub fn upload(
    local: &LocalStore,
    plan: &Payload,
    local_prefix: &str,
    aws: &super::Aws,
    s3_prefix: &str,
    etags: &LocalEtags,
    mut progress: impl FnMut(usize, usize) -> Result<()>,
) -> Result<Upload> {
    let remote: HashMap<String, (u64, String)> = aws
        .s3
        .list_with_etags(s3_prefix)?
        .into_iter()
        .map(|(o, etag)| (o.key, (o.size, etag)))
        .collect();
    let files: Vec<(&String, String, u64, Option<&String>)> = plan
        .files
        .iter()
        .map(|(key, size)| {
            let target = join(s3_prefix, within(key, local_prefix));
            // Only an object of the same size can hold the same bytes.
            let etag = remote
                .get(&target)
                .filter(|(there, _)| there == size)
                .map(|(_, etag)| etag);
            (key, target, *size, etag)
        })
        .collect();
    let mut report = Upload::default();
    on_pool(
        &files,
        PARALLEL_PUTS,
        |(key, target, size, etag)| send(local, aws, etags, key, target, *size, *etag),
        |sent| {
            match sent {
                Sent::Uploaded { bytes } => {
                    report.bytes += bytes;
                    report.uploaded += 1;
                }
                Sent::AlreadyThere { read } => {
                    report.already_there += 1;
                    report.read_for_etag += usize::from(read);
                }
            }
            // An error (a cancel) stops the upload between files.
            progress(report.already_there + report.uploaded, plan.files.len())
        },
    )?;
    Ok(report)
}

/// One partition to `target`, unless the bucket's object there (`remote_etag`,
/// of the same size) holds the same bytes.
fn send(
    local: &LocalStore,
    aws: &super::Aws,
    etags: &LocalEtags,
    key: &str,
    target: &str,
    size: u64,
    remote_etag: Option<&String>,
) -> Result<Sent> {
    let path = local
        .local_path(key)
        .ok_or_else(|| anyhow::anyhow!("{key}: not in the local store"))?;
    let reading = || format!("reading {}", path.display());
    let mut file = std::fs::File::open(&path).with_context(reading)?;
    // Stamped before a byte is read: a write after this changes the stamp.
    let stamped_at = std::time::SystemTime::now();
    let stamp = Stamp::of(&file.metadata().with_context(reading)?);
    if stamp.size() != size {
        anyhow::bail!(
            "{}: {} bytes, where it had {size} when the run was planned: it changed; run again once it is written",
            path.display(),
            stamp.size()
        );
    }
    if let Some(remote_etag) = remote_etag {
        let (ours, read) = match etags.get(&path, &stamp) {
            Some(etag) => (etag, false),
            None => {
                let etag = etag_of(std::io::BufReader::new(&file), size).with_context(reading)?;
                etags.remember(&path, &stamp, stamped_at, &etag);
                (etag, true)
            }
        };
        if ours == *remote_etag {
            return Ok(Sent::AlreadyThere { read });
        }
    }
    // A file fails after the SDK's own retries of each request (a connection
    // reset mid-way loses its multipart upload): sent again whole, twice, before
    // the upload stops. A rerun then sends only what is missing.
    let etag = retried(PUT_ATTEMPTS, std::time::Duration::from_secs(2), || {
        file.rewind()?;
        Ok(aws.s3.put_from(target, &file, size)?)
    })
    .with_context(|| format!("uploading {key} to s3://{}/{target}", aws.s3.bucket()))?;
    // Written to while it went up (same size): what the bucket got may be torn.
    let after = std::fs::metadata(&path).with_context(reading)?;
    if Stamp::of(&after) != stamp {
        anyhow::bail!(
            "{}: changed while it was uploaded to s3://{}/{target}; run again once it is written",
            path.display(),
            aws.s3.bucket()
        );
    }
    etags.remember(&path, &stamp, stamped_at, &etag);
    Ok(Sent::Uploaded { bytes: size })
}

/// Tries of one file's upload.
const PUT_ATTEMPTS: u32 = 3;

/// `f` until it succeeds, at most `attempts` times, waiting `first_wait`, then
/// twice as long, between tries; the last error if none succeeds.
fn retried<T>(
    attempts: u32,
    first_wait: std::time::Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut wait = first_wait;
    let mut tried = 1;
    loop {
        match f() {
            Ok(value) => return Ok(value),
            Err(e) if tried >= attempts => {
                return Err(e.context(format!("after {tried} tries")));
            }
            Err(_) => {
                std::thread::sleep(wait);
                wait *= 2;
                tried += 1;
            }
        }
    }
}

/// `key`'s path inside the folder `prefix` (the key itself outside it).
pub fn within<'a>(key: &'a str, prefix: &str) -> &'a str {
    key.strip_prefix(prefix)
        .unwrap_or(key)
        .trim_start_matches('/')
}

/// `f` of every item on `threads` threads, each taking the next item as it
/// finishes one (a slow file holds up no other); `each` of every result on the
/// caller's thread as it comes. The first error stops the work: no new item
/// is started, and the error is returned once the threads are done.
fn on_pool<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
    mut each: impl FnMut(R) -> Result<()>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            let (tx, next, stop, f) = (tx.clone(), &next, &stop, &f);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item)))
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("an upload thread panicked")));
                    if tx.send(result).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for result in rx {
            match result.and_then(&mut each) {
                Ok(()) => {}
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(())
    })
}

/// A local weights file a run names, and its key in the bucket:
/// `models/<name>-<first 12 hex digits of its SHA-256>.<extension>`, so a CAI
/// user's checkpoint needs no `aws s3 cp`, and two files of one name never
/// overwrite each other.
pub struct LocalWeights {
    path: String,
    key: String,
    bytes: Vec<u8>,
}

impl LocalWeights {
    /// `request` reading its weights from the bucket, and the local file to send
    /// there first, where the model names one; nothing is sent yet. A path that
    /// is no local file is a key in a bucket, left for Initialize to check.
    pub fn of(request: &RunRequest) -> Result<(RunRequest, Option<LocalWeights>)> {
        let spec = request.model_spec().map_err(anyhow::Error::msg)?;
        let Some(path) = spec.weights().filter(|p| !p.starts_with("s3://")) else {
            return Ok((request.clone(), None));
        };
        let local = Path::new(path);
        if !local.is_file() {
            return Ok((request.clone(), None));
        }
        let bytes =
            std::fs::read(local).with_context(|| format!("model '{spec}': reading {path}"))?;
        // A file that holds no such model is named here, before it is sent and
        // before any rank is paid for.
        let weights = cosmicai_model::weights::Weights::from_file_slice(path, &bytes)?;
        cosmicai_engine::redshift_model::check_weights(&spec, &weights)
            .map_err(anyhow::Error::msg)?;
        drop(weights);
        let hash = &crate::models::sha256_hex(&bytes)[..12];
        let stem = local
            .file_stem()
            .map_or("weights".into(), |s| s.to_string_lossy());
        let key = match local.extension() {
            Some(ext) => format!("models/{stem}-{hash}.{}", ext.to_string_lossy()),
            None => format!("models/{stem}-{hash}"),
        };
        cosmicai_shared::run::check_key(&key)
            .map_err(|e| anyhow::anyhow!("model '{spec}': its key in the bucket, {key}, {e}"))?;
        let model = match spec {
            ModelSpec::PhotoZ(_) => ModelSpec::PhotoZ(Some(key.clone())),
            ModelSpec::AstroMae(_) => ModelSpec::AstroMae(key.clone()),
        };
        let request = RunRequest {
            model: model.to_string(),
            ..request.clone()
        };
        let path = path.to_string();
        Ok((request, Some(LocalWeights { path, key, bytes })))
    }

    /// Sends the file, unless its key already holds as many bytes (the key
    /// names its hash); says which.
    pub fn send(&self, aws: &super::Aws) -> Result<String> {
        let (path, key, bucket) = (&self.path, &self.key, aws.s3.bucket());
        let there = aws
            .s3
            .list("models")?
            .iter()
            .any(|o| o.key == *key && o.size == self.bytes.len() as u64);
        if there {
            return Ok(format!(
                "model weights {path}: already in s3://{bucket}/{key}"
            ));
        }
        aws.s3.put(key, &self.bytes).with_context(|| {
            format!("uploading the model's weights {path} to s3://{bucket}/{key}")
        })?;
        Ok(format!(
            "model weights {path}: uploaded to s3://{bucket}/{key} ({} bytes)",
            self.bytes.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_upload_is_tried_again_a_bounded_number_of_times() {
        let zero = std::time::Duration::ZERO;
        let mut calls = 0;
        let got = retried(3, zero, || {
            calls += 1;
            if calls < 3 {
                anyhow::bail!("reset")
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);
        let mut calls = 0;
        let failed = retried(3, zero, || -> Result<()> {
            calls += 1;
            anyhow::bail!("reset {calls}")
        });
        assert_eq!(calls, 3);
        let message = format!("{:#}", failed.unwrap_err());
        assert!(
            message.contains("after 3 tries") && message.contains("reset 3"),
            "{message}"
        );
    }

    #[test]
    fn the_pool_runs_every_item_once_and_stops_at_the_first_error() {
        let items: Vec<usize> = (0..100).collect();
        let mut seen = Vec::new();
        on_pool(
            &items,
            8,
            |i| Ok(*i * 2),
            |r| {
                seen.push(r);
                Ok(())
            },
        )
        .unwrap();
        seen.sort();
        assert_eq!(seen, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        // An empty list, and more threads than items.
        on_pool(&[] as &[usize], 8, |i| Ok(*i), |_| panic!("no item")).unwrap();
        let mut one = Vec::new();
        on_pool(
            &[7],
            8,
            |i| Ok(*i),
            |r| {
                one.push(r);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(one, [7]);
        // An error (or a panic) stops the pool: named, and not every item runs.
        let started = AtomicUsize::new(0);
        let failed = on_pool(
            &items,
            2,
            |i| {
                started.fetch_add(1, Ordering::SeqCst);
                if *i == 3 {
                    anyhow::bail!("item 3 is bad")
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(())
            },
            |()| Ok(()),
        );
        assert_eq!(failed.unwrap_err().to_string(), "item 3 is bad");
        assert!(started.load(Ordering::SeqCst) < items.len());
        let panicked = on_pool(
            &items,
            2,
            |i| if *i == 5 { panic!("boom") } else { Ok(()) },
            |()| Ok(()),
        );
        assert!(panicked.unwrap_err().to_string().contains("panicked"));
        // So does an error of the caller's (a cancel), between items.
        let done = AtomicUsize::new(0);
        let cancelled = on_pool(
            &items,
            2,
            |_| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(done.fetch_add(1, Ordering::SeqCst))
            },
            |n| {
                if n >= 10 {
                    anyhow::bail!("cancelled")
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(cancelled.unwrap_err().to_string(), "cancelled");
        assert!(done.load(Ordering::SeqCst) < items.len());
    }
}
