//! Initialize: list partitions, apply `file_limit`, plan ranks, write the payload.

use super::{Payload, PayloadOf, PipelineError, Stores, payload_key};
use crate::partition::EXTENSION;
use crate::store::ObjectStore;
use cosmicai_shared::run::RunRequest;
use std::path::Path;

/// CAI's initializer: rank r reads the next `ceil(files left / ranks left)`
/// files, in order, so ranks differ by at most one file (10 files on 4 ranks:
/// 3, 3, 2, 2). With fewer files than ranks, CAI hands files round again
/// (`rank % files`), which counts their objects twice in the combined results;
/// here the extra ranks get none and exit at once.
pub fn plan_ranks(files: &[String], world_size: usize) -> Vec<Vec<String>> {
    let mut start = 0;
    (0..world_size)
        .map(|r| {
            let take = (files.len() - start).div_ceil(world_size - r);
            let keys = files[start..start + take].to_vec();
            start += take;
            keys
        })
        .collect()
}

/// Validates the request, lists and plans the partitions, and writes the payload.
pub fn initialize(
    store: &dyn ObjectStore,
    request: &RunRequest,
    run_id: &str,
) -> Result<Payload, PipelineError> {
    initialize_with(Stores::one(store), request, run_id, |_| Ok(()))
}

