//! Splitting datasets into partitions: order, budgets, names, and never
//! overwriting what is stored.

use cosmicai_engine::dataset::{
    DatasetError, PartitionBy, PartitionSink, list_partitions, repartition,
};
use cosmicai_engine::partition::{
    self, ObjectRow, PartitionFile, PartitionMeta, Source, object_id,
};
use cosmicai_shared::{Class, Provenance};
use std::path::Path;

fn row(i: usize) -> ObjectRow {
    let (ra, dec) = (i as f64 * 0.001, 0.0);
    ObjectRow {
        object_id: object_id(ra, dec),
        ra,
        dec,
        magnitudes: [20.0; 5],
        redshift: i as f32,
        class: Class::Galaxy,
    }
}

fn synthetic() -> Source {
    Source {
        name: "renderer".into(),
        provenance: Provenance::Synthetic,
        detail: String::new(),
    }
}

/// A dataset of `n` objects with 8x8 images whose pixels encode the object index.
fn image_dataset(dir: &Path, n: usize, per_file: usize) {
    let mut sink = PartitionSink::create(
        dir,
        PartitionBy::Objects(per_file),
        PartitionMeta::default(),
    )
    .unwrap();
    for i in 0..n {
        let pixels = vec![i as f32; 5 * 8 * 8];
        sink.push(row(i), &synthetic(), Some((&pixels, 8, 8)))
            .unwrap();
    }
    sink.finish().unwrap();
}

#[test]
fn split_by_objects_keeps_order_and_names_sort() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    image_dataset(&input, 25, 7);
    assert_eq!(list_partitions(&input).unwrap().len(), 4);

    let written = repartition(
        &list_partitions(&input).unwrap(),
        &out,
        PartitionBy::Objects(10),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        written.iter().map(|w| w.objects).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    let files = list_partitions(&out).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "part-000000.safetensors",
            "part-000001.safetensors",
            "part-000002.safetensors"
        ]
    );
    let mut next = 0;
    for f in files {
        let p = PartitionFile::open(&f).unwrap().read();
        let images = p.images.as_ref().unwrap();
        for i in 0..p.len() {
            assert_eq!(p.redshift[i], next as f32);
            assert!(images.object(i).iter().all(|v| *v == next as f32));
            assert_eq!(p.provenance(i), Provenance::Synthetic);
            next += 1;
        }
    }
    assert_eq!(next, 25);
}

#[test]
fn split_by_size_never_exceeds_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    image_dataset(&input, 40, 40);
    let budget = 20_000;
    let written = repartition(
        &list_partitions(&input).unwrap(),
        &out,
        PartitionBy::Bytes(budget),
        |_| {},
    )
    .unwrap();
    assert!(written.len() > 1);
    for w in &written {
        assert!(
            w.bytes <= budget,
            "{} is {} bytes",
            w.path.display(),
            w.bytes
        );
    }
    // Full files are nearly full: the budget is used, not wasted.
    let per_object = partition::bytes_per_object(Some((8, 8))) as u64;
    assert!(written[0].bytes + 2 * per_object > budget - 4096);
    assert_eq!(written.iter().map(|w| w.objects).sum::<usize>(), 40);
}

#[test]
fn a_size_smaller_than_one_object_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    image_dataset(&input, 2, 2);
    let e = repartition(
        &list_partitions(&input).unwrap(),
        &out,
        PartitionBy::Bytes(5000),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, DatasetError::SizeTooSmall { .. }), "{e}");
}

#[test]
fn an_output_that_holds_partitions_is_refused_and_left_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    image_dataset(&input, 5, 5);
    let before = std::fs::read(list_partitions(&input).unwrap()[0].clone()).unwrap();
    let inputs = list_partitions(&input).unwrap();
    let e = repartition(&inputs, &input, PartitionBy::Objects(1), |_| {}).unwrap_err();
    assert!(matches!(e, DatasetError::OutputNotEmpty(_)), "{e}");
    assert_eq!(list_partitions(&input).unwrap().len(), 1);
    assert_eq!(std::fs::read(&inputs[0]).unwrap(), before);
}

