//! `cosmicai bench upload`: the launcher's partition upload at CAI's file sizes,
//! its speed and peak memory, then the rerun that finds everything there. Any S3
//! API: AWS, or a local server (`tools/bench_upload.sh` starts moto).

use crate::aws::{Aws, AwsConfig, LocalEtags, upload};
use anyhow::{Context, Result};
use clap::Args;
use cosmicai_engine::pipeline::Payload;
use cosmicai_engine::store::LocalStore;
use cosmicai_engine::system::peak_rss_mb;
use serde::Serialize;
use std::io::Write;
use std::time::Instant;

#[derive(Args)]
pub struct UploadBenchArgs {
    /// The bucket (created where --endpoint names a local server and it is missing).
    #[arg(long)]
    pub bucket: String,
    /// An S3 API other than AWS's, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Partition files to upload.
    #[arg(long, default_value_t = 8)]
    pub files: usize,
    /// Size of each, in MiB (CAI's partitions: 25 to 100 MB).
    #[arg(long, default_value_t = 100)]
    pub mib: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct UploadFigures {
    files: usize,
    mib_each: u64,
    upload_s: f64,
    upload_mb_per_s: f64,
    rerun_s: f64,
    rerun_read_for_etag: usize,
    peak_rss_before_mb: f64,
    peak_rss_after_mb: f64,
}

/// Where the bench's objects go in the bucket (removed at the end).
const PREFIX: &str = "bench-upload";

pub fn bench_upload(args: UploadBenchArgs) -> Result<()> {
    if args.files == 0 || args.files > 10_000 || args.mib == 0 || args.mib > 100 * 1024 {
        anyhow::bail!("--files must be 1 to 10,000 and --mib 1 to 102,400");
    }
    let dir = tempfile::tempdir()?;
    let mut files = Vec::with_capacity(args.files);
    // Written in 1 MiB blocks, each file different: memory stays small here.
    let mut block = vec![0u8; 1 << 20];
    for i in 0..args.files {
        let key = format!("{PREFIX}/part-{i:05}.safetensors");
        let path = dir.path().join(&key);
        std::fs::create_dir_all(dir.path().join(PREFIX))?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for b in 0..args.mib {
            for (j, byte) in block.iter_mut().enumerate() {
                *byte = (j as u64 ^ b.wrapping_mul(31) ^ (i as u64).wrapping_mul(7919)) as u8;
            }
            out.write_all(&block)?;
        }
        out.flush()?;
        files.push((key, args.mib << 20));
    }
    // Only settled files have their ETags remembered (see aws::etags).
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let aws = Aws::connect(AwsConfig {
        bucket: args.bucket.clone(),
        state_machine_arn: String::new(),
        region: None,
        endpoint: args.endpoint.clone(),
    })?;
    if args.endpoint.is_some() {
        let exists = aws
            .s3
            .block_on(aws.s3.client().head_bucket().bucket(&args.bucket).send());
        if exists.is_err() {
            aws.s3
                .block_on(aws.s3.client().create_bucket().bucket(&args.bucket).send())
                .with_context(|| format!("creating bucket {}", args.bucket))?;
        }
    }
    let request = serde_json::from_value(serde_json::json!({
        "batch_size": 512, "world_size": 1, "data_prefix": PREFIX, "result_path": "bench",
    }))?;
    let plan = Payload {
        bytes_per_object: None,
        notes: Vec::new(),
        run_id: "bench-upload".into(),
        request,
        files,
        ranks: vec![Vec::new()],
    };
    let local = LocalStore::new(dir.path());
    let etags = LocalEtags::open(&crate::registry::path(dir.path()))?;
    let before = peak_rss_mb();
    let started = Instant::now();
    let first = upload(&local, &plan, PREFIX, &aws, PREFIX, &etags, |_, _| Ok(()))?;
    let upload_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let rerun = upload(&local, &plan, PREFIX, &aws, PREFIX, &etags, |_, _| Ok(()))?;
    let rerun_s = started.elapsed().as_secs_f64();
    let after = peak_rss_mb();
    anyhow::ensure!(
        first.uploaded == args.files && rerun.already_there == args.files,
        "the upload sent {} of {} files, and the rerun found {} there",
        first.uploaded,
        args.files,
        rerun.already_there
    );
    for (key, _) in &plan.files {
        let _ = aws.s3.block_on(
            aws.s3
                .client()
                .delete_object()
                .bucket(&args.bucket)
                .key(key)
                .send(),
        );
    }
    let mb = (args.files as u64 * (args.mib << 20)) as f64 / 1e6;
    let figures = UploadFigures {
        files: args.files,
        mib_each: args.mib,
        upload_s,
        upload_mb_per_s: mb / upload_s,
        rerun_s,
        rerun_read_for_etag: rerun.read_for_etag,
        peak_rss_before_mb: before,
        peak_rss_after_mb: after,
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "{} files of {} MiB to s3://{}: uploaded in {:.1} s ({:.0} MB/s); rerun, all there, in {:.2} s ({} read to compare); peak RSS {:.0} MB before, {:.0} MB after",
            figures.files,
            figures.mib_each,
            args.bucket,
            figures.upload_s,
            figures.upload_mb_per_s,
            figures.rerun_s,
            figures.rerun_read_for_etag,
            figures.peak_rss_before_mb,
            figures.peak_rss_after_mb
        )
    };
    crate::output::emit(&(text + "\n"))
}