/// [`initialize`] from the partitions in `stores.data`, its payload written to
/// `stores.results`, with `check` of the plan before anything is written (the AWS
/// Initialize refuses ranks that could outlive their execution): a refused plan
/// leaves the result path unused.
pub fn initialize_with(
    stores: Stores,
    request: &RunRequest,
    run_id: &str,
    check: impl FnOnce(&Payload) -> Result<(), PipelineError>,
) -> Result<Payload, PipelineError> {
    let payload = plan(stores.data, request, run_id)?;
    let store = stores.results;
    check(&payload)?;
    if store
        .local_path(&request.result_path)
        .is_some_and(|path| path.is_file())
    {
        return Err(PipelineError::Invalid(vec![format!(
            "result_path '{}' is a file: give a folder, new or empty, for the run's results",
            request.result_path
        )]));
    }
    // A result path holds one run: reusing it would mix an older run's rank files
    // and measures into this one's summary.
    let key = payload_key(&request.result_path);
    match store.get(&key) {
        Ok(bytes) => return claimed_before(&bytes, request, run_id),
        Err(crate::store::StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    result_path_free(store, &request.result_path)?;
    let json =
        serde_json::to_vec_pretty(&payload).map_err(|e| PipelineError::Other(e.to_string()))?;
    // Claimed in one step: two runs started on one result path at once would
    // otherwise both see it free, and the last payload written would win.
    if !store.put_if_absent(&key, &json)? {
        return claimed_before(&store.get(&key)?, request, run_id);
    }
    Ok(payload)
}

/// The payload another Initialize wrote at this result path: this run's own
/// (Initialize retried after its answer was lost: it goes on with the plan it
/// wrote), or another run's, which is refused.
fn claimed_before(
    bytes: &[u8],
    request: &RunRequest,
    run_id: &str,
) -> Result<Payload, PipelineError> {
    let stored = serde_json::from_slice::<Payload>(bytes);
    // Compared as written and read back: a float may not survive JSON exactly.
    let written = serde_json::to_vec(request)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<RunRequest>(&bytes).ok());
    if let Ok(stored) = &stored
        && stored.run_id == run_id
        && written.as_ref() == Some(&stored.request)
    {
        return Ok(stored.clone());
    }
    let owner = stored
        .map(|p| format!("run {}", p.run_id))
        .unwrap_or_else(|_| "another run".into());
    Err(PipelineError::Invalid(vec![format!(
        "result_path '{}' already holds the results of {owner}: give each run its own result_path (the CLI's --result-path)",
        request.result_path
    )]))
}

/// Refuses a result path inside another run's (its rank files would overwrite
/// that run's measures) or one that holds files already (a run's, or CAI's,
/// which this run's summary would mix with its own).
fn result_path_free(store: &dyn ObjectStore, result_path: &str) -> Result<(), PipelineError> {
    let parts: Vec<&str> = result_path.split('/').filter(|p| !p.is_empty()).collect();
    for end in 1..parts.len() {
        let above = parts[..end].join("/");
        let owner = match super::read_payload(store, &above, None)? {
            PayloadOf::Missing => continue,
            PayloadOf::Its(p) => format!("run {}", p.run_id),
            PayloadOf::Unreadable(_) | PayloadOf::OtherRun(_) => "another run".into(),
        };
        return Err(PipelineError::Invalid(vec![format!(
            "result_path '{result_path}' lies inside '{above}', the result path of {owner}: give a result_path outside every other run's"
        )]));
    }
    let held = store.list(result_path)?;
    // Its own payload.json, written meanwhile by a run racing for it (an
    // earlier attempt of this very Initialize, say, with its plan.json): left
    // to the claim that follows, which tells the two apart.
    let own = payload_key(result_path);
    if held.iter().any(|o| o.key == own) {
        return Ok(());
    }
    // Runs' results below it: the summary of this one would read them.
    if let Some(below) = held.iter().find(|o| o.key.ends_with("/payload.json")) {
        return Err(PipelineError::Invalid(vec![format!(
            "result_path '{result_path}' holds other runs' results below it ('{}'): give each run a result_path of its own",
            below.key.trim_end_matches("payload.json")
        )]));
    }
    if let Some(first) = held.first() {
        return Err(PipelineError::Invalid(vec![format!(
            "result_path '{result_path}' already holds {} files ('{}' first) but no run's payload.json: give each run a new, empty result_path",
            held.len(),
            first.key
        )]));
    }
    Ok(())
}

/// The run's own weights file, which a prefix may hold beside the partitions
/// (CAI's payload lists a whole bucket with `data_prefix ""`): worked out once
/// per plan, then asked of every listed key.
struct WeightsFile {
    /// Its key in the run's bucket.
    key: String,
    /// The file itself, for a local run that names it by path.
    local: Option<std::path::PathBuf>,
}

impl WeightsFile {
    fn of(request: &RunRequest) -> Option<Self> {
        let spec = request.model_spec().ok()?;
        let weights = spec.weights()?;
        let key = match weights.strip_prefix("s3://") {
            // Only weights in the bucket listed can be among its files.
            Some(url) => match url.split_once('/') {
                Some((bucket, key)) if bucket == request.partitions_bucket() => key,
                _ => return None,
            },
            // A bare key names `bucket`, which is not the one listed.
            None if request.partitions_bucket() != request.bucket => return None,
            None => weights,
        }
        .trim_start_matches('/')
        .to_string();
        let local = std::fs::canonicalize(weights).ok();
        Some(WeightsFile { key, local })
    }

    fn is(&self, store: &dyn ObjectStore, key: &str) -> bool {
        if key == self.key {
            return true;
        }
        // The same file under another name: compared only where the names match.
        let Some(local) = &self.local else {
            return false;
        };
        local.file_name() == Path::new(key).file_name()
            && store
                .local_path(key)
                .and_then(|path| std::fs::canonicalize(path).ok())
                .is_some_and(|path| path == *local)
    }
}

/// Initialize without writing anything: the plan a run would follow (for
/// estimates), over the partitions in `store` (the request's `data_bucket`
/// where it names one).
pub fn plan(
    store: &dyn ObjectStore,
    request: &RunRequest,
    run_id: &str,
) -> Result<Payload, PipelineError> {
    let problems = request.problems();
    if !problems.is_empty() {
        return Err(PipelineError::Invalid(problems));
    }
    // No check of this build's CUDA here: the plan is made where the ranks may not
    // run (Lambda's Initialize plans CUDA runs for the Batch queue). Executors
    // that run ranks here check it (`coordinator::check_device`).
    // Results are kept out of the data: a result_path that is the data's
    // folder (or holds it) would leave no partition to read. Only where both
    // are in one bucket (data read in place from another's is not).
    let folders = |key: &str| -> Vec<String> {
        key.split('/')
            .filter(|part| !part.is_empty() && *part != ".")
            .map(str::to_string)
            .collect()
    };
    let (results, data) = (folders(&request.result_path), folders(&request.data_prefix));
    let one_bucket = request
        .data_bucket
        .as_deref()
        .is_none_or(|bucket| bucket == request.bucket);
    if one_bucket && !results.is_empty() && data.starts_with(&results) {
        return Err(PipelineError::Invalid(vec![format!(
            "result_path '{}' is where the data is (data_prefix '{}'): give the results a folder of their own",
            request.result_path, request.data_prefix
        )]));
    }
    let listing = store.list(&request.data_prefix)?;
    // Result folders (any folder holding a payload.json) hold predictions, not partitions.
    let result_dirs: Vec<String> = listing
        .iter()
        .filter_map(|o| o.key.strip_suffix("payload.json"))
        .map(str::to_string)
        .chain(std::iter::once(format!(
            "{}/",
            request.result_path.trim_end_matches('/')
        )))
        .collect();
    let weights = WeightsFile::of(request);
    let partitions = |is_partition: &dyn Fn(&str) -> bool| -> Vec<(String, u64)> {
        listing
            .iter()
            .filter(|o| is_partition(&o.key))
            .filter(|o| !result_dirs.iter().any(|d| o.key.starts_with(d.as_str())))
            .filter(|o| !weights.as_ref().is_some_and(|w| w.is(store, &o.key)))
            .map(|o| (o.key.clone(), o.size))
            .collect()
    };
    let mut files = partitions(&|key| key.ends_with(&format!(".{EXTENSION}")));
    // Model weights kept beside the data (a `model import`'s safetensors) are
    // no partition: left out, by name, where their headers are at hand here.
    let mut notes = Vec::new();
    files.retain(|(key, size)| {
        let foreign = store.local_path(key).is_some() && not_a_partition(store, key, *size);
        if foreign {
            notes.push(format!(
                "{key}: a safetensors file that is no partition (model weights?): left out of the data"
            ));
        }
        !foreign
    });
    // Else CAI's own `.pt` files, read in place by the ranks. Never both: a folder of
    // CAI's files holds their conversion too, and its objects would count twice.
    if files.is_empty() {
        files = partitions(&crate::cai::is_cai_key);
    }
    if files.is_empty() {
        // The whole store (`cosmicai run --data DIR`) is named as such.
        let searched = if request.data_prefix.is_empty() {
            store.describe()
        } else {
            format!(
                "data_prefix '{}' in {}",
                request.data_prefix,
                store.describe()
            )
        };
        return Err(PipelineError::Invalid(vec![format!(
            "{searched} holds no partition files (*.{EXTENSION}, or CAI's *.pt){}",
            notes.first().map_or(String::new(), |n| format!(" ({n})"))
        )]));
    }
    // A dataset cut short while its files were moved in is no dataset.
    if let Some(marker) = listing
        .iter()
        .find(|o| o.key.rsplit('/').next() == Some(crate::dataset::INCOMPLETE))
    {
        return Err(PipelineError::Invalid(vec![format!(
            "data_prefix '{}': '{}/' holds part of a dataset whose build or upload was cut short ({}): build or upload it again",
            request.data_prefix,
            folder_of(&marker.key),
            crate::dataset::INCOMPLETE
        )]));
    }
    // A listing goes down every folder under the prefix: two datasets there
    // (a catalog's partitions and a re-split of them) would run as one, their
    // objects counted twice, with no word of it.
    let mut folders: Vec<&str> = files.iter().map(|(k, _)| folder_of(k)).collect();
    folders.dedup();
    folders.sort_unstable();
    folders.dedup();
    if folders.len() > 1 {
        let shown: Vec<String> = folders
            .iter()
            .take(4)
            .map(|f| {
                if f.is_empty() {
                    "'./'".into()
                } else {
                    format!("'{f}/'")
                }
            })
            .collect();
        return Err(PipelineError::Invalid(vec![format!(
            "data_prefix '{}' holds partition files in {} folders ({}{}): each is read as a dataset of its own, so give one of them as data_prefix (to `cosmicai run`, as --data DATA/FOLDER)",
            request.data_prefix,
            folders.len(),
            shown.join(", "),
            if folders.len() > 4 { ", …" } else { "" }
        )]));
    }
    if request.file_limit.is_none_or(|limit| limit > files.len()) {
        notes.extend(unread_cai_files(
            store,
            request,
            &files,
            &partitions(&crate::cai::is_cai_key),
        ));
    }
    match request.file_limit {
        Some(limit) if limit > files.len() => notes.push(format!(
            "file_limit {limit}: data_prefix '{}' holds {}, and all are read",
            request.data_prefix,
            cosmicai_shared::counted(files.len(), "partition file")
        )),
        Some(limit) => files.truncate(limit),
        None => {}
    }
    if request.world_size > files.len() {
        notes.push(format!(
            "world_size {} over {}: {} planned none and read nothing",
            request.world_size,
            cosmicai_shared::counted(files.len(), "partition file"),
            cosmicai_shared::counted(request.world_size - files.len(), "rank")
        ));
    }
    let keys: Vec<String> = files.iter().map(|(k, _)| k.clone()).collect();
    let reads_cutouts = matches!(
        request.model_spec(),
        Ok(cosmicai_shared::model::ModelSpec::AstroMae(_))
    );
    // An image model's plan reads a few headers once (a GET or two each on
    // S3): a catalog's partitions (magnitudes alone) would fail every rank,
    // each one paid for, so they are refused here; the rest bound the bytes an
    // object takes.
    let headers = if reads_cutouts {
        sampled_headers(store, &files)
    } else {
        Vec::new()
    };
    if let Some((key, _, _)) = headers
        .iter()
        .find(|(_, _, header)| is_partition(header) && header.get("images").is_none())
    {
        return Err(PipelineError::Invalid(vec![format!(
            "{key} holds no cutouts (a catalog's magnitudes alone), and AstroMAE predicts from images (5 bands, at least 32x32): give data with cutouts, or run photoz on these"
        )]));
    }
    Ok(Payload {
        run_id: run_id.to_string(),
        request: request.clone(),
        ranks: plan_ranks(&keys, request.world_size),
        bytes_per_object: fewest_bytes_per_object(&headers),
        files,
        notes,
    })
}

/// A note on CAI's `.pt` files that a plan over partitions of ours leaves
/// unread though they sit with them: beside them, or beside the
/// [`crate::cai::CONVERTED`] folder they are read from, with no partition
/// converted from them (a conversion cut short by a `file_limit`, a `.pt`
/// added since). `files` are the partitions planned, all in one folder. A
/// `.pt` at hand here that is a model's checkpoint is no data, and not named.
fn unread_cai_files(
    store: &dyn ObjectStore,
    request: &RunRequest,
    files: &[(String, u64)],
    cai: &[(String, u64)],
) -> Option<String> {
    let folder = folder_of(&files.first()?.0);
    // Whether the files are at hand here (else in a bucket, read in place).
    let local = store.local_path(&files.first()?.0).is_some();
    let beside = match folder.rsplit_once('/') {
        Some((parent, last)) if last == crate::cai::CONVERTED => parent,
        None if folder == crate::cai::CONVERTED => "",
        _ => folder,
    };
    let stem = |key: &str| {
        let name = key.rsplit('/').next().unwrap_or(key);
        name.rsplit_once('.')
            .map_or(name, |(stem, _)| stem)
            .to_string()
    };
    let converted: std::collections::HashSet<String> =
        files.iter().map(|(key, _)| stem(key)).collect();
    let unread: Vec<&str> = cai
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| folder_of(key) == beside && !converted.contains(&stem(key)))
        .filter(|key| {
            store
                .local_path(key)
                .is_none_or(|path| crate::cai::model_checkpoint(&path).is_none())
        })
        .collect();
    if unread.is_empty() {
        return None;
    }
    let shown: Vec<&str> = unread
        .iter()
        .take(4)
        .map(|k| k.rsplit('/').next().unwrap_or(k))
        .collect();
    let folder_named = |f: &str| {
        if f.is_empty() {
            "./".to_string()
        } else {
            format!("{f}/")
        }
    };
    // A local run of `beside` converts its own .pt files; a plan over that very
    // folder (on S3, read in place) cannot, and is told how.
    let prefix = request.data_prefix.trim_matches('/');
    let how = if beside == folder || beside == prefix || !local {
        format!(
            "convert them (`cosmicai partition import`) into '{}'{}",
            folder_named(folder),
            if local { "" } else { " and upload them" }
        )
    } else {
        format!(
            "a run with data_prefix '{beside}' converts them (with no file_limit below their count)"
        )
    };
    let some = if local {
        ""
    } else {
        " (unless they are model checkpoints)"
    };
    Some(format!(
        "{} of CAI's .pt files in '{}' {} not read{some} ({}{}): only the partitions in '{}' are, and none was converted from them; {how}",
        unread.len(),
        folder_named(beside),
        if unread.len() == 1 { "is" } else { "are" },
        shown.join(", "),
        if unread.len() > shown.len() {
            ", …"
        } else {
            ""
        },
        folder_named(folder)
    ))
}

