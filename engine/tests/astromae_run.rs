//! AstroMAE through the pipeline: a CAI checkpoint (the pickled DataParallel
//! module) over partitions made from the parity fixture's inputs, world size 2,
//! reproduces PyTorch's redshifts; a partition without cutouts fails its rank.

use burn::backend::NdArray;
use cosmicai_engine::partition::{
    Images, ObjectRow, Partition, PartitionMeta, Source, write_partition,
};
use cosmicai_engine::pipeline::{Stores, infer_rank, initialize, read_predictions, summarize};
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::{LocalStore, ObjectStore};
use cosmicai_model::weights::Weights;
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::{
    Device, Precision, RankMeasure, RankResult, RunRequest, RunStatus, SystemInfo,
};
use cosmicai_shared::{Class, Provenance};
use std::path::{Path, PathBuf};

type B = NdArray<f32>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/astromae_small")
        .join(name)
}

/// The fixture's objects `range` as a partition with 32x32 cutouts (or none).
fn partition(range: std::ops::Range<usize>, images: bool) -> Partition {
    let io = Weights::open(fixture("io.safetensors")).unwrap();
    let (pixels, mags, z) = (
        io.values("images").unwrap(),
        io.values("magnitudes").unwrap(),
        io.values("redshift").unwrap(),
    );
    let mut p = Partition::new(
        PartitionMeta::default(),
        vec![Source {
            name: "astromae fixture".into(),
            provenance: Provenance::Synthetic,
            detail: "random inputs of the PyTorch peer".into(),
        }],
    );
    let per = 5 * 32 * 32;
    for i in range.clone() {
        let m = &mags[i * 5..i * 5 + 5];
        p.push(
            ObjectRow {
                object_id: i as i64 + 1,
                ra: f64::NAN,
                dec: f64::NAN,
                magnitudes: [m[0], m[1], m[2], m[3], m[4]],
                redshift: z[i],
                class: Class::Galaxy,
            },
            0,
        );
    }
    if images {
        p.images = Some(Images {
            height: 32,
            width: 32,
            pixels: pixels[range.start * per..range.end * per].to_vec(),
        });
    }
    p
}

fn request(model: &str) -> RunRequest {
    RunRequest {
        bucket: "local".into(),
        data_bucket: None,
        data_prefix: "data".into(),
        file_limit: None,
        batch_size: 3,
        world_size: 2,
        result_path: "results/a".into(),
        device: Device::Cpu,
        precision: Default::default(),
        memory_mb: 1024,
        model: model.into(),
        retries: 0,
        tolerated_failure_percentage: 100.0,
        timeout_s: None,
    }
}

fn run(dir: &Path, model: &str) -> (LocalStore, Vec<Result<RankResult, String>>) {
    run_in(dir, model, Precision::Fp32, "a")
}

fn run_in(
    dir: &Path,
    model: &str,
    precision: Precision,
    run_id: &str,
) -> (LocalStore, Vec<Result<RankResult, String>>) {
    run_planned(dir, model, precision, run_id, || {})
}

/// [`run_in`], with `after_plan` done between Initialize and the ranks.
fn run_planned(
    dir: &Path,
    model: &str,
    precision: Precision,
    run_id: &str,
    after_plan: impl FnOnce(),
) -> (LocalStore, Vec<Result<RankResult, String>>) {
    let store = LocalStore::new(dir);
    let mut request = request(model);
    request.precision = precision;
    request.result_path = format!("results/{run_id}");
    assert!(request.problems().is_empty(), "{:?}", request.problems());
    let payload = initialize(&store, &request, run_id).unwrap();
    after_plan();
    let spec = request.model_spec().unwrap();
    let loaded = RedshiftModel::<B>::load(&spec, &Default::default(), true)
        .and_then(|m| m.in_precision(precision, true))
        .unwrap();
    let results = (0..2)
        .map(|rank| {
            infer_rank(
                Stores::one(&store),
                &payload,
                rank,
                &loaded,
                &Default::default(),
                SystemInfo::default(),
                |_| Ok(()),
            )
            .map_err(|e| e.to_string())
        })
        .collect::<Vec<_>>();
    let measures: Vec<RankMeasure> = results
        .iter()
        .enumerate()
        .map(|(rank, r)| RankMeasure {
            rank,
            attempts: 1,
            error: r.as_ref().err().cloned(),
            ..Default::default()
        })
        .collect();
    summarize(
        &store,
        &payload,
        &measures,
        1.0,
        0.1,
        std::time::Instant::now(),
    )
    .unwrap();
    (store, results)
}

