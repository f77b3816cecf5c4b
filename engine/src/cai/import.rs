//! Converting CAI `.pt` partitions into CosmicAI partitions, file by file: each
//! `FILE.pt` becomes `FILE.safetensors`, and one already there (readable, and
//! converted from this very file: its size and time are kept in the partition)
//! is kept, so an interrupted import simply runs again; a `.pt` written again
//! under its name is converted again.

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
    /// Model checkpoints met among the files (a checkpoint kept beside its data),
    /// left out, with why each is no partition.
    pub checkpoints: Vec<(PathBuf, String)>,
}

fn fail(path: &Path, problem: impl Into<String>) -> CaiError {
    CaiError {
        file: path.display().to_string(),
        problem: problem.into(),
        stopped: false,
    }
}

fn is_pt(path: &Path) -> bool {
    path.is_file() && super::is_cai_key(&path.to_string_lossy())
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
    on_file: impl FnMut(&Path, u64),
) -> Result<ImportReport, CaiError> {
    let mut on_file = on_file;
    import_up_to(
        inputs,
        out,
        source,
        class,
        None,
        |file, size, _| on_file(file, size),
        &|| true,
    )
}

/// Where `file` is converted to under `out`: `STEM.safetensors`.
fn target_in(out: &Path, file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or_else(|| "partition".into(), |s| s.to_string_lossy());
    out.join(format!("{stem}.safetensors"))
}

/// Whether `target` is `file` converted, from this very file (same size and
/// time): a `.pt` written again under its name (a new split) is converted again.
/// `stamp` is the file's [`stamp_of`].
fn converted_already(file: &Path, stamp: &str, target: &Path) -> bool {
    PartitionFile::open(target).is_ok_and(|done| {
        let details = &done.catalog().sources;
        if details.iter().any(|s| s.detail.contains(STAMPED)) {
            details.iter().any(|s| s.detail.ends_with(stamp))
        } else {
            // Converted before stamps were kept: current if written after the `.pt`.
            modified(target) >= modified(file)
        }
    })
}

/// [`import`], stopping once `limit` partitions are there (written now or
/// before), in the files' order: a run with a `file_limit` reads no more.
fn import_up_to(
    inputs: &[PathBuf],
    out: &Path,
    source: Option<&str>,
    class: Class,
    limit: Option<usize>,
    mut on_file: impl FnMut(&Path, u64, bool),
    go_on: &dyn Fn() -> bool,
) -> Result<ImportReport, CaiError> {
    let files = cai_files(inputs)?;
    // Each file becomes STEM.safetensors: two of one stem (`p.pt` and `p.pth`, or
    // two folders' `p.pt`) would make the second look converted already and
    // lose its objects, so they are refused before anything is written.
    let target_of = |file: &Path| target_in(out, file);
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
    // A file converted before with another class would keep it: said before any is written.
    if class != Class::Unknown {
        for file in &files {
            let target = target_of(file);
            let Ok(done) = PartitionFile::open(&target) else {
                continue;
            };
            if let Some(&before) = done.catalog().class.first()
                && before != class
            {
                return Err(fail(
                    file,
                    format!(
                        "{} was converted with class {before}, not {class}: remove it, or import into another folder, to convert it again",
                        target.display()
                    ),
                ));
            }
        }
    }
    // A folder made here and left empty by a failure goes again: no empty
    // `cai-partitions/` is left in the user's data for a file that would not read.
    let made = !out.is_dir();
    crate::partition::create_dir_synced(out)
        .map_err(|e| fail(out, format!("cannot create: {e}")))?;
    let mut left_empty = RemovedIfEmpty(made.then_some(out));
    let mut report = ImportReport::default();
    for file in &files {
        if limit.is_some_and(|n| report.written.len() + report.skipped >= n) {
            break;
        }
        // Stopped between files: those converted stay, and count next time.
        if !go_on() {
            return Err(CaiError {
                stopped: true,
                ..fail(
                    file,
                    format!(
                        "stopped (cancelled) before this file; {} converted, {} found converted, the rest left for the next run",
                        report.written.len(),
                        report.skipped
                    ),
                )
            });
        }
        let size = std::fs::metadata(file).map_or(0, |m| m.len());
        let target = target_of(file);
        let stamp = stamp_of(file);
        if converted_already(file, &stamp, &target) {
            report.skipped += 1;
            on_file(file, size, false);
            continue;
        }
        let partition = match read_cai_partition(file, source, class) {
            Ok(partition) => partition,
            Err(e) => match model_checkpoint(file) {
                Some(why) => {
                    report.checkpoints.push((file.clone(), why));
                    on_file(file, size, false);
                    continue;
                }
                None => return Err(e),
            },
        };
        let mut partition = partition;
        for s in &mut partition.sources {
            s.detail = format!("{}; {stamp}", s.detail);
        }
        write_partition(&target, &partition).map_err(|e| fail(&target, e.to_string()))?;
        report.written.push(WrittenPartition {
            path: target.clone(),
            objects: partition.len(),
            bytes: std::fs::metadata(&target).map_or(0, |m| m.len()),
        });
        on_file(file, size, true);
    }
    if let [(file, why), ..] = &report.checkpoints[..]
        && report.written.is_empty()
        && report.skipped == 0
    {
        return Err(fail(
            file,
            format!(
                "a model checkpoint, not a CAI partition ({why}); no partition was among the files: give it to `cosmicai model import` or `--model astromae:FILE`"
            ),
        ));
    }
    left_empty.0 = None;
    Ok(report)
}

