//! Partitions to the bucket: only those it lacks (same key, size and ETag), large ones
//! in parts (the S3 store switches to multipart above 16 MB), several at a time;
//! and the model's weights, where the run names a local file.

use anyhow::{Context, Result};
use cosmicai_engine::pipeline::Payload;
use cosmicai_engine::store::s3::etag_of;
use cosmicai_engine::store::{LocalStore, ObjectStore, join, on_threads};
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::RunRequest;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upload {
    pub uploaded: usize,
    pub already_there: usize,
    pub bytes: u64,
}

/// Partitions uploaded at once: one stream rarely fills a link to S3.
const PARALLEL_PUTS: usize = 8;
/// Bytes of partitions held in memory at once while they go up (each is read
/// whole): 8 of CAI's 25 to 100 MB files, fewer of larger ones, one at least.
const BYTES_IN_FLIGHT: u64 = 1 << 30;

/// Uploads the partitions `plan` lists (keys in `local`) under `s3_prefix` in the
/// bucket, [`PARALLEL_PUTS`] at a time, skipping those already there: the same
/// key, size and ETag (the same bytes: two datasets whose files share names and
/// sizes, as fixed-size partitions do, are told apart). `progress(done, total)`.
pub fn upload(
    local: &LocalStore,
    plan: &Payload,
    local_prefix: &str,
    aws: &super::Aws,
    s3_prefix: &str,
    mut progress: impl FnMut(usize, usize),
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
    for window in windows(&files, |(_, _, size, _)| *size) {
        let sent = on_threads(
            window,
            |(key, target, size, etag)| -> Result<Option<u64>> {
                if let Some(etag) = etag
                    && local_etag(local, key, *size)? == **etag
                {
                    return Ok(None);
                }
                put(local, aws, key, target).map(Some)
            },
            |(key, ..)| Err(anyhow::anyhow!("uploading {key}: its thread panicked")),
        );
        for sent in sent {
            match sent? {
                Some(bytes) => {
                    report.bytes += bytes;
                    report.uploaded += 1;
                }
                None => report.already_there += 1,
            }
        }
        progress(report.already_there + report.uploaded, plan.files.len());
    }
    Ok(report)
}

/// `key`'s path inside the folder `prefix` (the key itself outside it).
pub fn within<'a>(key: &'a str, prefix: &str) -> &'a str {
    key.strip_prefix(prefix)
        .unwrap_or(key)
        .trim_start_matches('/')
}

/// The ETag S3 would give the local partition `key` (read as it streams).
fn local_etag(local: &LocalStore, key: &str, size: u64) -> Result<String> {
    let path = local
        .local_path(key)
        .ok_or_else(|| anyhow::anyhow!("{key}: not in the local store"))?;
    let file = std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
    etag_of(file, size).with_context(|| format!("reading {}", path.display()))
}

/// `items` in runs of at most [`PARALLEL_PUTS`] whose sizes add up to at most
/// [`BYTES_IN_FLIGHT`] (a larger item goes alone).
fn windows<T>(items: &[T], size: impl Fn(&T) -> u64) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, item) in items.iter().enumerate() {
        let full = i - start == PARALLEL_PUTS || bytes.saturating_add(size(item)) > BYTES_IN_FLIGHT;
        if i > start && full {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(size(item));
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// One partition to `target`; its size.
fn put(local: &LocalStore, aws: &super::Aws, key: &str, target: &str) -> Result<u64> {
    let bytes = local.get(key)?;
    aws.s3
        .put(target, &bytes)
        .with_context(|| format!("uploading {key} to s3://{}/{target}", aws.s3.bucket()))?;
    Ok(bytes.len() as u64)
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
        let digest = Sha256::digest(&bytes);
        let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
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
    fn uploads_go_eight_at_a_time_within_a_gigabyte() {
        let lengths = |sizes: &[u64]| -> Vec<usize> {
            windows(sizes, |s| *s).iter().map(|w| w.len()).collect()
        };
        // CAI's 100 MB files: eight at a time.
        assert_eq!(lengths(&[100_000_000; 20]), [8, 8, 4]);
        // 400 MB files: two at a time (1.2 GB would be past the bound).
        assert_eq!(lengths(&[400_000_000; 5]), [2, 2, 1]);
        // A file over the bound goes alone; small ones around it go together.
        assert_eq!(lengths(&[10, 3 << 30, 10, 10]), [1, 1, 2]);
        assert!(lengths(&[]).is_empty());
        // Every item once, in order.
        let sizes: Vec<u64> = (0..50).map(|i| i * 37_000_000).collect();
        let flat: Vec<u64> = windows(&sizes, |s| *s).concat();
        assert_eq!(flat, sizes);
        for w in windows(&sizes, |s| *s) {
            assert!(w.len() == 1 || w.iter().sum::<u64>() <= BYTES_IN_FLIGHT);
        }
    }
}
