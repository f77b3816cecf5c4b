//! Selections: the objects that a box on the sky map or a cut on the colour plots
//! picked, written as a dataset (`selections/NAME/`, magnitudes only) that a run
//! takes as its `data_prefix`. So "launch a run on these" is the same pipeline,
//! over a smaller dataset.
//!
//! A selection is named by its objects and the served data, so asking twice
//! writes once. The folder is written under a temporary name and renamed into
//! place, so a power cut leaves either the whole selection or none of it. At most
//! [`KEPT`] are kept: a new one removes the oldest, so repeated requests cannot
//! fill the disk.

use super::objects::ObjectIndex;
use anyhow::{Context, Result};
use cosmicai_engine::dataset::{PartitionSink, SplitBy};
use cosmicai_engine::partition::PartitionMeta;
use cosmicai_shared::Class;
use cosmicai_shared::api::{ClassCounts, Selection};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The folder under the data directory that holds the selections.
pub const DIR: &str = "selections";
/// Selections kept on disk; a new one beyond this removes the least recently asked for.
pub const KEPT: usize = 32;
/// Most ids one request may name (the whole bundled sky is 37k objects).
pub const MAX_IDS: usize = 200_000;
/// At least this many partitions when there are enough objects, so a run's
/// world size has something to spread.
const MIN_PARTITIONS: usize = 8;
/// Objects per partition at most (as `cosmicai partition` makes for the catalog).
const MAX_PER_PARTITION: usize = 4096;

/// One selection is written at a time, so a leftover temporary folder is always
/// a crashed write's, never a neighbour's in progress.
static WRITING: Mutex<()> = Mutex::new(());

/// Writes the objects at `positions` of the index (each once, in index order) as
/// a dataset under `data_dir/selections/`, or finds it there already.
pub fn create(
    data_dir: &Path,
    index: &ObjectIndex,
    positions: &[usize],
    data_version: u64,
) -> Result<Selection> {
    anyhow::ensure!(!positions.is_empty(), "the selection holds no objects");
    let name = name_of(index, positions, data_version);
    let root = data_dir.join(DIR);
    let dir = root.join(&name);
    let per_partition = positions
        .len()
        .div_ceil(MIN_PARTITIONS)
        .clamp(1, MAX_PER_PARTITION);
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    if dir.is_dir() {
        // Asked for again: it is now the most recent.
        touch(&dir);
    } else {
        std::fs::create_dir_all(&root).with_context(|| format!("{}", root.display()))?;
        remove_leftovers(&root);
        let temp = root.join(format!(".tmp-{name}"));
        let _ = std::fs::remove_dir_all(&temp);
        write(index, positions, &temp, per_partition)
            .with_context(|| format!("writing the selection {}", temp.display()))?;
        std::fs::rename(&temp, &dir).with_context(|| format!("{}", dir.display()))?;
        std::fs::File::open(&root)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("{}", root.display()))?;
        evict(&root, &dir);
    }
    let mut counts = ClassCounts::default();
    for &i in positions {
        match index.objects[i].summary.class {
            Class::Galaxy => counts.galaxy += 1,
            Class::Star => counts.star += 1,
            Class::Qso => counts.qso += 1,
            Class::Unknown => counts.unknown += 1,
        }
    }
    Ok(Selection {
        data_prefix: format!("{DIR}/{name}"),
        objects: positions.len(),
        partitions: positions.len().div_ceil(per_partition),
        counts,
    })
}

/// `sel-` and a hash of the objects' ids and the served data's version.
fn name_of(index: &ObjectIndex, positions: &[usize], data_version: u64) -> String {
    let mut bytes = data_version.to_le_bytes().to_vec();
    for &i in positions {
        bytes.extend_from_slice(&index.objects[i].summary.id.to_le_bytes());
    }
    format!("sel-{:016x}", super::fnv(&bytes))
}

/// The objects' catalog rows (magnitudes, position, labels; no images, since
/// selected objects can mix image sizes and catalog-only ones).
fn write(index: &ObjectIndex, positions: &[usize], dir: &Path, per_partition: usize) -> Result<()> {
    let meta = PartitionMeta::default();
    let mut sink = PartitionSink::create(dir, SplitBy::Objects(per_partition), meta)?;
    for &i in positions {
        let (row, source) = index.catalog_row(i);
        sink.push(row, source, None)?;
    }
    sink.finish()?;
    Ok(())
}

/// Marks a selection as just used (its folder's modification time).
fn touch(dir: &Path) {
    let now = std::time::SystemTime::now();
    if let Ok(file) = std::fs::File::open(dir) {
        let _ = file.set_modified(now);
    }
}

/// Temporary folders a crash left behind.
fn remove_leftovers(root: &Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes the least recently used selections beyond [`KEPT`], never `keep`.
fn evict(root: &Path, keep: &Path) {
    let mut all: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sel-"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if all.len() <= KEPT {
        return;
    }
    all.sort();
    let extra = all.len() - KEPT;
    for (_, path) in all.into_iter().filter(|(_, p)| p != keep).take(extra) {
        if let Err(e) = std::fs::remove_dir_all(&path) {
            eprintln!(
                "warning: could not remove the old selection {}: {e}",
                path.display()
            );
        }
    }
}
