//! CAI `.pt` partitions that are not what CAI's `split_data.py` writes: each is
//! refused with an error naming the file and the problem, never a panic. The
//! damaged files are the fixture's `partition.pt` with one thing changed in its
//! pickle or storages (CI has no torch to write them).

use cosmicai_engine::cai::read_cai_partition;
use cosmicai_shared::Class;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/astromae_small/partition.pt")
}

/// The fixture's zip entries, with `change` applied to them.
fn damaged(dir: &Path, change: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> PathBuf {
    let mut zip = zip::ZipArchive::new(Cursor::new(std::fs::read(fixture()).unwrap())).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_string(), data)
        })
        .collect();
    change(&mut entries);
    let path = dir.join("damaged.pt");
    let mut out = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in &entries {
        out.start_file(name.as_str(), stored).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap();
    path
}

fn entry<'a>(entries: &'a mut [(String, Vec<u8>)], suffix: &str) -> &'a mut Vec<u8> {
    &mut entries
        .iter_mut()
        .find(|(n, _)| n.ends_with(suffix))
        .unwrap()
        .1
}

/// Replaces the one occurrence of `from` in the pickle with `to`.
fn patch_pickle(from: &[u8], to: &[u8]) -> impl FnOnce(&mut Vec<(String, Vec<u8>)>) {
    let (from, to) = (from.to_vec(), to.to_vec());
    move |entries| {
        let pickle = entry(entries, "/data.pkl");
        let hits: Vec<usize> = (0..pickle.len())
            .filter(|&i| pickle[i..].starts_with(&from))
            .collect();
        assert_eq!(hits.len(), 1, "{from:?} occurs {} times", hits.len());
        pickle.splice(hits[0]..hits[0] + from.len(), to);
    }
}

fn error_of(change: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = damaged(dir.path(), change);
    match read_cai_partition(&path, None, Class::Galaxy) {
        Ok(p) => panic!("read {} objects from a damaged file", p.len()),
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("damaged.pt"), "the file is named: {e}");
            e
        }
    }
}

// The fixture's pickle: images (4, 5, 32, 32), magnitudes (4, 5), redshift (4,),
// each a view of a FloatStorage; `K n` is a one-byte integer in a shape tuple.
const IMAGE_SHAPE: &[u8] = b"K\x04K\x05K\x20K\x20t";
const MAGNITUDE_SHAPE: &[u8] = b"K\x04K\x05\x86";

