//! The AWS executor's run: upload what the bucket lacks (or take the partitions
//! already in S3, where they are), start the state machine, follow it to the end, copy the
//! results back.

use super::{Aws, LocalEtags, LocalWeights, start_and_follow, upload, within};
use crate::coordinator::{AwsData, Recorder};
use anyhow::{Result, bail};
use cosmicai_engine::pipeline::{
    LAMBDA_MAX_MEMORY_MB, Payload, RunSummary, check_rank_time, check_room, plan,
};
use cosmicai_engine::store::{LocalStore, ObjectStore};
use cosmicai_shared::run::{Device, RunRequest};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;

/// Runs `request` on AWS as run `run_id` over `data`: the local store at `root`'s
/// folder `request.data_prefix`, uploaded first, or partitions already in S3
/// (the stack's bucket, or its `InputBucket`), read where they are. Results are
/// copied back under `root`.
pub fn execute_on_aws(
    aws: &Aws,
    root: &Path,
    request: &RunRequest,
    data: &AwsData,
    run_id: &str,
    recorder: &mut Recorder,
) -> Result<RunSummary> {
    // Before hours of upload, as well as at the start.
    super::refuse_if_busy(aws, request, run_id)?;
    let deployed = Deployed::read(aws);
    deployed.check_bucket(aws)?;
    // Initialize refuses a result path outside the deployment's results: said
    // here, before an upload that may take hours (CAI's payload names one of
    // its own, such as `result-partition-100MB/1GB/1`).
    if let Some(prefix) = &deployed.results_prefix {
        check_result_path(request, prefix)?;
    }
    let local = LocalStore::new(root);
    // The weights' key is known before anything is sent: a plan over the bucket
    // leaves it out of the data, and a refused plan has sent nothing.
    let (with_key, weights) = LocalWeights::of(request)?;
    let (remote, planned) = match data {
        // The local plan reads the request as given, which leaves a local weights
        // file among the partitions out of the data.
        AwsData::Upload(s3_prefix) => uploaded(
            aws,
            (root, request, &deployed),
            &with_key.model,
            s3_prefix,
            run_id,
            recorder,
        )?,
        AwsData::InBucket(data) => {
            let remote = RunRequest {
                data_bucket: data.bucket.clone(),
                ..in_bucket(aws, &with_key, &data.folder)
            };
            // Planned as Initialize will plan it: from the bucket's listing alone.
            let other = data
                .bucket
                .as_deref()
                .map(|bucket| readable_in_place(aws, &deployed, bucket))
                .transpose()?;
            let planned = plan(other.as_ref().unwrap_or(&aws.s3), &remote, run_id)?;
            refuse_unrunnable(&planned, &deployed)?;
            let bytes: u64 = planned.files.iter().map(|(_, size)| size).sum();
            recorder.println(&format!(
                "s3://{}/{}: {} partition files ({bytes} bytes) run where they are; nothing uploaded",
                remote.partitions_bucket(),
                data.folder,
                planned.files.len()
            ));
            (remote, planned)
        }
    };
    if let Some(weights) = &weights {
        recorder.println(&weights.send(aws)?);
    }
    // Cancelled while the data was readied: no execution is started (and paid for).
    if recorder.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(crate::coordinator::Cancelled(
            "cancelled before its execution started on AWS: nothing ran there".into(),
        )
        .into());
    }
    for note in &planned.notes {
        recorder.println(&format!("note: {note}"));
    }
    recorder.start(&remote, &planned.ranks)?;
    recorder.status("on AWS".into());
    start_and_follow(aws, &remote, run_id, &local, recorder)
}

/// `request` reading its partitions from `s3_prefix` of the stack's bucket.
fn in_bucket(aws: &Aws, request: &RunRequest, s3_prefix: &str) -> RunRequest {
    RunRequest {
        bucket: aws.config.bucket.clone(),
        data_bucket: None,
        data_prefix: s3_prefix.to_string(),
        ..request.clone()
    }
}

