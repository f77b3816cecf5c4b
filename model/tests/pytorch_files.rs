//! Reading `.pt` files: CAI's TensorDataset partitions, and hostile or broken
//! files refused with an error that names them (never a panic).

use cosmicai_model::pytorch::PtFile;
use cosmicai_model::weights::Weights;
use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/astromae_small")
        .join(name)
}

/// The entries of a `.pt` zip, in order.
fn entries(name: &str) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_string(), data)
        })
        .collect()
}

/// A zip of `entries`, stored uncompressed as torch.save writes them.
fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        out.start_file(name.as_str(), options).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn weights_error(bytes: Vec<u8>) -> String {
    match Weights::from_file_bytes("hostile.pt", bytes) {
        Ok(_) => "loaded".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_tensor_dataset_gives_the_images_magnitudes_and_redshifts() {
    let mut file = PtFile::open(fixture("partition.pt")).unwrap();
    let io = Weights::open(fixture("io.safetensors")).unwrap();
    let tensors = file.dataset_tensors().unwrap();
    assert_eq!(tensors.len(), 3);
    for (t, name) in tensors.iter().zip(["images", "magnitudes", "redshift"]) {
        let read = file.read(t).unwrap();
        assert_eq!(read.values.as_slice(), io.values(name).unwrap(), "{name}");
    }
    assert_eq!(file.read(&tensors[0]).unwrap().shape, vec![4, 5, 32, 32]);
}

#[test]
fn a_module_pickle_is_not_a_tensor_dataset() {
    let file = PtFile::open(fixture("astromae_module.pt")).unwrap();
    let e = file.dataset_tensors().unwrap_err().to_string();
    assert!(
        e.contains("astromae_module.pt") && e.contains("not a TensorDataset"),
        "{e}"
    );
}

#[test]
fn not_a_zip_and_a_cut_zip_are_errors() {
    let e = weights_error(b"PK\x03\x04 and then nothing of a zip".to_vec());
    assert!(
        e.contains("hostile.pt") && e.contains("not a PyTorch zip"),
        "{e}"
    );
    let whole = std::fs::read(fixture("astromae_state_dict.pt")).unwrap();
    let e = weights_error(whole[..whole.len() / 2].to_vec());
    assert!(e.contains("hostile.pt"), "{e}");
}

#[test]
fn an_unknown_opcode_is_named() {
    let mut e = entries("astromae_state_dict.pt");
    let pkl = e.iter_mut().find(|(n, _)| n.ends_with("data.pkl")).unwrap();
    pkl.1 = b"\x80\x02\xffjunk".to_vec();
    let msg = weights_error(zip_of(&e));
    assert!(
        msg.contains("opcode 0xff") && msg.contains("byte 2"),
        "{msg}"
    );
}

#[test]
fn a_storage_shorter_than_its_tensor_is_refused() {
    let mut e = entries("astromae_state_dict.pt");
    // The largest storage, cut short.
    let big = e
        .iter_mut()
        .filter(|(n, _)| n.contains("/data/"))
        .max_by_key(|(_, d)| d.len())
        .unwrap();
    let name = big.0.clone();
    big.1.truncate(big.1.len() / 2);
    let msg = weights_error(zip_of(&e));
    assert!(
        msg.contains(&name) && msg.contains("shorter than its tensor"),
        "{msg}"
    );
}

#[test]
fn a_zip_without_a_pickle_is_not_a_checkpoint() {
    let msg = weights_error(zip_of(&[("a/version".into(), b"3".to_vec())]));
    assert!(msg.contains("no data.pkl"), "{msg}");
}

#[test]
fn a_torchscript_archive_is_named_as_such() {
    // torch.jit.save writes the module's code and constants beside its pickle.
    let mut scripted = entries("astromae_state_dict.pt");
    let archive = scripted[0].0.split('/').next().unwrap().to_string();
    scripted.push((
        format!("{archive}/code/__torch__/model.py"),
        b"class M:".to_vec(),
    ));
    scripted.push((format!("{archive}/constants.pkl"), b"\x80\x02).".to_vec()));
    let e = weights_error(zip_of(&scripted));
    assert!(
        e.contains("hostile.pt") && e.contains("TorchScript") && e.contains("state_dict()"),
        "{e}"
    );
    // The same entries without the code: a checkpoint as ever.
    assert_eq!(
        weights_error(zip_of(&entries("astromae_state_dict.pt"))),
        "loaded"
    );
}

#[test]
fn damaged_pickles_never_panic() {
    // Every byte of the module pickle changed in turn, three ways: each load is an
    // error or a result, never a panic, and stays bounded by the file.
    let e = entries("astromae_module.pt");
    let at = e.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
    let pickle = e[at].1.clone();
    let step = (pickle.len() / 300).max(1);
    let mut errors = 0;
    for i in (0..pickle.len()).step_by(step) {
        for change in [0x00u8, 0xff, pickle[i].wrapping_add(1)] {
            let mut damaged = pickle.clone();
            damaged[i] = change;
            let result = cosmicai_model::pytorch::pickle::unpickle(&damaged);
            errors += result.is_err() as usize;
        }
    }
    assert!(errors > 0, "some damage must be detected");
    // Truncations at every length are errors.
    for n in (0..pickle.len()).step_by(step * 3) {
        assert!(cosmicai_model::pytorch::pickle::unpickle(&pickle[..n]).is_err());
    }
}

#[test]
fn a_weight_file_past_the_size_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    // Sparse: five gigabytes on paper, nothing on disk.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let e = Weights::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("huge.safetensors") && e.contains("more than the 4096 MiB"),
        "{e}"
    );
}

