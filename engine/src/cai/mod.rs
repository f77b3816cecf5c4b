//! CAI's data partitions, read in Rust: `.pt` files that CAI's `split_data.py`
//! writes as `torch.save(TensorDataset(images, magnitudes, redshift))`, with
//! images `N x 5 x 32 x 32` (u, g, r, i, z, already cropped), magnitudes `N x 5`
//! and spectroscopic redshift `N`.
//!
//! [`read_cai_partition`] turns one into a CosmicAI [`Partition`]: real
//! provenance, redshift as the label, class unknown unless given, positions unknown (NaN),
//! a source naming the file, and object ids derived from the file name and row.
//! No Python is involved (the file is read by `cosmicai_model::pytorch`).
//! [`import`] converts folders of them; [`converted_prefix`] does so once for a
//! run whose data is such a folder. Ranks also read them in place
//! ([`read_cai_partition_named`]): a run over CAI's data already in S3.

mod import;
pub(crate) use import::model_checkpoint;

pub use import::{
    CONVERTED, ImportReport, cai_files, converted_prefix, converted_prefix_with, import,
};

use crate::partition::{Images, ObjectRow, Partition, PartitionMeta, Source};
use cosmicai_model::pytorch::{PtFile, pickle::TensorRef};
use cosmicai_shared::{Class, Provenance};
use std::path::Path;

/// Why a CAI partition cannot be read or converted; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct CaiError {
    pub file: String,
    pub problem: String,
    /// Stopped between files by its caller (a cancel), not by the file.
    pub stopped: bool,
}

/// Reads one CAI `.pt` partition; `source` names it in the partition (default: the
/// file name); `class` is every object's class when known (CAI's are galaxies).
pub fn read_cai_partition(
    path: &Path,
    source: Option<&str>,
    class: Class,
) -> Result<Partition, CaiError> {
    let file_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    read_cai_partition_named(path, &file_name, source, class)
}

/// The extensions CAI's partitions have.
pub const CAI_EXTENSIONS: [&str; 2] = ["pt", "pth"];

/// Whether store key (or file name) `key` names a CAI `.pt` partition.
pub fn is_cai_key(key: &str) -> bool {
    key.rsplit_once('.')
        .is_some_and(|(_, ext)| CAI_EXTENSIONS.contains(&ext))
}

/// Objects in CAI partition `path`, from its tensors' shapes (nothing else is
/// read), within what the file's bytes can hold: a pickle may claim any shape.
pub fn cai_objects(path: &Path) -> Result<usize, CaiError> {
    let fail = |problem: String| CaiError {
        file: path.display().to_string(),
        problem,
        stopped: false,
    };
    let pt = PtFile::open(path).map_err(|e| fail(e.problem))?;
    let tensors = pt.dataset_tensors().map_err(|e| fail(e.problem))?;
    let magnitudes = tensors
        .get(1)
        .ok_or_else(|| fail("a TensorDataset without magnitudes".into()))?;
    let objects = magnitudes
        .shape
        .first()
        .copied()
        .ok_or_else(|| fail("its magnitudes are a scalar".into()))?;
    let bytes = magnitudes
        .shape
        .iter()
        .try_fold(magnitudes.dtype.size(), |n, &d| n.checked_mul(d));
    let file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    match bytes {
        Some(bytes) if bytes as u64 <= file_bytes => Ok(objects),
        _ => Err(fail(format!(
            "its magnitudes claim shape {:?}, more than its {file_bytes} bytes hold",
            magnitudes.shape
        ))),
    }
}

/// [`read_cai_partition`] for a copy of CAI file `file_name` at `path` (a rank's
/// download): the ids and source come from `file_name`, as when it is converted.
pub fn read_cai_partition_named(
    path: &Path,
    file_name: &str,
    source: Option<&str>,
    class: Class,
) -> Result<Partition, CaiError> {
    let fail = |problem: String| CaiError {
        file: path.display().to_string(),
        problem,
        stopped: false,
    };
    let mut pt = PtFile::open(path).map_err(|e| fail(e.problem))?;
    let tensors = pt.dataset_tensors().map_err(|e| fail(e.problem))?;
    let [images, magnitudes, redshift] = &tensors[..] else {
        return Err(fail(format!(
            "a TensorDataset of {} tensors; CAI partitions hold 3 (images, magnitudes, redshift)",
            tensors.len()
        )));
    };
    let shape = |t: &TensorRef| t.shape.clone();
    let (is, ms, zs) = (shape(images), shape(magnitudes), shape(redshift));
    let n = ms.first().copied().unwrap_or(0);
    let [ni, 5, h, w] = is[..] else {
        return Err(fail(format!(
            "images have shape {is:?}, expected [N, 5, H, W] (u, g, r, i, z)"
        )));
    };
    if ms != [n, 5] {
        return Err(fail(format!(
            "magnitudes have shape {ms:?}, expected [N, 5]"
        )));
    }
    if zs != [n] && zs != [n, 1] {
        return Err(fail(format!("redshift has shape {zs:?}, expected [{n}]")));
    }
    if ni != n {
        return Err(fail(format!(
            "{ni} images but {n} magnitudes and redshifts: the tensors' lengths differ"
        )));
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(fail(format!("no objects (images {is:?})")));
    }
    for (name, t) in [
        ("images", images),
        ("magnitudes", magnitudes),
        ("redshift", redshift),
    ] {
        if !t.dtype.is_float() {
            return Err(fail(format!("{name} are {}, expected float32", t.dtype)));
        }
    }
    let read = |pt: &mut PtFile<_>, t: &TensorRef| pt.read(t).map(|t| t.values);
    let mags = read(&mut pt, magnitudes).map_err(|e| fail(e.problem))?;
    let z = read(&mut pt, redshift).map_err(|e| fail(e.problem))?;
    if let Some(i) = mags.iter().position(|m| !m.is_finite()) {
        return Err(fail(format!(
            "object {}: magnitude {} is not finite",
            i / 5,
            mags[i]
        )));
    }
    let pixels = read(&mut pt, images).map_err(|e| fail(e.problem))?;
    let mut partition = Partition::new(
        PartitionMeta::default(),
        vec![Source {
            name: source.unwrap_or(file_name).to_string(),
            provenance: Provenance::Real,
            detail:
                "converted from a CAI .pt partition (TensorDataset of images, magnitudes, redshift)"
                    .into(),
        }],
    );
    for i in 0..n {
        let m = &mags[i * 5..i * 5 + 5];
        partition.push(
            ObjectRow {
                object_id: cai_object_id(file_name, i),
                ra: f64::NAN,
                dec: f64::NAN,
                magnitudes: [m[0], m[1], m[2], m[3], m[4]],
                redshift: z[i],
                class,
            },
            0,
        );
    }
    partition.images = Some(Images {
        height: h,
        width: w,
        pixels,
    });
    Ok(partition)
}

/// A stable id for row `row` of CAI file `file` (CAI partitions carry no positions):
/// FNV-1a of the name and row, below 2^53 like every CosmicAI id.
pub fn cai_object_id(file: &str, row: usize) -> i64 {
    let hash = file
        .bytes()
        .chain([0])
        .chain((row as u64).to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (hash & ((1u64 << 53) - 1)) as i64
}
