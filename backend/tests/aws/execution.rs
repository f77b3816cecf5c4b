//! Executions of the deployed state machine: a run's layout, failed ranks against the tolerance, a stopped execution, a run cancelled from its launcher, the follower under throttling, and a run resumed on a new execution (from the CLI and from the API).

use super::*;

#[test]
fn a_run_on_step_functions_and_lambda_matches_the_local_layout() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-e2e");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    // Files younger than this have their ETags worked out but not remembered
    // (a second write in the same clock tick could hide): let them settle.
    std::thread::sleep(std::time::Duration::from_millis(3100));

    let out = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "3", "--batch-size", "512", "--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 partitions uploaded"), "{stderr}");
    // The folder was marked incomplete during the upload, and is no more.
    assert_eq!(markers(&store, "partitions"), Vec::<String>::new());
    let s = last_json_line(&out);
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(
        (s["ranks"].as_u64(), s["objects"].as_u64()),
        (Some(3), Some(8443))
    );
    assert!(s["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(s["metrics"]["galaxy"]["nmad"].as_f64().unwrap() < 0.03);
    let run_id = s["run_id"].as_str().unwrap().to_string();
    let result_path = s["result_path"].as_str().unwrap().to_string();
    // Every rank measured by the handler itself: billed like Lambda, in whole ms.
    for m in s["per_rank"].as_array().unwrap() {
        assert!(m["error"].is_null(), "{m}");
        let (d, billed) = (
            m["duration_s"].as_f64().unwrap(),
            m["billed_duration_ms"].as_u64().unwrap(),
        );
        assert!(
            billed as f64 >= d * 1000.0 && (billed as f64) < d * 1000.0 + 1.0,
            "{m}"
        );
    }

    // CAI's layout in the bucket, and the same files copied into the data directory.
    let keys: Vec<String> = store
        .list(&result_path)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    for name in [
        "payload.json",
        "0.json",
        "1.json",
        "2.json",
        "combined_data.json",
        "summary.json",
    ] {
        let key = format!("{result_path}/{name}");
        assert!(keys.contains(&key), "{key} not in {keys:?}");
        assert!(data.join(&key).is_file(), "{key} not copied back");
    }
    // The Map read its items from the plan in S3 and wrote its results back there
    // (ItemReader, ResultWriter), not through the state.
    assert!(
        keys.contains(&format!("{result_path}/plan.json")),
        "{keys:?}"
    );
    let written: Vec<String> = store
        .list("results/map-results")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        written.iter().any(|k| k.ends_with("manifest.json")),
        "no ResultWriter manifest in {written:?}"
    );
    let combined: Value = serde_json::from_slice(
        &store
            .get(&format!("{result_path}/combined_data.json"))
            .unwrap(),
    )
    .unwrap();
    let combined = combined.as_array().unwrap();
    assert_eq!(combined.len(), 3);
    // combined_data.json is the rank files in the bucket, in rank order; each
    // is this run's and counts its predictions file's objects.
    for (rank, entry) in combined.iter().enumerate() {
        let file: Value =
            serde_json::from_slice(&store.get(&format!("{result_path}/{rank}.json")).unwrap())
                .unwrap();
        assert!(
            common::same_json(entry, &file),
            "combined_data.json[{rank}] {entry} vs {rank}.json {file}"
        );
        assert_eq!(file["rank"].as_u64(), Some(rank as u64), "{file}");
        assert_eq!(file["run_id"], run_id.as_str(), "{file}");
        let p = cosmicai_engine::pipeline::read_predictions(
            &store
                .get(&format!("{result_path}/predictions/{rank}.safetensors"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            file["objects"].as_u64(),
            Some(p.object_id.len() as u64),
            "rank {rank}"
        );
    }

    // The execution as Step Functions recorded it: named after the run, a Map run of 3.
    let execution = format!("{}:{run_id}", arn.replace(":stateMachine:", ":execution:"));
    let described = store
        .block_on(client.describe_execution().execution_arn(&execution).send())
        .unwrap();
    assert_eq!(described.status().as_str(), "SUCCEEDED");
    let run = map_run_of(&store, &client, &execution);
    assert_eq!(run.max_concurrency(), 3, "MaxConcurrency from world_size");
    assert_eq!(run.item_counts().unwrap().succeeded(), 3);

    // Recorded in the registry like a local run.
    let runs = cosmicai(&["runs", "--data", &data.display().to_string(), "--json"]);
    let listed = String::from_utf8_lossy(&runs.stdout);
    assert!(
        listed.contains(&run_id) && listed.contains("succeeded"),
        "{listed}"
    );

    // A second run finds the partitions already in the bucket.
    let again = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "2", "--batch-size", "1000"],
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    // Their ETags were remembered as they went up: none is read again.
    assert!(
        stderr.contains("0 partitions uploaded (0 bytes), 4 already there (0 read to compare)"),
        "{stderr}"
    );
    // Another dataset's file of the same name and size in the bucket is not ours:
    // its ETag tells it apart, and ours goes up over it. A local file touched
    // since (a new change time) is read again to compare, not trusted.
    let listed = store.list("partitions").unwrap();
    let first = &listed[0];
    let touched = data.join(listed[3].key.trim_start_matches("partitions/"));
    let file = std::fs::File::options().write(true).open(&touched).unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    let other: Vec<u8> = (0..first.size).map(|i| (i % 251) as u8).collect();
    store.put(&first.key, &other).unwrap();
    let third = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "2", "--batch-size", "1000"],
    );
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "1 partitions uploaded ({} bytes), 3 already there (1 read to compare)",
            first.size
        )),
        "{stderr}"
    );
    assert_ne!(store.get(&first.key).unwrap(), other);
    // More ranks than files: the ranks planned none are no Map item (no Lambda
    // call, child or writes), and count as done with nothing read.
    let wide = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "7", "--batch-size", "1000", "--json"],
    );
    let stderr = String::from_utf8_lossy(&wide.stderr);
    assert!(wide.status.success(), "{stderr}");
    let s = last_json_line(&wide);
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(
        (s["ranks"].as_u64(), s["objects"].as_u64()),
        (Some(7), Some(8443)),
        "{s}"
    );
    assert_eq!(s["failed_ranks"], serde_json::json!([]), "{s}");
    let execution = format!(
        "{}:{}",
        arn.replace(":stateMachine:", ":execution:"),
        s["run_id"].as_str().unwrap()
    );
    let items = map_run_of(&store, &client, &execution);
    assert_eq!(items.item_counts().map(|c| c.total()), Some(4));
    assert_eq!(items.max_concurrency(), 4);
    let wide_path = s["result_path"].as_str().unwrap();
    assert!(store.get(&format!("{wide_path}/3.json")).is_ok());
    assert!(store.get(&format!("{wide_path}/4.json")).is_err());
    // A partition another dataset left under the prefix would run too: refused
    // by name before the execution starts.
    store
        .put("partitions/zz-other.safetensors", &other)
        .unwrap();
    let stale = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "2", "--batch-size", "1000"],
    );
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(!stale.status.success());
    assert!(
        stderr.contains(&format!(
            "s3://{BUCKET}/partitions holds 1 partition files that {} does not (such as zz-other.safetensors)",
            data.display()
        )),
        "{stderr}"
    );
}

