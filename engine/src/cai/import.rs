//! Converting CAI `.pt` partitions into CosmicAI partitions, file by file: each
//! `FILE.pt` becomes `FILE.safetensors`, and one already there (and readable) is
//! kept, so an interrupted import simply runs again.

use super::{CaiError, read_cai_partition};
use crate::dataset::WrittenPartition;
use crate::partition::{PartitionFile, write_partition};
use cosmicai_shared::Class;
use std::path::{Component, Path, PathBuf};

/// The folder, inside a CAI data folder, that a run converts its `.pt` files into.
pub const CONVERTED: &str = "cai-partitions";

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub written: Vec<WrittenPartition>,
    /// Files whose partition was already there.
    pub skipped: usize,
}

fn fail(path: &Path, problem: impl Into<String>) -> CaiError {
    CaiError {
        file: path.display().to_string(),
        problem: problem.into(),
    }
}

fn is_pt(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|x| x == "pt" || x == "pth")
}

/// The `.pt` files named by `inputs` (folders give their `.pt` files, sorted),
/// each once: a file named twice (`dir dir/p.pt`, or through a link) is one file.
pub fn cai_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, CaiError> {
    let mut seen = std::collections::HashSet::new();
    let mut once = Vec::new();
    for file in named_files(inputs)? {
        let same = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if seen.insert(same) {
            once.push(file);
        }
    }
    Ok(once)
}

fn named_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, CaiError> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| fail(input, format!("cannot read this folder: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_pt(p))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(fail(input, "no .pt files in this folder"));
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(fail(input, "no such file or folder"));
        }
    }
    Ok(files)
}

/// Converts the CAI `.pt` files of `inputs` into `out`; `on_file(file, bytes)`
/// follows along (for a progress bar).
pub fn import(
    inputs: &[PathBuf],
    out: &Path,
    source: Option<&str>,
    class: Class,
    mut on_file: impl FnMut(&Path, u64),
) -> Result<ImportReport, CaiError> {
    let files = cai_files(inputs)?;
    // Each file becomes STEM.safetensors: two of one stem (`p.pt` and `p.pth`, or
    // two folders' `p.pt`) would make the second look converted already and
    // lose its objects, so they are refused before anything is written.
    let target_of = |file: &Path| {
        let stem = file
            .file_stem()
            .map_or_else(|| "partition".into(), |s| s.to_string_lossy());
        out.join(format!("{stem}.safetensors"))
    };
    let mut targets = std::collections::HashMap::new();
    for file in &files {
        if let Some(other) = targets.insert(target_of(file), file) {
            return Err(fail(
                file,
                format!(
                    "{} would also become {}: give the files different names",
                    other.display(),
                    target_of(file).display()
                ),
            ));
        }
    }
    crate::partition::create_dir_synced(out)
        .map_err(|e| fail(out, format!("cannot create: {e}")))?;
    let mut report = ImportReport::default();
    for file in &files {
        let size = std::fs::metadata(file).map_or(0, |m| m.len());
        let target = target_of(file);
        if PartitionFile::open(&target).is_ok() {
            report.skipped += 1;
            on_file(file, size);
            continue;
        }
        let partition = read_cai_partition(file, source, class)?;
        write_partition(&target, &partition).map_err(|e| fail(&target, e.to_string()))?;
        report.written.push(WrittenPartition {
            path: target.clone(),
            objects: partition.len(),
            bytes: std::fs::metadata(&target).map_or(0, |m| m.len()),
        });
        on_file(file, size);
    }
    Ok(report)
}

/// The data prefix a run reads for `prefix` under `root`: `prefix` itself, or,
/// when that folder holds CAI `.pt` files and no partitions of ours, its
/// [`CONVERTED`] folder, filled first (files already converted are skipped).
/// `on_convert(files, folder)` is told before a conversion starts.
///
/// Converting once beats reading the pickles in every rank of every run: ranks
/// then memory-map safetensors and read only their rows, as for any dataset, and
/// the conversion runs at about the speed of a copy.
pub fn converted_prefix(
    root: &Path,
    prefix: &str,
    on_convert: impl FnOnce(usize, &Path),
) -> Result<String, CaiError> {
    // Only a relative path down the tree: the prefix may come from a request.
    if !Path::new(prefix)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Ok(prefix.to_string()); // Initialize names what is wrong with it
    }
    let folder = root.join(prefix);
    let listed = |ext: &str| {
        std::fs::read_dir(&folder).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count()
        })
    };
    let pt = listed("pt") + listed("pth");
    if pt == 0 || listed("safetensors") > 0 {
        return Ok(prefix.to_string());
    }
    let out = folder.join(CONVERTED);
    on_convert(pt, &out);
    import(&[folder], &out, None, Class::Unknown, |_, _| {})?;
    Ok(Path::new(prefix)
        .join(CONVERTED)
        .to_string_lossy()
        .into_owned())
}
