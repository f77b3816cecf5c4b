//! Following an AWS run again after its launcher stopped (a closed terminal, a
//! restarted server, a follower that lost contact): the execution goes on, and
//! billing with it, whether or not anyone watches. `cosmicai runs --follow ID`
//! and `serve` at start pick such runs up from the registry; `runs --adopt ARN`
//! takes in an execution started elsewhere (CAI's payload through
//! `aws stepfunctions start-execution`).

use super::record::{Recorder, RunControl};
use crate::aws::{Aws, AwsConfig, follow, sdk_error};
use crate::registry::{Claim, Registry};
use anyhow::{Result, bail};
use cosmicai_engine::pipeline::{PayloadOf, RunSummary, read_payload};
use cosmicai_engine::store::LocalStore;
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::cai_payload::translate_on_deployment;
use cosmicai_shared::run::RunRequest;
use std::path::Path;

/// Follows AWS run `run_id` of the registry under `root` to its end: its
/// execution as it is now (it may have ended long ago), then its results copied
/// back and its row closed, as if it had been followed all along.
pub fn reattach(
    root: &Path,
    run_id: &str,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
) -> Result<RunSummary> {
    follow_again(root, run_id, control, observe, false)
}

/// [`reattach`]; with `interrupted_only`, a run no longer interrupted when it
/// is claimed (ended, or taken up by another process meanwhile) is left as it is.
fn follow_again(
    root: &Path,
    run_id: &str,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
    interrupted_only: bool,
) -> Result<RunSummary> {
    let (registry, run, _) = crate::registry::open_run(root, run_id)?;
    let Some(aws) = run.aws else {
        bail!("run {run_id} did not run on AWS: only AWS executions can be followed again");
    };
    // Checked and taken in one write: two processes following one run would
    // copy its results twice and each close its row.
    match registry.claim(run_id, interrupted_only)? {
        Claim::Taken => {}
        Claim::FollowedBy(pid) => bail!("run {run_id} is followed by process {pid} already"),
        Claim::NotInterrupted => bail!("run {run_id} is no longer interrupted: left as it is"),
    }
    let request = run.request;
    let mut recorder =
        Recorder::for_claimed(registry, root, run_id, request.world_size, control, observe)?;
    recorder.status(format!("following {} again", aws.execution_arn));
    let outcome = Aws::connect(aws.config).and_then(|client| {
        follow(
            &client,
            &request,
            run_id,
            &aws.execution_arn,
            &LocalStore::new(root),
            &mut recorder,
            &[],
        )
    });
    recorder.end(outcome)
}

/// Follows, each on its own thread, the interrupted AWS runs of the last 90 days
/// (how long Step Functions keeps an execution's history); returns how many.
pub fn reattach_interrupted(root: &Path) -> Result<usize> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - 90 * 86_400;
    let ids = Registry::in_folder(root)?.interrupted_on_aws(since)?;
    for id in &ids {
        let (root, id) = (root.to_path_buf(), id.clone());
        std::thread::spawn(move || {
            let control = RunControl {
                quiet: true,
                ..Default::default()
            };
            match follow_again(&root, &id, control, &mut |_| {}, true) {
                Ok(summary) => crate::say!("run {id} followed again: {}", summary.status.name()),
                Err(e) => crate::say!("run {id}: {e:#}"),
            }
        });
    }
    Ok(ids.len())
}