#[test]
fn failed_ranks_are_reported_and_the_tolerance_decides_the_execution() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-failures");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    // Break the last partition here (same size, other bytes): the upload sends
    // it, as its ETag is not the bucket's, and the rank reading it fails for good.
    let ok = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "4", "--batch-size", "512"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    break_last_partition(&data);

    // moto runs every item and ignores the tolerance (real Step Functions fails the Map
    // above it, and the definition then summarizes and fails the execution); what
    // can be checked here is that the request's value reaches the Map run.
    for tolerated in [100.0, 10.0] {
        let request = tmp.path().join(format!("request-{tolerated}.json"));
        std::fs::write(
            &request,
            serde_json::json!({"batch_size": 512, "world_size": 4, "result_path": format!("results/t{tolerated}"),
                "tolerated_failure_percentage": tolerated})
            .to_string(),
        )
        .unwrap();
        let out = aws_run(
            &stack,
            &arn,
            &data,
            &["--request", &request.display().to_string(), "--json"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Within the tolerance, partial: the summary, then exit code 3, so that
        // a script stops there. Past it (1 of 4 ranks is 25%), failed, as the
        // real Map's execution fails.
        let (status, code) = if tolerated >= 25.0 {
            ("partial", 3)
        } else {
            ("failed", 1)
        };
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(&format!("ended {status}")), "{stderr}");
        let s = last_json_line(&out);
        assert_eq!(s["status"], status, "{s}");
        assert_eq!(s["failed_ranks"], serde_json::json!([3]), "{s}");
        let error = s["per_rank"][3]["error"].as_str().unwrap_or_default();
        assert!(error.contains("Map item failed"), "{s}");
        assert!(s["per_rank"][2]["error"].is_null(), "{s}");
        let execution = format!(
            "{}:{}",
            arn.replace(":stateMachine:", ":execution:"),
            s["run_id"].as_str().unwrap()
        );
        let run = map_run_of(&store, &client, &execution);
        assert_eq!(run.tolerated_failure_percentage(), tolerated as f32);
    }
}

