//! A rank's copy of a partition held in a remote store (S3), in a temporary file
//! it can memory-map like a local one.
//!
//! A model that reads only the catalog (PhotoZ) is sent the catalog alone: the
//! header, then ranged reads of the bytes before and after the `images` tensor,
//! which stays a hole in a sparse file. Cutouts are 99% of a partition (32 x 32
//! five-band f32 is 20,480 bytes an object, the catalog 53), so such a rank
//! reads a few hundred KB of a 25 MB partition instead of all of it.

use super::PipelineError;
use super::plan::MAX_HEADER_BYTES;
use crate::store::{Capped, ObjectStore};
use safetensors::tensor::Metadata;
use std::io::{Seek, SeekFrom, Write};
use std::ops::Range;

/// What a rank reads of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// Every tensor (a model that reads cutouts).
    Whole,
    /// Every tensor but `images`, whose bytes are left unread.
    Catalog,
}

/// The first read of a catalog-only download: the header and, in one request,
/// the columns stored before the images (24 bytes an object: a 25 MB partition
/// of 32 x 32 cutouts holds about 1,200 objects, 29 KB), and the first cutouts
/// after them, unused. So it costs two GETs, this and the columns after the
/// images, where a whole read costs one; three or four where the header or
/// those columns run past it.
pub(crate) const FIRST_READ_BYTES: u64 = 128 << 10;

/// A partition copied from the store.
pub(super) struct Downloaded {
    pub file: tempfile::NamedTempFile,
    /// Bytes read from the store.
    pub bytes: u64,
    /// GET requests made for it.
    pub gets: u64,
}

/// Streams partition `key` (`size` bytes, as listed) to a temporary file, after
/// checking that the file system has room for what is read (a Lambda's /tmp is
/// its ephemeral storage).
pub(super) fn download(
    store: &dyn ObjectStore,
    key: &str,
    size: u64,
    wanted: Wanted,
) -> Result<Downloaded, PipelineError> {
    let fail = |e: String| PipelineError::Other(format!("partition {key}: {e}"));
    let Head {
        bytes: head,
        gets,
        images,
        etag,
    } = match wanted {
        // A size of 0 is a key the plan does not list: read whole, for the reader to judge.
        Wanted::Catalog if size > 0 => catalog_head(store, key, size)?,
        _ => Head::default(),
    };
    let Some(images) = images else {
        check_room(size, &fail)?;
        let mut file = download_file().map_err(|e| fail(e.to_string()))?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file.as_file_mut());
        let bytes = store.get_to(key, &mut writer)?;
        writer.flush().map_err(|e| fail(e.to_string()))?;
        drop(writer);
        let read_before = head.len() as u64;
        return Ok(Downloaded {
            file,
            bytes: bytes + read_before,
            gets: gets + 1,
        });
    };
    check_room(size - (images.end - images.start), &fail)?;
    // The file takes its full length; the images' bytes stay a hole (zeros, no
    // disk), never read, since the model does not ask for them.
    let mut file = download_file().map_err(|e| fail(e.to_string()))?;
    let io = |e: std::io::Error| fail(e.to_string());
    file.as_file().set_len(size).map_err(io)?;
    // What the first read already holds is written from it, not read again.
    let held = head.len() as u64;
    for range in [0..held.min(images.start), images.end.min(held)..held] {
        file.as_file_mut()
            .seek(SeekFrom::Start(range.start))
            .map_err(io)?;
        file.as_file_mut()
            .write_all(&head[range.start as usize..range.end as usize])
            .map_err(io)?;
    }
    let (mut bytes, mut gets) = (held, gets);
    for range in [
        held.min(images.start)..images.start,
        images.end.max(held)..size,
    ] {
        if range.is_empty() {
            continue;
        }
        file.as_file_mut()
            .seek(SeekFrom::Start(range.start))
            .map_err(io)?;
        let expected = range.end - range.start;
        // A store that ignores the range and sends the whole object is stopped
        // at the range's length, not let fill the disk.
        let mut writer = Capped {
            inner: std::io::BufWriter::with_capacity(1 << 20, file.as_file_mut()),
            left: expected,
        };
        // From the object the first read saw, or an error: not half a replacement.
        let (got, _) = store.get_range_if_match(key, range, etag.as_deref(), &mut writer)?;
        writer.inner.flush().map_err(io)?;
        if got != expected {
            return Err(fail(format!(
                "read {got} bytes where {expected} were asked for: the object changed since the run was planned"
            )));
        }
        bytes += got;
        gets += 1;
    }
    Ok(Downloaded { file, bytes, gets })
}

