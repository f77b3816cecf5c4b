//! The partition format: round trips, and every kind of bad file rejected with
//! an error that names the file and the field, never a panic.

use cosmicai_engine::partition::{
    Images, ObjectRow, Partition, PartitionFile, PartitionMeta, Source, object_id, read_partition,
    write_partition,
};
use cosmicai_shared::{Class, Provenance};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A raw tensor: name, dtype, shape, little-endian bytes.
type RawTensor = (&'static str, Dtype, Vec<usize>, Vec<u8>);

fn source(name: &str, provenance: Provenance) -> Source {
    Source {
        name: name.into(),
        provenance,
        detail: "test".into(),
    }
}

fn sample(n: usize, image: Option<(usize, usize)>) -> Partition {
    let mut p = Partition::new(
        PartitionMeta::default(),
        vec![
            source("real.csv", Provenance::Real),
            source("renderer", Provenance::Synthetic),
        ],
    );
    for i in 0..n {
        let ra = 10.0 + i as f64 * 0.01;
        let dec = -1.0 + i as f64 * 0.001;
        let row = ObjectRow {
            object_id: object_id(ra, dec),
            ra,
            dec,
            magnitudes: [19.0, 18.0, 17.5, 17.2, 17.0 + i as f32 * 0.01],
            redshift: if i == 1 { f32::NAN } else { 0.1 * i as f32 },
            class: [Class::Galaxy, Class::Star, Class::Qso, Class::Unknown][i % 4],
        };
        p.push(row, (i % 2) as u32);
    }
    if let Some((h, w)) = image {
        p.images = Some(Images {
            height: h,
            width: w,
            pixels: (0..n * 5 * h * w).map(|v| v as f32 * 0.5).collect(),
        });
    }
    p
}

fn write_sample(dir: &Path, name: &str, p: &Partition) -> PathBuf {
    let path = dir.join(name);
    write_partition(&path, p).expect("write sample");
    path
}

/// Error text of opening `path`, which must fail.
fn open_error(path: &Path) -> String {
    match PartitionFile::open(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_names(message: &str, path: &Path, field: &str) {
    assert!(
        message.contains(&path.display().to_string()),
        "no file name in: {message}"
    );
    assert!(message.contains(field), "no field `{field}` in: {message}");
}

#[test]
fn round_trip_with_images_keeps_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let original = sample(6, Some((8, 6)));
    let path = write_sample(dir.path(), "a.safetensors", &original);
    let back = read_partition(&path).unwrap();
    // NaN != NaN, so compare redshift separately.
    assert!(back.redshift[1].is_nan());
    let (mut a, mut b) = (original.clone(), back.clone());
    a.redshift[1] = 0.0;
    b.redshift[1] = 0.0;
    assert_eq!(a, b);
    assert_eq!(back.provenance(0), Provenance::Real);
    assert_eq!(back.provenance(1), Provenance::Synthetic);
}

#[test]
fn equal_content_gives_equal_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = sample(5, Some((2, 2)));
    let a = std::fs::read(write_sample(dir.path(), "a.safetensors", &p)).unwrap();
    for _ in 0..5 {
        assert!(a == std::fs::read(write_sample(dir.path(), "b.safetensors", &p)).unwrap());
    }
}

#[test]
fn catalog_only_partition_is_valid_and_lazy_images_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_sample(dir.path(), "c.safetensors", &sample(3, None));
    let file = PartitionFile::open(&path).unwrap();
    assert_eq!(file.len(), 3);
    assert_eq!(file.image_size(), None);
    assert!(file.images(0..3).is_empty());
    assert_eq!(file.read().images, None);
}

#[test]
fn image_slices_are_the_objects_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let p = sample(4, Some((2, 3)));
    let path = write_sample(dir.path(), "s.safetensors", &p);
    let file = PartitionFile::open(&path).unwrap();
    let images = p.images.as_ref().unwrap();
    assert_eq!(file.images(2..3), images.object(2));
    assert_eq!(file.images(1..3).len(), 2 * 30);
}

#[test]
fn empty_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.safetensors");
    std::fs::write(&path, b"").unwrap();
    let e = open_error(&path);
    assert_names(&e, &path, "file");
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn truncated_files_are_rejected_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_sample(dir.path(), "good.safetensors", &sample(5, Some((4, 4))));
    let bytes = std::fs::read(&good).unwrap();
    let cut_path = dir.path().join("cut.safetensors");
    // Cuts inside the length prefix, the JSON header, and the tensor data.
    for cut in [3, 8, 20, 200, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let e = open_error(&cut_path);
        assert_names(&e, &cut_path, "header");
    }
}

#[test]
fn garbage_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.safetensors");
    std::fs::write(&path, b"objid,ra,dec\n1,2,3\n").unwrap();
    assert_names(&open_error(&path), &path, "header");
}

/// Writes a raw safetensors file: `tensors` are (name, dtype, shape, bytes).
fn write_raw(path: &Path, tensors: &[RawTensor], metadata: HashMap<String, String>) {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (*name, TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, Some(metadata), path).unwrap();
}