#[test]
fn an_execution_can_be_stopped() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-stop");
    let tmp = tempfile::tempdir().unwrap();
    // Many small partitions (a rank only runs with a file to read).
    let data = dataset_of(tmp.path(), 130);
    upload_dir(&store, &data, "stop");
    // Many ranks, one function instance: the Map takes a few seconds.
    let input = serde_json::json!({"bucket": BUCKET, "data_prefix": "stop", "batch_size": 8,
        "world_size": 64, "result_path": "results/stop"});
    let started = store
        .block_on(
            client
                .start_execution()
                .state_machine_arn(&arn)
                .name("stopped-run")
                .input(input.to_string())
                .send(),
        )
        .unwrap();
    wait_for_a_map(&store, &client, &arn, Duration::from_secs(30));
    // A second run meanwhile would share the workers' concurrency: refused
    // by name before anything is uploaded.
    // What the running one writes goes under results/; the rest must not move.
    let inputs = || -> Vec<_> {
        let all = store.list("").unwrap();
        all.into_iter()
            .filter(|o| !o.key.starts_with("results/"))
            .collect()
    };
    let before = inputs();
    let out = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "2", "--batch-size", "8"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("execution stopped-run of this stack is running")
            && stderr.contains("stop-execution --execution-arn arn:aws:states:"),
        "{stderr}"
    );
    assert!(store.list("results/run-").unwrap().is_empty());
    assert_eq!(inputs(), before, "nothing uploaded");
    store
        .block_on(
            client
                .stop_execution()
                .execution_arn(started.execution_arn())
                .cause("test")
                .send(),
        )
        .unwrap();
    // moto stops it asynchronously.
    assert_eq!(
        status_when_done(&store, &client, started.execution_arn(), 30),
        "ABORTED"
    );
    // Summarize never ran. (moto lets the Map's items already handed out finish.)
    assert!(store.get("results/stop/summary.json").is_err());
}

/// Ctrl-C on `cosmicai run --target aws` stops the execution before its
/// Summarize: the launcher summarizes what finished, as a local cancel does,
/// and the run is cancelled, with its results and cost, not failed.
#[test]
fn a_run_cancelled_from_its_launcher_is_summarized_and_cancelled() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-cancel");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset_of(tmp.path(), 130);
    let mut launcher = aws_command(
        &stack,
        &arn,
        &data,
        &[
            "--world-size",
            "64",
            "--batch-size",
            "8",
            "--result-path",
            "results/cancelled",
            "--json",
        ],
    );
    // SIGINT as a terminal gives it: a test run as a background job (`make
    // test &`) inherits SIGINT ignored, which the launcher rightly keeps ignoring.
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut launcher, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let launcher = launcher
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once its Map runs (the upload of 65 partitions comes first).
    wait_for_a_map(&store, &client, &arn, Duration::from_secs(240));
    // SAFETY: signalling the launcher this test started.
    unsafe { libc::kill(launcher.id() as i32, libc::SIGINT) };
    let out = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let summary = last_json_line(&out);
    // moto lets the items it handed out finish (here, all of them so far):
    // where every rank had, nothing was cut short and the run succeeded; else
    // the rest were cancelled (engine/tests/s3_store.rs summarizes that case).
    let status = summary["status"].as_str().unwrap();
    assert!(["cancelled", "succeeded"].contains(&status), "{summary}");
    let per_rank = summary["per_rank"].as_array().unwrap();
    let stopped = per_rank
        .iter()
        .filter(|m| m["error"] == "cancelled")
        .count();
    assert_eq!(status == "cancelled", stopped > 0, "{summary}");
    eprintln!(
        "cancelled on AWS: {status}, {stopped} of 64 ranks stopped; the launcher said: {stderr}"
    );
    assert_eq!(
        summary["failed_ranks"].as_array().unwrap().len(),
        stopped,
        "only cancelled ranks failed: {summary}"
    );
    // Priced: the attempts that ran, the execution's transitions, the requests.
    assert!(summary["cost_usd"].as_f64().unwrap() > 0.0, "{summary}");
    // Stopped: its own Summarize never ran (see an_execution_can_be_stopped),
    // so the launcher wrote where Summarize writes, and copied it back.
    let listed = store
        .block_on(client.list_executions().state_machine_arn(&arn).send())
        .unwrap();
    assert_eq!(listed.executions().len(), 1);
    assert_eq!(listed.executions()[0].status().as_str(), "ABORTED");
    let local = data.join("results/cancelled");
    for file in ["summary.json", "combined_data.json"] {
        assert!(
            store.get(&format!("results/cancelled/{file}")).is_ok(),
            "{file}"
        );
        assert!(local.join(file).is_file(), "{file}");
    }
    let runs = common::ok_json(&["runs", "--data", &data.display().to_string(), "--json"]);
    assert_eq!(runs[0]["status"], status, "{runs}");
}