#[test]
fn a_cai_checkpoint_reproduces_pytorch_over_two_ranks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    write_partition(
        dir.path().join("data/part-0.safetensors"),
        &partition(0..2, true),
    )
    .unwrap();
    write_partition(
        dir.path().join("data/part-1.safetensors"),
        &partition(2..4, true),
    )
    .unwrap();
    let model = format!("astromae:{}", fixture("astromae_module.pt").display());
    let (store, results) = run(dir.path(), &model);

    let expected = Weights::open(fixture("io.safetensors")).unwrap();
    let expected = expected.values("redshift").unwrap();
    let mut seen = 0;
    for (rank, result) in results.iter().enumerate() {
        let result = result.as_ref().unwrap();
        assert_eq!((result.objects, result.objects_with_cutouts), (2, 2));
        assert_eq!(result.model, model);
        let bytes = store
            .get(&format!("results/a/predictions/{rank}.safetensors"))
            .unwrap();
        let p = read_predictions(&bytes).unwrap();
        for (id, q) in p.object_id.iter().zip(&p.predicted) {
            let want = expected[(*id - 1) as usize];
            assert!(
                (q.redshift - want).abs() <= 1e-4,
                "object {id}: {} vs PyTorch {want}",
                q.redshift
            );
            assert_eq!(q.class, Class::Unknown, "AstroMAE predicts no class");
            seen += 1;
        }
    }
    assert_eq!(seen, 4);

    // CAI's combined_data.json lists both ranks; the summary says there is no class.
    let combined: Vec<RankResult> =
        serde_json::from_slice(&store.get("results/a/combined_data.json").unwrap()).unwrap();
    assert_eq!(combined.len(), 2);
    let summary: serde_json::Value =
        serde_json::from_slice(&store.get("results/a/summary.json").unwrap()).unwrap();
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["predicts_class"], false);
    assert_eq!(summary["model"], model.as_str());
    assert!(summary["metrics"]["class_accuracy"].is_null(), "{summary}");
    // The fixture's objects are made up (marked synthetic): counted, never scored.
    assert_eq!(summary["metrics"]["synthetic"], 4, "{summary}");
    assert!(summary["metrics"]["all"].is_null(), "{summary}");
    assert!(matches!(
        ModelSpec::parse(&model),
        Ok(ModelSpec::AstroMae(_))
    ));
}