#[test]
fn mixing_image_sizes_is_an_error_naming_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, out) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("out"),
    );
    image_dataset(&a, 3, 3);
    let mut sink =
        PartitionSink::create(&b, PartitionBy::Objects(3), PartitionMeta::default()).unwrap();
    sink.push(row(99), &synthetic(), None).unwrap();
    sink.finish().unwrap();
    let inputs = [list_partitions(&a).unwrap(), list_partitions(&b).unwrap()].concat();
    let e = repartition(&inputs, &out, PartitionBy::Objects(10), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&inputs[1].display().to_string()) && e.contains("8x8"),
        "{e}"
    );
}

#[test]
fn an_empty_directory_has_no_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        list_partitions(tmp.path()),
        Err(DatasetError::NoPartitions(_))
    ));
}

#[test]
fn a_dataset_appears_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let names = |dir: &Path| -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        n.sort();
        n
    };
    // Cut short after two of three files: nothing in `out`, no leftovers.
    let mut sink =
        PartitionSink::create(&out, PartitionBy::Objects(2), PartitionMeta::default()).unwrap();
    for i in 0..5 {
        sink.push(row(i), &synthetic(), None).unwrap();
    }
    assert!(
        list_partitions(&out).is_err(),
        "partitions showed before the end"
    );
    drop(sink);
    assert_eq!(names(tmp.path()), Vec::<String>::new());
    // Finished: all three, in `out` (an existing empty folder gets them).
    std::fs::create_dir(&out).unwrap();
    let mut sink =
        PartitionSink::create(&out, PartitionBy::Objects(2), PartitionMeta::default()).unwrap();
    for i in 0..5 {
        sink.push(row(i), &synthetic(), None).unwrap();
    }
    let written = sink.finish().unwrap();
    assert_eq!(names(tmp.path()), ["out"]);
    assert_eq!(list_partitions(&out).unwrap().len(), 3);
    assert!(
        written
            .iter()
            .all(|w| w.path.parent() == Some(out.as_path()))
    );
    // Into a folder holding other files: the partitions join them.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("README"), "kept").unwrap();
    let mut sink =
        PartitionSink::create(&other, PartitionBy::Objects(2), PartitionMeta::default()).unwrap();
    sink.push(row(0), &synthetic(), None).unwrap();
    sink.finish().unwrap();
    assert_eq!(names(&other), ["README", "part-000000.safetensors"]);
    assert_eq!(names(tmp.path()), ["other", "out"]);

    // Cut short while its files were moved into `other` one by one (the
    // marker was written first, and the last files never came): refused, and
    // built again in its place, its part gone with the marker.
    std::fs::write(other.join(cosmicai_engine::dataset::INCOMPLETE), "").unwrap();
    assert!(matches!(
        list_partitions(&other),
        Err(DatasetError::Incomplete(_))
    ));
    let mut sink =
        PartitionSink::create(&other, PartitionBy::Objects(2), PartitionMeta::default()).unwrap();
    for i in 0..3 {
        sink.push(row(i), &synthetic(), None).unwrap();
    }
    sink.finish().unwrap();
    assert_eq!(
        names(&other),
        [
            "README",
            "part-000000.safetensors",
            "part-000001.safetensors"
        ]
    );
    assert_eq!(list_partitions(&other).unwrap().len(), 2);
}

#[test]
fn a_stores_listing_leaves_temporaries_out() {
    use cosmicai_engine::store::{LocalStore, ObjectStore};
    let tmp = tempfile::tempdir().unwrap();
    image_dataset(&tmp.path().join("data/a"), 2, 2);
    // What a command or a write cut short leaves.
    std::fs::create_dir_all(tmp.path().join("data/.tmp-b")).unwrap();
    std::fs::write(tmp.path().join("data/.tmp-b/part-000000.safetensors"), b"x").unwrap();
    std::fs::write(tmp.path().join("data/a/.tmpXYZ"), b"x").unwrap();
    let keys: Vec<String> = LocalStore::new(tmp.path())
        .list("data")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["data/a/part-000000.safetensors"]);
}