/// A store of `bucket`, another than the stack's, whose partitions the run
/// reads in place. Refused by name, before any call to it, unless the stack's
/// definition names it as its `InputBucket` (its workers may read no other,
/// and this launcher's credentials may read more than they should show); and
/// where it is in another region (S3 would answer every read `PermanentRedirect`).
fn readable_in_place(
    aws: &Aws,
    deployed: &Deployed,
    bucket: &str,
) -> Result<cosmicai_engine::store::s3::S3Store> {
    if let (None, Some(why)) = (&deployed.input_bucket, &deployed.unread) {
        bail!(
            "data bucket '{bucket}': the stack's state machine, which names the bucket its workers may read in place, could not be read ({why}); the launcher needs states:DescribeStateMachine on it (the stack's LauncherPolicyArn grants it)"
        );
    }
    match deployed.input_bucket.as_deref() {
        Some(input) => cosmicai_shared::run::check_input_bucket(bucket, &aws.config.bucket, input)
            .map_err(anyhow::Error::msg)?,
        None => bail!(
            "data bucket '{bucket}': the stack's state machine names no InputBucket (deployed before there was one): deploy the template again with InputBucket={bucket}"
        ),
    }
    let store = aws.other_bucket(bucket)?;
    if let Some((theirs, ours)) = store.in_another_region() {
        bail!(
            "data bucket '{bucket}' is in {theirs}, the stack in {ours}: deploy the stack in {theirs} to read the partitions where they are, or copy them into its bucket"
        );
    }
    Ok(store)
}

/// Refuses a plan the stack's workers cannot run: a partition read whole that
/// their `/tmp` does not hold, or a rank longer than their time allows.
pub(super) fn refuse_unrunnable(planned: &Payload, deployed: &Deployed) -> Result<()> {
    if let Some(mb) = deployed.worker_storage_mb {
        check_room(planned, mb).map_err(|e| {
            anyhow::anyhow!("{e} (as the stack's state machine says; nothing was uploaded)")
        })?;
    }
    refuse_too_long(planned, deployed.worker_memory_mb)
}

/// A run whose ranks could outlive their time (a CPU rank's Express execution
/// even with the most memory Lambda gives, a GPU rank's Batch attempt), refused
/// before anything is uploaded or started. The request's `memory_mb` is not the
/// workers': they have the template's MemorySize, which Initialize plans at and
/// checks exactly. Bounding at the request's would refuse runs a large function
/// can take.
fn refuse_too_long(planned: &Payload, worker_mb: Option<u32>) -> Result<()> {
    if planned.request.device != Device::Cpu {
        return check_rank_time(planned).map_err(anyhow::Error::from);
    }
    let mut at = planned.clone();
    at.request.memory_mb = worker_mb.unwrap_or(LAMBDA_MAX_MEMORY_MB);
    check_rank_time(&at).map_err(|e| match worker_mb {
        Some(_) => anyhow::anyhow!(
            "{e} (the stack's workers have {} MB, its template's MemorySize, as its state machine says; nothing was uploaded)",
            at.request.memory_mb
        ),
        None => anyhow::anyhow!(
            "{e} (bounded with Lambda's largest memory; Initialize checks again at the template's MemorySize)"
        ),
    })
}

/// What the launcher reads of the deployed state machine's definition: the
/// workers' memory and `/tmp` (the template writes its `MemorySize` and
/// `EphemeralStorageMB` into Initialize's `worker_memory_mb` and
/// `worker_storage_mb`) and the results prefix (its Map's `ResultWriter` writes
/// under `ResultsPrefix/map-results`). `None` for a stack deployed before the
/// template wrote them, or a definition that cannot be read.
#[derive(Debug, Default, PartialEq)]
pub struct Deployed {
    pub worker_memory_mb: Option<u32>,
    pub worker_storage_mb: Option<u32>,
    pub results_prefix: Option<String>,
    /// The template's `InputBucket`: `Some("")` where the stack reads no other
    /// bucket, `None` where its definition does not say (deployed before it
    /// did, or unread).
    pub input_bucket: Option<String>,
    /// The template's `ChildExecutionType` (EXPRESS or STANDARD), as Summarize
    /// is told it, for pricing the CPU ranks' child executions.
    pub child_execution_type: Option<String>,
    /// The stack's bucket (`DataBucketName`), where its Map writes its
    /// results: `--bucket` must name this one.
    pub bucket: Option<String>,
    /// Where its Summarize takes the run's id from: Initialize's output in a
    /// stack that can resume runs (a resuming execution has a name of its own).
    pub summarize_run_id: Option<String>,
    /// Why the definition could not be read, where it could not.
    pub unread: Option<String>,
}

