//! A rank with a PhotoZ that has the image branch reads the partitions' cutouts:
//! objects with pixels get the image-aware answer, objects off their frame (all
//! NaN) and catalog-only partitions get exactly the magnitudes-only one.

use burn::backend::NdArray;
use cosmicai_engine::partition::{
    Images, ObjectRow, Partition, PartitionMeta, Source, write_partition,
};
use cosmicai_engine::pipeline::{Stores, infer_rank, initialize, read_predictions};
use cosmicai_engine::predict::{Prediction, predict_photoz};
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_engine::store::{LocalStore, ObjectStore};
use cosmicai_model::photoz::{PhotoZ, PhotoZConfig};
use cosmicai_shared::run::{Device, RankResult, RunRequest, SystemInfo};
use cosmicai_shared::{Class, Provenance};

type B = NdArray<f32>;

/// `n` objects with `size`x`size` cutouts: a Gaussian blob on noise, every third one off its frame.
fn partition(n: usize, size: usize, images: bool) -> Partition {
    let mut p = Partition::new(
        PartitionMeta::default(),
        vec![Source {
            name: "test".into(),
            provenance: Provenance::Synthetic,
            detail: "made in the test".into(),
        }],
    );
    let mut pixels = Vec::new();
    for i in 0..n {
        let r = 17.0 + (i % 7) as f32 * 0.4;
        p.push(
            ObjectRow {
                object_id: i as i64 + 1,
                ra: 150.0 + i as f64 * 1e-3,
                dec: 2.0,
                magnitudes: [r + 1.8, r + 0.7, r, r - 0.3, r - 0.5],
                redshift: 0.1,
                class: Class::Galaxy,
            },
            0,
        );
        for band in 0..5 {
            for y in 0..size {
                for x in 0..size {
                    let d2 = (y as f32 - size as f32 / 2.0).powi(2)
                        + (x as f32 - size as f32 / 2.0).powi(2);
                    let noise = ((i * 31 + band * 7 + y * size + x) % 13) as f32 * 0.01;
                    let value = (band + 1) as f32 * (-d2 / (2.0 + i as f32 % 5.0)).exp() + noise;
                    pixels.push(if i % 3 == 2 { f32::NAN } else { value });
                }
            }
        }
    }
    if images {
        p.images = Some(Images {
            height: size,
            width: size,
            pixels,
        });
    }
    p
}

fn request(result_path: &str) -> RunRequest {
    RunRequest {
        bucket: "local".into(),
        data_bucket: None,
        data_prefix: "data".into(),
        file_limit: None,
        batch_size: 4,
        world_size: 1,
        result_path: result_path.into(),
        device: Device::Cpu,
        precision: Default::default(),
        memory_mb: 1024,
        model: "photoz".into(),
        retries: 0,
        tolerated_failure_percentage: 0.0,
        timeout_s: None,
    }
}

/// One rank over `objects`, written as one partition: its result and stored predictions.
fn run_rank(
    model: &RedshiftModel<B>,
    objects: &Partition,
) -> Result<(RankResult, Vec<Prediction>), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    write_partition(dir.path().join("data/part-0.safetensors"), objects).unwrap();
    let store = LocalStore::new(dir.path());
    let payload = initialize(&store, &request("results/r"), "r").unwrap();
    let system = SystemInfo::default();
    match infer_rank(
        Stores::one(&store),
        &payload,
        0,
        model,
        &Default::default(),
        system,
        |_| Ok(()),
    ) {
        Ok(result) => {
            let bytes = store.get("results/r/predictions/0.safetensors").unwrap();
            Ok((result, read_predictions(&bytes).unwrap().predicted))
        }
        Err(e) => {
            assert!(
                store.get("results/r/0.json").is_err(),
                "a failed rank wrote its result"
            );
            Err(e.to_string())
        }
    }
}

/// A random PhotoZ, wrapped once: burn initialises parameters lazily, so a clone
/// made before first use would draw other weights.
fn model(cutout: bool) -> RedshiftModel<B> {
    RedshiftModel::PhotoZ(
        PhotoZConfig::new()
            .with_width(32)
            .with_cutout(cutout)
            .init(&Default::default()),
    )
}

fn photoz(model: &RedshiftModel<B>) -> &PhotoZ<B> {
    match model {
        RedshiftModel::PhotoZ(m) => m,
        _ => unreachable!("these tests use PhotoZ"),
    }
}

#[test]
fn the_image_branch_reads_cutouts_where_objects_have_them() {
    let model = model(true);
    let objects = partition(10, 64, true);
    let (result, stored) = run_rank(&model, &objects).unwrap();
    assert_eq!(result.objects, 10);
    // Objects 2, 5, 8 are off their frame.
    assert_eq!(result.objects_with_cutouts, 7);

    let alone = predict_photoz(photoz(&model), &objects.magnitudes, 4, &Default::default());
    assert_eq!((stored.len(), alone.len()), (10, 10));
    for (i, (with, without)) in stored.iter().zip(&alone).enumerate() {
        let same = (with.redshift - without.redshift).abs() < 1e-6
            && with
                .class_probability
                .iter()
                .zip(without.class_probability)
                .all(|(a, b)| (a - b).abs() < 1e-6);
        assert_eq!(
            same,
            i % 3 == 2,
            "object {i}: {with:?} vs magnitudes alone {without:?}"
        );
    }
}

#[test]
fn a_magnitudes_only_model_or_partition_gives_the_magnitudes_only_answer() {
    for (model, images) in [(model(false), true), (model(true), false)] {
        let objects = partition(6, 64, images);
        let (result, stored) = run_rank(&model, &objects).unwrap();
        assert_eq!((result.objects, result.objects_with_cutouts), (6, 0));
        assert_eq!(
            stored,
            predict_photoz(photoz(&model), &objects.magnitudes, 4, &Default::default())
        );
    }
}

#[test]
fn cutouts_smaller_than_the_crop_are_an_error_naming_the_partition() {
    let e = run_rank(&model(true), &partition(3, 16, true)).unwrap_err();
    assert!(
        e.contains("part-0.safetensors") && e.contains("16x16"),
        "{e}"
    );
}