/// Every rank's predictions of run `run_id`, by object id.
fn predictions(store: &LocalStore, run_id: &str) -> std::collections::BTreeMap<i64, f32> {
    (0..2)
        .flat_map(|rank| {
            let bytes = store
                .get(&format!("results/{run_id}/predictions/{rank}.safetensors"))
                .unwrap();
            let p = read_predictions(&bytes).unwrap();
            p.object_id
                .into_iter()
                .zip(p.predicted.into_iter().map(|q| q.redshift))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn bf16_on_the_cpu_stays_within_1e3_of_fp32_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    for (i, range) in [0..2, 2..4].into_iter().enumerate() {
        let path = dir.path().join(format!("data/part-{i}.safetensors"));
        write_partition(path, &partition(range, true)).unwrap();
    }
    let model = format!("astromae:{}", fixture("astromae.safetensors").display());
    let (store, fp32) = run_in(dir.path(), &model, Precision::Fp32, "fp32");
    let (_, bf16) = run_in(dir.path(), &model, Precision::Bf16, "bf16");
    for (a, b) in fp32.iter().zip(&bf16) {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert_eq!(a.precision, Precision::Fp32);
        assert_eq!(b.precision, Precision::Bf16);
        // What computed each rank is recorded with it.
        assert_eq!(a.kernels, "fused CPU, fp32");
        assert!(b.kernels.starts_with("fused CPU, bf16 ("), "{}", b.kernels);
    }
    let written: serde_json::Value =
        serde_json::from_slice(&store.get("results/bf16/0.json").unwrap()).unwrap();
    assert!(
        written["kernels"]
            .as_str()
            .unwrap()
            .starts_with("fused CPU, bf16"),
        "{written}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&store.get("results/bf16/summary.json").unwrap()).unwrap();
    assert_eq!(summary["precision"], "bf16");
    assert!(
        summary["kernels"]
            .as_str()
            .unwrap()
            .starts_with("fused CPU, bf16 ("),
        "{summary}"
    );
    let (fp32, bf16) = (predictions(&store, "fp32"), predictions(&store, "bf16"));
    assert_eq!(fp32.len(), 4);
    let worst = fp32
        .iter()
        .map(|(id, z)| (z - bf16[id]).abs())
        .fold(0f32, f32::max);
    // bf16 inputs to the transformer's products do change the answer, a little.
    assert!(worst > 0.0 && worst <= 1e-3, "max |dz| {worst}");
}

#[test]
fn a_partition_without_cutouts_fails_its_rank_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    write_partition(
        dir.path().join("data/part-0.safetensors"),
        &partition(0..2, true),
    )
    .unwrap();
    let part1 = dir.path().join("data/part-1.safetensors");
    write_partition(&part1, &partition(2..4, false)).unwrap();
    let model = format!("astromae:{}", fixture("astromae.safetensors").display());
    // The plan reads the headers, and refuses it...
    let e = initialize(&LocalStore::new(dir.path()), &request(&model), "a")
        .unwrap_err()
        .to_string();
    assert!(e.contains("part-1.safetensors holds no cutouts"), "{e}");
    // ... and one rewritten without them once planned fails its rank, named.
    write_partition(&part1, &partition(2..4, true)).unwrap();
    let (store, results) = run_planned(dir.path(), &model, Precision::Fp32, "a", || {
        write_partition(&part1, &partition(2..4, false)).unwrap();
    });
    assert!(results[0].is_ok());
    let e = results[1].as_ref().unwrap_err();
    assert!(
        e.contains("part-1.safetensors") && e.contains("no cutouts"),
        "{e}"
    );
    assert!(
        store.get("results/a/1.json").is_err(),
        "the failed rank wrote nothing"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&store.get("results/a/summary.json").unwrap()).unwrap();
    assert_eq!(
        summary["status"],
        serde_json::to_value(RunStatus::Partial).unwrap()
    );
    assert_eq!(summary["failed_ranks"], serde_json::json!([1]));
}

#[test]
fn cutouts_under_32_pixels_are_refused() {
    use cosmicai_engine::predict::Cutouts;
    let spec = ModelSpec::AstroMae(fixture("astromae.safetensors").display().to_string());
    let model = RedshiftModel::<B>::load(&spec, &Default::default(), true).unwrap();
    let pixels = vec![0.0; 5 * 16 * 16];
    let e = model
        .predict(
            &[[18.0; 5]],
            Some(Cutouts {
                pixels: &pixels,
                height: 16,
                width: 16,
            }),
            4,
            &Default::default(),
        )
        .unwrap_err();
    assert!(e.contains("16x16") && e.contains("32x32"), "{e}");
}

#[test]
fn cai_pt_partitions_are_read_in_place_as_their_conversion_would_be() {
    // CAI's data already in a bucket: the ranks read its .pt files as they are.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(fixture("partition.pt"), dir.path().join("data/p0.pt")).unwrap();
    std::fs::copy(fixture("partition.pt"), dir.path().join("data/p1.pth")).unwrap();
    let model = format!("astromae:{}", fixture("astromae_module.pt").display());
    let (store, results) = run(dir.path(), &model);
    let results: Vec<RankResult> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results[0].data_path, ["data/p0.pt"]);
    assert_eq!(results[1].data_path, ["data/p1.pth"]);
    let in_place = predictions(&store, "a");
    assert_eq!(in_place.len(), 8);
    // The same objects, ids and redshifts as the converted files give.
    let converted = dir.path().join("converted");
    cosmicai_engine::cai::import(
        &[dir.path().join("data")],
        &converted.join("data"),
        None,
        Class::Unknown,
        |_, _| {},
    )
    .unwrap();
    let (_, again) = run_in(&converted, &model, Precision::Fp32, "b");
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    let from_converted = predictions(&LocalStore::new(&converted), "b");
    assert_eq!(
        in_place.keys().collect::<Vec<_>>(),
        from_converted.keys().collect::<Vec<_>>()
    );
    for (id, z) in &in_place {
        assert_eq!(z.to_bits(), from_converted[id].to_bits(), "object {id}");
    }
    // PyTorch's redshifts, to the parity bound.
    let expected = Weights::open(fixture("io.safetensors")).unwrap();
    let expected = expected.values("redshift").unwrap();
    assert_eq!(expected.len(), 4);
    for (row, want) in expected.iter().enumerate() {
        let id = cosmicai_engine::cai::cai_object_id("p0.pt", row);
        assert!((in_place[&id] - want).abs() <= 1e-4, "row {row}");
    }
}

#[test]
fn a_checkpoint_among_cai_pt_partitions_is_read_as_no_objects() {
    // `aws s3 sync` of a CAI folder brings its checkpoint along with the data.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(
        fixture("astromae_module.pt"),
        dir.path().join("data/model.pt"),
    )
    .unwrap();
    std::fs::copy(fixture("partition.pt"), dir.path().join("data/p0.pt")).unwrap();
    let model = format!("astromae:{}", fixture("astromae_module.pt").display());
    let (store, results) = run(dir.path(), &model);
    let results: Vec<RankResult> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results[0].data_path, ["data/model.pt"]);
    assert_eq!(
        (results[0].objects, results[1].objects),
        (0, 4),
        "the checkpoint gave no objects, the partition its four"
    );
    assert_eq!(predictions(&store, "a").len(), 4);
}