impl Deployed {
    pub fn read(aws: &Aws) -> Deployed {
        aws.s3
            .block_on(
                aws.sfn
                    .describe_state_machine()
                    .state_machine_arn(&aws.config.state_machine_arn)
                    .send(),
            )
            .map(|described| Deployed::of(described.definition()))
            .unwrap_or_else(|e| Deployed {
                unread: Some(super::sdk_error(&e)),
                ..Deployed::default()
            })
    }

    fn of(definition: &str) -> Deployed {
        let definition = match serde_json::from_str::<serde_json::Value>(definition) {
            Ok(definition) => definition,
            Err(e) => {
                return Deployed {
                    unread: Some(format!("its definition is not JSON: {e}")),
                    ..Deployed::default()
                };
            }
        };
        let worker_memory_mb = definition
            .pointer("/States/Initialize/Parameters/Payload/worker_memory_mb")
            .and_then(serde_json::Value::as_str)
            .and_then(|mb| mb.trim().parse().ok())
            .filter(|mb| (128..=LAMBDA_MAX_MEMORY_MB).contains(mb));
        let worker_storage_mb = definition
            .pointer("/States/Initialize/Parameters/Payload/worker_storage_mb")
            .and_then(serde_json::Value::as_str)
            .and_then(cosmicai_engine::pipeline::storage_mb);
        let results_prefix = definition
            .pointer("/States/Ranks/ResultWriter/Parameters/Prefix")
            .and_then(serde_json::Value::as_str)
            .and_then(|p| p.strip_suffix("/map-results"))
            // The undeployed file's placeholder is no prefix.
            .filter(|p| !p.is_empty() && !p.contains("${"))
            .map(|p| p.trim_matches('/').to_string());
        let input_bucket = definition
            .pointer("/States/Initialize/Parameters/Payload/input_bucket")
            .and_then(serde_json::Value::as_str)
            .filter(|b| !b.contains("${"))
            .map(|b| b.trim().to_string());
        let child_execution_type = definition
            .pointer("/States/Summarize/Parameters/Payload/child_execution_type")
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.contains("${"))
            .map(str::to_string);
        let bucket = definition
            .pointer("/States/Ranks/ResultWriter/Parameters/Bucket")
            .and_then(serde_json::Value::as_str)
            .filter(|b| !b.contains("${") && !b.trim().is_empty())
            .map(|b| b.trim().to_string());
        let summarize_run_id = definition
            .pointer("/States/Summarize/Parameters/Payload/run_id.$")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        Deployed {
            worker_memory_mb,
            worker_storage_mb,
            results_prefix,
            input_bucket,
            child_execution_type,
            bucket,
            summarize_run_id,
            unread: None,
        }
    }

    /// Why this stack cannot resume a run, where it cannot: a stack deployed
    /// before it could would summarize the resuming execution, not the run,
    /// after its ranks had run and been paid for.
    pub fn cannot_resume(&self) -> Option<String> {
        if let Some(why) = &self.unread {
            return Some(format!(
                "could not be read ({why}): whether it can resume a run is not known; the launcher needs states:DescribeStateMachine on it (the stack's LauncherPolicyArn grants it)"
            ));
        }
        match self.summarize_run_id.as_deref() {
            Some(RESUMABLE_RUN_ID) => None,
            _ => Some(
                "was deployed before it could resume a run (its Summarize names the execution, not the run): deploy this version's template (infra/aws) again, then resume".into(),
            ),
        }
    }

    /// Refuses a `--bucket` that is not the stack's: its workers would find
    /// no payload there, and the results would be looked for where none are
    /// written.
    pub fn check_bucket(&self, aws: &Aws) -> Result<()> {
        match &self.bucket {
            Some(stack) if *stack != aws.config.bucket => bail!(
                "bucket '{}' is not the stack's: its state machine {} writes to '{stack}' (the stack's BucketName output): give --bucket {stack} (or COSMICAI_AWS_BUCKET)",
                aws.config.bucket,
                aws.config.state_machine_arn
            ),
            _ => Ok(()),
        }
    }
}