/// Whether `key` is a whole safetensors file whose metadata names no
/// partition (format [`crate::partition::FORMAT`]): a broken or cut-short file
/// is not judged here (its rank says what is wrong with it).
fn not_a_partition(store: &dyn ObjectStore, key: &str, size: u64) -> bool {
    header_of(store, key, size).is_some_and(|header| !is_partition(&header))
}

/// Whether a safetensors header's metadata names a partition of ours.
fn is_partition(header: &serde_json::Value) -> bool {
    header
        .pointer("/__metadata__/format")
        .and_then(serde_json::Value::as_str)
        == Some(crate::partition::FORMAT)
}

/// The JSON header of safetensors file `key` of `size` bytes, read alone (two
/// ranged reads); `None` where it is no whole header of at most
/// [`MAX_HEADER_BYTES`].
fn header_of(store: &dyn ObjectStore, key: &str, size: u64) -> Option<serde_json::Value> {
    let head = store.get_head(key, 8).ok()?;
    let len = u64::from_le_bytes(head.get(..8)?.try_into().ok()?);
    if len > MAX_HEADER_BYTES || len.saturating_add(8) > size {
        return None;
    }
    let bytes = store.get_head(key, 8 + len).ok()?;
    serde_json::from_slice(bytes.get(8..)?).ok()
}

