//! The Lambda handler's stages called directly, with PhotoZ and with an AstroMAE checkpoint in the bucket.

use super::*;

#[test]
fn the_handler_stages_called_directly() {
    let Some(bin) = venv_bin() else { return };
    let stack = start_stack(&bin);
    let store = s3(&stack);
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    upload_dir(&store, &data, "direct");
    let settings = S3Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(stack.endpoint.clone()),
        static_credentials: Some(("test".into(), "test".into())),
        results_prefix: Some("results".into()),
    };
    let request = RunRequest {
        bucket: BUCKET.into(),
        data_bucket: None,
        data_prefix: "direct".into(),
        file_limit: Some(3),
        batch_size: 256,
        world_size: 2,
        result_path: "results/direct".into(),
        device: Device::Cpu,
        precision: Default::default(),
        memory_mb: 1024,
        model: "photoz".into(),
        retries: 0,
        tolerated_failure_percentage: 100.0,
        timeout_s: None,
    };
    let init = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "direct".into(),
            request: request.clone(),
        },
    )
    .unwrap();
    assert_eq!(init["files"], 3);
    assert_eq!(init["max_concurrency"], 2);
    assert_eq!(init["ranks"], 2);
    // The Map's items come from S3, one per rank; the state carries only their key.
    let plan: Vec<RankItem> =
        serde_json::from_slice(&store.get(init["plan_key"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(plan.iter().map(|i| i.rank).collect::<Vec<_>>(), [0, 1]);
    let item = |rank| RankItem {
        run_id: "direct".into(),
        bucket: BUCKET.into(),
        result_path: "results/direct".into(),
        rank,
        device: Device::Cpu,
        entered_at: None,
    };
    let m0 = handle(&settings, StageEvent::Infer(item(0))).unwrap();
    assert!(m0["objects"].as_u64().unwrap() > 0 && m0["billed_duration_ms"].as_u64().unwrap() >= 1);
    // Initialize retried by the state machine (its answer lost) goes on with its
    // plan: its payload, its Map items and rank 0's result are left as they were.
    let kept = [
        "results/direct/payload.json",
        "results/direct/plan.json",
        "results/direct/0.json",
        "results/direct/predictions/0.safetensors",
    ];
    let before: Vec<Vec<u8>> = kept.iter().map(|k| store.get(k).unwrap()).collect();
    let again = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "direct".into(),
            request: request.clone(),
        },
    )
    .unwrap();
    assert_eq!(again["files"], 3);
    for (key, was) in kept.iter().zip(&before) {
        assert!(
            store.get(key).unwrap() == *was,
            "{key} changed when Initialize was retried"
        );
    }
    // A CUDA run is planned by this Lambda, which has no GPU and no CUDA build:
    // its ranks run on the stack's Batch queue.
    let gpu = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "direct-gpu".into(),
            request: RunRequest {
                device: Device::Cuda,
                result_path: "results/direct-gpu".into(),
                ..request.clone()
            },
        },
    )
    .unwrap();
    assert_eq!(
        (gpu["files"].as_u64(), gpu["ranks"].as_u64()),
        (Some(3), Some(2)),
        "{gpu}"
    );
    // A rank whose Infer state began longer ago than an Express child lasts stops
    // before it reads or writes anything, with an error the state machine does not retry.
    let late = RankItem {
        entered_at: Some("2020-01-01T00:00:00.000Z".into()),
        ..item(1)
    };
    let e = handle(&settings, StageEvent::Infer(late)).unwrap_err();
    assert_eq!(e.kind, "RankOutOfTime", "{e}");
    assert!(store.get("results/direct/1.json").is_err());
    // Rank 1 never ran: Summarize names it failed.
    let summary = handle(
        &settings,
        StageEvent::Summarize(SummarizeEvent {
            run_id: "direct".into(),
            bucket: BUCKET.into(),
            result_path: "results/direct".into(),
            started: None,
            initialize_s: 0.1,
            map_error: None,
            child_execution_type: None,
        }),
    )
    .unwrap();
    assert_eq!(summary["status"], "partial");
    let written: Value =
        serde_json::from_slice(&store.get("results/direct/summary.json").unwrap()).unwrap();
    // Both ranks were Map items (the failed one too): two EXPRESS children.
    assert_eq!(written["cost"]["express_executions"], 2, "{written}");
    assert_eq!(summary["failed_ranks"], serde_json::json!([1]));
    assert_eq!(summary["objects"], m0["objects"]);
    // After a Map that failed as a whole, the missing ranks carry its error.
    let failed_map = handle(
        &settings,
        StageEvent::Summarize(SummarizeEvent {
            run_id: "direct".into(),
            bucket: BUCKET.into(),
            result_path: "results/direct".into(),
            started: Some("2026-01-01T00:00:00Z".into()),
            initialize_s: 0.1,
            map_error: Some(cosmicai_shared::aws::ItemError {
                error: Some("States.ExceedToleratedFailureThreshold".into()),
                cause: Some("1 of 2 items failed".into()),
            }),
            // A stack deployed with STANDARD children: priced as such.
            child_execution_type: Some("STANDARD".into()),
        }),
    )
    .unwrap();
    assert_eq!(failed_map["failed_ranks"], serde_json::json!([1]));
    let written: Value =
        serde_json::from_slice(&store.get("results/direct/summary.json").unwrap()).unwrap();
    assert_eq!(
        written["per_rank"][1]["error"],
        "States.ExceedToleratedFailureThreshold: 1 of 2 items failed"
    );
    assert!(
        written["duration_s"].as_f64().unwrap() > 1e6,
        "wall time from the execution start"
    );
    assert_eq!(written["cost"]["express_executions"], 0, "{written}");
    // The parent's 4 steps, and per child its start and 3 transitions of its own.
    assert_eq!(written["cost"]["state_transitions"], 4 + 2 * 4, "{written}");

    // Bad input: a clear error, classed so the state machine does not retry it.
    let mut bad = request.clone();
    bad.world_size = 0;
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "bad".into(),
            request: bad,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(e.message.contains("world_size"), "{}", e.message);
    let mut local = request.clone();
    local.bucket = "local".into();
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "l".into(),
            request: local,
        },
    )
    .unwrap_err();
    assert!(e.message.contains("bucket 'local'"), "{}", e.message);
    // A rank of another run's result path is refused, not overwritten.
    let mut other = item(0);
    other.run_id = "someone-else".into();
    let e = handle(&settings, StageEvent::Infer(other)).unwrap_err();
    assert!(e.message.contains("belongs to run direct"), "{}", e.message);
    // Partitions in a bucket of another region: refused by Initialize, by name,
    // before anything is written (S3 would answer every read PermanentRedirect).
    let eu = other_bucket_in(&stack, "cosmicai-handler-eu", "eu-west-1");
    upload_dir(&eu, &data, "direct");
    let far = RunRequest {
        data_bucket: Some("cosmicai-handler-eu".into()),
        result_path: "results/far".into(),
        ..request.clone()
    };
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "far".into(),
            request: far,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(
        e.message.contains(
            "data_bucket 'cosmicai-handler-eu' is in eu-west-1, this deployment in us-east-1"
        ),
        "{}",
        e.message
    );
    assert!(store.list("results/far").unwrap().is_empty());
}