#[test]
fn the_follower_rides_out_throttling_and_a_lost_run_is_followed_again() {
    let Some(bin) = venv_bin() else { return };
    let (stack, _store, _client, arn) = deployed(&bin, "cosmicai-throttled");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let args = ["--world-size", "2", "--batch-size", "512", "--json"];

    // Throttled calls, more than the SDK's own retries would absorb (one attempt
    // each here): the follower backs off and carries on.
    faults(
        &stack,
        Some(serde_json::json!({"DescribeExecution": 3, "GetExecutionHistory": 2})),
    );
    let out = aws_command(&stack, &arn, &data, &args)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(last_json_line(&out)["status"], "succeeded");
    assert_eq!(
        faults(&stack, None),
        serde_json::json!({"DescribeExecution": 0, "GetExecutionHistory": 0}),
        "every injected fault was met"
    );

    // Throttled for longer than the follower's patience: the run is left
    // interrupted (its execution goes on), not failed...
    faults(
        &stack,
        Some(serde_json::json!({"DescribeExecution": 1_000_000})),
    );
    let out = aws_command(&stack, &arn, &data, &args)
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("COSMICAI_AWS_PATIENCE_S", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("lost contact") && stderr.contains("cosmicai runs --follow"),
        "{stderr}"
    );
    let runs = common::ok_json(&["runs", "--data", &data.display().to_string(), "--json"]);
    let lost = &runs[0];
    assert_eq!(lost["status"], "interrupted", "{runs}");
    let id = lost["id"].as_str().unwrap().to_string();

    // ...and `runs --follow` picks it up once AWS answers again: the execution's
    // end, its results copied back, its row closed.
    faults(&stack, Some(serde_json::json!({"DescribeExecution": 0})));
    let out = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
        .args(["runs", "--data"])
        .arg(&data)
        .args(["--follow", &id, "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = last_json_line(&out);
    assert_eq!(
        (summary["status"].as_str(), summary["objects"].as_u64()),
        (Some("succeeded"), Some(8443))
    );
    let result_path = summary["result_path"].as_str().unwrap();
    assert!(data.join(result_path).join("combined_data.json").is_file());
    let runs = common::ok_json(&["runs", "--data", &data.display().to_string(), "--json"]);
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    // A start that never reaches AWS (here throttled past the SDK's retries)
    // leaves its row with the ARN it would have had: followed, it is said at
    // once to have never run, not waited on as a lost execution.
    faults(
        &stack,
        Some(serde_json::json!({"StartExecution": 1_000_000})),
    );
    let out = aws_command(&stack, &arn, &data, &args)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("StartExecution"),
        "{stderr}"
    );
    faults(&stack, Some(serde_json::json!({"StartExecution": 0})));
    let runs = common::ok_json(&["runs", "--data", &data.display().to_string(), "--json"]);
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    let never = runs[0]["id"].as_str().unwrap().to_string();
    let out = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
        .args(["runs", "--data"])
        .arg(&data)
        .args(["--follow", &never])
        .env("COSMICAI_AWS_PATIENCE_S", "600")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("its start never reached AWS"),
        "{stderr}"
    );
    let runs = common::ok_json(&["runs", "--data", &data.display().to_string(), "--json"]);
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    // A local run, or one followed already, is no AWS execution to follow.
    let e = common::failure(&[
        "runs",
        "--data",
        &data.display().to_string(),
        "--follow",
        "run-0-0-0",
    ]);
    assert!(e.contains("not in the registry"), "{e}");
}

