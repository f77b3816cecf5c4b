//! The AWS executor's run: upload what the bucket lacks, start the state machine,
//! follow it to the end, copy the results back.

use super::{Aws, start_and_follow, upload};
use crate::coordinator::Recorder;
use anyhow::Result;
use cosmicai_engine::pipeline::{RunSummary, check_express_time, plan};
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::run::RunRequest;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;

/// Runs `request`, whose `data_prefix` is a folder of the local store at `root`, on
/// AWS as run `run_id`: uploads what the bucket lacks under `s3_prefix`, starts the
/// state machine and follows it; results are copied back under `root`.
pub fn execute_on_aws(
    aws: &Aws,
    root: &Path,
    request: &RunRequest,
    s3_prefix: &str,
    run_id: &str,
    recorder: &mut Recorder,
) -> Result<RunSummary> {
    let local = LocalStore::new(root);
    // CAI's `.pt` partitions are converted here, as for a local run: ranks then
    // memory-map them instead of parsing pickles (they can read `.pt` in place,
    // for data already in S3).
    let request =
        &crate::coordinator::with_converted_data(root, request, recorder, " before the upload")?;
    let local_plan = plan(&local, request, run_id)?;
    // Refused here too, before the upload (Initialize on AWS checks it again).
    if request.device == cosmicai_shared::run::Device::Cpu {
        check_express_time(&local_plan)?;
    }
    let bar = if recorder.is_quiet() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(local_plan.files.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30.green/blue}] {pos}/{len} {elapsed}")?
            .progress_chars("=> "),
    );
    bar.set_message(format!("upload to s3://{}/{s3_prefix}", aws.config.bucket));
    let uploaded = upload(
        &local,
        &local_plan,
        &request.data_prefix,
        aws,
        s3_prefix,
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    recorder.println(&format!(
        "s3://{}/{s3_prefix}: {} partitions uploaded ({} bytes), {} already there",
        aws.config.bucket, uploaded.uploaded, uploaded.bytes, uploaded.already_there
    ));

    let remote = RunRequest {
        bucket: aws.config.bucket.clone(),
        data_prefix: s3_prefix.to_string(),
        ..request.clone()
    };
    recorder.start(&remote, &local_plan.ranks)?;
    recorder.status("on AWS".into());
    start_and_follow(aws, &remote, run_id, &local, recorder)
}
