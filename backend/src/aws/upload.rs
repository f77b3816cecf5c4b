//! Partitions to the bucket: only those it lacks (same key and size), large ones
//! in parts (the S3 store switches to multipart above 16 MB), several at a time.

use anyhow::{Context, Result};
use cosmicai_engine::pipeline::Payload;
use cosmicai_engine::store::{LocalStore, ObjectStore, join};
use std::collections::HashMap;

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upload {
    pub uploaded: usize,
    pub already_there: usize,
    pub bytes: u64,
}

/// Partitions uploaded at once: one stream rarely fills a link to S3, and
/// each holds a partition (25 to 100 MB for CAI's) in memory while it goes.
const PARALLEL_PUTS: usize = 8;

/// Uploads the partitions `plan` lists (keys in `local`) under `s3_prefix` in the
/// bucket, skipping those already there with the same size, [`PARALLEL_PUTS`]
/// at a time. `progress(done, total)`.
pub fn upload(
    local: &LocalStore,
    plan: &Payload,
    local_prefix: &str,
    aws: &super::Aws,
    s3_prefix: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<Upload> {
    let remote: HashMap<String, u64> = aws
        .s3
        .list(s3_prefix)?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let mut report = Upload::default();
    let mut missing = Vec::new();
    for (key, size) in &plan.files {
        let relative = key
            .strip_prefix(local_prefix)
            .unwrap_or(key)
            .trim_start_matches('/');
        let target = join(s3_prefix, relative);
        if remote.get(&target) == Some(size) {
            report.already_there += 1;
        } else {
            missing.push((key, target));
        }
    }
    progress(report.already_there, plan.files.len());
    for window in missing.chunks(PARALLEL_PUTS) {
        let sent: Vec<Result<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = window
                .iter()
                .map(|(key, target)| scope.spawn(move || put(local, aws, key, target)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("an upload thread panicked")))
                })
                .collect()
        });
        for bytes in sent {
            report.bytes += bytes?;
            report.uploaded += 1;
        }
        progress(report.already_there + report.uploaded, plan.files.len());
    }
    Ok(report)
}

/// One partition to `target`; its size.
fn put(local: &LocalStore, aws: &super::Aws, key: &str, target: &str) -> Result<u64> {
    let bytes = local.get(key)?;
    aws.s3
        .put(target, &bytes)
        .with_context(|| format!("uploading {key} to s3://{}/{target}", aws.s3.bucket()))?;
    Ok(bytes.len() as u64)
}