/// The folder `key` is in ("" at the top).
fn folder_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(folder, _)| folder)
}

/// Partition headers read to learn how many bytes an object takes.
pub const SAMPLED_HEADERS: usize = 8;
/// The largest header read (a partition's is a few KB: its tensors and sources).
pub(super) const MAX_HEADER_BYTES: u64 = 1 << 20;

/// The fewest bytes an object takes in the sampled `headers` (from
/// [`sampled_headers`]): a file's size over the objects its `images` hold.
/// `None` where no header could be read (CAI's `.pt` files, a store error),
/// and the bound then assumes the smallest cutouts. A dataset mixing cutout
/// sizes is bounded by the files sampled.
fn fewest_bytes_per_object(headers: &[(String, u64, serde_json::Value)]) -> Option<f64> {
    headers
        .iter()
        .filter_map(|(_, size, header)| {
            let objects = objects_in_header(header, *size)?;
            Some(*size as f64 / objects as f64)
        })
        .reduce(f64::min)
}

/// The headers of up to [`SAMPLED_HEADERS`] of `files`, spread over the list,
/// that are safetensors (whose headers tell their contents), each read alone
/// (a ranged read of a few KB), with their keys and sizes; those that cannot
/// be read are left out.
fn sampled_headers(
    store: &dyn ObjectStore,
    files: &[(String, u64)],
) -> Vec<(String, u64, serde_json::Value)> {
    let step = files.len().div_ceil(SAMPLED_HEADERS).max(1);
    files
        .iter()
        .step_by(step)
        .filter(|(key, _)| key.ends_with(&format!(".{EXTENSION}")))
        .filter_map(|(key, size)| Some((key.clone(), *size, header_of(store, key, *size)?)))
        .collect()
}