/// Why `file` is a model's weights rather than a data partition (its tensors are
/// named, as a state_dict's or a module's are, and no TensorDataset holds them),
/// or `None` when it is neither, or broken.
pub(crate) fn model_checkpoint(file: &Path) -> Option<String> {
    let pt = cosmicai_model::pytorch::PtFile::open(file).ok()?;
    let not_dataset = pt.dataset_tensors().err()?;
    pt.named_tensors().ok()?;
    Some(not_dataset.problem)
}

/// The data prefix a run reads for `prefix` under `root`: `prefix` itself, or,
/// when that folder holds CAI `.pt` files and no partitions of ours, its
/// [`CONVERTED`] folder, filled first (files already converted are skipped;
/// with a `file_limit`, the first that many partitions in name order, the ones
/// Initialize plans). `on_convert(files, folder)` is told before a conversion starts.
///
/// Converting once beats reading the pickles in every rank of every run: ranks
/// then memory-map safetensors and read only their rows, as for any dataset, and
/// the conversion runs at about the speed of a copy.
pub fn converted_prefix(
    root: &Path,
    prefix: &str,
    file_limit: Option<usize>,
    on_convert: impl FnOnce(usize, &Path),
    on_checkpoint: impl FnMut(&Path),
) -> Result<String, CaiError> {
    converted_prefix_with(
        root,
        prefix,
        file_limit,
        on_convert,
        on_checkpoint,
        |_, _| {},
        &|| true,
    )
}

/// [`converted_prefix`], told of each file as it is converted (its `.pt` and
/// size): a bar for conversions of gigabytes. `go_on` is asked before each
/// file: a cancelled run stops converting there.
pub fn converted_prefix_with(
    root: &Path,
    prefix: &str,
    file_limit: Option<usize>,
    on_convert: impl FnOnce(usize, &Path),
    mut on_checkpoint: impl FnMut(&Path),
    on_file: impl FnMut(&Path, u64),
    go_on: &dyn Fn() -> bool,
) -> Result<String, CaiError> {
    // Only a relative path down the tree: the prefix may come from a request.
    if !Path::new(prefix)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Ok(prefix.to_string()); // Initialize names what is wrong with it
    }
    let folder = root.join(prefix);
    let listed: Vec<PathBuf> = std::fs::read_dir(&folder).map_or_else(
        |_| Vec::new(),
        |d| d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
    );
    let pt = listed
        .iter()
        .filter(|p| super::is_cai_key(&p.to_string_lossy()))
        .count();
    // A safetensors checkpoint kept beside CAI's files is not a partition of ours.
    let ours = listed.iter().any(|p| {
        p.extension()
            .is_some_and(|x| x == crate::partition::EXTENSION)
            && PartitionFile::open(p).is_ok()
    });
    if pt == 0 || ours {
        return Ok(prefix.to_string());
    }
    let out = folder.join(CONVERTED);
    // Told only of files to convert now: a run over a folder converted before
    // says nothing and shows no bar.
    let files = cai_files(std::slice::from_ref(&folder))?;
    let pending = files
        .iter()
        .take(file_limit.unwrap_or(usize::MAX))
        .filter(|file| !converted_already(file, &stamp_of(file), &target_in(&out, file)))
        .count();
    if pending > 0 {
        on_convert(pending, &out);
    }
    let mut on_file = on_file;
    let report = import_up_to(
        &[folder],
        &out,
        None,
        Class::Unknown,
        file_limit,
        |file, size, converted| {
            if converted {
                on_file(file, size);
            }
        },
        go_on,
    )?;
    for (file, _) in &report.checkpoints {
        on_checkpoint(file);
    }
    remove_orphans(&out, &files);
    Ok(Path::new(prefix)
        .join(CONVERTED)
        .to_string_lossy()
        .into_owned())
}

/// A folder removed when dropped, where it is still empty (`remove_dir` leaves
/// one that holds anything).
struct RemovedIfEmpty<'a>(Option<&'a Path>);

impl Drop for RemovedIfEmpty<'_> {
    fn drop(&mut self) {
        if let Some(folder) = self.0 {
            let _ = std::fs::remove_dir(folder);
        }
    }
}

/// Removes the partitions in `out` converted from a `.pt` no longer among
/// `files` (the folder split again into fewer files): the plan lists the whole
/// folder, and would run them beside the new split, counting objects twice.
/// Only files this conversion wrote (stamped) are touched: they are copies of
/// data that is gone, never the only copy of anything.
fn remove_orphans(out: &Path, files: &[PathBuf]) {
    let current: std::collections::HashSet<PathBuf> =
        files.iter().map(|file| target_in(out, file)).collect();
    let Ok(listed) = std::fs::read_dir(out) else {
        return;
    };
    let mut removed = false;
    for path in listed.filter_map(|e| e.ok().map(|e| e.path())) {
        let ours = path
            .extension()
            .is_some_and(|x| x == crate::partition::EXTENSION)
            && !current.contains(&path)
            && PartitionFile::open(&path).is_ok_and(|done| {
                done.catalog()
                    .sources
                    .iter()
                    .any(|s| s.detail.contains(STAMPED))
            });
        if ours && std::fs::remove_file(&path).is_ok() {
            removed = true;
        }
    }
    if removed && let Ok(dir) = std::fs::File::open(out) {
        let _ = dir.sync_all();
    }
}

/// Marks a stamp in a converted partition's source detail.
const STAMPED: &str = " bytes modified at ";

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// What a conversion keeps of its `.pt` file, to know it again: its size and
/// modification time.
fn stamp_of(file: &Path) -> String {
    let meta = std::fs::metadata(file).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("from {}{STAMPED}{modified} ns", meta.map_or(0, |m| m.len()))
}
