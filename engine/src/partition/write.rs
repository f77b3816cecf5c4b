//! Writing partition files.

use super::{BANDS_KEY, FORMAT, FORMAT_VERSION, Partition, PartitionError};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Writes `partition` to `path` atomically (temporary file, then rename), so a
/// reader never sees half a file and an existing file is only replaced whole.
pub fn write_partition(
    path: impl AsRef<Path>,
    partition: &Partition,
) -> Result<(), PartitionError> {
    let path = path.as_ref();
    let err = |field: &str, problem: String| PartitionError::new(path, field, problem);
    let n = partition.len();
    if n == 0 {
        return Err(err(
            "magnitudes",
            "refusing to write a partition with no objects".into(),
        ));
    }
    if let Some(i) = partition
        .magnitudes
        .iter()
        .position(|m| m.iter().any(|v| !v.is_finite()))
    {
        return Err(err(
            "magnitudes",
            format!(
                "object {i} has a non-finite magnitude {:?}",
                partition.magnitudes[i]
            ),
        ));
    }
    if let Some(images) = &partition.images
        && images.pixels.len() != n * images.values_per_object()
    {
        return Err(err(
            "images",
            format!(
                "{} values for {n} objects of 5x{}x{}",
                images.pixels.len(),
                images.height,
                images.width
            ),
        ));
    }

    let object_id = le_bytes(&partition.object_id, |v| v.to_le_bytes());
    let ra = le_bytes(&partition.ra, |v| v.to_le_bytes());
    let dec = le_bytes(&partition.dec, |v| v.to_le_bytes());
    let magnitudes = le_bytes(partition.magnitudes.as_flattened(), |v| v.to_le_bytes());
    let redshift = le_bytes(&partition.redshift, |v| v.to_le_bytes());
    let class: Vec<u8> = partition.class.iter().map(|c| c.code()).collect();
    let source = le_bytes(&partition.source, |v| (*v as i32).to_le_bytes());
    let pixels = partition
        .images
        .as_ref()
        .map(|i| le_bytes(&i.pixels, |v| v.to_le_bytes()));

    let mut tensors = vec![
        ("object_id", view(path, Dtype::I64, vec![n], &object_id)?),
        ("ra", view(path, Dtype::F64, vec![n], &ra)?),
        ("dec", view(path, Dtype::F64, vec![n], &dec)?),
        (
            "magnitudes",
            view(path, Dtype::F32, vec![n, 5], &magnitudes)?,
        ),
        ("redshift", view(path, Dtype::F32, vec![n], &redshift)?),
        ("class", view(path, Dtype::U8, vec![n], &class)?),
        ("source", view(path, Dtype::I32, vec![n], &source)?),
    ];
    if let (Some(images), Some(pixels)) = (&partition.images, &pixels) {
        tensors.push((
            "images",
            view(
                path,
                Dtype::F32,
                vec![n, 5, images.height, images.width],
                pixels,
            )?,
        ));
    }

    let sources =
        serde_json::to_string(&partition.sources).map_err(|e| err("sources", e.to_string()))?;
    let metadata: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("format_version", FORMAT_VERSION.to_string()),
        ("survey", partition.meta.survey.clone()),
        ("bands", BANDS_KEY.to_string()),
        (
            "pixel_scale_arcsec",
            partition.meta.pixel_scale_arcsec.to_string(),
        ),
        ("image_units", partition.meta.image_units.clone()),
        (
            "magnitude_system",
            "SDSS asinh magnitudes (AB), ugriz".to_string(),
        ),
        (
            "class_codes",
            r#"{"0":"GALAXY","1":"STAR","2":"QSO","255":"UNKNOWN"}"#.to_string(),
        ),
        ("sources", sources),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let bytes = safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| err("file", format!("cannot encode: {e}")))?;
    let bytes =
        cosmicai_model::weights::canonical_safetensors(bytes).map_err(|e| err("header", e))?;
    write_atomically(path, &bytes).map_err(|e| err("file", format!("cannot write: {e}")))
}

/// Writes through a temporary file in the same directory, synced, then renamed
/// over `path` and the directory synced: after a power cut `path` holds either its
/// old bytes or all of the new ones.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

fn le_bytes<T, const W: usize>(values: &[T], to_bytes: impl Fn(&T) -> [u8; W]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * W);
    for v in values {
        out.extend_from_slice(&to_bytes(v));
    }
    out
}

fn view<'a>(
    path: &Path,
    dtype: Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
) -> Result<TensorView<'a>, PartitionError> {
    TensorView::new(dtype, shape, data)
        .map_err(|e| PartitionError::new(path, "header", e.to_string()))
}