/// The objects a partition's header says its `images` hold: believed only
/// where that many cutouts of the shape it gives (f32) fit in the file's `size`
/// bytes, so a header claiming 10^18 objects cannot make every rank look long.
fn objects_in_header(header: &serde_json::Value, size: u64) -> Option<u64> {
    let shape: Vec<u64> = header
        .get("images")?
        .get("shape")?
        .as_array()?
        .iter()
        .map(serde_json::Value::as_u64)
        .collect::<Option<_>>()?;
    let (&objects, cutout) = shape.split_first()?;
    let pixel_bytes = cutout
        .iter()
        .try_fold(objects.checked_mul(4)?, |n, &d| n.checked_mul(d))?;
    (objects > 0 && pixel_bytes <= size).then_some(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_per_object_of(store: &dyn ObjectStore, files: &[(String, u64)]) -> Option<f64> {
        fewest_bytes_per_object(&sampled_headers(store, files))
    }

    fn files(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i}.safetensors")).collect()
    }

    /// A store with one partition, and a request over it.
    fn one_partition() -> (tempfile::TempDir, crate::store::LocalStore, RunRequest) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        store.put("data/a.safetensors", b"x").unwrap();
        let request: RunRequest = serde_json::from_str(
            r#"{"data_prefix":"data","batch_size":1,"world_size":1,"result_path":"results/r"}"#,
        )
        .unwrap();
        (dir, store, request)
    }

    /// A partition of `objects` objects with `side` x `side` cutouts, written to `key`.
    fn with_cutouts(
        store: &crate::store::LocalStore,
        key: &str,
        objects: usize,
        side: usize,
    ) -> u64 {
        let path = store.root().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let p = crate::partition::Partition::blank(objects, Some(side));
        crate::partition::write_partition(&path, &p).unwrap();
        std::fs::metadata(&path).unwrap().len()
    }

    #[test]
    fn a_result_path_that_is_the_datas_folder_is_refused_as_such() {
        let (_dir, store, request) = one_partition();
        for result_path in ["data", "data/"] {
            let on_data = RunRequest {
                result_path: result_path.into(),
                ..request.clone()
            };
            let Err(PipelineError::Invalid(problems)) = plan(&store, &on_data, "r") else {
                panic!("results planned into the data's folder");
            };
            assert!(
                problems[0].starts_with(&format!(
                    "result_path '{result_path}' is where the data is (data_prefix 'data')"
                )),
                "{problems:?}"
            );
        }
        // Spelt otherwise, the same folder.
        let dotted = RunRequest {
            result_path: "./data//".into(),
            ..request.clone()
        };
        let Err(PipelineError::Invalid(problems)) = plan(&store, &dotted, "r") else {
            panic!("results planned into ./data//");
        };
        assert!(problems[0].contains("is where the data is"), "{problems:?}");
        // The data read in place from another bucket: the results' folder is
        // the run's own bucket's.
        store.put("x/a.safetensors", b"x").unwrap();
        let elsewhere = RunRequest {
            data_bucket: Some("cai-data".into()),
            data_prefix: "x".into(),
            result_path: "x".into(),
            ..request.clone()
        };
        let Err(PipelineError::Invalid(problems)) = plan(&store, &elsewhere, "r") else {
            panic!("planned");
        };
        assert!(
            !problems.iter().any(|p| p.contains("is where the data is")),
            "{problems:?}"
        );
        // A folder beside the data (its name a prefix of another's), or under
        // it, is the results' own.
        for result_path in ["dat", "data-results/r", "data2", "data/results/r"] {
            let beside = RunRequest {
                result_path: result_path.into(),
                ..request.clone()
            };
            assert!(plan(&store, &beside, "r").is_ok(), "{result_path}");
        }
    }

    #[test]
    fn an_image_model_over_a_catalogs_partitions_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        let path = store.root().join("catalog/part-000000.safetensors");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        crate::partition::write_partition(&path, &crate::partition::Partition::blank(3, None))
            .unwrap();
        let request: RunRequest = serde_json::from_str(
            r#"{"data_prefix":"catalog","batch_size":1,"world_size":1,"result_path":"results/r","model":"astromae:m.pt"}"#,
        )
        .unwrap();
        let Err(PipelineError::Invalid(problems)) = plan(&store, &request, "r") else {
            panic!("an image model planned over magnitudes alone");
        };
        assert!(
            problems[0].starts_with("catalog/part-000000.safetensors holds no cutouts"),
            "{problems:?}"
        );
        // PhotoZ reads them.
        let photoz = RunRequest {
            model: "photoz".into(),
            ..request.clone()
        };
        assert!(plan(&store, &photoz, "r").is_ok());
        // Partitions with cutouts beside it: still named (a rank would fail).
        with_cutouts(&store, "catalog/part-000001.safetensors", 2, 32);
        assert!(plan(&store, &request, "r").is_err());
    }

    #[test]
    fn an_image_models_plan_counts_objects_from_the_partition_headers() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        let big = with_cutouts(&store, "data/a.safetensors", 3, 64);
        let request: RunRequest = serde_json::from_str(
            r#"{"data_prefix":"data","batch_size":1,"world_size":1,"result_path":"results/r","model":"astromae:m.pt"}"#,
        )
        .unwrap();
        let payload = plan(&store, &request, "r").unwrap();
        assert_eq!(payload.bytes_per_object, Some(big as f64 / 3.0));
        assert!(big as f64 / 3.0 > 5.0 * 64.0 * 64.0 * 4.0);
        // Files of smaller cutouts: the fewest bytes an object takes.
        let small = with_cutouts(&store, "data/b.safetensors", 4, 32);
        let payload = plan(&store, &request, "r").unwrap();
        assert_eq!(payload.bytes_per_object, Some(small as f64 / 4.0));
        // PhotoZ reads no cutouts: no header is read.
        let photoz = RunRequest {
            model: "photoz".into(),
            ..request.clone()
        };
        assert_eq!(plan(&store, &photoz, "r").unwrap().bytes_per_object, None);
        // A header claiming to be huge, or no safetensors at all, tells nothing.
        let files = |key: &str, bytes: &[u8]| {
            store.put(key, bytes).unwrap();
            vec![(key.to_string(), bytes.len() as u64)]
        };
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert_eq!(
            bytes_per_object_of(&store, &files("h/x.safetensors", &huge)),
            None
        );
        assert_eq!(
            bytes_per_object_of(&store, &files("h/y.safetensors", b"abc")),
            None
        );
        assert_eq!(bytes_per_object_of(&store, &files("h/z.pt", b"PK")), None);
        // A header claiming more cutouts than its file holds is not believed.
        let lying = |n: u64| {
            let header = format!(
                r#"{{"images":{{"dtype":"F32","shape":[{n},5,32,32],"data_offsets":[0,20480]}}}}"#
            );
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(header.as_bytes());
            bytes.resize(bytes.len() + 20480, 0);
            bytes_per_object_of(&store, &files("h/l.safetensors", &bytes))
        };
        assert!(lying(1).is_some());
        assert_eq!(lying(1_000_000_000_000_000_000), None);
        assert_eq!(lying(0), None);
    }

    #[test]
    fn partitions_in_two_folders_under_the_prefix_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        with_cutouts(&store, "data/catalog/a.safetensors", 2, 8);
        let request: RunRequest = serde_json::from_str(
            r#"{"data_prefix":"data","batch_size":1,"world_size":1,"result_path":"results/r"}"#,
        )
        .unwrap();
        assert_eq!(plan(&store, &request, "r").unwrap().files.len(), 1);
        // The same objects re-split beside them: read together, counted twice.
        with_cutouts(&store, "data/parts/a.safetensors", 2, 8);
        let e = plan(&store, &request, "r").unwrap_err().to_string();
        assert!(
            e.contains("2 folders ('data/catalog/', 'data/parts/')")
                && e.contains("give one of them"),
            "{e}"
        );
        let one = RunRequest {
            data_prefix: "data/parts".into(),
            ..request.clone()
        };
        assert_eq!(plan(&store, &one, "r").unwrap().files.len(), 1);
        // A run's results under the prefix are not a dataset.
        initialize(
            &store,
            &RunRequest {
                result_path: "data/parts/results/r".into(),
                ..one.clone()
            },
            "r",
        )
        .unwrap();
        // (its predictions are safetensors too, in a folder of their own)
        with_cutouts(
            &store,
            "data/parts/results/r/predictions/0.safetensors",
            2,
            8,
        );
        assert_eq!(plan(&store, &one, "r2").unwrap().files.len(), 1);
        // A dataset cut short while its files were moved in is no dataset.
        store
            .put(&format!("data/parts/{}", crate::dataset::INCOMPLETE), b"")
            .unwrap();
        let e = plan(&store, &one, "r3").unwrap_err().to_string();
        assert!(e.contains("'data/parts/' holds part of a dataset"), "{e}");
    }

    #[test]
    fn a_used_result_path_is_refused() {
        let (_dir, store, request) = one_partition();
        initialize(&store, &request, "first").unwrap();
        let e = initialize(&store, &request, "second")
            .unwrap_err()
            .to_string();
        assert!(e.contains("already holds the results of run first"), "{e}");
        // Nor may a run write inside another's (its rank files are that run's
        // measures' names), or into a folder of files no run claims.
        let inside = RunRequest {
            result_path: format!("{}/measures", request.result_path),
            ..request.clone()
        };
        let e = initialize(&store, &inside, "second")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lies inside") && e.contains("of run first"),
            "{e}"
        );
        store.put("cai-results/0.json", b"{}").unwrap();
        let used = RunRequest {
            result_path: "cai-results".into(),
            ..request.clone()
        };
        let e = initialize(&store, &used, "third").unwrap_err().to_string();
        assert!(
            e.contains("already holds 1 files ('cai-results/0.json' first)"),
            "{e}"
        );
        assert!(
            store.get("cai-results/payload.json").is_err(),
            "nothing written"
        );
        // A folder holding runs' results below it: named as such.
        let above = RunRequest {
            result_path: "results".into(),
            ..request.clone()
        };
        let e = initialize(&store, &above, "fourth")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds other runs' results below it ('results/r/')"),
            "{e}"
        );
        // A file where the folder would go: said so, not "Not a directory".
        store.put("notes.txt", b"x").unwrap();
        let file = RunRequest {
            result_path: "notes.txt".into(),
            ..request.clone()
        };
        let e = initialize(&store, &file, "fifth").unwrap_err().to_string();
        assert!(e.contains("result_path 'notes.txt' is a file"), "{e}");
    }

    #[test]
    fn a_result_path_is_claimed_once_where_two_runs_race_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        assert!(store.put_if_absent("results/r/payload.json", b"a").unwrap());
        assert!(!store.put_if_absent("results/r/payload.json", b"b").unwrap());
        assert_eq!(store.get("results/r/payload.json").unwrap(), b"a");
        // Racing Initializes: one wins, the other is refused, and the payload
        // left is the winner's.
        let (_dir, store, request) = one_partition();
        let outcomes: Vec<Result<Payload, String>> = std::thread::scope(|s| {
            let runs: Vec<_> = ["one", "two", "three", "four"]
                .map(|id| {
                    let (store, request) = (&store, &request);
                    s.spawn(move || initialize(store, request, id).map_err(|e| e.to_string()))
                })
                .into_iter()
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{outcomes:?}");
        let stored: Payload =
            serde_json::from_slice(&store.get(&payload_key(&request.result_path)).unwrap())
                .unwrap();
        assert_eq!(stored.run_id, won[0].run_id);
    }

    #[test]
    fn cai_pt_files_are_partitions_where_no_converted_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        store.put("cai/a.pt", b"x").unwrap();
        store.put("cai/b.pth", b"x").unwrap();
        store.put("cai/notes.txt", b"x").unwrap();
        let request: RunRequest = serde_json::from_str(
            r#"{"data_prefix":"cai","batch_size":1,"world_size":2,"result_path":"results/r"}"#,
        )
        .unwrap();
        let keys = |p: Payload| p.files.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(plan(&store, &request, "r").unwrap()),
            ["cai/a.pt", "cai/b.pth"]
        );
        // Once converted beside them, the conversion is read, and never both.
        store.put("cai/cai-partitions/a.safetensors", b"x").unwrap();
        let planned = plan(&store, &request, "r").unwrap();
        // b.pth was not converted (a file_limit, or added since): said, not silent.
        assert_eq!(
            planned.notes,
            [
                "1 of CAI's .pt files in 'cai/' is not read (b.pth): only the partitions in 'cai/cai-partitions/' are, and none was converted from them; convert them (`cosmicai partition import`) into 'cai/cai-partitions/'",
                "world_size 2 over 1 partition file: 1 rank planned none and read nothing"
            ]
        );
        // A model's checkpoint kept beside them is no data: not named.
        let checkpoint = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../model/tests/fixtures/astromae_small/astromae_state_dict.pt");
        std::fs::copy(checkpoint, dir.path().join("cai/astromae.pt")).unwrap();
        let again = plan(&store, &request, "r").unwrap();
        assert_eq!(again.notes, planned.notes);
        assert_eq!(keys(planned), ["cai/cai-partitions/a.safetensors"]);
        // From the folder above (the same files, listed deeper): said the same.
        let above = RunRequest {
            data_prefix: String::new(),
            world_size: 1,
            ..request.clone()
        };
        let notes = plan(&store, &above, "r").unwrap().notes;
        assert!(
            notes.len() == 1
                && notes[0].starts_with("1 of CAI's .pt files in 'cai/' is not read (b.pth)")
                && notes[0].ends_with("a run with data_prefix 'cai' converts them (with no file_limit below their count)"),
            "{notes:?}"
        );
        // A file_limit the conversion meets reads no .pt by design: no note of them.
        let limited = RunRequest {
            file_limit: Some(1),
            ..above.clone()
        };
        assert!(plan(&store, &limited, "r").unwrap().notes.is_empty());
        // A limit past the files says so.
        let past = RunRequest {
            file_limit: Some(5),
            ..above.clone()
        };
        let notes = plan(&store, &past, "r").unwrap().notes;
        assert_eq!(
            notes.last().map(String::as_str),
            Some("file_limit 5: data_prefix '' holds 1 partition file, and all are read")
        );
        // Partitions of ours beside the .pt files (imported into the same folder).
        store.put("cai/b.safetensors", b"x").unwrap();
        store.put("cai/a.safetensors", b"x").unwrap();
        std::fs::remove_file(dir.path().join("cai/cai-partitions/a.safetensors")).unwrap();
        let notes = plan(&store, &above, "r").unwrap().notes;
        assert!(notes.is_empty(), "{notes:?}");
        store.put("cai/c.pt", b"x").unwrap();
        let notes = plan(&store, &above, "r").unwrap().notes;
        assert!(
            notes.len() == 1
                && notes[0].contains("(c.pt): only the partitions in 'cai/' are")
                && notes[0].contains("cosmicai partition import"),
            "{notes:?}"
        );
    }

    #[test]
    fn model_weights_beside_the_data_are_left_out_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        // A safetensors file as `model import` writes one: tensors, no partition format.
        let header = br#"{"__metadata__":{"model":"astromae"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut weights = (header.len() as u64).to_le_bytes().to_vec();
        weights.extend_from_slice(header);
        weights.extend_from_slice(&[0; 4]);
        store.put("cai/astromae.safetensors", &weights).unwrap();
        store.put("cai/a.pt", b"x").unwrap();
        let request: RunRequest = serde_json::from_str(
            r#"{"data_prefix":"cai","batch_size":1,"world_size":1,"result_path":"results/r"}"#,
        )
        .unwrap();
        // CAI's .pt files are read, the weights beside them named and left out.
        let planned = plan(&store, &request, "r").unwrap();
        assert_eq!(planned.files, [("cai/a.pt".to_string(), 1)]);
        assert_eq!(
            planned.notes,
            [
                "cai/astromae.safetensors: a safetensors file that is no partition (model weights?): left out of the data"
            ]
        );
        // Weights alone are no data, and the refusal says what was found.
        std::fs::remove_file(dir.path().join("cai/a.pt")).unwrap();
        let e = plan(&store, &request, "r").unwrap_err().to_string();
        assert!(
            e.contains("holds no partition files")
                && e.contains("cai/astromae.safetensors: a safetensors file that is no partition"),
            "{e}"
        );
    }

    #[test]
    fn every_key_under_the_longest_result_path_fits_in_s3() {
        use crate::pipeline::{measures_key, payload_key, plan_key, predictions_key, rank_key};
        let path = "r".repeat(cosmicai_shared::run::MAX_RESULT_PATH_BYTES);
        let rank = cosmicai_shared::run::MAX_WORLD_SIZE - 1;
        for key in [
            payload_key(&path),
            plan_key(&path),
            rank_key(&path, rank),
            measures_key(&path, rank),
            predictions_key(&path, rank),
            crate::store::join(&path, "combined_data.json"),
            crate::store::join(&path, "summary.json"),
        ] {
            assert!(key.len() <= 1024, "{} bytes: {key}", key.len());
        }
    }

    #[test]
    fn the_runs_own_weights_are_no_partition() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path());
        store.put("cai/p.pt", b"x").unwrap();
        store.put("models/ours.safetensors", b"x").unwrap();
        let request = |model: String| -> RunRequest {
            serde_json::from_value(serde_json::json!({"data_prefix": "", "batch_size": 1,
                "world_size": 1, "result_path": "results/r", "model": model}))
            .unwrap()
        };
        let keys = |r: &RunRequest| {
            plan(&store, r, "r")
                .unwrap()
                .files
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        // A key in the bucket, or the same file by its local path.
        assert_eq!(
            keys(&request("astromae:models/ours.safetensors".into())),
            ["cai/p.pt"]
        );
        let path = dir.path().join("models/ours.safetensors");
        assert_eq!(
            keys(&request(format!("astromae:{}", path.display()))),
            ["cai/p.pt"]
        );
        // Another model's file is data like any other.
        assert_eq!(keys(&request("photoz".into())), ["models/ours.safetensors"]);
        // On S3, a data_bucket that is the run's own bucket is no other bucket: a
        // bare key or its s3:// address names the weights among the data. In
        // another data bucket, only its s3:// address does.
        let in_bucket = |data_bucket: &str, model: &str| RunRequest {
            bucket: "stack".into(),
            data_bucket: Some(data_bucket.into()),
            ..request(model.into())
        };
        for model in [
            "astromae:models/ours.safetensors",
            "astromae:s3://stack/models/ours.safetensors",
        ] {
            assert_eq!(keys(&in_bucket("stack", model)), ["cai/p.pt"], "{model}");
        }
        assert_eq!(
            keys(&in_bucket(
                "cai-data",
                "astromae:s3://cai-data/models/ours.safetensors"
            )),
            ["cai/p.pt"]
        );
        assert_eq!(
            keys(&in_bucket("cai-data", "astromae:models/ours.safetensors")),
            ["models/ours.safetensors"]
        );
    }

    #[test]
    fn initialize_retried_for_its_own_run_goes_on_with_its_plan() {
        let (_dir, store, mut request) = one_partition();
        // A share a float cannot hold exactly survives the payload's JSON.
        request.tolerated_failure_percentage = 100.0 / 3.0;
        let first = initialize(&store, &request, "first").unwrap();
        // A file that arrived since is not in the plan the ranks already follow.
        store.put("data/b.safetensors", b"y").unwrap();
        let again = initialize(&store, &request, "first").unwrap();
        assert_eq!(again.ranks, first.ranks);
        // The same run id asked something else is not a retry.
        request.batch_size = 2;
        let e = initialize(&store, &request, "first")
            .unwrap_err()
            .to_string();
        assert!(e.contains("already holds the results of run first"), "{e}");
    }

    #[test]
    fn a_plan_refused_by_its_check_leaves_the_result_path_unused() {
        let (_dir, store, request) = one_partition();
        let refused = initialize_with(Stores::one(&store), &request, "first", |_| {
            Err(PipelineError::Invalid(vec!["too slow".into()]))
        });
        assert!(refused.unwrap_err().to_string().contains("too slow"));
        // Nothing was written: the same result path is free for the next try.
        initialize(&store, &request, "second").unwrap();
    }

    #[test]
    fn ceil_split_like_cai() {
        // CAI's initializer.py: ceil(files left / ranks left) per rank.
        let plan = plan_ranks(&files(10), 4);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2, 2]);
        assert_eq!(plan[3], ["8.safetensors", "9.safetensors"]);
        let plan = plan_ranks(&files(9), 4);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2, 2, 2]);
        // More ranks than files: the extra ranks get nothing.
        let plan = plan_ranks(&files(2), 4);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 0, 0]);
        // Every file exactly once, in order.
        for (n, ranks) in [(7, 3), (100, 7), (1, 1), (0, 3), (10_000, 9_999)] {
            let plan = plan_ranks(&files(n), ranks);
            assert_eq!(plan.len(), ranks);
            assert_eq!(plan.concat(), files(n));
        }
    }
}
