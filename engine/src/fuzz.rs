//! The fuzz targets: every reader of outside bytes, as one function each from
//! bytes to nothing. A target may return any error; it must not panic, hang
//! or allocate without bound. Two drivers run them: a stable mutation loop in
//! `cargo test` (`engine/tests/fuzz.rs`, a short fixed budget in CI) and
//! coverage-guided libFuzzer through cargo-fuzz on nightly (`fuzz/`, `make fuzz`).

use crate::catalog::read_catalogs;
use crate::imagery::frame::Frame;
use crate::partition::PartitionFile;
use crate::pipeline::read_predictions;
use burn::tensor::backend::Backend;
use cosmicai_model::weights::Weights;
use cosmicai_shared::api::{RunLaunch, SweepLaunch};
use cosmicai_shared::aws::StageEvent;
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::{Band, Class};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// For libFuzzer's start (`fuzz_target!(init: ...)`): the engine turns a
/// third-party reader's panic into an error for that file (`catch_unwind`
/// around fitsrs and wcs), but libfuzzer-sys's panic hook aborts at any panic,
/// caught or not. Back to the default hook: a panic that escapes a target still
/// aborts (libfuzzer-sys catches it and aborts), one the engine handles does not.
pub fn only_escaping_panics_crash() {
    drop(std::panic::take_hook());
}

/// Runs `read` on a file named `name` holding `bytes` (readers that take a path
/// pick the format by its extension), in a folder of its own (the stable loop
/// runs targets on several threads), then removes the folder: a fuzzing
/// process ends by exit or abort, with no destructor to tidy up after it, so
/// nothing may outlive the input. Only a crash leaves its input behind.
fn on_file(name: &str, bytes: &[u8], read: impl FnOnce(&Path)) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cosmicai-fuzz-{}-{n}", std::process::id()));
    let path = dir.join(name);
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&path, bytes).is_ok() {
        read(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A partition file: its metadata, its objects and its images.
pub fn partition(bytes: &[u8]) {
    on_file("p.safetensors", bytes, |path| {
        if let Ok(file) = PartitionFile::open(path) {
            let _ = file.read();
            let _ = file.read_images(0..file.len());
        }
    });
}

/// An SDSS frame, plain FITS.
pub fn fits(bytes: &[u8]) {
    on_file("frame.fits", bytes, |path| {
        let _ = Frame::open(path, Band::R);
    });
}

/// An SDSS frame, bzip2-compressed FITS (as the archive serves them).
pub fn fits_bz2(bytes: &[u8]) {
    on_file("frame.fits.bz2", bytes, |path| {
        let _ = Frame::open(path, Band::R);
    });
}

/// A catalog, CSV.
pub fn catalog_csv(bytes: &[u8]) {
    on_file("catalog.csv", bytes, |path| {
        let _ = read_catalogs(&[path.to_path_buf()], |_, _| {});
    });
}

/// A catalog, gzip-compressed CSV.
pub fn catalog_csv_gz(bytes: &[u8]) {
    on_file("catalog.csv.gz", bytes, |path| {
        let _ = read_catalogs(&[path.to_path_buf()], |_, _| {});
    });
}

/// A rank's predictions file.
pub fn predictions(bytes: &[u8]) {
    let _ = read_predictions(bytes);
}

/// A weight file (safetensors or PyTorch `.pt`), through to building PhotoZ
/// and AstroMAE from it on backend `B`.
pub fn weights<B: Backend>(bytes: &[u8]) {
    let Ok(weights) = Weights::from_file_bytes("fuzz", bytes.to_vec()) else {
        return;
    };
    let device = Default::default();
    let _ = cosmicai_model::photoz::PhotoZ::<B>::from_weights(&weights, &device);
    let _ = cosmicai_model::astromae::AstroMae::<B>::from_pytorch(&weights, 3, &device);
}

/// A CAI data partition (`.pt`).
pub fn cai_partition(bytes: &[u8]) {
    on_file("partition.pt", bytes, |path| {
        let _ = crate::cai::read_cai_partition(path, None, Class::Galaxy);
    });
}

/// A Lambda stage event, and the request inside an Initialize.
pub fn stage_events(bytes: &[u8]) {
    if let Ok(StageEvent::Initialize { request, .. }) = serde_json::from_slice(bytes) {
        let _ = request.problems();
        let _ = request.model_spec();
    }
}

/// API request bodies (runs, sweeps) and model names.
pub fn api_bodies(bytes: &[u8]) {
    let _ = serde_json::from_slice::<RunLaunch>(bytes);
    let _ = serde_json::from_slice::<SweepLaunch>(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = ModelSpec::parse(text);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_file_targets_leave_nothing_behind() {
        let ours = format!("cosmicai-fuzz-{}-", std::process::id());
        let left = || {
            std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&ours))
                .count()
        };
        for junk in [&b""[..], b"SIMPLE  =", b"\x1f\x8b\x08", b"ra,dec\n1,2\n"] {
            super::partition(junk);
            super::fits(junk);
            super::fits_bz2(junk);
            super::catalog_csv(junk);
            super::catalog_csv_gz(junk);
            super::cai_partition(junk);
        }
        assert_eq!(
            left(),
            0,
            "a target left its scratch folder in the temporary folder"
        );
    }
}