/// Refuses a download the temporary folder has no room for.
/// Where every process keeps its downloads: a folder of its own each, named
/// by [`process_identity`](crate::system::process_identity), so a process
/// killed mid-download (a Lambda out of memory or time, whose `/tmp` the next
/// invocation of its sandbox inherits) leaves them where [`clear_downloads`]
/// finds them, and no process takes another's.
fn downloads_root() -> std::path::PathBuf {
    std::env::temp_dir().join("cosmicai-downloads")
}

/// This process's folder name: its pid and identity (`/` made `-`).
fn folder_of(pid: u32) -> Option<String> {
    crate::system::process_identity(pid).map(|id| format!("{pid}-{}", id.replace('/', "-")))
}

fn download_file() -> std::io::Result<tempfile::NamedTempFile> {
    // Without an identity (off Linux) the folder is the bare pid, which
    // `clear_downloads` never takes for a gone process's.
    let own = folder_of(std::process::id()).unwrap_or_else(|| std::process::id().to_string());
    let root = downloads_root();
    std::fs::create_dir_all(&root)?;
    let dir = root.join(own);
    let mut made = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut made, 0o700);
    match made.create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    tempfile::NamedTempFile::new_in(dir)
}

/// Removes the downloads of processes that are gone (killed before they
/// could remove them); returns the bytes freed.
pub fn clear_downloads() -> u64 {
    let Ok(entries) = std::fs::read_dir(downloads_root()) else {
        return 0;
    };
    let mut freed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only folders named as `folder_of` names them: a pid and an identity.
        let Some(pid) = name
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if folder_of(pid).is_some_and(|live| live == name) {
            continue;
        }
        let path = entry.path();
        let bytes: u64 = std::fs::read_dir(&path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| f.metadata().ok().map(|m| m.len()))
            .sum();
        if std::fs::remove_dir_all(&path).is_ok() {
            freed += bytes;
        }
    }
    freed
}