/// Where a stack that can resume runs has its Summarize take the run's id.
const RESUMABLE_RUN_ID: &str = "$.initialize.output.run_id";

/// Whether `request` takes fewer partition files than its folder holds (its
/// own, or CAI's `.pt` files, whichever are more); a folder that cannot be
/// planned counts as part.
fn sends_part(local: &LocalStore, request: &RunRequest, run_id: &str) -> bool {
    let Some(limit) = request.file_limit else {
        return false;
    };
    let all = RunRequest {
        file_limit: None,
        ..request.clone()
    };
    let planned = plan(local, &all, run_id).map(|p| p.files.len());
    let pt = local
        .list(&request.data_prefix)
        .map(|listing| {
            listing
                .iter()
                .filter(|o| cosmicai_engine::cai::is_cai_key(&o.key))
                .count()
        })
        .unwrap_or(0);
    planned.map_or(true, |n| n.max(pt) > limit)
}

/// The check Initialize makes, made before anything is sent.
pub(super) fn check_result_path(request: &RunRequest, prefix: &str) -> Result<()> {
    cosmicai_shared::run::check_results_prefix(&request.result_path, prefix)
        .map_err(|e| anyhow::anyhow!("{e}; give --result-path {prefix}/NAME"))
}

/// The local dataset's partitions uploaded under `s3_prefix` (what the bucket
/// lacks), and the request and plan that read them there.
fn uploaded(
    aws: &Aws,
    (root, request, deployed): (&Path, &RunRequest, &Deployed),
    remote_model: &str,
    s3_prefix: &str,
    run_id: &str,
    recorder: &mut Recorder,
) -> Result<(RunRequest, Payload)> {
    let local = LocalStore::new(root);
    // Part of the dataset (`file_limit` takes fewer files than the folder
    // holds, counted before the conversion below, which converts only what a
    // limit takes) sent into a folder an earlier upload left marked would clear
    // the mark with files still missing there: refused before anything is done.
    let marker = cosmicai_engine::store::join(s3_prefix, cosmicai_engine::dataset::INCOMPLETE);
    if sends_part(&local, request, run_id) {
        match aws.s3.get(&marker) {
            Err(cosmicai_engine::store::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => bail!(
                "s3://{}/{marker}: an earlier upload to this folder was cut short (or is under way); send the whole dataset first (no --file-limit), then run part of it",
                aws.config.bucket
            ),
        }
    }
    // CAI's `.pt` partitions are converted here, as for a local run: ranks then
    // memory-map them instead of parsing pickles (they can read `.pt` in place,
    // for data already in S3).
    let request =
        &crate::coordinator::with_converted_data(root, request, recorder, " before the upload")?;
    let local_plan = plan(&local, request, run_id)?;
    refuse_unrunnable(&local_plan, deployed)?;
    // What only the local plan sees (weights left out of the upload); the
    // bucket's plan says the rest once the upload is there.
    for note in local_plan
        .notes
        .iter()
        .filter(|n| n.contains("left out of the data"))
    {
        recorder.println(&format!("note: {note}"));
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
    let etags = LocalEtags::open(&crate::registry::path(root))?;
    // Marked incomplete until the upload ends: an upload cut short (a
    // cancel, a crash) is refused by a later run on the folder (`--s3-data`),
    // rather than run as a dataset with files missing.
    aws.s3
        .put(&marker, b"an upload to this folder has not finished\n")?;
    let uploaded = upload(
        &local,
        &local_plan,
        &request.data_prefix,
        aws,
        s3_prefix,
        &etags,
        |done, _| {
            bar.set_position(done as u64);
            // A cancelled run stops sending between files (an upload is hours
            // at CAI's sizes); what was sent stays for the next run.
            if recorder.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(crate::coordinator::Cancelled(
                    "cancelled during the upload: nothing was started on AWS".into(),
                )
                .into());
            }
            Ok(())
        },
    );
    bar.finish_and_clear();
    let uploaded = uploaded?;
    aws.s3.delete(&marker)?;
    recorder.println(&format!(
        "s3://{}/{s3_prefix}: {} partitions uploaded ({} bytes), {} already there ({} read to compare)",
        aws.config.bucket,
        uploaded.uploaded,
        uploaded.bytes,
        uploaded.already_there,
        uploaded.read_for_etag
    ));
    let remote = RunRequest {
        model: remote_model.to_string(),
        ..in_bucket(aws, request, s3_prefix)
    };
    // Initialize plans over the bucket's listing: partitions another dataset
    // left under the prefix would run too.
    let remote_plan = plan(&aws.s3, &remote, run_id)?;
    let names = |p: &Payload, prefix: &str| -> Vec<String> {
        p.files
            .iter()
            .map(|(key, _)| within(key, prefix).to_string())
            .collect()
    };
    let ours = names(&local_plan, &request.data_prefix);
    let there = names(&remote_plan, s3_prefix);
    if ours != there {
        let ours: std::collections::HashSet<&String> = ours.iter().collect();
        let extra: Vec<&String> = there.iter().filter(|n| !ours.contains(n)).collect();
        bail!(
            "s3://{}/{s3_prefix} holds {} partition files that {} does not (such as {}): the run would read them too; give --s3-prefix a folder of its own, or remove them",
            aws.config.bucket,
            extra.len(),
            root.join(&request.data_prefix)
                .components()
                .as_path()
                .display(),
            extra.first().map_or("-", |n| n.as_str())
        );
    }
    Ok((remote, remote_plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cosmicai_engine::pipeline::plan_ranks;

    /// AstroMAE over `files` files of 100 MB, all in one rank.
    fn one_rank(files: usize, memory_mb: u32) -> Payload {
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 512, "world_size": 1, "result_path": "results/r",
            "model": "astromae:models/a.pt", "memory_mb": memory_mb,
        }))
        .unwrap();
        let keys: Vec<String> = (0..files).map(|i| format!("d/{i}.pt")).collect();
        Payload {
            bytes_per_object: None,
            notes: Vec::new(),
            run_id: "r".into(),
            ranks: plan_ranks(&keys, 1),
            files: keys.into_iter().map(|k| (k, 100_000_000)).collect(),
            request,
        }
    }

    #[test]
    fn the_launcher_refuses_only_what_no_function_memory_could_run() {
        // Too long at the request's 2 GB, yet within reach of a 10 GB function:
        // Initialize decides at the template's MemorySize.
        let fits_large = one_rank(2, 2048);
        assert!(check_rank_time(&fits_large).is_err());
        assert!(refuse_too_long(&fits_large, None).is_ok());
        // Past even 10 GB: refused here, before any upload, naming the bound.
        let e = refuse_too_long(&one_rank(40, 2048), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at 10240 MB") && e.contains("Lambda's largest memory"),
            "{e}"
        );
        // A stack whose definition names its workers' memory: bounded at it.
        let e = refuse_too_long(&one_rank(2, 10240), Some(2048))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at 2048 MB") && e.contains("nothing was uploaded"),
            "{e}"
        );
        // A GPU run has no Express child to outlive.
        let mut gpu = one_rank(40, 2048);
        gpu.request.device = Device::Cuda;
        assert!(refuse_too_long(&gpu, Some(2048)).is_ok());
    }

    #[test]
    fn an_upload_of_part_of_a_folder_is_told_from_its_files_before_any_conversion() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("cai");
        std::fs::create_dir_all(data.join("converted")).unwrap();
        for name in ["a.pt", "b.pt", "c.pt"] {
            std::fs::write(data.join(name), b"").unwrap();
        }
        let local = LocalStore::new(tmp.path());
        let request = |limit: Option<usize>| -> RunRequest {
            serde_json::from_value(serde_json::json!({
                "batch_size": 512, "world_size": 1, "result_path": "results/r",
                "data_prefix": "cai", "file_limit": limit,
            }))
            .unwrap()
        };
        assert!(!sends_part(&local, &request(None), "r"));
        assert!(sends_part(&local, &request(Some(1)), "r"));
        assert!(!sends_part(&local, &request(Some(3)), "r"));
        // A limited conversion made one partition of them: still part of the folder.
        std::fs::write(data.join("converted/part-0.safetensors"), b"").unwrap();
        assert!(sends_part(&local, &request(Some(1)), "r"));
        assert!(!sends_part(&local, &request(Some(5)), "r"));
    }

    #[test]
    fn the_workers_memory_storage_results_prefix_input_bucket_and_children_are_read_from_the_deployed_definition()
     {
        let asl = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../infra/aws/statemachine.asl.json"),
        )
        .unwrap();
        let deployed = |memory: &str, prefix: &str| {
            Deployed::of(
                &asl.replace("${WorkerMemoryMB}", memory)
                    .replace("${WorkerStorageMB}", "2048")
                    .replace("${ResultsPrefix}", prefix)
                    .replace("${InputBucket}", "cai-data")
                    .replace("${ChildExecutionType}", "STANDARD")
                    .replace("${DataBucketName}", "cosmicai-results"),
            )
        };
        assert_eq!(
            deployed("3008", "results"),
            Deployed {
                worker_memory_mb: Some(3008),
                worker_storage_mb: Some(2048),
                results_prefix: Some("results".into()),
                input_bucket: Some("cai-data".into()),
                child_execution_type: Some("STANDARD".into()),
                bucket: Some("cosmicai-results".into()),
                summarize_run_id: Some(RESUMABLE_RUN_ID.into()),
                unread: None,
            }
        );
        assert_eq!(deployed("3008", "results").cannot_resume(), None);
        // A stack deployed before it could resume, or whose definition is unread: said why.
        let older = Deployed::of(&asl.replace(RESUMABLE_RUN_ID, "$$.Execution.Name"));
        assert!(
            older
                .cannot_resume()
                .is_some_and(|why| why.contains("deploy this version's template")),
            "{older:?}"
        );
        // A stack deployed without one says so: no other bucket is read.
        let none = Deployed::of(&asl.replace("${InputBucket}", ""));
        assert_eq!(none.input_bucket.as_deref(), Some(""));
        // Undeployed (the placeholders), out of Lambda's range, or an older stack's.
        assert_eq!(
            Deployed::of(&asl),
            Deployed {
                summarize_run_id: Some(RESUMABLE_RUN_ID.into()),
                ..Deployed::default()
            }
        );
        assert_eq!(deployed("64", "runs/out").worker_memory_mb, None);
        assert_eq!(
            deployed("64", "runs/out").results_prefix.as_deref(),
            Some("runs/out")
        );
        assert_eq!(Deployed::of(r#"{"States": {}}"#), Deployed::default());
        // A definition that is not JSON is unread, and says why.
        let unread = Deployed::of("not json");
        assert!(
            unread
                .unread
                .as_deref()
                .is_some_and(|why| why.contains("not JSON"))
        );
        assert_eq!(
            Deployed {
                unread: None,
                ..unread
            },
            Deployed::default()
        );
    }

    #[test]
    fn a_result_path_outside_the_stacks_results_is_refused_before_the_upload() {
        let mut request = one_rank(1, 2048).request;
        request.result_path = "result-partition-100MB/1GB/1".into();
        let e = check_result_path(&request, "results")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'result-partition-100MB/1GB/1' is outside 'results/'")
                && e.contains("--result-path results/"),
            "{e}"
        );
        request.result_path = "results/run 1".into();
        assert!(check_result_path(&request, "results").is_ok());
        // A path that only starts with the same letters is outside.
        request.result_path = "results2/x".into();
        assert!(check_result_path(&request, "results").is_err());
    }
}