#[test]
fn the_undamaged_fixture_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = damaged(dir.path(), |_| {});
    assert_eq!(
        read_cai_partition(&path, None, Class::Galaxy)
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn integer_tensors_are_not_float32() {
    let e = error_of(patch_pickle(
        b"torch\nFloatStorage\n",
        b"torch\nLongStorage\n",
    ));
    assert!(e.contains("images are int64, expected float32"), "{e}");
}

#[test]
fn images_with_three_bands_are_the_wrong_shape() {
    let e = error_of(patch_pickle(IMAGE_SHAPE, b"K\x04K\x03K\x20K\x20t"));
    assert!(e.contains("images have shape [4, 3, 32, 32]"), "{e}");
    assert!(e.contains("expected [N, 5, H, W]"), "{e}");
}

#[test]
fn fewer_images_than_magnitudes_is_a_length_mismatch() {
    let e = error_of(patch_pickle(IMAGE_SHAPE, b"K\x03K\x05K\x20K\x20t"));
    assert!(e.contains("3 images but 4 magnitudes"), "{e}");
}

#[test]
fn more_magnitudes_than_redshifts_is_a_length_mismatch() {
    let e = error_of(patch_pickle(MAGNITUDE_SHAPE, b"K\x03K\x05\x86"));
    assert!(e.contains("redshift has shape [4], expected [3]"), "{e}");
}

#[test]
fn a_count_of_objects_the_file_cannot_hold_is_refused_unread() {
    // 2^31 - 1 objects of magnitudes claimed: the estimate's count (which
    // reads shapes only) is bounded by the file's bytes.
    let dir = tempfile::tempdir().unwrap();
    let path = damaged(
        dir.path(),
        patch_pickle(MAGNITUDE_SHAPE, b"J\xff\xff\xff\x7fK\x05\x86"),
    );
    let e = cosmicai_engine::cai::cai_objects(&path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("damaged.pt") && e.contains("more than its") && e.contains("2147483647"),
        "{e}"
    );
    let fine = damaged(dir.path(), |_| {});
    assert_eq!(cosmicai_engine::cai::cai_objects(&fine).unwrap(), 4);
}

#[test]
fn magnitudes_of_the_wrong_width_are_refused() {
    let e = error_of(patch_pickle(MAGNITUDE_SHAPE, b"K\x04K\x04\x86"));
    assert!(e.contains("magnitudes have shape [4, 4]"), "{e}");
}

#[test]
fn an_image_storage_shorter_than_its_tensor_is_refused() {
    let e = error_of(|entries| entry(entries, "/data/0").truncate(1000));
    assert!(e.contains("data/0 holds 1000 bytes"), "{e}");
    assert!(e.contains("shorter than its tensor"), "{e}");
}

#[test]
fn a_missing_storage_is_named() {
    let e = error_of(|entries| entries.retain(|(n, _)| !n.ends_with("/data/2")));
    assert!(e.contains("data/2"), "{e}");
}

#[test]
fn a_magnitude_that_is_not_a_number_names_its_object() {
    let e = error_of(|entries| {
        // Object 1's g magnitude (the 7th float of storage 1).
        entry(entries, "/data/1")[24..28].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert!(e.contains("object 1: magnitude NaN is not finite"), "{e}");
}

/// The names of the files in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_run_over_a_folder_of_pt_files_converts_it_once() {
    use cosmicai_engine::cai::{CONVERTED, converted_prefix};
    let root = tempfile::tempdir().unwrap();
    let cai = root.path().join("cai");
    std::fs::create_dir_all(&cai).unwrap();
    std::fs::copy(fixture(), cai.join("partition_0.pt")).unwrap();
    let mut told = Vec::new();
    let prefix = converted_prefix(
        root.path(),
        "cai",
        None,
        |n, out| told.push((n, out.to_owned())),
        |_| {},
    )
    .unwrap();
    assert_eq!(prefix, format!("cai/{CONVERTED}"));
    assert_eq!(told, vec![(1, cai.join(CONVERTED))]);
    let written = cai.join(CONVERTED).join("partition_0.safetensors");
    let modified = std::fs::metadata(&written).unwrap().modified().unwrap();
    // Again: the same prefix, the partition kept as it was, and nothing told
    // (no "converting" line, no bar).
    let again = converted_prefix(
        root.path(),
        "cai",
        None,
        |_, _| panic!("nothing to convert"),
        |_| {},
    )
    .unwrap();
    assert_eq!(again, prefix);
    assert_eq!(
        std::fs::metadata(&written).unwrap().modified().unwrap(),
        modified
    );
    // Folders of our own partitions, and prefixes leaving the root, are left alone.
    let ours = converted_prefix(
        root.path(),
        &prefix,
        None,
        |_, _| panic!("converted"),
        |_| {},
    )
    .unwrap();
    assert_eq!(ours, prefix);
    // A run with a file_limit converts no more than it reads: of three files,
    // the first two (the first already done), in name order.
    std::fs::copy(fixture(), cai.join("partition_1.pt")).unwrap();
    std::fs::copy(fixture(), cai.join("partition_2.pt")).unwrap();
    let mut told = Vec::new();
    converted_prefix(root.path(), "cai", Some(2), |n, _| told.push(n), |_| {}).unwrap();
    assert_eq!(told, vec![1], "one of the two to convert now");
    assert_eq!(
        names_in(&cai.join(CONVERTED)),
        ["partition_0.safetensors", "partition_1.safetensors"]
    );
    // Split again into fewer files: the partitions of `.pt` files that are gone
    // go too (the plan lists the whole folder), the others stay as they were.
    std::fs::remove_file(cai.join("partition_1.pt")).unwrap();
    std::fs::remove_file(cai.join("partition_2.pt")).unwrap();
    std::fs::write(
        cai.join(CONVERTED).join("notes.txt"),
        b"a user's file, not a partition",
    )
    .unwrap();
    converted_prefix(
        root.path(),
        "cai",
        None,
        |_, _| panic!("nothing to convert"),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        names_in(&cai.join(CONVERTED)),
        ["notes.txt", "partition_0.safetensors"]
    );
    assert_eq!(
        std::fs::metadata(&written).unwrap().modified().unwrap(),
        modified
    );
    let outside =
        converted_prefix(&cai, "../cai", None, |_, _| panic!("converted"), |_| {}).unwrap();
    assert_eq!(outside, "../cai");
    // Stopped by its caller (a cancel) before a file: said so, as no file's fault.
    std::fs::copy(fixture(), cai.join("partition_3.pt")).unwrap();
    let stopped = cosmicai_engine::cai::converted_prefix_with(
        root.path(),
        "cai",
        None,
        |_, _| {},
        |_| {},
        |_, _| {},
        &|| false,
    )
    .unwrap_err();
    assert!(stopped.stopped, "{stopped}");
    assert!(stopped.problem.contains("stopped (cancelled)"), "{stopped}");
    // A file that is no partition is the file's fault, not a stop.
    std::fs::write(cai.join("partition_4.pt"), b"not a pickle").unwrap();
    std::fs::remove_file(cai.join("partition_3.pt")).unwrap();
    let broken = converted_prefix(root.path(), "cai", None, |_, _| {}, |_| {}).unwrap_err();
    assert!(!broken.stopped, "{broken}");
}

#[test]
fn two_files_that_would_become_one_partition_are_refused_before_any_is_written() {
    let root = tempfile::tempdir().unwrap();
    let cai = root.path().join("cai");
    std::fs::create_dir_all(&cai).unwrap();
    std::fs::copy(fixture(), cai.join("p.pt")).unwrap();
    std::fs::copy(fixture(), cai.join("p.pth")).unwrap();
    let out = root.path().join("out");
    let err = cosmicai_engine::cai::import(&[cai], &out, None, Class::Galaxy, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would also become") && err.contains("p.safetensors"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn a_file_named_twice_is_imported_once() {
    let root = tempfile::tempdir().unwrap();
    let cai = root.path().join("cai");
    std::fs::create_dir_all(&cai).unwrap();
    std::fs::copy(fixture(), cai.join("p.pt")).unwrap();
    let out = root.path().join("out");
    // The folder, the file in it, and the file again by another spelling.
    let named = [cai.clone(), cai.join("p.pt"), cai.join(".").join("p.pt")];
    let report =
        cosmicai_engine::cai::import(&named, &out, None, Class::Galaxy, |_, _| {}).unwrap();
    assert_eq!((report.written.len(), report.skipped), (1, 0));
}

#[test]
fn a_checkpoint_kept_beside_the_partitions_is_left_out() {
    use cosmicai_engine::cai::{CONVERTED, converted_prefix};
    let checkpoints =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/astromae_small");
    let root = tempfile::tempdir().unwrap();
    let cai = root.path().join("cai");
    std::fs::create_dir_all(&cai).unwrap();
    std::fs::copy(fixture(), cai.join("partition_0.pt")).unwrap();
    // Both forms CAI's users keep, and our own import of the weights.
    std::fs::copy(
        checkpoints.join("astromae_state_dict.pt"),
        cai.join("model.pt"),
    )
    .unwrap();
    std::fs::copy(
        checkpoints.join("astromae_module.pt"),
        cai.join("module.pth"),
    )
    .unwrap();
    std::fs::copy(
        checkpoints.join("astromae.safetensors"),
        cai.join("astromae.safetensors"),
    )
    .unwrap();
    let mut left_out = Vec::new();
    let prefix = converted_prefix(
        root.path(),
        "cai",
        None,
        |_, _| {},
        |f| left_out.push(f.to_owned()),
    )
    .unwrap();
    assert_eq!(prefix, format!("cai/{CONVERTED}"));
    left_out.sort();
    assert_eq!(left_out, vec![cai.join("model.pt"), cai.join("module.pth")]);
    let converted: Vec<_> = std::fs::read_dir(cai.join(CONVERTED))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(converted, vec!["partition_0.safetensors"]);
    // A damaged partition is still an error, not a file left out.
    let broken = cai.join("partition_1.pt");
    let bytes = std::fs::read(fixture()).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let e = cosmicai_engine::cai::import(
        std::slice::from_ref(&cai),
        &root.path().join("o"),
        None,
        Class::Galaxy,
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("partition_1.pt"), "{e}");
}

#[test]
fn a_file_converted_with_another_class_is_named_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let cai = root.path().join("cai");
    std::fs::create_dir_all(&cai).unwrap();
    std::fs::copy(fixture(), cai.join("p.pt")).unwrap();
    let out = root.path().join("out");
    let import = |class| {
        cosmicai_engine::cai::import(std::slice::from_ref(&cai), &out, None, class, |_, _| {})
    };
    import(Class::Unknown).unwrap();
    let e = import(Class::Galaxy).unwrap_err().to_string();
    assert!(
        e.contains("p.safetensors was converted with class UNKNOWN, not GALAXY"),
        "{e}"
    );
    // Without a class, or with the same one, it is simply kept.
    assert_eq!(import(Class::Unknown).unwrap().skipped, 1);
    // The .pt written again under its name (a new split): converted again, not
    // the old objects kept under the new file's name.
    let fewer = cai.join("p.pt");
    let before = std::fs::read(out.join("p.safetensors")).unwrap();
    std::fs::write(&fewer, std::fs::read(fixture()).unwrap()).unwrap();
    let file = std::fs::File::options().write(true).open(&fewer).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let again = import(Class::Unknown).unwrap();
    assert_eq!((again.written.len(), again.skipped), (1, 0));
    assert_ne!(std::fs::read(out.join("p.safetensors")).unwrap(), before);
    assert_eq!(import(Class::Unknown).unwrap().skipped, 1);
}

#[test]
fn a_conversion_that_fails_leaves_no_empty_folder_behind() {
    use cosmicai_engine::cai::{CONVERTED, converted_prefix};
    let root = tempfile::tempdir().unwrap();
    let cai = root.path().join("cai");
    std::fs::create_dir_all(&cai).unwrap();
    // Cut short: not a zip any more.
    let whole = std::fs::read(fixture()).unwrap();
    std::fs::write(cai.join("partition_0.pt"), &whole[..whole.len() / 2]).unwrap();
    let e = converted_prefix(root.path(), "cai", None, |_, _| {}, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("partition_0.pt") && e.contains("cut short"),
        "{e}"
    );
    assert!(
        !cai.join(CONVERTED).exists(),
        "an empty conversion folder was left"
    );
    // A folder that was there before stays, empty or not.
    std::fs::create_dir(cai.join(CONVERTED)).unwrap();
    assert!(converted_prefix(root.path(), "cai", None, |_, _| {}, |_| {}).is_err());
    assert!(cai.join(CONVERTED).is_dir());
}
