//! The frame cache: a directory of SDSS frames under their archive names, which
//! `cosmicai ingest --frames DIR` reads as it is.

use super::SdssField;
use crate::imagery::frame::FieldFiles;
use cosmicai_shared::{BANDS, Band};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    #[cfg(test)]
    fn has_field(&self, field: &SdssField) -> bool {
        BANDS.into_iter().all(|b| self.has_frame(field, b))
    }

    /// The field's five frames, to open (all five must be in the cache).
    pub fn field_files(&self, field: &SdssField) -> FieldFiles {
        FieldFiles {
            name: field.name(),
            paths: BANDS.map(|b| self.dir.join(field.frame_file(b))),
        }
    }

    /// Marks the field's frames used now: eviction takes the least recently
    /// used first (by modification time, which reading leaves alone).
    pub fn touch(&self, field: &SdssField) -> std::io::Result<()> {
        let now = SystemTime::now();
        for band in BANDS {
            let path = self.dir.join(field.frame_file(band));
            if path.is_file() {
                std::fs::File::options()
                    .write(true)
                    .open(&path)?
                    .set_modified(now)?;
            }
        }
        Ok(())
    }

    /// Frames and partial transfers, with their sizes and last use.
    fn entries(&self) -> Vec<(PathBuf, u64, SystemTime)> {
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
            .filter_map(|e| {
                let m = e.metadata().ok().filter(|m| m.is_file())?;
                Some((
                    e.path(),
                    m.len(),
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ))
            })
            .collect()
    }

    /// Bytes held by frames and partial transfers: what the budget counts.
    pub fn bytes(&self) -> u64 {
        self.entries().iter().map(|(_, len, _)| len).sum()
    }

    /// Removes the least recently used frames until the cache holds at most
    /// `budget` bytes, never those of `keep`; the bytes removed.
    pub fn evict_to(&self, budget: u64, keep: &[SdssField]) -> std::io::Result<u64> {
        let mut entries = self.entries();
        let mut held: u64 = entries.iter().map(|(_, len, _)| len).sum();
        let kept: Vec<String> = keep
            .iter()
            .flat_map(|f| BANDS.map(|b| f.frame_file(b)))
            .collect();
        entries.sort_by_key(|(_, _, used)| *used);
        let mut removed = 0;
        for (path, len, _) in entries {
            if held <= budget {
                break;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| kept.iter().any(|k| n.starts_with(k.as_str()))) {
                continue;
            }
            std::fs::remove_file(&path)?;
            held -= len;
            removed += len;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_the_least_recently_used_frames_and_spares_the_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FrameCache::open(dir.path()).unwrap();
        let field = |n: u32| SdssField {
            run: 2820,
            rerun: 301,
            camcol: 3,
            field: n,
        };
        let epoch = SystemTime::UNIX_EPOCH;
        // Fields 1, 2, 3 last used in that order; 100 bytes a frame, 500 a field.
        for n in 1..=3 {
            for band in BANDS {
                let path = dir.path().join(field(n).frame_file(band));
                std::fs::write(&path, [0u8; 100]).unwrap();
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(epoch + std::time::Duration::from_secs(u64::from(n) * 1000))
                    .unwrap();
            }
        }
        std::fs::write(dir.path().join("unrelated.txt"), [0u8; 4000]).unwrap();
        assert_eq!(cache.bytes(), 1500);
        // Field 1 is the oldest but kept (in use): field 2 goes.
        assert_eq!(cache.evict_to(1000, &[field(1)]).unwrap(), 500);
        assert!(cache.has_field(&field(1)) && !cache.has_field(&field(2)));
        assert!(cache.has_field(&field(3)));
        // Using field 3 makes field 1 the least recently used.
        cache.touch(&field(3)).unwrap();
        assert_eq!(cache.evict_to(500, &[]).unwrap(), 500);
        assert!(!cache.has_field(&field(1)) && cache.has_field(&field(3)));
        assert!(dir.path().join("unrelated.txt").exists());
    }
}
