//! The frame cache: a directory of SDSS frames under their archive names, which
//! `cosmicai ingest --frames DIR` reads as it is.

use super::SdssField;
use cosmicai_shared::{BANDS, Band};
use std::path::{Path, PathBuf};

/// A directory of checked frames (`frame-r-002820-3-0122.fits.bz2`) and the
/// `*.part` files of transfers still to finish.
pub struct FrameCache {
    dir: PathBuf,
}

impl FrameCache {
    /// Opens the cache at `dir`, creating it.
    pub fn open(dir: &Path) -> std::io::Result<FrameCache> {
        std::fs::create_dir_all(dir)?;
        Ok(FrameCache {
            dir: dir.to_path_buf(),
        })
    }

    /// Holds the cache for one fetch at a time: two fetches into one directory
    /// would write the same `.part` files. The lock is the operating system's
    /// (released when the process ends, however it ends), on `DIR/.lock`.
    pub fn lock(&self) -> std::io::Result<Option<std::fs::File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the frame is in the cache (only checked frames get their name).
    pub fn has_frame(&self, field: &SdssField, band: Band) -> bool {
        self.dir.join(field.frame_file(band)).is_file()
    }

    /// Whether all five bands of the field are in the cache.
    pub fn has_field(&self, field: &SdssField) -> bool {
        BANDS.into_iter().all(|b| self.has_frame(field, b))
    }

    /// Bytes held by frames and partial transfers: what the budget counts.
    pub fn bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("frame-")
                    && (name.ends_with(".fits.bz2") || name.ends_with(".fits.bz2.part"))
            })
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}
