//! What a partition or dataset holds: counts by class and provenance, the
//! redshift range, image size and bytes on disk.

use crate::dataset::{DatasetError, list_partitions};
use crate::partition::PartitionFile;
use cosmicai_shared::{Class, Provenance};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub path: PathBuf,
    /// Number of partition files.
    pub files: usize,
    pub objects: usize,
    /// Objects per class name (GALAXY, STAR, QSO, UNKNOWN), zero counts included.
    pub classes: BTreeMap<String, usize>,
    /// Objects per provenance (real, synthetic), zero counts included.
    pub provenance: BTreeMap<String, usize>,
    /// Objects per source name.
    pub sources: BTreeMap<String, SourceCount>,
    pub redshift: RedshiftRange,
    /// Objects with cutouts and their size; `None` for catalog-only data.
    pub images: Option<ImageSummary>,
    /// Bytes on disk, all files.
    pub bytes: u64,
    pub partitions: Vec<FileSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceCount {
    pub provenance: Provenance,
    pub objects: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedshiftRange {
    /// Objects with a known spectroscopic redshift.
    pub known: usize,
    pub min: Option<f32>,
    pub max: Option<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub objects: usize,
    pub height: usize,
    pub width: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub file: PathBuf,
    pub objects: usize,
    pub bytes: u64,
}

/// Summarises one partition file or every partition in a directory.
pub fn inspect(path: &Path) -> Result<Summary, DatasetError> {
    let mut summary = Summary {
        path: path.to_path_buf(),
        files: 0,
        objects: 0,
        classes: Class::ALL
            .iter()
            .map(|c| (c.name().to_string(), 0))
            .collect(),
        provenance: [Provenance::Real, Provenance::Synthetic]
            .iter()
            .map(|p| (p.name().to_string(), 0))
            .collect(),
        sources: BTreeMap::new(),
        redshift: RedshiftRange {
            known: 0,
            min: None,
            max: None,
        },
        images: None,
        bytes: 0,
        partitions: Vec::new(),
    };
    for file_path in list_partitions(path)? {
        let file = PartitionFile::open(&file_path)?;
        summary.add(&file);
    }
    Ok(summary)
}

impl Summary {
    fn add(&mut self, file: &PartitionFile) {
        let catalog = file.catalog();
        self.files += 1;
        self.objects += file.len();
        self.bytes += file.file_bytes();
        self.partitions.push(FileSummary {
            file: file.path().to_path_buf(),
            objects: file.len(),
            bytes: file.file_bytes(),
        });
        for class in &catalog.class {
            *self.classes.entry(class.name().to_string()).or_default() += 1;
        }
        for i in 0..catalog.len() {
            let source = &catalog.sources[catalog.source[i] as usize];
            *self
                .provenance
                .entry(source.provenance.name().to_string())
                .or_default() += 1;
            self.sources
                .entry(source.name.clone())
                .or_insert(SourceCount {
                    provenance: source.provenance,
                    objects: 0,
                })
                .objects += 1;
        }
        for &z in catalog.redshift.iter().filter(|z| z.is_finite()) {
            self.redshift.known += 1;
            self.redshift.min = Some(self.redshift.min.map_or(z, |m| m.min(z)));
            self.redshift.max = Some(self.redshift.max.map_or(z, |m| m.max(z)));
        }
        if let Some((height, width)) = file.image_size() {
            self.images
                .get_or_insert(ImageSummary {
                    objects: 0,
                    height,
                    width,
                })
                .objects += file.len();
        }
    }
}
