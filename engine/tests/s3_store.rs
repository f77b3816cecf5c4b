//! The S3 store against a real S3 API server: s3s-fs, in process, on 127.0.0.1:0.
//! Then the whole pipeline (Initialize, ranks, Summarize) with its data and
//! results in a bucket, as the Lambda handlers will run it.

use burn::backend::NdArray;
use cosmicai_engine::catalog::read_catalog;
use cosmicai_engine::dataset::{PartitionBy, PartitionSink};
use cosmicai_engine::partition::{PartitionMeta, Source};
use cosmicai_engine::pipeline::{Stores, infer_rank, initialize, summarize};
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::s3::{S3Config, S3Store};
use cosmicai_engine::store::{ObjectStore, StoreError};
use cosmicai_model::photoz::PhotoZ;
use cosmicai_model::weights::Weights;
use cosmicai_shared::Provenance;
use cosmicai_shared::run::{Device, RankMeasure, RunRequest, RunStatus, SystemInfo};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::collections::HashSet;
use std::path::Path;

const KEY: &str = "cosmicai-test-key";
const SECRET: &str = "cosmicai-test-secret";

/// A running s3s-fs server; dropped with the test.
struct Server {
    endpoint: String,
    _runtime: tokio::runtime::Runtime,
    _root: tempfile::TempDir,
}

fn start_server() -> Server {
    let root = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(KEY, SECRET));
    let service = builder.build();
    runtime.spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    Server {
        endpoint: format!("http://{addr}"),
        _runtime: runtime,
        _root: root,
    }
}

fn store(server: &Server, bucket: &str) -> S3Store {
    let store = S3Store::connect(S3Config {
        bucket: bucket.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(server.endpoint.clone()),
        static_credentials: Some((KEY.into(), SECRET.into())),
        unlisted: None,
    })
    .unwrap();
    store
        .block_on(store.client().create_bucket().bucket(bucket).send())
        .unwrap();
    store
}