/// Takes execution `arn` of the stack `config` names, started outside this
/// registry, into the registry under `root` as a run named after the execution,
/// then follows it to its end as [`reattach`] does. Its request is the plan
/// Initialize wrote (`payload.json`: the request as the ranks run it), or, before
/// Initialize has written one, the execution's input read as Initialize reads it.
pub fn adopt(
    root: &Path,
    config: AwsConfig,
    arn: &str,
    control: RunControl,
    observe: &mut dyn FnMut(&RunEvent),
) -> Result<RunSummary> {
    // An execution's ARN names its state machine: another stack's is refused
    // by name before any call (whose policy may not reach it: AccessDenied).
    // The stack's ARN may name a version or alias (NAME:3): its state machine
    // is the ARN's first seven fields.
    let stack_machine = std::env::var("COSMICAI_STATE_MACHINE_ARN")
        .ok()
        .map(|arn| arn.trim().split(':').take(7).collect::<Vec<_>>().join(":"))
        .filter(|arn| !arn.is_empty());
    if let (Some(stack), Some(own)) = (
        &stack_machine,
        crate::aws::execution_state_machine(arn).ok(),
    ) && own != *stack
    {
        bail!(
            "execution {arn} belongs to state machine {own}, not the stack's {stack} (COSMICAI_STATE_MACHINE_ARN): give its own stack's bucket and state machine"
        );
    }
    let aws = Aws::connect(config)?;
    crate::aws::Deployed::read(&aws).check_bucket(&aws)?;
    let described = aws
        .s3
        .block_on(aws.sfn.describe_execution().execution_arn(arn).send())
        .map_err(|e| anyhow::anyhow!("DescribeExecution {arn}: {}", sdk_error(&e)))?;
    if let Some(stack) = &stack_machine
        && described.state_machine_arn() != stack
    {
        bail!(
            "execution {arn} belongs to state machine {}, not the stack's {stack} (COSMICAI_STATE_MACHINE_ARN): give its own stack's bucket and state machine",
            described.state_machine_arn()
        );
    }
    let Some(run_id) = described
        .name()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        bail!("execution {arn}: DescribeExecution named no execution");
    };
    let registry = Registry::in_folder(root)?;
    if registry.run(&run_id)?.is_some() {
        bail!(
            "run {run_id} is in the registry of {} already: `cosmicai runs --follow {run_id}` follows it",
            root.display()
        );
    }
    drop(registry);
    let request = adopted_request(&aws, arn, &run_id, described.input().unwrap_or("{}"))?;
    if request.bucket != aws.config.bucket {
        bail!(
            "execution {arn} runs in bucket {}, not {}: give --bucket {} (the stack's workers write there)",
            request.bucket,
            aws.config.bucket,
            request.bucket
        );
    }
    let mut recorder = Recorder::new(root, &run_id, request.world_size, control, observe)?;
    recorder.start(&request, &[])?;
    // Dated when it started, not when it was taken in: the registry follows runs
    // again only as long as Step Functions keeps their history.
    recorder.set_created_at(described.start_date().secs())?;
    recorder.record_aws(&crate::registry::AwsExecution {
        config: aws.config.clone(),
        execution_arn: arn.to_string(),
    })?;
    recorder.status(format!("following {arn}"));
    let outcome = follow(
        &aws,
        &request,
        &run_id,
        arn,
        &LocalStore::new(root),
        &mut recorder,
        &[],
    );
    recorder.end(outcome)
}

/// The request of execution `run_id`: Initialize's plan where it has written
/// one for this run, else the execution's `input`, translated as Initialize does.
fn adopted_request(aws: &Aws, arn: &str, run_id: &str, input: &str) -> Result<RunRequest> {
    let invalid =
        |e: String| anyhow::anyhow!("execution {arn}: its input is not a run request: {e}");
    let input: serde_json::Value =
        serde_json::from_str(input).map_err(|e| invalid(e.to_string()))?;
    if let Some(of) = input
        .get(cosmicai_shared::aws::RESUME_OF)
        .and_then(serde_json::Value::as_str)
    {
        bail!(
            "execution {arn} resumes run {of}: it is that run's, not a run of its own; `cosmicai runs --data DATA --follow {of}` in the data folder that ran it"
        );
    }
    // Only read where Initialize wrote no plan (it failed): the model it
    // would have filled in for CAI's payload is the deployment's, not known here.
    // Its results are in the stack's bucket where it names none, as Initialize fills in.
    let (input, _notes) = translate_on_deployment(
        input,
        Some(("photoz", "the deployment's (not known here)")),
        Some(&aws.config.bucket),
    )
    .map_err(invalid)?;
    let request: RunRequest = serde_json::from_value(input).map_err(|e| invalid(e.to_string()))?;
    let problems = request.problems();
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    // The plan is read from the bucket: taken only where it is this run's, for
    // this result path, and a valid request.
    match read_payload(&aws.s3, &request.result_path, Some(run_id))? {
        PayloadOf::Its(plan)
            if plan.request.result_path == request.result_path
                && plan.request.problems().is_empty() =>
        {
            Ok(plan.request)
        }
        _ => Ok(request),
    }
}