#[test]
fn an_astromae_checkpoint_in_the_bucket_runs_through_the_handler() {
    let Some(bin) = venv_bin() else { return };
    let stack = start_stack(&bin);
    let store = s3(&stack);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cai");
    common::astromae_partitions(&data, true);
    upload_dir(&store, &data, "cai");
    // CAI's checkpoint as CAI ships it (a pickled DataParallel module), in the bucket.
    store
        .put(
            "models/astromae.pt",
            &std::fs::read(common::astromae_fixture("astromae_module.pt")).unwrap(),
        )
        .unwrap();
    let settings = S3Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(stack.endpoint.clone()),
        static_credentials: Some(("test".into(), "test".into())),
        results_prefix: Some("results".into()),
    };
    let request = RunRequest {
        bucket: BUCKET.into(),
        data_bucket: None,
        data_prefix: "cai".into(),
        file_limit: None,
        batch_size: 3,
        world_size: 2,
        result_path: "results/cai".into(),
        device: Device::Cpu,
        precision: Default::default(),
        memory_mb: 1024,
        model: "astromae:models/astromae.pt".into(),
        retries: 0,
        tolerated_failure_percentage: 100.0,
        timeout_s: None,
    };
    handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "cai".into(),
            request: request.clone(),
        },
    )
    .unwrap();
    // Initialize read the partitions' headers (ranged GETs) to count their
    // objects: two of 32 x 32 cutouts a file.
    let payload: Value =
        serde_json::from_slice(&store.get("results/cai/payload.json").unwrap()).unwrap();
    let size = store.list("cai").unwrap()[0].size as f64;
    assert_eq!(
        payload["bytes_per_object"].as_f64(),
        Some(size / 2.0),
        "{payload}"
    );
    for rank in 0..2 {
        let item = RankItem {
            run_id: "cai".into(),
            bucket: BUCKET.into(),
            result_path: "results/cai".into(),
            rank,
            device: Device::Cpu,
            entered_at: None,
        };
        let m = handle(&settings, StageEvent::Infer(item)).unwrap();
        assert_eq!(m["objects"], 2, "{m}");
        assert!(m["init_duration_s"].as_f64().unwrap() > 0.0, "{m}");
    }
    let summary = handle(
        &settings,
        StageEvent::Summarize(SummarizeEvent {
            run_id: "cai".into(),
            bucket: BUCKET.into(),
            result_path: "results/cai".into(),
            started: None,
            initialize_s: 0.1,
            map_error: None,
            child_execution_type: None,
        }),
    )
    .unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let expected = common::astromae_expected();
    let mut seen = 0;
    for rank in 0..2 {
        let bytes = store
            .get(&format!("results/cai/predictions/{rank}.safetensors"))
            .unwrap();
        let p = cosmicai_engine::pipeline::read_predictions(&bytes).unwrap();
        for (id, q) in p.object_id.iter().zip(&p.predicted) {
            let want = expected[(*id - 1) as usize];
            assert!(
                (q.redshift - want).abs() <= 1e-4,
                "object {id}: {} vs {want}",
                q.redshift
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 4);
    let combined: Value =
        serde_json::from_slice(&store.get("results/cai/combined_data.json").unwrap()).unwrap();
    let combined = combined.as_array().unwrap();
    assert_eq!(combined.len(), 2);
    // combined_data.json is the rank files, in rank order; each is this run's
    // and counts its predictions file's objects.
    for (rank, entry) in combined.iter().enumerate() {
        let file: Value =
            serde_json::from_slice(&store.get(&format!("results/cai/{rank}.json")).unwrap())
                .unwrap();
        assert!(
            crate::common::same_json(entry, &file),
            "combined_data.json[{rank}] {entry} vs {rank}.json {file}"
        );
        assert_eq!(file["rank"].as_u64(), Some(rank as u64), "{file}");
        assert_eq!(file["run_id"], "cai", "{file}");
        let bytes = store
            .get(&format!("results/cai/predictions/{rank}.safetensors"))
            .unwrap();
        let p = cosmicai_engine::pipeline::read_predictions(&bytes).unwrap();
        assert_eq!(
            file["objects"].as_u64(),
            Some(p.object_id.len() as u64),
            "rank {rank}"
        );
    }

    // Weights that are not in the bucket: refused at Initialize, before any rank.
    let mut missing = request.clone();
    missing.model = "astromae:models/none.pt".into();
    missing.result_path = "results/none".into();
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "none".into(),
            request: missing,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(e.message.contains("models/none.pt"), "{}", e.message);

    // Weights of another model: built once at Initialize, refused by name.
    store
        .put(
            "models/photoz.safetensors",
            &std::fs::read(common::asset("model/photoz.safetensors")).unwrap(),
        )
        .unwrap();
    let mut other = request.clone();
    other.model = "astromae:models/photoz.safetensors".into();
    other.result_path = "results/other".into();
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "other".into(),
            request: other,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(
        e.message.contains("missing tensor") && e.message.contains("no rank was started"),
        "{}",
        e.message
    );
    assert!(store.get("results/other/payload.json").is_err(), "no plan");

    // Partitions read whole that the workers' /tmp (the template's
    // EphemeralStorageMB, in the definition) cannot hold: refused, nothing planned.
    let mut crowded = request.clone();
    crowded.result_path = "results/crowded".into();
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: Some("0".into()),
            input_bucket: None,
            resume_of: None,
            run_id: "crowded".into(),
            request: crowded,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(
        e.message.contains("/tmp") && e.message.contains("EphemeralStorageMB"),
        "{}",
        e.message
    );
    assert!(
        store.get("results/crowded/payload.json").is_err(),
        "no plan"
    );

    // A GPU run whose execution name Batch would refuse as a job name.
    let mut gpu = request.clone();
    gpu.device = cosmicai_shared::run::Device::Cuda;
    gpu.result_path = "results/gpu".into();
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            worker_storage_mb: None,
            input_bucket: None,
            resume_of: None,
            run_id: "cai.payload".into(),
            request: gpu,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(
        e.message.contains("'cai.payload'") && e.message.contains("Batch"),
        "{}",
        e.message
    );
}