#[test]
fn s3_store_round_trips_lists_and_refuses_bad_keys() {
    let server = start_server();
    let s3 = store(&server, "cosmicai-unit");
    s3.put("a/2.json", b"two").unwrap();
    s3.put("a/1.json", b"one").unwrap();
    s3.put("ab.json", b"not in folder a").unwrap();
    assert_eq!(s3.get("a/1.json").unwrap(), b"one");
    let keys: Vec<String> = s3.list("a").unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(keys, ["a/1.json", "a/2.json"]);
    assert_eq!(s3.list("").unwrap().len(), 3);
    assert_eq!(s3.list("a").unwrap()[0].size, 3);
    assert!(matches!(
        s3.get("a/none.json"),
        Err(StoreError::NotFound { .. })
    ));
    for bad in ["../x", "/abs", "a/../../b"] {
        assert!(
            matches!(s3.put(bad, b"x"), Err(StoreError::BadKey { .. })),
            "{bad}"
        );
    }
    // Large objects go up in parts and come back whole.
    let big: Vec<u8> = (0..20 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    s3.put("big.bin", &big).unwrap();
    assert!(s3.get("big.bin").unwrap() == big);
    // A bucket that does not exist is an error that names it.
    let missing = S3Store::connect(S3Config {
        bucket: "no-such-bucket".into(),
        region: None,
        endpoint: Some(server.endpoint.clone()),
        static_credentials: Some((KEY.into(), SECRET.into())),
        unlisted: None,
    })
    .unwrap();
    let e = missing.list("").unwrap_err().to_string();
    assert!(e.contains("no-such-bucket"), "{e}");
}

#[test]
fn the_results_folder_is_left_out_of_listings_above_it() {
    let server = start_server();
    let plain = store(&server, "cosmicai-pruned");
    for key in [
        "a.safetensors",
        "data/b.safetensors",
        "results/stray.safetensors",
        "results/r1/payload.json",
        "results/r1/0.json",
        "resultsx/c.safetensors",
        "deep/results/d.safetensors",
        "deep/e.safetensors",
    ] {
        plain.put(key, b"x").unwrap();
    }
    let keys = |store: &S3Store, prefix: &str| -> Vec<String> {
        store
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    let pruned = |unlisted: &str| {
        S3Store::connect(S3Config {
            bucket: "cosmicai-pruned".into(),
            region: Some("us-east-1".into()),
            endpoint: Some(server.endpoint.clone()),
            static_credentials: Some((KEY.into(), SECRET.into())),
            unlisted: Some(unlisted.into()),
        })
        .unwrap()
    };
    // The whole bucket (CAI's `data_prefix ""`): all but the results folder,
    // sorted, and a folder that only starts alike is kept.
    let results = pruned("results");
    assert_eq!(
        keys(&results, ""),
        [
            "a.safetensors",
            "data/b.safetensors",
            "deep/e.safetensors",
            "deep/results/d.safetensors",
            "resultsx/c.safetensors"
        ]
    );
    assert_eq!(keys(&plain, "").len(), 8);
    // Listings of the folder itself, or within it, are whole (Summarize, copies).
    assert_eq!(keys(&results, "results").len(), 3);
    assert_eq!(
        keys(&results, "results/r1"),
        ["results/r1/0.json", "results/r1/payload.json"]
    );
    // A folder deeper down is walked to, folder by folder.
    let deep = pruned("/deep/results/");
    assert_eq!(keys(&deep, "").len(), 7);
    assert_eq!(keys(&deep, "deep"), ["deep/e.safetensors"]);
    assert_eq!(keys(&deep, "deep/results"), ["deep/results/d.safetensors"]);
    // A conditional PUT writes only where nothing is.
    assert!(plain.put_if_absent("fresh.json", b"1").unwrap());
    assert!(!plain.put_if_absent("fresh.json", b"2").unwrap());
    assert_eq!(plain.get("fresh.json").unwrap(), b"1");
    // HeadObject: there or not, no listing.
    assert!(plain.exists("data/b.safetensors").unwrap());
    assert!(!plain.exists("data/none.safetensors").unwrap());
    assert!(plain.exists("../x").is_err());
}

#[test]
fn the_pipeline_runs_against_a_bucket() {
    let server = start_server();
    let s3 = store(&server, "cosmicai-data");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");

    // The DR14 catalog as 4 partitions, uploaded under data/.
    let scratch = tempfile::tempdir().unwrap();
    let catalog = read_catalog(
        &root.join("assets/catalogs/skyserver_dr14.csv.gz"),
        &mut HashSet::new(),
        |_| {},
    )
    .unwrap();
    let mut sink = PartitionSink::create(
        scratch.path(),
        PartitionBy::Objects(2200),
        PartitionMeta::default(),
    )
    .unwrap();
    let source = Source {
        name: "skyserver_dr14.csv".into(),
        provenance: Provenance::Real,
        detail: String::new(),
    };
    for row in &catalog.objects {
        sink.push(*row, &source, None).unwrap();
    }
    for written in sink.finish().unwrap() {
        let name = written
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        s3.put(
            &format!("data/{name}"),
            &std::fs::read(&written.path).unwrap(),
        )
        .unwrap();
    }

    let request = RunRequest {
        bucket: "cosmicai-data".into(),
        data_bucket: None,
        data_prefix: "data".into(),
        file_limit: Some(3),
        batch_size: 1000,
        world_size: 2,
        result_path: "results/s3run".into(),
        device: Device::Cpu,
        precision: Default::default(),
        memory_mb: 1024,
        model: "photoz".into(),
        retries: 0,
        tolerated_failure_percentage: 100.0,
        timeout_s: None,
    };
    let payload = initialize(&s3, &request, "s3run").unwrap();
    assert_eq!(payload.files.len(), 3);
    let weights = Weights::open(root.join("assets/model/photoz.safetensors")).unwrap();
    let device = Default::default();
    let model =
        RedshiftModel::PhotoZ(PhotoZ::<NdArray<f32>>::from_weights(&weights, &device).unwrap());
    let mut measures = Vec::new();
    for rank in 0..2 {
        let result = infer_rank(
            Stores::one(&s3),
            &payload,
            rank,
            &model,
            &device,
            SystemInfo::default(),
            |_| Ok(()),
        )
        .unwrap();
        measures.push(RankMeasure {
            rank,
            attempts: 1,
            objects: result.objects,
            billed_duration_ms: 10,
            ..Default::default()
        });
    }
    let summarize_now = |measures: &[RankMeasure]| {
        summarize(&s3, &payload, measures, 1.0, 0.1, std::time::Instant::now())
    };
    let summary = summarize_now(&measures).unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(summary.objects, 3 * 2200);
    let keys: Vec<String> = s3
        .list("results/s3run")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    for k in [
        "payload.json",
        "0.json",
        "1.json",
        "combined_data.json",
        "summary.json",
        "predictions/0.safetensors",
    ] {
        assert!(
            keys.contains(&format!("results/s3run/{k}")),
            "{k} missing from {keys:?}"
        );
    }
    assert!(summary.metrics.unwrap().galaxy.unwrap().nmad < 0.03);

    // A rank whose predictions cannot be read counts as failed; the others are
    // still summarized (one bad file no longer loses a paid-for run's summary).
    s3.put(
        "results/s3run/predictions/1.safetensors",
        b"not a predictions file",
    )
    .unwrap();
    let again = summarize_now(&measures).unwrap();
    assert_eq!(again.status, RunStatus::Partial);
    assert_eq!(again.failed_ranks, [1]);
    let error = again.per_rank[1].error.as_deref().unwrap_or_default();
    assert!(error.contains("predictions cannot be read"), "{error}");
    assert_eq!(again.objects, summary.objects - measures[1].objects);
    // So does one whose predictions file is gone, though its result file is there.
    s3.delete("results/s3run/predictions/1.safetensors")
        .unwrap();
    let gone = summarize_now(&measures).unwrap();
    assert_eq!(
        (gone.status, gone.failed_ranks),
        (RunStatus::Partial, vec![1])
    );
    let error = gone.per_rank[1].error.as_deref().unwrap_or_default();
    assert!(error.contains("predictions file is missing"), "{error}");
    assert_eq!(gone.objects, summary.objects - measures[1].objects);
    let combined: Vec<serde_json::Value> =
        serde_json::from_slice(&s3.get("results/s3run/combined_data.json").unwrap()).unwrap();
    assert_eq!(combined.len(), 1, "rank 0's only: {combined:?}");
    assert_eq!(combined[0]["rank"], 0);

    // Cancelled on AWS before its Summarize (the launcher summarizes): rank 0
    // left its measures in the bucket, rank 1 none, so rank 1 was cancelled.
    use cosmicai_engine::pipeline::{measures_key, stored_measures};
    let of_run = RankMeasure {
        run_id: payload.run_id.clone(),
        ..measures[0].clone()
    };
    s3.put(
        &measures_key("results/s3run", 0),
        &serde_json::to_vec(&of_run).unwrap(),
    )
    .unwrap();
    let stored = stored_measures(&s3, &payload, cosmicai_engine::executor::CANCELLED).unwrap();
    assert_eq!(stored[0], of_run);
    assert_eq!(stored[1].error.as_deref(), Some("cancelled"));
    let cancelled = summarize_now(&stored).unwrap();
    assert_eq!(
        (cancelled.status, cancelled.failed_ranks),
        (RunStatus::Cancelled, vec![1])
    );
    assert_eq!(cancelled.objects, measures[0].objects);
    assert!(cancelled.cost_usd > 0.0);
}

/// PhotoZ reads no cutouts, so its ranks read a bucket's partitions without them
/// (ranged GETs around the images), and predict exactly as from local files.
#[test]
fn a_photoz_rank_reads_the_catalog_and_not_the_cutouts_from_a_bucket() {
    use cosmicai_engine::partition::{Partition, write_partition};
    use cosmicai_engine::pipeline::predictions_key;
    use cosmicai_engine::store::LocalStore;

    let server = start_server();
    let s3 = store(&server, "cosmicai-cutouts");
    let local = tempfile::tempdir().unwrap();
    let mut sizes = 0;
    for file in 0..2 {
        let mut p = Partition::blank(300, Some(32));
        for (i, m) in p.magnitudes.iter_mut().enumerate() {
            let g = 17.0 + (file * 300 + i) as f32 / 200.0;
            *m = [g + 1.5, g, g - 0.5, g - 0.8, g - 1.0];
        }
        let path = local
            .path()
            .join(format!("data/part-{file:05}.safetensors"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_partition(&path, &p).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        sizes += bytes.len() as u64;
        s3.put(&format!("data/part-{file:05}.safetensors"), &bytes)
            .unwrap();
    }
    // A ranged GET gives exactly its bytes.
    let mut range = Vec::new();
    s3.get_range_to("data/part-00000.safetensors", 3..11, &mut range)
        .unwrap();
    let whole = s3.get("data/part-00000.safetensors").unwrap();
    assert_eq!(range, whole[3..11]);

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let weights = Weights::open(root.join("assets/model/photoz.safetensors")).unwrap();
    let device = Default::default();
    let model =
        RedshiftModel::PhotoZ(PhotoZ::<NdArray<f32>>::from_weights(&weights, &device).unwrap());
    // The rest as a request leaves it (CPU, fp32, no retries).
    let request: RunRequest = serde_json::from_value(serde_json::json!({
        "bucket": "cosmicai-cutouts", "data_prefix": "data", "batch_size": 128,
        "world_size": 1, "result_path": "results/catalog-only", "model": "photoz",
    }))
    .unwrap();
    let local = LocalStore::new(local.path());
    let (mut predictions, mut gets) = (Vec::new(), Vec::new());
    for store in [&s3 as &dyn ObjectStore, &local] {
        let payload = initialize(store, &request, "catalog-only").unwrap();
        let result = infer_rank(
            Stores::one(store),
            &payload,
            0,
            &model,
            &device,
            SystemInfo::default(),
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(result.objects, 600);
        if store.local_path("x").is_none() {
            // The two headers and the catalog columns (600 objects of 53 bytes),
            // in two GETs a partition.
            eprintln!(
                "a PhotoZ rank read {} of {sizes} bytes in {} GETs",
                result.downloaded_bytes, result.partition_gets
            );
            assert!(
                result.downloaded_bytes > 600 * 53 && result.downloaded_bytes < sizes / 25,
                "{} of {sizes}",
                result.downloaded_bytes
            );
            assert_eq!(result.partition_gets, 4);
        } else {
            assert_eq!((result.downloaded_bytes, result.partition_gets), (0, 0));
        }
        predictions.push(
            store
                .get(&predictions_key(&request.result_path, 0))
                .unwrap(),
        );
        let measure = RankMeasure {
            rank: 0,
            attempts: 1,
            objects: 600,
            billed_duration_ms: 10,
            ..Default::default()
        };
        let summary = summarize(
            store,
            &payload,
            &[measure],
            1.0,
            0.1,
            std::time::Instant::now(),
        )
        .unwrap();
        gets.push(summary.cost.s3_get);
        // Keeping the two partitions in S3 is priced a month, beside the total.
        assert_eq!(summary.cost.data_bytes, sizes);
        let month = sizes as f64 / (1u64 << 30) as f64 * cosmicai_engine::cost::S3_STORAGE_GB_MONTH;
        assert!((summary.cost.storage_usd_month - month).abs() < 1e-12);
        assert!(summary.cost.storage_usd_month > 0.0);
    }
    assert!(predictions[0] == predictions[1]);
    // The bucket's run is priced for the GETs its rank counted, the local one at
    // one a partition.
    assert_eq!(gets[0], gets[1] + 2);
}

/// A CAI user's data read where it is: partitions listed and read from their
/// bucket, nothing written there, and every file of the run in the run's own
/// bucket. The weights beside the data (CAI keeps its checkpoint there) are
/// no partition.
#[test]
fn a_run_reads_its_partitions_from_a_data_bucket_and_writes_only_to_its_own() {
    use cosmicai_engine::partition::{Partition, write_partition};
    use cosmicai_engine::pipeline::initialize_with;

    let server = start_server();
    let data = store(&server, "cai-data");
    let results = store(&server, "cosmicai-stack");
    let scratch = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let weights_path = root.join("assets/model/photoz.safetensors");
    for file in 0..2 {
        let mut p = Partition::blank(100, None);
        for (i, m) in p.magnitudes.iter_mut().enumerate() {
            let g = 17.0 + (file * 100 + i) as f32 / 100.0;
            *m = [g + 1.5, g, g - 0.5, g - 0.8, g - 1.0];
        }
        let path = scratch.path().join(format!("part-{file:05}.safetensors"));
        write_partition(&path, &p).unwrap();
        data.put(
            &format!("100MB/part-{file:05}.safetensors"),
            &std::fs::read(&path).unwrap(),
        )
        .unwrap();
    }
    data.put(
        "100MB/photoz.safetensors",
        &std::fs::read(&weights_path).unwrap(),
    )
    .unwrap();
    let held = |store: &S3Store, prefix: &str| -> Vec<String> {
        store
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    let data_before = held(&data, "");

    let request: RunRequest = serde_json::from_value(serde_json::json!({
        "bucket": "cosmicai-stack", "data_bucket": "cai-data", "data_prefix": "100MB",
        "batch_size": 64, "world_size": 2, "result_path": "results/in-place",
        "model": "photoz:s3://cai-data/100MB/photoz.safetensors",
    }))
    .unwrap();
    assert!(request.problems().is_empty(), "{:?}", request.problems());
    let stores = Stores {
        data: &data,
        results: &results,
    };
    let payload = initialize_with(stores, &request, "in-place", |_| Ok(())).unwrap();
    let planned: Vec<&str> = payload.files.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        planned,
        [
            "100MB/part-00000.safetensors",
            "100MB/part-00001.safetensors"
        ]
    );
    let weights = Weights::open(&weights_path).unwrap();
    let device = Default::default();
    let model =
        RedshiftModel::PhotoZ(PhotoZ::<NdArray<f32>>::from_weights(&weights, &device).unwrap());
    let mut measures = Vec::new();
    for rank in 0..2 {
        let result = infer_rank(
            stores,
            &payload,
            rank,
            &model,
            &device,
            SystemInfo::default(),
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(result.objects, 100);
        assert!(result.downloaded_bytes > 0);
        measures.push(RankMeasure {
            rank,
            attempts: 1,
            objects: result.objects,
            billed_duration_ms: 10,
            ..Default::default()
        });
    }
    let summary = summarize(
        &results,
        &payload,
        &measures,
        1.0,
        0.1,
        std::time::Instant::now(),
    )
    .unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(summary.objects, 200);
    assert_eq!(
        held(&data, ""),
        data_before,
        "nothing written to the data bucket"
    );
    let written = held(&results, "");
    for k in [
        "payload.json",
        "0.json",
        "1.json",
        "combined_data.json",
        "summary.json",
    ] {
        assert!(
            written.contains(&format!("results/in-place/{k}")),
            "{k} missing from {written:?}"
        );
    }
    assert!(
        written.iter().all(|k| k.starts_with("results/in-place/")),
        "{written:?}"
    );
    // Planned over the run's own bucket instead, it finds no partitions there.
    let e = initialize(&results, &request, "elsewhere")
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no partition files"), "{e}");
}