#[test]
fn a_rank_its_caller_stops_writes_nothing() {
    use cosmicai_engine::pipeline::{PipelineError, RankEvent};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(fixture("partition.pt"), dir.path().join("data/p0.pt")).unwrap();
    let store = LocalStore::new(dir.path());
    let model = format!("astromae:{}", fixture("astromae_module.pt").display());
    let mut request = request(&model);
    (request.world_size, request.result_path) = (1, "results/stop".into());
    let payload = initialize(&store, &request, "stop").unwrap();
    let loaded =
        RedshiftModel::<B>::load(&request.model_spec().unwrap(), &Default::default(), true)
            .unwrap();
    // Stopped after its first batch (3 of 4 objects), then just before its writes.
    for stop_at in [RankEvent::Objects(3), RankEvent::Writing] {
        let mut heard = Vec::new();
        let stopped = infer_rank(
            Stores::one(&store),
            &payload,
            0,
            &loaded,
            &Default::default(),
            SystemInfo::default(),
            |event| {
                heard.push(event);
                if event == stop_at {
                    return Err(PipelineError::Other("out of time".into()));
                }
                Ok(())
            },
        );
        assert!(stopped.unwrap_err().to_string().contains("out of time"));
        assert_eq!(heard.last(), Some(&stop_at));
        assert!(store.get("results/stop/0.json").is_err());
        assert!(store.get("results/stop/predictions/0.safetensors").is_err());
    }
}