/// The tensors and metadata of a valid 2-object catalog partition, to corrupt one at a time.
fn valid_raw() -> (Vec<RawTensor>, HashMap<String, String>) {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let f64s = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tensors = vec![
        (
            "object_id",
            Dtype::I64,
            vec![2],
            [1i64, 2].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        ("ra", Dtype::F64, vec![2], f64s(&[1.0, 2.0])),
        ("dec", Dtype::F64, vec![2], f64s(&[0.5, -0.5])),
        (
            "magnitudes",
            Dtype::F32,
            vec![2, 5],
            f32s(&[19.0, 18.0, 17.0, 16.5, 16.0, 20.0, 19.0, 18.0, 17.5, 17.0]),
        ),
        ("redshift", Dtype::F32, vec![2], f32s(&[0.1, f32::NAN])),
        ("class", Dtype::U8, vec![2], vec![0, 255]),
        (
            "source",
            Dtype::I32,
            vec![2],
            [0i32, 0].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
    ];
    let metadata = [
        ("format", "cosmicai.partition"),
        ("format_version", "1"),
        ("survey", "SDSS"),
        ("bands", "u,g,r,i,z"),
        ("pixel_scale_arcsec", "0.396"),
        ("image_units", "nanomaggies"),
        (
            "sources",
            r#"[{"name":"x.csv","provenance":"real","detail":""}]"#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (tensors, metadata)
}

/// Writes the valid raw partition with `change` applied and returns the open error.
fn corrupted(
    change: impl FnOnce(&mut Vec<RawTensor>, &mut HashMap<String, String>),
) -> (String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    let (mut tensors, mut metadata) = valid_raw();
    change(&mut tensors, &mut metadata);
    write_raw(&path, &tensors, metadata);
    (open_error(&path), path, dir)
}

fn tensor<'a>(tensors: &'a mut [RawTensor], name: &str) -> &'a mut RawTensor {
    tensors.iter_mut().find(|t| t.0 == name).unwrap()
}

#[test]
fn the_raw_fixture_itself_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.safetensors");
    let (tensors, metadata) = valid_raw();
    write_raw(&path, &tensors, metadata);
    let file = PartitionFile::open(&path).unwrap();
    assert_eq!(file.catalog().class, vec![Class::Galaxy, Class::Unknown]);
}

#[test]
fn wrong_dtype_is_rejected() {
    let (e, path, _dir) = corrupted(|t, _| {
        let m = tensor(t, "magnitudes");
        m.1 = Dtype::F64;
        m.2 = vec![1, 5]; // same byte count as 2x5 f32
    });
    assert_names(&e, &path, "magnitudes");
    assert!(e.contains("F64"), "{e}");
}

#[test]
fn wrong_image_dtype_is_rejected() {
    let (e, path, _dir) = corrupted(|t, _| {
        t.push((
            "images",
            Dtype::F16,
            vec![2, 5, 2, 2],
            vec![0; 2 * 5 * 2 * 2 * 2],
        ))
    });
    assert_names(&e, &path, "images");
    assert!(e.contains("F16"), "{e}");
}

#[test]
fn wrong_shapes_are_rejected() {
    let (e, path, _dir) = corrupted(|t, _| {
        let m = tensor(t, "magnitudes");
        m.2 = vec![2, 4];
        m.3.truncate(2 * 4 * 4);
    });
    assert_names(&e, &path, "magnitudes");
    assert!(e.contains("[2, 4]"), "{e}");

    let (e, path, _dir) = corrupted(|t, _| {
        t.push((
            "images",
            Dtype::F32,
            vec![2, 3, 2, 2],
            vec![0; 2 * 3 * 2 * 2 * 4],
        ))
    });
    assert_names(&e, &path, "images");
    assert!(e.contains("[2, 5, H, W]"), "{e}");
}

#[test]
fn columns_of_different_lengths_are_rejected() {
    let (e, path, _dir) = corrupted(|t, _| {
        let z = tensor(t, "redshift");
        z.2 = vec![1];
        z.3.truncate(4);
    });
    assert_names(&e, &path, "redshift");
    assert!(e.contains("expected [2]"), "{e}");
}

#[test]
fn nan_magnitudes_are_rejected() {
    let (e, path, _dir) = corrupted(|t, _| {
        let m = tensor(t, "magnitudes");
        m.3[4 * 7..4 * 8].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert_names(&e, &path, "magnitudes");
    assert!(e.contains("object 1 band r is NaN"), "{e}");
}

#[test]
fn missing_tensor_and_metadata_are_named() {
    let (e, path, _dir) = corrupted(|t, _| t.retain(|x| x.0 != "class"));
    assert_names(&e, &path, "class");
    let (e, path, _dir) = corrupted(|_, m| {
        m.remove("format");
    });
    assert_names(&e, &path, "format");
    let (e, path, _dir) = corrupted(|_, m| {
        m.insert("bands".into(), "g,r,i".into());
    });
    assert_names(&e, &path, "bands");
    let (e, path, _dir) = corrupted(|_, m| {
        m.insert("sources".into(), "not json".into());
    });
    assert_names(&e, &path, "sources");
}

#[test]
fn out_of_range_values_are_rejected() {
    let (e, path, _dir) = corrupted(|t, _| tensor(t, "class").3[1] = 7);
    assert_names(&e, &path, "class");
    let (e, path, _dir) =
        corrupted(|t, _| tensor(t, "source").3[4..8].copy_from_slice(&3i32.to_le_bytes()));
    assert_names(&e, &path, "source");
    let (e, path, _dir) =
        corrupted(|t, _| tensor(t, "dec").3[0..8].copy_from_slice(&95f64.to_le_bytes()));
    assert_names(&e, &path, "dec");
}

#[test]
fn zero_object_partitions_are_neither_written_nor_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero.safetensors");
    assert!(write_partition(&path, &sample(0, None)).is_err());
    assert!(!path.exists());
    let (e, path, _dir) = corrupted(|t, _| {
        for x in t.iter_mut() {
            x.2[0] = 0;
            x.3.clear();
        }
    });
    assert_names(&e, &path, "magnitudes");
}

#[test]
fn object_ids_are_stable_and_fit_javascript_numbers() {
    let a = object_id(183.5313256941, 0.0896930301);
    assert_eq!(a, object_id(183.53132569, 0.08969303));
    assert_ne!(a, object_id(183.531327, 0.0896930301));
    assert!((0..(1i64 << 53)).contains(&a));
}
