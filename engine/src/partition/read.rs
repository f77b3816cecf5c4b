//! Reading and validating partition files.
//!
//! The catalog columns are decoded and checked when the file is opened; image
//! pixels stay in the memory map until asked for, so inspecting or
//! re-splitting a 100 MB partition touches only what it needs.

use super::{
    BANDS_KEY, FORMAT, FORMAT_VERSION, Images, Partition, PartitionError, PartitionMeta, Source,
};
use cosmicai_shared::Class;
use memmap2::Mmap;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, Metadata, SafeTensorError, TensorInfo};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An opened, validated partition file.
pub struct PartitionFile {
    path: PathBuf,
    /// Kept open for [`PartitionFile::read_images`].
    file: File,
    map: Mmap,
    /// Offset of the tensor data in the file (8 + header length).
    data_start: usize,
    /// Catalog columns (no images), already validated.
    catalog: Partition,
    image_size: Option<(usize, usize)>,
    images_info: Option<TensorInfo>,
}

impl PartitionFile {
    /// Opens `path` and validates its header, shapes, dtypes and catalog values.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PartitionError> {
        let path = path.as_ref().to_path_buf();
        let err = |field: &str, problem: String| PartitionError::new(&path, field, problem);
        let file = File::open(&path).map_err(|e| err("file", format!("cannot open: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| err("file", format!("cannot stat: {e}")))?
            .len();
        if len == 0 {
            return Err(err("file", "empty file (0 bytes)".into()));
        }
        // SAFETY: CosmicAI never rewrites a partition in place (writes go to a
        // temporary file that is renamed over), so the mapping stays valid while
        // this reader is used briefly (a rank, an import). Someone else may
        // rewrite a file in place (`cp` over it): long-lived readers (the
        // server) therefore read images with `read_images`, not the map.
        let map =
            unsafe { Mmap::map(&file) }.map_err(|e| err("file", format!("cannot map: {e}")))?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&map).map_err(|e| err("header", describe(&e, len)))?;
        let reader = Reader {
            path: &path,
            metadata: &metadata,
        };
        let (meta, sources) = reader.file_metadata()?;

        let n = reader.object_count()?;
        let mut catalog = Partition::new(meta, sources);
        let data = &map[8 + header_len..];
        catalog.object_id = reader
            .column(data, "object_id", Dtype::I64, &[n], 8)?
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        catalog.ra = reader.f64_column(data, "ra", n, 0.0..=360.0)?;
        catalog.dec = reader.f64_column(data, "dec", n, -90.0..=90.0)?;
        catalog.redshift = reader
            .column(data, "redshift", Dtype::F32, &[n], 4)?
            .map(f32_le)
            .collect();
        catalog.magnitudes = reader.magnitudes(data, n)?;
        catalog.class = reader.classes(data, n)?;
        catalog.source = reader.source_indexes(data, n, catalog.sources.len())?;

        let images_info = reader.images_info(n)?;
        let image_size = images_info.as_ref().map(|i| (i.shape[2], i.shape[3]));
        Ok(PartitionFile {
            path,
            file,
            data_start: 8 + header_len,
            map,
            catalog,
            image_size,
            images_info,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.catalog.len()
    }

    pub fn is_empty(&self) -> bool {
        self.catalog.is_empty()
    }

    /// Size of the file in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// Cutout height and width, or `None` for a catalog-only partition.
    pub fn image_size(&self) -> Option<(usize, usize)> {
        self.image_size
    }

    /// The catalog columns (everything but images).
    pub fn catalog(&self) -> &Partition {
        &self.catalog
    }

    /// The cutouts of objects `range`, `[len, 5, H, W]` flattened; empty without images.
    pub fn images(&self, range: Range<usize>) -> Vec<f32> {
        let Some(info) = &self.images_info else {
            return Vec::new();
        };
        let per_object = 5 * info.shape[2] * info.shape[3] * 4;
        let start = self.data_start + info.data_offsets.0;
        let bytes = &self.map[start + range.start * per_object..start + range.end * per_object];
        bytes.chunks_exact(4).map(f32_le).collect()
    }

    /// [`PartitionFile::images`], read from the file now rather than from the
    /// map: for long-lived readers (the server). A partition rewritten in place
    /// after it was opened gives an error here, where touching the map past the
    /// file's new end would take the whole process down with SIGBUS.
    pub fn read_images(&self, range: Range<usize>) -> Result<Vec<f32>, PartitionError> {
        use std::os::unix::fs::FileExt;
        let Some(info) = &self.images_info else {
            return Ok(Vec::new());
        };
        let err = |problem: String| PartitionError::new(&self.path, "images", problem);
        if range.start > range.end || range.end > self.len() {
            return Err(err(format!("objects {range:?} of {}", self.len())));
        }
        let now = self
            .file
            .metadata()
            .map_err(|e| err(format!("cannot stat: {e}")))?
            .len();
        if now != self.map.len() as u64 {
            return Err(err(format!(
                "the file changed since it was opened ({} bytes, now {now}); open it again",
                self.map.len()
            )));
        }
        let per_object = 5 * info.shape[2] * info.shape[3] * 4;
        let offset = self.data_start + info.data_offsets.0 + range.start * per_object;
        let mut bytes = vec![0u8; range.len() * per_object];
        self.file
            .read_exact_at(&mut bytes, offset as u64)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        Ok(bytes.chunks_exact(4).map(f32_le).collect())
    }

    /// The whole partition, images included.
    pub fn read(&self) -> Partition {
        let mut partition = self.catalog.clone();
        if let Some((h, w)) = self.image_size {
            partition.images = Some(Images {
                height: h,
                width: w,
                pixels: self.images(0..self.len()),
            });
        }
        partition
    }
}

/// Reads one partition file whole (catalog columns and images).
pub fn read_partition(path: impl AsRef<Path>) -> Result<Partition, PartitionError> {
    Ok(PartitionFile::open(path)?.read())
}

fn f32_le(bytes: &[u8]) -> f32 {
    f32::from_le_bytes(bytes.try_into().expect("4 bytes"))
}

/// A plain-words reason for a container-level failure.
fn describe(error: &SafeTensorError, file_len: u64) -> String {
    match error {
        SafeTensorError::HeaderTooSmall => {
            format!("not a safetensors file: {file_len} bytes is too short for a header")
        }
        SafeTensorError::InvalidHeaderLength => {
            format!(
                "header length points past the end of the file ({file_len} bytes): truncated or not a safetensors file"
            )
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            format!(
                "tensor data does not fill the file exactly ({file_len} bytes): the file is truncated or has trailing bytes"
            )
        }
        other => format!("not a valid safetensors file: {other}"),
    }
}

/// Field-by-field checks over a parsed header.
struct Reader<'a> {
    path: &'a Path,
    metadata: &'a Metadata,
}

impl Reader<'_> {
    fn err(&self, field: &str, problem: impl Into<String>) -> PartitionError {
        PartitionError::new(self.path, field, problem)
    }

    fn key(&self, key: &str) -> Result<&str, PartitionError> {
        self.metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key))
            .map(String::as_str)
            .ok_or_else(|| self.err(key, "missing metadata key"))
    }

    fn file_metadata(&self) -> Result<(PartitionMeta, Vec<Source>), PartitionError> {
        let format = self.key("format").map_err(|_| {
            self.err(
                "format",
                format!(
                    "missing metadata key: not a CosmicAI partition (expected format = {FORMAT})"
                ),
            )
        })?;
        if format != FORMAT {
            return Err(self.err("format", format!("is '{format}', expected '{FORMAT}'")));
        }
        let version = self.key("format_version")?;
        if version != FORMAT_VERSION {
            return Err(self.err(
                "format_version",
                format!("is '{version}', this CosmicAI reads version {FORMAT_VERSION}"),
            ));
        }
        let bands = self.key("bands")?;
        if bands != BANDS_KEY {
            return Err(self.err("bands", format!("is '{bands}', expected '{BANDS_KEY}'")));
        }
        let pixel_scale = self.key("pixel_scale_arcsec")?;
        let pixel_scale_arcsec = pixel_scale
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| {
                self.err(
                    "pixel_scale_arcsec",
                    format!("'{pixel_scale}' is not a positive number"),
                )
            })?;
        let meta = PartitionMeta {
            survey: self.key("survey")?.to_string(),
            pixel_scale_arcsec,
            image_units: self.key("image_units")?.to_string(),
        };
        let sources: Vec<Source> = serde_json::from_str(self.key("sources")?).map_err(|e| {
            self.err(
                "sources",
                format!("not a JSON list of {{name, provenance, detail}}: {e}"),
            )
        })?;
        if sources.is_empty() {
            return Err(self.err("sources", "lists no source"));
        }
        Ok((meta, sources))
    }

    fn info(&self, name: &str) -> Result<&TensorInfo, PartitionError> {
        self.metadata
            .info(name)
            .ok_or_else(|| self.err(name, "missing tensor"))
    }

    /// N, from the magnitudes tensor that every partition has.
    fn object_count(&self) -> Result<usize, PartitionError> {
        let info = self.info("magnitudes")?;
        if info.dtype != Dtype::F32 {
            return Err(self.err(
                "magnitudes",
                format!("dtype {:?}, expected F32", info.dtype),
            ));
        }
        match info.shape.as_slice() {
            [n, 5] if *n > 0 => Ok(*n),
            [0, 5] => Err(self.err("magnitudes", "holds no objects (shape [0, 5])")),
            shape => Err(self.err(
                "magnitudes",
                format!("shape {shape:?}, expected [N, 5] (bands u,g,r,i,z)"),
            )),
        }
    }

    /// The raw elements of tensor `name`, after checking its dtype and shape.
    fn column<'d>(
        &self,
        data: &'d [u8],
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        width: usize,
    ) -> Result<std::slice::ChunksExact<'d, u8>, PartitionError> {
        let info = self.info(name)?;
        if info.dtype != dtype {
            return Err(self.err(name, format!("dtype {:?}, expected {dtype:?}", info.dtype)));
        }
        if info.shape != shape {
            return Err(self.err(name, format!("shape {:?}, expected {shape:?}", info.shape)));
        }
        // read_metadata checked the offsets lie inside the data and match the shape.
        Ok(data[info.data_offsets.0..info.data_offsets.1].chunks_exact(width))
    }

    fn f64_column(
        &self,
        data: &[u8],
        name: &str,
        n: usize,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Vec<f64>, PartitionError> {
        let values: Vec<f64> = self
            .column(data, name, Dtype::F64, &[n], 8)?
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        // NaN means "position unknown" (e.g. converted CAI partitions); anything else must be on the sky.
        if let Some((i, v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_nan() && !range.contains(v))
        {
            return Err(self.err(
                name,
                format!("object {i} has {v}, outside {range:?} degrees"),
            ));
        }
        Ok(values)
    }

    fn magnitudes(&self, data: &[u8], n: usize) -> Result<Vec<[f32; 5]>, PartitionError> {
        let values: Vec<f32> = self
            .column(data, "magnitudes", Dtype::F32, &[n, 5], 4)?
            .map(f32_le)
            .collect();
        if let Some(i) = values.iter().position(|m| !m.is_finite()) {
            let band = BANDS_KEY.split(',').nth(i % 5).unwrap_or("?");
            return Err(self.err(
                "magnitudes",
                format!(
                    "object {} band {band} is {}: magnitudes must be finite",
                    i / 5,
                    values[i]
                ),
            ));
        }
        Ok(values
            .chunks_exact(5)
            .map(|c| [c[0], c[1], c[2], c[3], c[4]])
            .collect())
    }

    fn classes(&self, data: &[u8], n: usize) -> Result<Vec<Class>, PartitionError> {
        self.column(data, "class", Dtype::U8, &[n], 1)?
            .enumerate()
            .map(|(i, b)| {
                Class::from_code(b[0]).ok_or_else(|| {
                    self.err("class", format!("object {i} has code {}, expected 0 GALAXY, 1 STAR, 2 QSO or 255 unknown", b[0]))
                })
            })
            .collect()
    }

    fn source_indexes(
        &self,
        data: &[u8],
        n: usize,
        sources: usize,
    ) -> Result<Vec<u32>, PartitionError> {
        self.column(data, "source", Dtype::I32, &[n], 4)?
            .enumerate()
            .map(|(i, b)| {
                let s = i32::from_le_bytes(b.try_into().expect("4 bytes"));
                u32::try_from(s)
                    .ok()
                    .filter(|s| (*s as usize) < sources)
                    .ok_or_else(|| {
                        self.err(
                            "source",
                            format!(
                                "object {i} points at source {s}, but the file lists {sources}"
                            ),
                        )
                    })
            })
            .collect()
    }

    fn images_info(&self, n: usize) -> Result<Option<TensorInfo>, PartitionError> {
        let Some(info) = self.metadata.info("images") else {
            return Ok(None);
        };
        if info.dtype != Dtype::F32 {
            return Err(self.err(
                "images",
                format!("dtype {:?}, expected F32 (nanomaggies)", info.dtype),
            ));
        }
        match info.shape.as_slice() {
            [m, 5, h, w] if *m == n && *h > 0 && *w > 0 => Ok(Some(info.clone())),
            shape => Err(self.err(
                "images",
                format!("shape {shape:?}, expected [{n}, 5, H, W]"),
            )),
        }
    }
}
