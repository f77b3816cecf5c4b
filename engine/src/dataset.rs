//! A dataset is a directory of partition files whose names sort in object order.
//!
//! [`PartitionSink`] writes objects into numbered partitions, cutting a new
//! file at a size or object budget; [`repartition`] streams existing
//! partitions through a sink, one input file in memory at a time.

use crate::partition::{
    self, EXTENSION, Images, ObjectRow, Partition, PartitionError, PartitionFile, PartitionMeta,
    Source,
};
use std::path::{Path, PathBuf};

/// How to cut a stream of objects into partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionBy {
    /// At most this many objects per partition.
    Objects(usize),
    /// At most this many bytes per file (CAI used 25, 50, 75 and 100 MB).
    Bytes(u64),
}

/// Bytes reserved for the safetensors header when splitting by size.
const HEADER_BUDGET: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Partition(#[from] PartitionError),
    // `error`, not `source`: the message holds it, and a source would print
    // it twice in a chain ("…: No such file …: No such file …").
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: holds no partition files (*.{EXTENSION})", .0.display())]
    NoPartitions(PathBuf),
    #[error("{}: holds part of a dataset whose build was cut short ({INCOMPLETE}): build it again", .0.display())]
    Incomplete(PathBuf),
    #[error("{}: already holds partition files; choose an empty output directory so nothing stored is overwritten", .0.display())]
    OutputNotEmpty(PathBuf),
    #[error("{}: {problem}", path.display())]
    Incompatible { path: PathBuf, problem: String },
    #[error("--size {bytes} bytes cannot hold even one object of {per_object} bytes")]
    SizeTooSmall { bytes: u64, per_object: u64 },
    #[error("--objects must be at least 1")]
    ZeroObjects,
}

/// Names the file that marks a folder holding part of a dataset: a build cut
/// short while its files were moved in one by one. Readers refuse the folder.
pub const INCOMPLETE: &str = "DATASET-INCOMPLETE";

const MARKER_TEXT: &str = "cosmicai: a dataset was being moved into this folder when it stopped; its files here are part of it. Build it again (the same command) to replace them.\n";

/// The partition files of a dataset directory in name order, or the file itself.
pub fn list_partitions(path: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if path.join(INCOMPLETE).exists() {
        return Err(DatasetError::Incomplete(path.to_path_buf()));
    }
    let files = partition_files(path).map_err(io)?;
    if files.is_empty() {
        return Err(DatasetError::NoPartitions(path.to_path_buf()));
    }
    Ok(files)
}

/// The `.safetensors` files directly in `dir`, in name order.
fn partition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == EXTENSION) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// File name of partition number `index`: names sort in partition order.
pub fn partition_file_name(index: usize) -> String {
    format!("part-{index:06}.{EXTENSION}")
}

/// One written partition file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WrittenPartition {
    pub path: PathBuf,
    pub objects: usize,
    pub bytes: u64,
}

/// Writes objects into numbered partition files in an empty directory.
///
/// The files are written in a `.tmp-` folder and put in place by
/// [`PartitionSink::finish`], so a command cut short (an error, Ctrl-C, a power
/// cut) leaves no part of a dataset that a run would take for all of it:
/// - a new directory is built beside its place and renamed there whole;
/// - an existing one (a mount point, a link, one holding other files) gets a
///   `.tmp-partitions` folder inside, whose files are renamed into it at the
///   end, one after another once all are written and synced.
pub struct PartitionSink {
    /// Where the files are written until `finish`.
    dir: PathBuf,
    /// Where they go then, and how.
    place: Placing,
    finished: bool,
    split: PartitionBy,
    meta: PartitionMeta,
    current: Partition,
    /// Objects per file, fixed by the first object (its image size).
    capacity: Option<usize>,
    written: Vec<WrittenPartition>,
}

/// How a sink's files reach the directory asked for.
enum Placing {
    /// The folder is renamed to this path.
    Rename(PathBuf),
    /// Each file is renamed into this existing directory.
    MoveInto(PathBuf),
}

