//! Selections: the objects that a box on the sky map or a cut on the colour plots
//! picked, written as a dataset (`selections/NAME/`, magnitudes only) that a run
//! takes as its `data_prefix`. So "launch a run on these" is the same pipeline,
//! over a smaller dataset.
//!
//! A selection is named by a SHA-256 of its rows (ids, positions, magnitudes,
//! labels, sources), so asking twice writes once and rebuilt data gets a new
//! name. The folder is written under a temporary name and renamed into place, so
//! a power cut leaves either the whole selection or none of it. At most [`KEPT`]
//! are kept, each of at most [`MAX_OBJECTS`]: a new one removes the least recently
//! used (a run launched on one marks it used), so requests cannot fill the disk.

use super::objects::ObjectIndex;
use anyhow::{Context, Result};
use cosmicai_engine::dataset::{PartitionBy, PartitionSink};
use cosmicai_engine::partition::{PartitionMeta, create_dir_synced, rename_synced};
use cosmicai_shared::Class;
use cosmicai_shared::api::{ClassCounts, Selection};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The folder under the data directory that holds the selections.
pub const DIR: &str = "selections";
/// Selections kept on disk; a new one beyond this removes the least recently asked for.
pub const KEPT: usize = 32;
/// Most ids one request may name, and most objects one selection may hold (the
/// whole bundled sky is 37k objects).
pub const MAX_IDS: usize = 200_000;
pub const MAX_OBJECTS: usize = MAX_IDS;
/// A temporary folder older than this is a crashed write's (a write takes seconds).
const STALE: std::time::Duration = std::time::Duration::from_secs(3600);
/// At least this many partitions when there are enough objects, so a run's
/// world size has something to spread.
const MIN_PARTITIONS: usize = 8;
/// Objects per partition at most (as `cosmicai partition` makes for the catalog).
const MAX_PER_PARTITION: usize = 4096;

/// One selection is written at a time in this process. Another server on the same
/// data directory writes under its own temporary names (they carry the pid), and
/// only temporary folders older than [`STALE`] are taken for a crash's.
static WRITING: Mutex<()> = Mutex::new(());

/// Writes the objects at `positions` of the index (each once, in index order) as
/// a dataset under `data_dir/selections/`, or finds it there already.
pub fn create(
    data_dir: &Path,
    index: &ObjectIndex,
    positions: &[usize],
    in_use: &[String],
) -> Result<Selection> {
    anyhow::ensure!(!positions.is_empty(), "the selection holds no objects");
    let name = name_of(index, positions);
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
        // The new folder's own entry survives a power cut too.
        create_dir_synced(&root).with_context(|| format!("{}", root.display()))?;
        // Temporary folders a crash left behind (older than STALE).
        cosmicai_engine::store::sweep_stale_temporaries(&root, STALE);
        let temp = root.join(format!(".tmp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&temp);
        write(index, positions, &temp, per_partition)
            .with_context(|| format!("writing the selection {}", temp.display()))?;
        rename_synced(&temp, &dir).with_context(|| format!("{}", dir.display()))?;
        evict(&root, &dir, in_use);
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

/// `sel-` and 128 bits of a SHA-256 of the rows the dataset will hold.
fn name_of(index: &ObjectIndex, positions: &[usize]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for &i in positions {
        let (row, source) = index.catalog_row(i);
        hash.update(row.object_id.to_le_bytes());
        hash.update(row.ra.to_le_bytes());
        hash.update(row.dec.to_le_bytes());
        for m in row.magnitudes {
            hash.update(m.to_le_bytes());
        }
        hash.update(row.redshift.to_le_bytes());
        hash.update(row.class.name().as_bytes());
        hash.update(source.name.as_bytes());
        hash.update([0, source.provenance as u8]);
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sel-{hex}")
}

/// Marks the selection a run takes as just used, so that it is the last to go.
pub fn mark_used(data_dir: &Path, data_prefix: &str) {
    let prefix = data_prefix.trim_matches('/');
    if let Some(name) = prefix.strip_prefix(&format!("{DIR}/"))
        && name.starts_with("sel-")
        && !name.contains(['/', '.'])
    {
        touch(&data_dir.join(DIR).join(name));
    }
}

/// The objects' catalog rows (magnitudes, position, labels; no images, since
/// selected objects can mix image sizes and catalog-only ones).
fn write(index: &ObjectIndex, positions: &[usize], dir: &Path, per_partition: usize) -> Result<()> {
    let meta = PartitionMeta::default();
    let mut sink = PartitionSink::create(dir, PartitionBy::Objects(per_partition), meta)?;
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

/// Removes the least recently used selections beyond [`KEPT`], never `keep` nor
/// one that a running run reads (`in_use`: data prefixes such as `selections/sel-…`).
fn evict(root: &Path, keep: &Path, in_use: &[String]) {
    let used = |path: &Path| {
        path.file_name().is_some_and(|name| {
            let prefix = format!("{DIR}/{}", name.to_string_lossy());
            in_use.iter().any(|p| p.trim_matches('/') == prefix)
        })
    };
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
    for (_, path) in all
        .into_iter()
        .filter(|(_, p)| p != keep && !used(p))
        .take(extra)
    {
        // Out of the selections' names first: a removal cut short (a power
        // cut, an error) leaves a leftover to clear, never a selection with
        // files missing that a later request would take for whole.
        let Some(name) = path.file_name() else {
            continue;
        };
        let doomed = root.join(format!(".tmp-evicted-{}", name.to_string_lossy()));
        let removed = rename_synced(&path, &doomed).and_then(|()| std::fs::remove_dir_all(&doomed));
        if let Err(e) = removed {
            crate::say!(
                "warning: could not remove the old selection {}: {e}",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_the_oldest_but_never_one_a_running_run_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // KEPT + 2 selections, oldest first (their names break equal times).
        let dirs: Vec<PathBuf> = (0..KEPT + 2)
            .map(|i| {
                let d = root.join(format!("sel-{i:03}"));
                std::fs::create_dir(&d).unwrap();
                d
            })
            .collect();
        let newest = dirs.last().unwrap();
        evict(root, newest, &[format!("{DIR}/sel-000/")]);
        assert!(dirs[0].is_dir(), "a running run's selection was evicted");
        assert!(
            !dirs[1].exists() && !dirs[2].exists(),
            "the next two oldest stay"
        );
        assert!(dirs[3..].iter().all(|d| d.is_dir()));
        // Nothing left under another name either.
        assert_eq!(std::fs::read_dir(root).unwrap().count(), KEPT);
    }
}