/// `partition.pt` with the sizes its zip directory gives its largest storage
/// (the images) replaced: `compressed` and `size`, each unless `None`.
fn forged_sizes(compressed: Option<u32>, size: Option<u32>) -> Vec<u8> {
    let mut bytes = std::fs::read(fixture("partition.pt")).unwrap();
    let largest = entries("partition.pt")
        .into_iter()
        .filter(|(n, _)| n.contains("/data/"))
        .max_by_key(|(_, d)| d.len())
        .unwrap()
        .0;
    // Central directory records: "PK\1\2", sizes at 20 and 24, the name at 46.
    let at = (0..bytes.len() - 46)
        .find(|&i| {
            bytes[i..i + 4] == *b"PK\x01\x02" && {
                let len = u16::from_le_bytes([bytes[i + 28], bytes[i + 29]]) as usize;
                bytes.get(i + 46..i + 46 + len) == Some(largest.as_bytes())
            }
        })
        .expect("the storage's directory record");
    for (offset, value) in [(20, compressed), (24, size)] {
        if let Some(v) = value {
            bytes[at + offset..at + offset + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}

fn read_images(bytes: Vec<u8>) -> Result<Vec<f32>, String> {
    let mut file = PtFile::new("forged.pt", Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let tensors = file.dataset_tensors().map_err(|e| e.to_string())?;
    file.read(&tensors[0])
        .map(|t| t.values)
        .map_err(|e| e.to_string())
}

#[test]
fn a_record_size_the_file_cannot_hold_is_refused_before_it_sizes_anything() {
    assert!(read_images(forged_sizes(None, None)).is_ok());
    // Longer than it takes in the file (a compressed record, which torch.save
    // never writes, or a forged one).
    let longer = read_images(forged_sizes(None, Some(1 << 30))).unwrap_err();
    assert!(longer.contains("the zip says 1073741824 bytes"), "{longer}");
    // As long as it says, but not in a file this short.
    let past = read_images(forged_sizes(Some(0xffff_fff0), Some(0xffff_fff0))).unwrap_err();
    assert!(past.contains("the zip says 4294967280 bytes"), "{past}");
}

#[test]
fn a_file_saved_before_pytorch_1_6_is_named_as_such() {
    // torch.save(..., _use_new_zipfile_serialization=False): pickle protocol 2, then
    // torch's magic number as a LONG1, then the protocol version and the rest.
    let mut bytes = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    let e = weights_error(bytes);
    assert!(
        e.contains("hostile.pt") && e.contains("saved before PyTorch 1.6") && e.contains("re-save"),
        "{e}"
    );
    // Other bytes are still read as safetensors, and named so when they are not.
    let e = weights_error(vec![0x80; 64]);
    assert!(!e.contains("before PyTorch 1.6"), "{e}");
}

/// The state_dict fixture with its pickle replaced by `pickle`, keeping its
/// storages, the version records and the rest.
fn with_pickle(pickle: Vec<u8>) -> Vec<u8> {
    let mut e = entries("astromae_state_dict.pt");
    let at = e.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
    e[at].1 = pickle;
    zip_of(&e)
}

/// The fixture's pickle up to its third tensor (`patch_embed.proj.weight`,
/// storage 2 of 7,680 bytes, memo 0x1d), inside the open OrderedDict's MARK.
fn first_three_tensors() -> Vec<u8> {
    let e = entries("astromae_state_dict.pt");
    let pickle = &e.iter().find(|(n, _)| n.ends_with("data.pkl")).unwrap().1;
    let end = pickle.windows(3).position(|w| w == b"Rq\x1d").unwrap() + 3;
    pickle[..end].to_vec()
}

fn binunicode(text: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend((text.len() as u32).to_le_bytes());
    out.extend(text.as_bytes());
    out
}

#[test]
fn names_sharing_one_storage_over_and_over_are_refused() {
    // 2,000 more names for the 7,680-byte storage, 13 bytes each: 15 MB of
    // tensors from a file of about 1 MB.
    let mut pickle = first_three_tensors();
    for i in 0..2000 {
        pickle.extend(binunicode(&format!("n{i:04}")));
        pickle.extend(b"h\x1d");
    }
    pickle.extend(b"u.");
    let msg = weights_error(with_pickle(pickle));
    assert!(msg.contains("sharing storages over and over"), "{msg}");
}

#[test]
fn dicts_sharing_each_other_level_on_level_are_refused() {
    // D0 = {'w': tensor}, Dk = {'a': Dk-1, 'b': Dk-1}: 2^40 names for a walk.
    let mut pickle = first_three_tensors();
    pickle.extend(b"0"); // the tensor off the stack, memo 0x1d keeps it
    pickle.extend(b"}");
    pickle.extend(binunicode("w"));
    pickle.extend(b"h\x1ds");
    pickle.extend(b"r");
    pickle.extend(1000u32.to_le_bytes());
    for k in 1..=40u32 {
        pickle.extend(b"}");
        for key in ["a", "b"] {
            pickle.extend(binunicode(key));
            pickle.extend(b"j");
            pickle.extend((1000 + k - 1).to_le_bytes());
            pickle.extend(b"s");
        }
        pickle.extend(b"r");
        pickle.extend((1000 + k).to_le_bytes());
    }
    pickle.extend(b".");
    let msg = weights_error(with_pickle(pickle));
    assert!(msg.contains("refer to each other over and over"), "{msg}");
}

#[test]
fn empty_cut_short_and_non_finite_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pt");
    std::fs::write(&empty, b"").unwrap();
    let e = PtFile::open(&empty).err().unwrap().to_string();
    assert!(
        e.contains("empty.pt") && e.contains("is empty (0 bytes)"),
        "{e}"
    );
    let e = Weights::from_bytes("empty.safetensors", b"")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is empty (0 bytes)"), "{e}");
    // A checkpoint cut short: its size said, and what may be why.
    let whole = std::fs::read(fixture("astromae_state_dict.pt")).unwrap();
    let short = dir.path().join("short.pt");
    std::fs::write(&short, &whole[..whole.len() / 2]).unwrap();
    let e = PtFile::open(&short).err().unwrap().to_string();
    assert!(
        e.contains(&format!("{} bytes: cut short", whole.len() / 2)),
        "{e}"
    );
    // A NaN in one weight: refused by the tensor's name as the model is built.
    let mut tensors = std::collections::HashMap::new();
    tensors.insert("w".to_string(), (vec![3], vec![1.0, f32::NAN, 2.0]));
    let weights = Weights::new(PathBuf::from("nan.safetensors"), tensors);
    let device = Default::default();
    let e = weights
        .tensor::<burn::backend::NdArray, 1>("w", [3], &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("nan.safetensors")
            && e.contains("w")
            && e.contains("1 of its 3 values are not finite"),
        "{e}"
    );
}