impl PartitionSink {
    /// Creates `dir` if needed; refuses a directory that already holds partitions.
    pub fn create(
        dir: &Path,
        split: PartitionBy,
        meta: PartitionMeta,
    ) -> Result<Self, DatasetError> {
        if split == PartitionBy::Objects(0) {
            return Err(DatasetError::ZeroObjects);
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DatasetError::Io {
                path,
                error: source,
            }
        };
        // A build cut short while its files were moved in: those files are ours
        // and not a dataset. They go; the marker last.
        let marker = dir.join(INCOMPLETE);
        if marker.exists() {
            for file in partition_files(dir).map_err(io(dir))? {
                std::fs::remove_file(&file).map_err(io(&file))?;
            }
            std::fs::remove_file(&marker).map_err(io(&marker))?;
        }
        if list_partitions(dir).is_ok() {
            return Err(DatasetError::OutputNotEmpty(dir.to_path_buf()));
        }
        let (building, place) = match (dir.exists(), dir.parent(), dir.file_name()) {
            // New: built beside its place (the same file system), renamed there.
            (false, Some(parent), Some(name)) => (
                parent.join(format!(".tmp-{}", name.to_string_lossy())),
                Placing::Rename(parent.join(name)),
            ),
            _ => (
                dir.join(".tmp-partitions"),
                Placing::MoveInto(dir.to_path_buf()),
            ),
        };
        // What a command cut short left: never a dataset.
        if building.exists() {
            std::fs::remove_dir_all(&building).map_err(io(&building))?;
        }
        crate::partition::create_dir_synced(&building).map_err(io(&building))?;
        Ok(PartitionSink {
            dir: building,
            place,
            finished: false,
            split,
            current: Partition::new(meta.clone(), Vec::new()),
            meta,
            capacity: None,
            written: Vec::new(),
        })
    }

    /// Adds one object; `image` is its `[5, H, W]` cutout with H and W.
    pub fn push(
        &mut self,
        row: ObjectRow,
        source: &Source,
        image: Option<(&[f32], usize, usize)>,
    ) -> Result<(), DatasetError> {
        let image_size = image.map(|(_, h, w)| (h, w));
        let capacity = match self.capacity {
            Some(c) => c,
            None => {
                let c = self.capacity_for(image_size)?;
                self.capacity = Some(c);
                c
            }
        };
        let current_size = self.current.images.as_ref().map(|i| (i.height, i.width));
        if !self.current.is_empty() && current_size != image_size {
            return Err(DatasetError::Incompatible {
                path: self.out().to_path_buf(),
                problem: format!(
                    "cannot mix objects with image size {} and {} in one dataset",
                    describe_size(current_size),
                    describe_size(image_size)
                ),
            });
        }
        if self.current.is_empty() {
            self.current.images = image_size.map(|(h, w)| Images::empty(h, w));
        }
        let index = self.current.source_index(source);
        self.current.push(row, index);
        if let (Some(images), Some((pixels, _, _))) = (&mut self.current.images, image) {
            images.pixels.extend_from_slice(pixels);
        }
        if self.current.len() >= capacity {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the last, partly filled partition and returns every file written.
    pub fn finish(mut self) -> Result<Vec<WrittenPartition>, DatasetError> {
        self.flush()?;
        self.finished = true;
        self.put_in_place()?;
        Ok(std::mem::take(&mut self.written))
    }

    /// Puts the files built aside where they were asked for (see [`Placing`]).
    fn put_in_place(&mut self) -> Result<(), DatasetError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DatasetError::Io {
                path,
                error: source,
            }
        };
        let out = match &self.place {
            Placing::Rename(out) => {
                crate::partition::rename_synced(&self.dir, out).map_err(io(out))?;
                out.clone()
            }
            Placing::MoveInto(out) => {
                // Files move in one at a time: until the last is in, a marker
                // says the folder holds part of a dataset, which no reader takes.
                let marker = out.join(INCOMPLETE);
                crate::partition::write_atomically(&marker, MARKER_TEXT.as_bytes())
                    .map_err(io(&marker))?;
                for w in &self.written {
                    let name = w.path.file_name().unwrap_or_default();
                    std::fs::rename(&w.path, out.join(name)).map_err(io(&w.path))?;
                }
                std::fs::File::open(out)
                    .and_then(|d| d.sync_all())
                    .map_err(io(out))?;
                std::fs::remove_file(&marker).map_err(io(&marker))?;
                std::fs::File::open(out)
                    .and_then(|d| d.sync_all())
                    .map_err(io(out))?;
                std::fs::remove_dir_all(&self.dir).map_err(io(&self.dir))?;
                out.clone()
            }
        };
        for w in &mut self.written {
            w.path = out.join(w.path.file_name().unwrap_or_default());
        }
        Ok(())
    }