#[test]
fn a_run_whose_rank_failed_is_resumed_on_a_new_execution_running_that_rank_only() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, _client, arn) = deployed(&bin, "cosmicai-resume");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    // The last partition broken here (same size, other bytes): the rank
    // reading it fails for good, the others finish.
    let (last, good) = break_last_partition(&data);
    let out = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "4", "--batch-size", "512", "--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let s = last_json_line(&out);
    assert_eq!(s["failed_ranks"], serde_json::json!([3]), "{s}");
    let run_id = s["run_id"].as_str().unwrap().to_string();
    let result_path = s["result_path"].as_str().unwrap().to_string();
    let kept_result = store.get(&format!("{result_path}/0.json")).unwrap();
    // The runs table says how to resume it, and where it runs.
    let table = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
        .args(["runs", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!(
            "--resume {run_id} starts a new execution on its AWS stack"
        )),
        "{table}"
    );
    let name = last.file_name().unwrap().to_str().unwrap();
    let key = store
        .list("partitions")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .find(|k| k.ends_with(name))
        .unwrap();
    let resume = || {
        aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
            .args(["run", "--data"])
            .arg(&data)
            .args(["--resume", &run_id, "--json"])
            .output()
            .unwrap()
    };
    // The partition gone from the bucket: refused by name, nothing started.
    store.delete(&key).unwrap();
    let out = resume();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "partition '{key}' is gone since the run was planned"
        )),
        "{stderr}"
    );
    // Put back whole (as it should have been), and resumed from the API of a
    // server with the stack as its AWS deployment (the explorer's Resume
    // button): rank 3 runs alone, on a new execution, and the run is
    // summarized whole. A refusal is the 409 the CLI's refusal was.
    // A server with no AWS deployment offers no resume, and refuses one by name.
    let server = serve_without_aws(&data);
    let (_, detail) = http(&server, "GET", &format!("/api/runs/{run_id}"));
    assert_eq!(detail["run"]["on_aws"], true, "{detail}");
    assert!(detail["run"].get("resumable").is_none(), "{detail}");
    let (status, refused) = http(&server, "POST", &format!("/api/runs/{run_id}/resume"));
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("no AWS deployment"),
        "{refused}"
    );
    drop(server);
    let server = serve_with_stack(&stack, &arn, &data);
    let (status, detail) = http(&server, "GET", &format!("/api/runs/{run_id}"));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(
        (&detail["run"]["resumable"], &detail["run"]["on_aws"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{detail}"
    );
    let (status, refused) = http(&server, "POST", &format!("/api/runs/{run_id}/resume"));
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("is gone since the run was planned"),
        "{refused}"
    );
    store.put(&key, &good).unwrap();
    let (status, created) = http(&server, "POST", &format!("/api/runs/{run_id}/resume"));
    assert_eq!(
        (status, &created["id"]),
        (202, &Value::from(run_id.as_str())),
        "{created}"
    );
    let within = Instant::now() + Duration::from_secs(600);
    let detail = loop {
        let (_, detail) = http(&server, "GET", &format!("/api/runs/{run_id}"));
        let over = detail["events"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["event"] == "finished" || e["event"] == "error")
        });
        if over {
            break detail;
        }
        assert!(Instant::now() < within, "{detail}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    assert!(detail["run"].get("resumable").is_none(), "{detail}");
    // Every rank shown finished on the run's page, the kept ones too.
    let finished: std::collections::BTreeSet<u64> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "rank_finished")
        .filter_map(|e| e["measure"]["rank"].as_u64())
        .collect();
    assert_eq!(finished, (0..4).collect(), "{detail}");
    let (status, again) = http(&server, "POST", &format!("/api/runs/{run_id}/resume"));
    assert_eq!(status, 409, "{again}");
    assert!(again.to_string().contains("nothing to resume"), "{again}");
    drop(server);
    let s: Value = serde_json::from_slice(
        &std::fs::read(data.join(&result_path).join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["run_id"], run_id.as_str(), "{s}");
    assert_eq!(
        (s["objects"].as_u64(), s["resumed_ranks"].as_u64()),
        (Some(8443), Some(3)),
        "{s}"
    );
    assert_eq!(s["failed_ranks"], serde_json::json!([]), "{s}");
    // Ranks 0 to 2 did not run again: their files are as the first execution left them.
    assert_eq!(
        store.get(&format!("{result_path}/0.json")).unwrap(),
        kept_result
    );
    // The summary in the bucket is the resumed run's, and came back here.
    let there: Value =
        serde_json::from_slice(&store.get(&format!("{result_path}/summary.json")).unwrap())
            .unwrap();
    assert_eq!(there["resumed_ranks"], 3, "{there}");
    assert!(data.join(&result_path).join("combined_data.json").is_file());
    // One row, succeeded; a second resume has nothing to do.
    let runs = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
        .args(["runs", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0]["id"].as_str(), runs[0]["status"].as_str()),
        (Some(run_id.as_str()), Some("succeeded"))
    );
    let out = resume();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("nothing to resume"),
        "{stderr}"
    );
}
