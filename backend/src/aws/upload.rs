//! Partitions to the bucket: only those it lacks (same key and size), large ones
//! in parts (the S3 store switches to multipart above 16 MB).

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

/// Uploads the partitions `plan` lists (keys in `local`) under `s3_prefix` in the
/// bucket, skipping those already there with the same size. `progress(done, total)`.
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
    for (i, (key, size)) in plan.files.iter().enumerate() {
        let relative = key
            .strip_prefix(local_prefix)
            .unwrap_or(key)
            .trim_start_matches('/');
        let target = join(s3_prefix, relative);
        if remote.get(&target) == Some(size) {
            report.already_there += 1;
        } else {
            let bytes = local.get(key)?;
            aws.s3
                .put(&target, &bytes)
                .with_context(|| format!("uploading {key} to s3://{}/{target}", aws.s3.bucket()))?;
            report.uploaded += 1;
            report.bytes += bytes.len() as u64;
        }
        progress(i + 1, plan.files.len());
    }
    Ok(report)
}