    /// The directory the dataset is for.
    fn out(&self) -> &Path {
        match &self.place {
            Placing::Rename(out) | Placing::MoveInto(out) => out,
        }
    }

    /// Objects written so far, including the partition being filled.
    pub fn objects(&self) -> usize {
        self.written.iter().map(|w| w.objects).sum::<usize>() + self.current.len()
    }

    fn capacity_for(&self, image_size: Option<(usize, usize)>) -> Result<usize, DatasetError> {
        match self.split {
            PartitionBy::Objects(n) => Ok(n),
            PartitionBy::Bytes(bytes) => {
                let per_object = partition::bytes_per_object(image_size) as u64;
                let n = bytes.saturating_sub(HEADER_BUDGET) / per_object;
                if n == 0 {
                    return Err(DatasetError::SizeTooSmall { bytes, per_object });
                }
                Ok(n as usize)
            }
        }
    }

    fn flush(&mut self) -> Result<(), DatasetError> {
        if self.current.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(partition_file_name(self.written.len()));
        let full = std::mem::replace(
            &mut self.current,
            Partition::new(self.meta.clone(), Vec::new()),
        );
        partition::write_partition(&path, &full)?;
        let bytes = std::fs::metadata(&path)
            .map_err(|source| DatasetError::Io {
                path: path.clone(),
                error: source,
            })?
            .len();
        self.written.push(WrittenPartition {
            path,
            objects: full.len(),
            bytes,
        });
        Ok(())
    }
}

impl Drop for PartitionSink {
    /// A sink given up (an error before `finish`) leaves nothing behind.
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn describe_size(size: Option<(usize, usize)>) -> String {
    size.map_or("none (catalog only)".into(), |(h, w)| format!("{h}x{w}"))
}

/// Re-splits the partitions `inputs` (in order) into `out`, keeping object order.
/// `out` must hold no partitions yet, so the input can never be overwritten.
///
/// `progress` is told how many input bytes have been read so far.
pub fn repartition(
    inputs: &[PathBuf],
    out: &Path,
    split: PartitionBy,
    mut progress: impl FnMut(u64),
) -> Result<Vec<WrittenPartition>, DatasetError> {
    let mut bytes_done = 0;
    let mut sink: Option<PartitionSink> = None;
    for input in inputs {
        let file = PartitionFile::open(input)?;
        let catalog = file.catalog();
        let sink = match &mut sink {
            Some(s) => s,
            None => sink.insert(PartitionSink::create(out, split, catalog.meta.clone())?),
        };
        let image_size = file.image_size();
        let per_object = file.file_bytes() / file.len() as u64;
        for i in 0..file.len() {
            let pixels = file.images(i..i + 1);
            let image = image_size.map(|(h, w)| (pixels.as_slice(), h, w));
            let source = &catalog.sources[catalog.source[i] as usize];
            sink.push(catalog.row(i), source, image)
                .map_err(|e| match e {
                    DatasetError::Incompatible { problem, .. } => DatasetError::Incompatible {
                        path: input.clone(),
                        problem,
                    },
                    other => other,
                })?;
            if i % 256 == 255 {
                progress(bytes_done + per_object * (i as u64 + 1));
            }
        }
        bytes_done += file.file_bytes();
        progress(bytes_done);
    }
    match sink {
        Some(s) => s.finish(),
        None => Err(DatasetError::NoPartitions(out.to_path_buf())),
    }
}
