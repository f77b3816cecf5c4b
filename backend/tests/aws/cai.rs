//! CAI's data as its users have it: .pt partitions converted before the upload, and CAI's own payload run over its .pt files in place.

use super::*;

#[test]
fn cai_pt_partitions_are_converted_before_the_upload() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, _client, arn) = deployed(&bin, "cosmicai-cai-pt");
    let tmp = tempfile::tempdir().unwrap();
    // A folder of CAI's own `.pt` partitions, as `split_data.py` writes them.
    let data = tmp.path().join("cai");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(common::astromae_fixture("partition.pt"), data.join("1.pt")).unwrap();
    // CAI's own result path is outside the stack's results: refused before
    // anything is converted or sent, not by Initialize after the upload.
    let out = aws_run(
        &stack,
        &arn,
        &data,
        &[
            "--world-size",
            "1",
            "--batch-size",
            "8",
            "--result-path",
            "result-partition-100MB/1GB/1",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("'result-partition-100MB/1GB/1' is outside 'results/'")
            && !stderr.contains("uploaded")
            && !stderr.contains("converting"),
        "{stderr}"
    );
    assert!(store.list("partitions").unwrap().is_empty());
    let out = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "1", "--batch-size", "8", "--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 CAI .pt files; converting them")
            && stderr.contains("1 partitions uploaded"),
        "{stderr}"
    );
    let s = last_json_line(&out);
    assert_eq!(
        (s["status"].as_str(), s["objects"].as_u64()),
        (Some("succeeded"), Some(4)),
        "{s}"
    );
}

