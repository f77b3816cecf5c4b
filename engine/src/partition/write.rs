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
    // The pixels are most of the file: viewed in place, never copied.
    let pixels = partition.images.as_ref().map(|i| f32_bytes(&i.pixels));

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
                pixels.as_ref(),
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

    write_tensors_atomically(path, tensors, metadata)
}

/// Like [`write_atomically`], but the file is serialized straight into the
/// temporary file (no buffer of the whole file), then its header is rewritten in
/// canonical order (the same length), so equal partitions give equal bytes.
fn write_tensors_atomically(
    path: &Path,
    tensors: Vec<(&str, TensorView<'_>)>,
    metadata: HashMap<String, String>,
) -> Result<(), PartitionError> {
    use std::io::{Error, Read, Seek, SeekFrom, Write};
    replace_synced(path, |temp| {
        // safetensors writes a sibling file and renames it over `temp`: reopen by
        // path, and give it back `temp`'s mode (tempfile's sibling is 0600).
        let mode = std::fs::metadata(temp)?.permissions();
        safetensors::serialize_to_file(tensors, Some(metadata), temp)
            .map_err(|e| Error::other(format!("cannot encode: {e}")))?;
        std::fs::set_permissions(temp, mode)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(temp)?;
        let mut length = [0u8; 8];
        file.read_exact(&mut length)?;
        // Our own header, just written: bounded by safetensors' 100 MB header limit.
        let mut header = vec![0u8; u64::from_le_bytes(length) as usize];
        file.read_exact(&mut header)?;
        let canonical = cosmicai_model::weights::canonical_header(&header).map_err(Error::other)?;
        if canonical.len() != header.len() {
            return Err(Error::other(format!(
                "canonical header of {} bytes for one of {}",
                canonical.len(),
                header.len()
            )));
        }
        file.seek(SeekFrom::Start(8))?;
        file.write_all(&canonical)
    })
    .map_err(|e| PartitionError::new(path, "file", format!("cannot write: {e}")))
}

/// The little-endian bytes of `values`: a view on little-endian machines, a copy elsewhere.
fn f32_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: any f32 is 4 initialised bytes, u8 has no alignment, and the
        // slice borrows `values` for as long as it lives.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        })
    } else {
        std::borrow::Cow::Owned(le_bytes(values, |v| v.to_le_bytes()))
    }
}

/// Writes through a temporary file in the same directory, synced, then renamed
/// over `path` and the directory synced: after a power cut `path` holds either its
/// old bytes or all of the new ones.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_synced(path, |temp| std::fs::write(temp, bytes))
}

/// `create_dir_all` that also syncs each folder it creates into its parent:
/// syncing a file makes its bytes durable, not the entries of new folders above
/// it, and a power cut could otherwise take a whole new results folder with it.
pub fn create_dir_synced(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_dir_synced(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        // Made meanwhile by another writer (ranks share folders).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    std::fs::File::open(parent.unwrap_or(Path::new(".")))?.sync_all()
}

/// Renames folder (or file) `from` to `to` and syncs the rename into `to`'s
/// parent: a whole thing built aside appears under its name, and stays there
/// after a power cut.
pub fn rename_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty());
    std::fs::File::open(parent.unwrap_or(Path::new(".")))?.sync_all()
}

/// The mechanism of [`write_atomically`]: `fill` writes the temporary file (by its
/// path), which is then synced and renamed over `path`, and the directory synced.
/// The temporary file is removed if anything fails.
fn replace_synced(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = temp_file_in(dir)?;
    fill(temp.path())?;
    std::fs::File::open(temp.path())?.sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A temporary file in `dir` (named `.tmp…`) that becomes a file like any other
/// the user makes: mode 0666 less the umask. tempfile's own 0600 kept a shared
/// data folder's datasets and results from its group, and from a server run as
/// another user.
pub fn temp_file_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    // A missing folder said of the folder, not of a `.tmp…` name the user
    // never chose (looked at only once the write has failed).
    builder.tempfile_in(dir).map_err(|e| {
        if dir.is_dir() {
            e
        } else {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("folder {} does not exist", dir.display()),
            )
        }
    })
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
