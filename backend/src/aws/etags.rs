//! The S3 ETags of local partitions, remembered beside the run registry: at
//! CAI's sizes a rerun compares a terabyte of partitions with the bucket's
//! listing without reading it all again.
//!
//! An ETag is kept under the file's path with its stamp (size, modification and
//! change times, inode) and used only while the stamp is the same. The change
//! time moves on any write, rename or `touch`, and no tool can set it back, so a
//! file rewritten in place (even by `rsync -t`) is read again. An ETag is kept
//! only if the file had not changed for [`SETTLE`] when it was stamped (a second
//! write within the clock's granularity could leave the stamp as it was: git's
//! "racily clean" files), and if its stamp is the same once its bytes have been
//! read. Losing the table loses only time.

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How long before it was stamped a file must have last changed for its ETag
/// to be kept: more than the coarsest timestamps' step (FAT's 2 s; NFS, Lustre
/// and HFS+ keep whole seconds).
pub const SETTLE: Duration = Duration::from_secs(3);

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

    /// Whether the file last changed at least `settle` before `stamped_at`.
    fn settled(&self, stamped_at: SystemTime, settle: Duration) -> bool {
        let at_ns = stamped_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let last = self.modified_ns.max(self.changed_ns);
        at_ns.saturating_sub(last) >= settle.as_nanos() as i64
    }
}

pub struct LocalEtags {
    db: Mutex<Connection>,
    settle: Duration,
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
        Ok(LocalEtags {
            db: Mutex::new(db),
            settle: SETTLE,
        })
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

    /// Keeps `etag` for `path`, stamped `stamp` at `stamped_at` before its bytes
    /// were read, if the file had settled then and its stamp is the same now. A
    /// failed write is only a lost shortcut: ignored.
    pub fn remember(&self, path: &Path, stamp: &Stamp, stamped_at: SystemTime, etag: &str) {
        let unchanged = std::fs::metadata(path).is_ok_and(|now| Stamp::of(&now) == *stamp);
        if !unchanged || !stamp.settled(stamped_at, self.settle) {
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
        let registry = dir.path().join("cosmicai.sqlite");
        let mut etags = LocalEtags::open(&registry).unwrap();
        let stamp = stamp_of(&file);
        // Just written when stamped: not kept, a second write in the same tick
        // could hide, however long the read then took.
        let later = SystemTime::now() + Duration::from_secs(60);
        etags.remember(&file, &stamp, SystemTime::now(), "fresh");
        assert_eq!(etags.get(&file, &stamp), None);
        // Settled when stamped (no wait asked here): kept, read back after a reopen.
        etags.settle = Duration::ZERO;
        etags.remember(&file, &stamp, later, "abc-2");
        let etags = LocalEtags::open(&registry).unwrap();
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
        assert_ne!(stamp_of(&file), stamp);
        assert_eq!(etags.get(&file, &stamp_of(&file)), None);
        assert_eq!(etags.get(&dir.path().join("other"), &stamp), None);
    }

    #[test]
    fn a_file_changed_while_it_was_read_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.safetensors");
        std::fs::write(&file, b"0123456789").unwrap();
        let mut etags = LocalEtags::open(&dir.path().join("cosmicai.sqlite")).unwrap();
        etags.settle = Duration::ZERO;
        let stamp = stamp_of(&file);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, b"9876543210").unwrap();
        etags.remember(&file, &stamp, SystemTime::now(), "torn");
        assert_eq!(etags.get(&file, &stamp), None);
        assert_eq!(etags.get(&file, &stamp_of(&file)), None);
    }
}