fn check_room(needed: u64, fail: &dyn Fn(String) -> PipelineError) -> Result<(), PipelineError> {
    let dir = std::env::temp_dir();
    match crate::system::free_bytes(&dir) {
        Some(free) if needed > free => Err(fail(format!(
            "{needed} bytes do not fit in the {free} bytes free in {} (raise the function's ephemeral storage)",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// The start of a partition, as read for its catalog.
#[derive(Default)]
struct Head {
    /// Its first [`FIRST_READ_BYTES`], or its header where that is longer.
    bytes: Vec<u8>,
    /// The GETs that took.
    gets: u64,
    /// Where its `images` lie (an empty range at the end where it has none);
    /// `None` where the header is not one this can place exactly.
    images: Option<Range<u64>>,
    /// The ETag of the object it was read from, which later reads must match.
    etag: Option<String>,
}

/// Reads the start of partition `key` and places its images. A header this
/// cannot place exactly (over 1 MiB, unreadable, or whose tensors do not fill
/// the listed `size`) leaves the file to be read whole, and the partition
/// reader names whatever is wrong with it.
fn catalog_head(store: &dyn ObjectStore, key: &str, size: u64) -> Result<Head, PipelineError> {
    let mut bytes = Vec::new();
    let first = FIRST_READ_BYTES.min(size);
    // Capped as the column reads are: a store that ignores ranges is stopped.
    let (_, etag) = store.get_range_if_match(
        key,
        0..first,
        None,
        &mut Capped {
            inner: &mut bytes,
            left: first,
        },
    )?;
    let mut head = Head {
        bytes,
        gets: 1,
        images: None,
        etag,
    };
    let Some(len) = head.bytes.get(..8).and_then(|b| b.try_into().ok()) else {
        return Ok(head);
    };
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES {
        return Ok(head);
    }
    let held = head.bytes.len() as u64;
    if 8 + len > held {
        store.get_range_if_match(
            key,
            held..8 + len,
            head.etag.as_deref(),
            &mut Capped {
                inner: &mut head.bytes,
                left: 8 + len - held,
            },
        )?;
        head.gets += 1;
    }
    let Some(Ok(metadata)) = head
        .bytes
        .get(8..8 + len as usize)
        .map(serde_json::from_slice::<Metadata>)
    else {
        return Ok(head);
    };
    let data_start = 8 + len;
    if data_start.checked_add(metadata.data_len() as u64) == Some(size) {
        head.images = Some(metadata.info("images").map_or(size..size, |info| {
            let (start, end) = info.data_offsets;
            data_start + start as u64..data_start + end as u64
        }));
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_of_gone_processes_are_cleared_and_live_ones_kept() {
        let live = download_file().unwrap();
        // A process that is gone (no pid is this large), and a pid reused by
        // another process since (its identity no longer matches).
        let gone = downloads_root().join("4294967295-boot-1");
        let reused = downloads_root().join(format!("{}-another-start", std::process::id()));
        for dir in [&gone, &reused] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(".tmpleft"), [0u8; 1000]).unwrap();
        }
        assert!(clear_downloads() >= 2000);
        assert!(!gone.exists() && !reused.exists());
        assert!(
            live.path().exists(),
            "this process's own download was taken"
        );
    }
    use crate::partition::{Images, Partition, PartitionFile, write_partition};
    use crate::store::{LocalStore, StoreError, StoreObject};
    use cosmicai_shared::Class;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A local store seen as a remote one (no local paths), counting what it
    /// sends; one that `ignores_ranges_from` read N on sends whole objects for
    /// ranges from its Nth read (counting from 0). Its
    /// objects have ETags, as S3's: a read that must match another than the
    /// object's is refused.
    struct Remote {
        inner: LocalStore,
        sent: AtomicU64,
        ignores_ranges_from: Option<u64>,
        /// Ranged reads so far.
        reads: AtomicU64,
        /// The most bytes a ranged read's writer took past the range's length.
        overrun: AtomicU64,
        /// The objects' ETag, one for all (bumped on each replacement).
        etag: AtomicU64,
        /// Written over `part-0.safetensors` after the next read (another
        /// writer replacing the partition while a rank reads it).
        replacement: std::sync::Mutex<Option<Vec<u8>>>,
    }

    /// Counts what a writer takes.
    struct Counting<'a> {
        inner: &'a mut dyn Write,
        took: u64,
    }

    impl Write for Counting<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.took += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }

    impl ObjectStore for Remote {
        fn list(&self, prefix: &str) -> Result<Vec<StoreObject>, StoreError> {
            self.inner.list(prefix)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            let bytes = self.inner.get(key)?;
            self.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            Ok(bytes)
        }
        fn get_range_if_match(
            &self,
            key: &str,
            range: Range<u64>,
            if_match: Option<&str>,
            out: &mut dyn Write,
        ) -> Result<(u64, Option<String>), StoreError> {
            let current = self.etag.load(Ordering::Relaxed).to_string();
            if if_match.is_some_and(|v| v != current) {
                return Err(StoreError::Changed {
                    key: key.into(),
                    store: self.describe(),
                });
            }
            let n = self.get_range_to(key, range, out)?;
            if let Some(bytes) = self.replacement.lock().unwrap().take() {
                std::fs::write(self.inner.root().join(key), bytes).unwrap();
                self.etag.fetch_add(1, Ordering::Relaxed);
            }
            Ok((n, Some(current)))
        }
        fn get_range_to(
            &self,
            key: &str,
            range: Range<u64>,
            out: &mut dyn Write,
        ) -> Result<u64, StoreError> {
            let asked = range.end - range.start;
            let read = self.reads.fetch_add(1, Ordering::Relaxed);
            let range = if self.ignores_ranges_from.is_some_and(|from| read >= from) {
                0..u64::MAX
            } else {
                range
            };
            let mut counting = Counting {
                inner: out,
                took: 0,
            };
            let read = self.inner.get_range_to(key, range, &mut counting);
            self.overrun
                .fetch_max(counting.took.saturating_sub(asked), Ordering::Relaxed);
            let n = read?;
            self.sent.fetch_add(n, Ordering::Relaxed);
            Ok(n)
        }
        fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.inner.put(key, bytes)
        }
        fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
            self.inner.put_if_absent(key, bytes)
        }
        fn local_path(&self, _: &str) -> Option<PathBuf> {
            None
        }
        fn describe(&self) -> String {
            "remote".into()
        }
    }

    fn partition(objects: usize, side: Option<usize>) -> Partition {
        let mut p = Partition::blank(objects, side);
        for i in 0..objects {
            p.redshift[i] = i as f32 / 100.0;
            p.magnitudes[i] = [18.0 + i as f32 / 10.0; 5];
            p.class[i] = Class::Galaxy;
        }
        if let Some(Images { pixels, .. }) = &mut p.images {
            pixels
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = i as f32);
        }
        p
    }

    fn remote_with(p: &Partition) -> (tempfile::TempDir, Remote, u64) {
        let dir = tempfile::tempdir().unwrap();
        write_partition(dir.path().join("part-0.safetensors"), p).unwrap();
        let size = std::fs::metadata(dir.path().join("part-0.safetensors"))
            .unwrap()
            .len();
        let remote = Remote {
            inner: LocalStore::new(dir.path()),
            sent: AtomicU64::new(0),
            ignores_ranges_from: None,
            reads: AtomicU64::new(0),
            overrun: AtomicU64::new(0),
            etag: AtomicU64::new(0),
            replacement: Default::default(),
        };
        (dir, remote, size)
    }

    #[test]
    fn the_catalog_alone_is_read_where_cutouts_are_not_wanted() {
        let p = partition(200, Some(32));
        let (_dir, remote, size) = remote_with(&p);
        let got = download(&remote, "part-0.safetensors", size, Wanted::Catalog).unwrap();
        let opened = PartitionFile::open(got.file.path()).unwrap();
        assert_eq!(opened.catalog().redshift, p.redshift);
        assert_eq!(opened.catalog().magnitudes, p.magnitudes);
        assert_eq!(opened.image_size(), Some((32, 32)));
        // 200 cutouts are 4,096,000 bytes; the catalog and header a few KB.
        // The header and the columns before the images in one GET, those after in another.
        let sent = remote.sent.load(Ordering::Relaxed);
        assert!(
            sent < size / 25 && got.bytes == sent,
            "{} {sent} of {size}",
            got.bytes
        );
        assert_eq!(got.gets, 2);

        let got = download(&remote, "part-0.safetensors", size, Wanted::Whole).unwrap();
        assert_eq!((got.bytes, got.gets), (size, 1));
        let whole = PartitionFile::open(got.file.path()).unwrap();
        assert_eq!(
            whole.images(199..200),
            p.images.unwrap().pixels[199 * 5120..]
        );
    }

    #[test]
    fn a_partition_without_cutouts_is_read_once_and_one_of_another_size_whole() {
        // Without cutouts: its start, then the rest (no byte twice).
        let (_dir, remote, size) = remote_with(&partition(8000, None));
        let got = download(&remote, "part-0.safetensors", size, Wanted::Catalog).unwrap();
        assert!(size > FIRST_READ_BYTES);
        assert_eq!((got.bytes, got.gets), (size, 2));
        assert_eq!(PartitionFile::open(got.file.path()).unwrap().len(), 8000);
        // Listed at another size than its header gives: read whole after its
        // start, for the reader to judge.
        let (_dir, remote, size) = remote_with(&partition(10, Some(8)));
        let got = download(&remote, "part-0.safetensors", size + 1, Wanted::Catalog).unwrap();
        assert_eq!((got.bytes, got.gets), (2 * size, 2));
        assert!(PartitionFile::open(got.file.path()).is_ok());
    }

    #[test]
    fn a_small_partition_is_read_in_one_get_and_a_store_ignoring_ranges_is_stopped() {
        // Under 128 KiB, cutouts and all: its first read holds everything.
        let p = partition(10, Some(8));
        let (_dir, remote, size) = remote_with(&p);
        let got = download(&remote, "part-0.safetensors", size, Wanted::Catalog).unwrap();
        assert_eq!((got.bytes, got.gets), (size, 1));
        assert_eq!(
            PartitionFile::open(got.file.path())
                .unwrap()
                .catalog()
                .magnitudes,
            p.magnitudes
        );
        // A store that answers the columns' range (its second read), or the
        // first read's, with the whole object is stopped at the range's length.
        for from in [1, 0] {
            let (_dir, mut remote, size) = remote_with(&partition(200, Some(32)));
            remote.ignores_ranges_from = Some(from);
            let e = download(&remote, "part-0.safetensors", size, Wanted::Catalog)
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains("more bytes than the range asked for"),
                "{from}: {e}"
            );
            assert_eq!(remote.reads.load(Ordering::Relaxed), from + 1);
            // Nothing past the range reached the file, or the header's bytes.
            assert_eq!(remote.overrun.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn a_partition_replaced_between_its_reads_is_refused_not_read_torn() {
        let (_dir, remote, size) = remote_with(&partition(200, Some(32)));
        // Another partition of the same size and layout, other values.
        let mut other = partition(200, Some(32));
        other.redshift.iter_mut().for_each(|z| *z += 1.0);
        let other_dir = tempfile::tempdir().unwrap();
        let other_path = other_dir.path().join("other.safetensors");
        write_partition(&other_path, &other).unwrap();
        let other = std::fs::read(other_path).unwrap();
        assert_eq!(other.len() as u64, size);
        *remote.replacement.lock().unwrap() = Some(other);
        let e = download(&remote, "part-0.safetensors", size, Wanted::Catalog)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("part-0.safetensors: replaced in remote while it was read"),
            "{e}"
        );
        // Read again, it is the new one, whole.
        let got = download(&remote, "part-0.safetensors", size, Wanted::Catalog).unwrap();
        let opened = PartitionFile::open(got.file.path()).unwrap();
        assert!((opened.catalog().redshift[0] - 1.0).abs() < 1e-6);
    }
}