#[test]
fn cais_own_input_runs_on_the_deployed_state_machine_over_its_pt_files_in_place() {
    // A CAI user's data and checkpoint in their own bucket, as CAI keeps them (the
    // stack's InputBucket), and an execution started with CAI's own payload: the
    // partitions read where they are, nothing converted, uploaded or copied, and
    // every result in the stack's bucket.
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-cai-input");
    let cai = other_bucket(&stack, INPUT_BUCKET);
    let partition = std::fs::read(common::astromae_fixture("partition.pt")).unwrap();
    cai.put("cai-data/p0.pt", &partition).unwrap();
    cai.put("cai-data/p1.pt", &partition).unwrap();
    cai.put(
        "models/astromae.pt",
        &std::fs::read(common::astromae_fixture("astromae_module.pt")).unwrap(),
    )
    .unwrap();
    let held = |bucket: &S3Store| -> Vec<String> {
        bucket
            .list("")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    let cai_before = held(&cai);
    // CAI's demo input's keys (its scripts bucket, its counts as strings, no
    // world_size), with its data bucket and a model of ours.
    let input = serde_json::json!({
        "bucket": "cosmicai2", "data_bucket": INPUT_BUCKET, "data_prefix": "cai-data",
        "file_limit": "2", "batch_size": "3", "object_type": "folder",
        "S3_object_name": "scripts/Anomaly Detection",
        "script": "/tmp/scripts/Anomaly Detection/Inference/inference.py",
        "result_path": "results/cai-input",
        "model": format!("astromae:s3://{INPUT_BUCKET}/models/astromae.pt")
    });
    let started = store
        .block_on(
            client
                .start_execution()
                .state_machine_arn(&arn)
                .name("cai-input")
                .input(input.to_string())
                .send(),
        )
        .unwrap();
    // Taken into a registry here while it runs, and followed to its end.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let adopt_in = |arn: &str, bucket: &str| {
        aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
            .args(["runs", "--data"])
            .arg(&home)
            .args([
                "--adopt",
                arn,
                "--bucket",
                bucket,
                "--aws-endpoint",
                &stack.endpoint,
            ])
            .arg("--json")
            .output()
            .unwrap()
    };
    let adopt = |arn: &str| adopt_in(arn, BUCKET);
    // CAI's payload names no bucket of the stack's: a --bucket that is not the
    // stack's (CAI's scripts bucket, say) is refused before anything is taken in.
    let wrong = adopt_in(started.execution_arn(), "cosmicai2");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success()
            && stderr.contains("bucket 'cosmicai2' is not the stack's")
            && stderr.contains(&format!("give --bucket {BUCKET}")),
        "{stderr}"
    );
    let adopted = adopt(started.execution_arn());
    let stderr = String::from_utf8_lossy(&adopted.stderr);
    assert!(adopted.status.success(), "{stderr}");
    let followed = last_json_line(&adopted);
    assert_eq!(
        (followed["status"].as_str(), followed["objects"].as_u64()),
        (Some("succeeded"), Some(8)),
        "{followed}"
    );
    assert!(home.join("results/cai-input/combined_data.json").is_file());
    let runs = common::ok_json(&["runs", "--data", &home.display().to_string(), "--json"]);
    assert_eq!(
        (runs[0]["id"].as_str(), runs[0]["status"].as_str()),
        (Some("cai-input"), Some("succeeded")),
        "{runs}"
    );
    let again = adopt(started.execution_arn());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("runs --follow cai-input"),
        "{stderr}"
    );
    // An execution Initialize refused, its result path another run's: nothing
    // of that run is copied or taken for this one's.
    let refused = store
        .block_on(
            client
                .start_execution()
                .state_machine_arn(&arn)
                .name("cai-input-again")
                .input(input.to_string())
                .send(),
        )
        .unwrap();
    let out = adopt(refused.execution_arn());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "cai-input-again ended FAILED with no plan of its own under results/cai-input"
        ),
        "{stderr}"
    );
    let runs = common::ok_json(&["runs", "--data", &home.display().to_string(), "--json"]);
    let row = |id: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
    };
    assert_eq!(
        row("cai-input-again").unwrap()["status"],
        "failed",
        "{runs}"
    );
    assert_eq!(row("cai-input").unwrap()["status"], "succeeded", "{runs}");
    let elsewhere = adopt(
        &started
            .execution_arn()
            .replace(":execution:", ":execution:other-"),
    );
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(
        !elsewhere.status.success() && stderr.contains("DescribeExecution"),
        "{stderr}"
    );
    assert_eq!(
        status_when_done(&store, &client, started.execution_arn(), 120),
        "SUCCEEDED"
    );
    let summary: Value =
        serde_json::from_slice(&store.get("results/cai-input/summary.json").unwrap()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["objects"], 8, "{summary}");
    let combined: Value =
        serde_json::from_slice(&store.get("results/cai-input/combined_data.json").unwrap())
            .unwrap();
    let read: Vec<&str> = combined
        .as_array()
        .unwrap()
        .iter()
        // One file a rank: a key, as CAI writes it.
        .map(|r| r["data_path"].as_str().unwrap())
        .collect();
    assert_eq!(read, ["cai-data/p0.pt", "cai-data/p1.pt"]);
    // Each file's objects under the ids its conversion would give, at PyTorch's redshifts.
    let expected = common::astromae_expected();
    let bytes = store
        .get("results/cai-input/predictions/0.safetensors")
        .unwrap();
    let p = cosmicai_engine::pipeline::read_predictions(&bytes).unwrap();
    // The fixture's four objects, each file a copy of it (8 objects in 2 files).
    assert_eq!(expected.len(), 4);
    assert_eq!(
        (p.object_id.len(), p.predicted.len()),
        (expected.len(), expected.len())
    );
    for (row, (id, q)) in p.object_id.iter().zip(&p.predicted).enumerate() {
        assert_eq!(*id, cosmicai_engine::cai::cai_object_id("p0.pt", row));
        assert!((q.redshift - expected[row]).abs() <= 1e-4, "row {row}");
    }
    // Read in place: the data bucket holds what it held, and the stack's bucket
    // none of the data, only the run's files.
    assert_eq!(held(&cai), cai_before);
    assert!(
        held(&store).iter().all(|k| k.starts_with("results/")),
        "{:?}",
        held(&store)
    );
    // A bucket the stack was not deployed to read (an execution started with a
    // request of ours naming it) is refused by Initialize, by name, before any
    // rank runs.
    let other = other_bucket(&stack, "cosmicai-not-granted");
    other.put("cai-data/p0.pt", &partition).unwrap();
    let input = serde_json::json!({
        "data_bucket": "cosmicai-not-granted", "data_prefix": "cai-data", "batch_size": 3,
        "world_size": 1, "result_path": "results/not-granted", "model": "photoz"
    });
    let refused = store
        .block_on(
            client
                .start_execution()
                .state_machine_arn(&arn)
                .name("not-granted")
                .input(input.to_string())
                .send(),
        )
        .unwrap();
    assert_eq!(
        status_when_done(&store, &client, refused.execution_arn(), 60),
        "FAILED"
    );
    let history = execution_error(&store, &client, refused.execution_arn());
    assert!(
        history.contains(&format!(
            "data bucket 'cosmicai-not-granted': the stack's workers may read partitions from its own bucket '{BUCKET}' and its InputBucket '{INPUT_BUCKET}' only"
        )) && history.contains("InputBucket=cosmicai-not-granted"),
        "{history}"
    );
    assert!(store.list("results/not-granted").unwrap().is_empty());
}
