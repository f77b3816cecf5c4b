//! Object stores: where partitions are read and results written, by key.
//!
//! Keys are `/`-separated paths relative to the store (S3 style). The local
//! store maps them under a root directory and refuses any key that would leave it;
//! [`s3::S3Store`] keeps them in a bucket.

mod fetch;
pub mod s3;

pub use fetch::{PARALLEL_GETS, for_each_fetched, on_threads};

use cosmicai_shared::run::check_key;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key '{key}' {problem}")]
    BadKey { key: String, problem: String },
    #[error("{key}: not found in {store}")]
    NotFound { key: String, store: String },
    #[error("{key}: {source}")]
    Io { key: String, source: std::io::Error },
    #[error("{key}: replaced in {store} while it was read (read it again)")]
    Changed { key: String, store: String },
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreObject {
    pub key: String,
    pub size: u64,
}

pub trait ObjectStore: Send + Sync {
    /// Objects whose key starts with `prefix` (a folder), sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<StoreObject>, StoreError>;
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Copies object `key` into `out`, in chunks where the store can stream (S3):
    /// a large partition never has to fit in memory. Returns the bytes copied.
    fn get_to(&self, key: &str, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        let bytes = self.get(key)?;
        out.write_all(&bytes).map_err(|source| StoreError::Io {
            key: key.to_string(),
            source,
        })?;
        Ok(bytes.len() as u64)
    }
    /// The first `len` bytes of object `key` (fewer where it is shorter): a
    /// file's header without its data.
    fn get_head(&self, key: &str, len: u64) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.get_range_to(key, 0..len, &mut bytes)?;
        Ok(bytes)
    }
    /// Copies bytes `range` of object `key` into `out` (fewer where the object
    /// is shorter): a partition's catalog without its cutouts. Stores that
    /// cannot read a range read the whole object. Returns the bytes copied.
    fn get_range_to(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, StoreError> {
        let bytes = self.get(key)?;
        let end = usize::try_from(range.end)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let start = usize::try_from(range.start).unwrap_or(usize::MAX).min(end);
        out.write_all(&bytes[start..end])
            .map_err(|source| StoreError::Io {
                key: key.to_string(),
                source,
            })?;
        Ok((end - start) as u64)
    }
    /// [`get_range_to`](Self::get_range_to) of the object whose ETag is
    /// `if_match`, where given: [`StoreError::Changed`] if another object is at
    /// `key` now. Returns the bytes copied and the ETag of the object read, so a
    /// partition read in several ranges is read from one object, not torn
    /// between an old one and its replacement. Stores without ETags (local
    /// files) read the range and give none; asked to match one, they refuse.
    fn get_range_if_match(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        if_match: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<(u64, Option<String>), StoreError> {
        if if_match.is_some() {
            return Err(StoreError::Io {
                key: key.to_string(),
                source: std::io::Error::other(format!(
                    "{} keeps no ETags to match a read to",
                    self.describe()
                )),
            });
        }
        Ok((self.get_range_to(key, range, out)?, None))
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Puts `bytes` at `key` unless an object is there already, in one step no
    /// other writer can come between (S3's `If-None-Match: *`, a link that does
    /// not replace): whether it was written. Two runs claiming one result path
    /// at once are told apart by it.
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError>;
    /// A file holding the object, when the store is a local file system (lets readers map it).
    fn local_path(&self, key: &str) -> Option<PathBuf>;
    /// For messages: `local:/data` or `s3://bucket`.
    fn describe(&self) -> String;
}

/// A writer that refuses bytes past `left`: a store that ignores a read's
/// range and sends the whole object is stopped at the range's length, not let
/// fill memory or a disk.
pub(crate) struct Capped<W> {
    pub inner: W,
    pub left: u64,
}

impl<W: std::io::Write> std::io::Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the store sent more bytes than the range asked for (it may not read ranges)",
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Joins a folder and a name into a key.
pub fn join(prefix: &str, name: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// A directory used as a store.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A failed read of `key`: a missing file is [`StoreError::NotFound`].
    fn read_error(&self, key: &str, e: std::io::Error) -> StoreError {
        match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound {
                key: key.into(),
                store: self.describe(),
            },
            _ => StoreError::Io {
                key: key.into(),
                source: e,
            },
        }
    }

    /// [`ObjectStore::put`] without its syncs: still whole (written aside and
    /// renamed into place), but a power cut may lose it until [`Self::sync`].
    /// For many objects that can be copied again (a run's results, brought back
    /// from the bucket): two syncs each would be most of the copy's time.
    pub fn put_unsynced(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // Only Linux has one call (syncfs) that makes them all durable.
        self.write_whole(key, bytes, !cfg!(target_os = "linux"))
    }

    /// Whole objects only, as S3 does: written aside and renamed into place. With
    /// `synced`, the file before the rename and the folder after, so a power cut
    /// leaves the old object or the new one, never a torn one. A writer killed
    /// midway leaves a `.tmp*` file, which [`sweep_temporaries`] removes.
    fn write_whole(&self, key: &str, bytes: &[u8], synced: bool) -> Result<(), StoreError> {
        self.write_new(key, bytes, synced, true).map(drop)
    }

    /// Writes `bytes` to `key` through a synced temporary file, replacing what
    /// is there or (`replace` false) only where nothing is: whether it wrote.
    fn write_new(
        &self,
        key: &str,
        bytes: &[u8],
        synced: bool,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let io = |source| StoreError::Io {
            key: key.into(),
            source,
        };
        let dir = path.parent().unwrap_or(&self.root);
        if synced {
            crate::partition::create_dir_synced(dir).map_err(io)?;
        } else {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut temp = crate::partition::temp_file_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut temp, bytes).map_err(io)?;
        if synced {
            temp.as_file().sync_all().map_err(io)?;
        }
        if replace {
            temp.persist(&path).map_err(|e| io(e.error))?;
        } else {
            match temp.persist_noclobber(&path) {
                Ok(_) => {}
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(io(e.error)),
            }
        }
        if synced {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(true)
    }

    /// Makes every write so far durable: the whole file system the store is on
    /// (`syncfs`), one call for any number of objects.
    pub fn sync(&self) -> std::io::Result<()> {
        let dir = std::fs::File::open(&self.root)?;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for the whole call.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }
        // Elsewhere each object was synced as it was written.
        #[cfg(not(target_os = "linux"))]
        {
            dir.sync_all()
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key).map_err(|p| StoreError::BadKey {
            key: key.into(),
            problem: p.into(),
        })?;
        Ok(self.root.join(key.trim_start_matches('/')))
    }
}

impl ObjectStore for LocalStore {
    fn list(&self, prefix: &str) -> Result<Vec<StoreObject>, StoreError> {
        let dir = self.path(prefix)?;
        let mut out = Vec::new();
        let mut pending = vec![dir.clone()];
        // Worked out at the first link, once a listing.
        let root = std::cell::OnceCell::new();
        while let Some(d) = pending.pop() {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && d == dir => return Ok(out),
                Err(e) => {
                    return Err(StoreError::Io {
                        key: prefix.into(),
                        source: e,
                    });
                }
            };
            for entry in entries.flatten() {
                // Temporaries (files being written, datasets being built) are
                // never objects: they are whole only once renamed.
                if entry.file_name().to_string_lossy().starts_with(".tmp") {
                    continue;
                }
                let path = entry.path();
                let Ok(mut meta) = entry.metadata() else {
                    continue;
                };
                // A link to a file is followed only inside the store: a dataset
                // someone else made could point at ~/.aws/credentials, which a
                // run would read and an AWS run upload. Links to folders are
                // not walked (one could loop back on itself).
                if meta.is_symlink() {
                    let target = std::fs::canonicalize(&path).ok();
                    let target_meta = target.as_ref().and_then(|t| std::fs::metadata(t).ok());
                    if target_meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                        continue;
                    }
                    let root = root.get_or_init(|| std::fs::canonicalize(&self.root).ok());
                    match (target, root, target_meta) {
                        (Some(t), Some(root), Some(m)) if t.starts_with(root) => meta = m,
                        // Not a file a run would read (notes, an editor's lock
                        // file, a stale link under results): left out.
                        _ if !(path
                            .extension()
                            .is_some_and(|x| x == crate::partition::EXTENSION)
                            || crate::cai::is_cai_key(&path.to_string_lossy())) =>
                        {
                            continue;
                        }
                        _ => {
                            return Err(StoreError::BadKey {
                                key: path
                                    .strip_prefix(&self.root)
                                    .unwrap_or(&path)
                                    .display()
                                    .to_string(),
                                problem: "is a symbolic link to a file outside the data folder, or to nothing: copy the file in instead".into(),
                            });
                        }
                    }
                }
                if meta.is_dir() {
                    pending.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.push(StoreObject {
                        key,
                        size: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        std::fs::read(self.path(key)?).map_err(|e| self.read_error(key, e))
    }

    fn get_range_to(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, StoreError> {
        use std::io::{Read, Seek};
        let io = |source| StoreError::Io {
            key: key.into(),
            source,
        };
        let mut file = std::fs::File::open(self.path(key)?).map_err(|e| self.read_error(key, e))?;
        file.seek(std::io::SeekFrom::Start(range.start))
            .map_err(io)?;
        std::io::copy(&mut file.take(range.end.saturating_sub(range.start)), out).map_err(io)
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_whole(key, bytes, true)
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        self.write_new(key, bytes, true, false)
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

/// Removes the temporary files that killed writers left under `dir` (and its
/// subfolders): the `.tmp*` files of [`LocalStore`]'s writes. Returns how many.
pub fn sweep_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += sweep_temporaries(&path);
        } else if entry.file_name().to_string_lossy().starts_with(".tmp")
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// When `path` (a file, or a folder and everything in it) last changed; links
/// are not followed.
fn newest_change(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let own = meta.modified().ok()?;
    if !meta.is_dir() {
        return Some(own);
    }
    let inner = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| newest_change(&e.path()));
    Some(inner.fold(own, std::cmp::max))
}

/// Removes what killed writers left under `dir` (and its subfolders) longer
/// than `older_than` ago: `.tmp*` files, and `.tmp*` folders (a dataset built
/// aside, then killed) whole. Younger ones may belong to a writer still at
/// work in another process, and are left. Returns how many were removed.
pub fn sweep_stale_temporaries(dir: &Path, older_than: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        // Not followed through links: only what lies under `dir`.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let leftover = entry.file_name().to_string_lossy().starts_with(".tmp");
        if !leftover {
            if kind.is_dir() {
                removed += sweep_stale_temporaries(&path, older_than);
            }
            continue;
        }
        // A folder is as young as the newest thing in it: a build still
        // writing into its subfolders is left alone.
        let stale = newest_change(&path)
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > older_than);
        if !stale {
            continue;
        }
        let gone = if kind.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed += usize::from(gone.is_ok());
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_leftovers_go_and_young_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/.tmp-build/part")).unwrap();
        std::fs::write(root.join("data/.tmp-build/part/0.safetensors"), b"x").unwrap();
        std::fs::write(root.join("data/.tmpAbC"), b"x").unwrap();
        std::fs::write(root.join("data/keep.safetensors"), b"x").unwrap();
        std::fs::write(root.join(".tmp-young"), b"x").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        // A build whose own folder is old but which still writes deeper down.
        std::fs::create_dir_all(root.join("data/.tmp-busy/part")).unwrap();
        std::fs::write(root.join("data/.tmp-busy/part/0.safetensors"), b"x").unwrap();
        for stale in [
            "data/.tmp-build",
            "data/.tmp-build/part",
            "data/.tmp-build/part/0.safetensors",
            "data/.tmpAbC",
            "data/.tmp-busy",
            "data/.tmp-busy/part",
        ] {
            std::fs::File::options()
                .write(true)
                .open(root.join(stale))
                .or_else(|_| std::fs::File::open(root.join(stale)))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(sweep_stale_temporaries(root, hour), 2);
        assert!(!root.join("data/.tmp-build").exists());
        assert!(!root.join("data/.tmpAbC").exists());
        assert!(root.join("data/keep.safetensors").exists());
        assert!(root.join(".tmp-young").exists());
        assert!(root.join("data/.tmp-busy/part/0.safetensors").exists());
    }

    #[test]
    fn links_are_followed_only_to_files_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("data"));
        store.put("d/a.safetensors", b"aa").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, dir.path().join("data/d").join(name)).unwrap()
        };
        // Inside: listed with its target's size. A folder: not walked.
        link(&dir.path().join("data/d/a.safetensors"), "b.safetensors");
        link(outside.path(), "folder");
        let keys: Vec<_> = store
            .list("d")
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        assert_eq!(
            keys,
            [
                ("d/a.safetensors".to_string(), 2),
                ("d/b.safetensors".to_string(), 2)
            ]
        );
        // Outside, or to nothing: refused by name.
        std::fs::write(outside.path().join("credentials"), "secret").unwrap();
        link(&outside.path().join("credentials"), "c.safetensors");
        let e = store.list("d").unwrap_err().to_string();
        assert!(
            e.contains("d/c.safetensors") && e.contains("outside the data folder"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("data/d/c.safetensors")).unwrap();
        link(&dir.path().join("gone"), "e.safetensors");
        assert!(store.list("d").is_err());
        // A bad link no run would read (notes, an editor's lock file): left out.
        std::fs::remove_file(dir.path().join("data/d/e.safetensors")).unwrap();
        link(&outside.path().join("credentials"), "notes.txt");
        link(&dir.path().join("gone"), ".#README");
        assert_eq!(store.list("d").unwrap().len(), 2);
    }

    #[test]
    fn unsynced_puts_are_whole_and_named_like_synced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.put_unsynced("r/a/0.json", b"zero").unwrap();
        store.put_unsynced("r/a/0.json", b"again").unwrap();
        store.put_unsynced("r/1.json", b"one").unwrap();
        store.sync().unwrap();
        assert_eq!(store.get("r/a/0.json").unwrap(), b"again");
        let keys: Vec<String> = store
            .list("r")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        // No temporary file left beside them.
        assert_eq!(keys, ["r/1.json", "r/a/0.json"]);
        assert!(store.put_unsynced("../x", b"x").is_err());
    }

    #[test]
    fn stored_files_take_the_umask_not_tempfiles_0600() {
        use std::os::unix::fs::PermissionsExt;
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.put("r/summary.json", b"{}").unwrap();
        store.put_unsynced("r/0.json", b"{}").unwrap();
        crate::partition::write_atomically(&dir.path().join("p.safetensors"), b"x").unwrap();
        // A partition goes through safetensors' own temporary file.
        let partition = crate::partition::Partition::blank(1, Some(4));
        crate::partition::write_partition(dir.path().join("part.safetensors"), &partition).unwrap();
        for file in [
            "r/summary.json",
            "r/0.json",
            "p.safetensors",
            "part.safetensors",
        ] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o666 & !umask, "{file}: {mode:o}");
        }
    }

    #[test]
    fn round_trips_lists_sorted_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.put("a/2.json", b"two").unwrap();
        store.put("a/1.json", b"one").unwrap();
        store.put("b.json", b"b").unwrap();
        assert_eq!(store.get("a/1.json").unwrap(), b"one");
        let keys: Vec<_> = store
            .list("a")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["a/1.json", "a/2.json"]);
        assert_eq!(store.list("").unwrap().len(), 3);
        assert!(store.list("missing").unwrap().is_empty());
        for bad in ["../x", "a/../../x", "/etc/passwd"] {
            assert!(
                matches!(store.get(bad), Err(StoreError::BadKey { .. })),
                "{bad}"
            );
            assert!(store.put(bad, b"x").is_err());
        }
        assert!(matches!(
            store.get("nope.json"),
            Err(StoreError::NotFound { .. })
        ));
    }
}
