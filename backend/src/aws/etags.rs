//! The S3 ETags of local partitions, remembered beside the run registry: at
//! CAI's sizes a rerun compares a terabyte of partitions with the bucket's
//! listing without reading it all again.
//!
//! An ETag is kept under the file's path with its stamp (size, modification and
//! change times, inode) and used only while the stamp is the same. The change
//! time moves on any write, rename or `touch`, and no tool can set it back, so a
//! file rewritten in place (even by `rsync -t`) is read again. A stamp younger
//! than [`SETTLE`] is not kept: a second write within the clock's granularity
//! could leave it unchanged (git's "racily clean" files). Losing the table loses
//! only time.

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How old a file's last change must be for its ETag to be kept.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What must stay the same for a remembered ETag to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    size: u64,
    modified_ns: i64,
    changed_ns: i64,
    inode: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
            Stamp {
                size: meta.len(),
                modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
                changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
                inode: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let modified_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i64);
            Stamp {
                size: meta.len(),
                modified_ns,
                changed_ns: modified_ns,
                inode: 0,
            }
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the file last changed at least [`SETTLE`] before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let last = self.modified_ns.max(self.changed_ns);
        now_ns.saturating_sub(last) >= SETTLE.as_nanos() as i64
    }
}

pub struct LocalEtags {
    db: Mutex<Connection>,
}

impl LocalEtags {
    /// The table in the registry's file `registry` (created if missing).
    pub fn open(registry: &Path) -> Result<Self> {
        let db = Connection::open(registry)
            .with_context(|| format!("opening {}", registry.display()))?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS local_etags (
                path TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                modified_ns INTEGER NOT NULL,
                changed_ns INTEGER NOT NULL,
                inode INTEGER NOT NULL,
                etag TEXT NOT NULL
            )",
        )
        .with_context(|| format!("preparing the ETag table in {}", registry.display()))?;
        Ok(LocalEtags { db: Mutex::new(db) })
    }

    /// The ETag remembered for `path`, if its stamp is still `stamp`.
    pub fn get(&self, path: &Path, stamp: &Stamp) -> Option<String> {
        let db = self.db.lock().ok()?;
        let row: (i64, i64, i64, i64, String) = db
            .query_row(
                "SELECT size, modified_ns, changed_ns, inode, etag FROM local_etags WHERE path = ?1",
                params![path.to_string_lossy()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .ok()??;
        let (size, modified_ns, changed_ns, inode, etag) = row;
        let kept = Stamp {
            size: size as u64,
            modified_ns,
            changed_ns,
            inode: inode as u64,
        };
        (kept == *stamp).then_some(etag)
    }

    /// Keeps `etag` for `path` as stamped (taken before its bytes were read), if
    /// the stamp has settled. A failed write is only a lost shortcut: ignored.
    pub fn remember(&self, path: &Path, stamp: &Stamp, etag: &str) {
        if !stamp.settled(SystemTime::now()) {
            return;
        }
        if let Ok(db) = self.db.lock() {
            let _ = db.execute(
                "INSERT OR REPLACE INTO local_etags VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    path.to_string_lossy(),
                    stamp.size as i64,
                    stamp.modified_ns,
                    stamp.changed_ns,
                    stamp.inode as i64,
                    etag
                ],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(path: &Path) -> Stamp {
        Stamp::of(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn an_etag_holds_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.safetensors");
        std::fs::write(&file, b"0123456789").unwrap();
        let etags = LocalEtags::open(&dir.path().join("cosmicai.sqlite")).unwrap();
        let original = stamp_of(&file);
        let mut stamp = original;
        // Just written: not kept, a second write in the same tick could hide.
        etags.remember(&file, &stamp, "fresh");
        assert_eq!(etags.get(&file, &stamp), None);
        // Settled (as if written long ago): kept, and read back after a reopen.
        stamp.modified_ns -= 10_000_000_000;
        stamp.changed_ns -= 10_000_000_000;
        etags.remember(&file, &stamp, "abc-2");
        let etags = LocalEtags::open(&dir.path().join("cosmicai.sqlite")).unwrap();
        assert_eq!(etags.get(&file, &stamp).as_deref(), Some("abc-2"));
        // Any difference in the stamp, and it is not used.
        for changed in [
            Stamp { size: 11, ..stamp },
            Stamp {
                modified_ns: stamp.modified_ns + 1,
                ..stamp
            },
            Stamp {
                changed_ns: stamp.changed_ns + 1,
                ..stamp
            },
            Stamp {
                inode: stamp.inode + 1,
                ..stamp
            },
        ] {
            assert_eq!(etags.get(&file, &changed), None, "{changed:?}");
        }
        // Rewritten in place with the same size: a new change time.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, b"9876543210").unwrap();
        assert_ne!(stamp_of(&file), original);
        assert_eq!(etags.get(&file, &stamp_of(&file)), None);
        assert_eq!(etags.get(&dir.path().join("other"), &stamp), None);
    }
}
