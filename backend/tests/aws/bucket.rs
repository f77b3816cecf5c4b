//! Data in a bucket: run where it is (the stack's, or its InputBucket), refused by name for a bad bucket or without AWS, and refused while an upload to it is cut short.

use super::*;

#[test]
fn data_already_in_the_bucket_runs_where_it_is_from_the_launcher() {
    // CAI's `.pt` partitions and checkpoint already in the stack's bucket: the
    // launcher plans over the bucket, uploads nothing, and follows the run as any.
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-in-bucket");
    let partition = std::fs::read(common::astromae_fixture("partition.pt")).unwrap();
    store.put("lake/cai/p0.pt", &partition).unwrap();
    store.put("lake/cai/p1.pt", &partition).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Only where results and the registry go: made by the run.
    let home = tmp.path().join("home");
    let s3_data = format!("S3://{BUCKET}/lake/cai/");
    // The checkpoint is a local file: it goes up by itself, named by its hash.
    let weights = common::astromae_fixture("astromae_module.pt");
    let model = format!("astromae:{}", weights.display());
    let out = aws_run(
        &stack,
        &arn,
        &home,
        &[
            "--s3-data",
            &s3_data,
            "--model",
            &model,
            "--world-size",
            "2",
            "--batch-size",
            "3",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "s3://{BUCKET}/lake/cai: 2 partition files ({} bytes) run where they are; nothing uploaded",
            2 * partition.len()
        )),
        "{stderr}"
    );
    let uploaded = stderr
        .lines()
        .find_map(|l| l.split(&format!("uploaded to s3://{BUCKET}/")).nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .to_string();
    assert!(
        uploaded.starts_with("models/astromae_module-") && uploaded.ends_with(".pt"),
        "{stderr}"
    );
    assert_eq!(
        store.get(&uploaded).unwrap(),
        std::fs::read(&weights).unwrap()
    );
    let s = last_json_line(&out);
    assert_eq!(
        (
            s["status"].as_str(),
            s["objects"].as_u64(),
            s["ranks"].as_u64()
        ),
        (Some("succeeded"), Some(8), Some(2)),
        "{s}"
    );
    assert_eq!(
        s["model"].as_str(),
        Some(format!("astromae:{uploaded}").as_str())
    );
    // No partition went up: the bucket holds the data, the model, the run's results
    // and the Distributed Map's manifest (its ResultWriter's).
    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
    let run_id = s["run_id"].as_str().unwrap();
    let result_path = s["result_path"].as_str().unwrap();
    assert!(
        keys.iter().all(|k| k.starts_with("lake/cai/")
            || *k == uploaded
            || k.starts_with(&format!("{result_path}/"))
            || k.starts_with("results/map-results/")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{result_path}/")))
    );
    // The results came back beside the registry, which lists the run.
    let combined = home.join(result_path).join("combined_data.json");
    assert!(combined.is_file(), "{}", combined.display());
    let runs = common::ok_json(&["runs", "--data", &home.display().to_string(), "--json"]);
    assert_eq!(
        (runs[0]["id"].as_str(), runs[0]["status"].as_str()),
        (Some(run_id), Some("succeeded")),
        "{runs}"
    );
    // A second run finds the weights already there.
    let again = aws_run(
        &stack,
        &arn,
        &home,
        &[
            "--s3-data",
            "lake/cai",
            "--model",
            &model,
            "--world-size",
            "1",
            "--batch-size",
            "8",
        ],
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("already in s3://{BUCKET}/{uploaded}")),
        "{stderr}"
    );
    // In the stack's InputBucket (a CAI user's own data bucket), read in place:
    // planned over that bucket, nothing written there, the results in the stack's.
    let cai = other_bucket(&stack, INPUT_BUCKET);
    cai.put("100MB/p0.pt", &partition).unwrap();
    cai.put("100MB/p1.pt", &partition).unwrap();
    let in_place = aws_run(
        &stack,
        &arn,
        &home,
        &[
            "--s3-data",
            &format!("s3://{INPUT_BUCKET}/100MB"),
            "--model",
            &model,
            "--world-size",
            "2",
            "--batch-size",
            "3",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&in_place.stderr);
    assert!(in_place.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "s3://{INPUT_BUCKET}/100MB: 2 partition files ({} bytes) run where they are; nothing uploaded",
            2 * partition.len()
        )),
        "{stderr}"
    );
    let s = last_json_line(&in_place);
    assert_eq!(
        (s["status"].as_str(), s["objects"].as_u64()),
        (Some("succeeded"), Some(8)),
        "{s}"
    );
    let cai_keys: Vec<String> = cai.list("").unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(cai_keys, ["100MB/p0.pt", "100MB/p1.pt"]);
    let result_path = s["result_path"].as_str().unwrap();
    assert!(
        store
            .exists(&format!("{result_path}/combined_data.json"))
            .unwrap()
    );
    // A bucket the stack was not deployed to read (its definition names
    // another InputBucket): refused by name before any call to it, so the
    // launcher's own credentials show nothing of it.
    let other = "cosmicai-not-granted";
    let refused = aws_run(
        &stack,
        &arn,
        &home,
        &[
            "--s3-data",
            &format!("s3://{other}/100MB"),
            "--world-size",
            "1",
            "--batch-size",
            "3",
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(&format!(
                "data bucket '{other}': the stack's workers may read partitions from its own bucket '{BUCKET}' and its InputBucket '{INPUT_BUCKET}' only: deploy the template with InputBucket={other} (in place of '{INPUT_BUCKET}'"
            )),
        "{stderr}"
    );
    // A stack whose InputBucket is in another region: the launcher refuses it
    // by name (S3 would answer every read PermanentRedirect), and starts nothing.
    let far = "cosmicai-launcher-eu";
    let eu = other_bucket_in(&stack, far, "eu-west-1");
    eu.put("cai/part-000000.safetensors", b"never read")
        .unwrap();
    let far_arn = store
        .block_on(
            client
                .create_state_machine()
                .name("cosmicai-far-input")
                .definition(definition().replace(INPUT_BUCKET, far))
                .role_arn(ROLE)
                .send(),
        )
        .unwrap()
        .state_machine_arn()
        .to_string();
    let refused = aws_run(
        &stack,
        &far_arn,
        &home,
        &[
            "--s3-data",
            &format!("s3://{far}/cai"),
            "--world-size",
            "1",
            "--batch-size",
            "8",
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(&format!(
                "data bucket '{far}' is in eu-west-1, the stack in us-east-1"
            )),
        "{stderr}"
    );
    let started = store
        .block_on(client.list_executions().state_machine_arn(&far_arn).send())
        .unwrap();
    assert!(started.executions().is_empty());
    // The deployment's results are never data: past runs' predictions would be
    // planned as partitions. Initialize refuses the run by name (a stray file
    // there gets the launcher's own plan past "no partition files").
    store
        .put("results/stray/part.safetensors", b"not data")
        .unwrap();
    let results = aws_run(
        &stack,
        &arn,
        &home,
        &[
            "--s3-data",
            "results",
            "--world-size",
            "1",
            "--batch-size",
            "8",
        ],
    );
    let stderr = String::from_utf8_lossy(&results.stderr);
    assert!(!results.status.success());
    assert!(
        stderr.contains("data_prefix 'results' is inside 'results/'"),
        "{stderr}"
    );
}

#[test]
fn s3_data_with_a_bad_bucket_or_key_or_without_aws_is_refused_by_name() {
    // Refused before any connection: no stack needed.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().display().to_string();
    let refusal = |s3_data: &str| {
        let out = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
            .args([
                "run", "--target", "aws", "--data", &home, "--bucket", BUCKET,
            ])
            .args([
                "--state-machine-arn",
                "arn:aws:states:us-east-1:123456789012:stateMachine:c",
            ])
            .args([
                "--world-size",
                "1",
                "--batch-size",
                "8",
                "--s3-data",
                s3_data,
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // Another bucket is read in place (Initialize checks the stack may): only
    // a name S3 would refuse is refused here.
    let stderr = refusal("s3://CAI_Data/runs/1");
    assert!(
        stderr.contains(
            "--s3-data 's3://CAI_Data/runs/1': bucket 'CAI_Data' holds characters S3 refuses"
        ),
        "{stderr}"
    );
    for whole in [
        format!("s3://{BUCKET}"),
        format!("s3://{BUCKET}/"),
        "/".into(),
    ] {
        let stderr = refusal(&whole);
        assert!(
            stderr.contains("names the whole bucket"),
            "{whole}: {stderr}"
        );
    }
    let stderr = refusal("s3://ab/data");
    assert!(
        stderr.contains("bucket 'ab' is not 3 to 63 characters long"),
        "{stderr}"
    );
    let stderr = refusal("lake/../../etc");
    assert!(
        stderr.contains("--s3-data 'lake/../../etc' contains '..'"),
        "{stderr}"
    );
    let local = cosmicai(&[
        "run",
        "--data",
        &home,
        "--world-size",
        "1",
        "--batch-size",
        "8",
        "--s3-data",
        "lake",
    ]);
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(!local.status.success());
    assert!(
        stderr.contains("--s3-data") && stderr.contains("--target aws"),
        "{stderr}"
    );
}

#[test]
fn an_upload_cut_short_leaves_its_folder_refused_until_it_is_sent_again() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, _client, arn) = deployed(&bin, "cosmicai-cut-upload");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let args = [
        "--world-size",
        "2",
        "--batch-size",
        "512",
        "--s3-prefix",
        "cut",
    ];
    // The third partition's PUT fails (S3's SlowDown, past the SDK's retries).
    faults(&stack, Some(serde_json::json!({"S3 PUT part-000002": 10})));
    let out = aws_command(&stack, &arn, &data, &args)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    faults(&stack, Some(serde_json::json!({"S3 PUT part-000002": 0})));
    let cut = markers(&store, "cut");
    assert_eq!(cut.len(), 1, "{cut:?}");
    // What was sent is no dataset to run where it is...
    let s3_data = format!("s3://{BUCKET}/cut/");
    let out = aws_run(
        &stack,
        &arn,
        &data,
        &[
            "--s3-data",
            &s3_data,
            "--world-size",
            "2",
            "--batch-size",
            "512",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cut short") && stderr.contains("upload it again"),
        "{stderr}"
    );
    // ...nor is part of it sent again (`--file-limit`): that would clear the
    // mark with files still missing...
    // Refused with nothing sent.
    let sent = |store: &S3Store| -> Vec<(String, u64)> {
        store
            .list("cut")
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect()
    };
    let before = sent(&store);
    let out = aws_run(
        &stack,
        &arn,
        &data,
        &[&args[..], &["--file-limit", "1"]].concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("send the whole dataset first"),
        "{stderr}"
    );
    assert_eq!(markers(&store, "cut"), cut);
    assert_eq!(sent(&store), before);
    // ...until the whole upload is sent again and ends: then it runs, whole.
    let out = aws_run(&stack, &arn, &data, &[&args[..], &["--json"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(last_json_line(&out)["objects"], 8443);
    assert_eq!(markers(&store, "cut"), Vec::<String>::new());
}
