//! CAI's own payload file, as its users already have it (`aws/demo input.json`),
//! read into a run request.
//!
//! CAI's initializer reads `bucket` (its scripts' bucket), `data_bucket` and
//! `data_prefix` (the partitions), `file_limit`, `batch_size` and `world_size`
//! (numbers, or strings of digits: it calls `int()` on them; `world_size`
//! defaults to `file_limit`), `result_path`, and settings for the script it
//! runs (`object_type`, `S3_object_name`, `script`, `data_path`,
//! `dynamodb_table`). The inference is our own, so the script settings are set
//! aside, each named in a note. Where the partitions are read from depends on
//! who reads the payload ([`PartitionsIn`]): `cosmicai run` reads them from
//! `--data` (and uploads them with `--target aws`), so CAI's buckets are set
//! aside too; the deployed state machine reads them in place from CAI's
//! `data_bucket`, as CAI's own does, and writes the results to its own bucket. CAI's payload names no model, since CAI runs only
//! AstroMAE: the caller gives the one to run (the CLI's `--model`, the
//! deployment's preloaded model), and without one the payload is refused by
//! name rather than run on PhotoZ, the default of our own requests.
//!
//! A payload is CAI's when it has one of CAI's own keys, or when all its keys
//! are ones CAI's initializer reads and it would be refused as ours for what
//! CAI's rules allow (a count written as a string, no `world_size` beside a
//! `file_limit`). Read as CAI's, keys CAI's initializer ignores are set aside, by
//! name, as it ignores them. Any other payload is read strictly, as a
//! CosmicAI request.

use serde_json::Value;

/// Where the partitions of a run from CAI's payload are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionsIn {
    /// The local data folder (`--data`): bucket "local".
    Data,
    /// CAI's `data_bucket` (an execution of the deployed state machine).
    DataBucket,
}

/// Keys only CAI's payload has; any of them marks a file as CAI's. Not
/// `data_bucket`, which our requests share (partitions read in place).
const CAI_ONLY: [&str; 5] = [
    "object_type",
    "S3_object_name",
    "script",
    "data_path",
    "dynamodb_table",
];

/// Keys CAI's initializer passes through `int()`.
const CAI_NUMBERS: [&str; 3] = ["file_limit", "batch_size", "world_size"];

/// The other keys CAI's initializer reads, which our requests share.
const CAI_SHARED: [&str; 4] = ["bucket", "data_bucket", "data_prefix", "result_path"];

/// Every field of a CosmicAI request ([`crate::run::RunRequest`]): what a
/// payload read as CAI's keeps; any other key is set aside.
pub const REQUEST_FIELDS: [&str; 14] = [
    "bucket",
    "data_bucket",
    "data_prefix",
    "file_limit",
    "batch_size",
    "world_size",
    "result_path",
    "device",
    "precision",
    "memory_mb",
    "model",
    "retries",
    "tolerated_failure_percentage",
    "timeout_s",
];

/// Why `fields` is CAI's payload, where it is: `Some("")` for one of CAI's
/// own keys, `Some(reason)` for CAI's shape with what only CAI's rules allow.
fn cais(fields: &serde_json::Map<String, Value>) -> Option<String> {
    if CAI_ONLY.iter().any(|k| fields.contains_key(*k)) {
        return Some(String::new());
    }
    // A model may be named beside CAI's keys (by the payload, or `--model`):
    // CAI's payload needs one here.
    let cai_key = |k: &str| CAI_NUMBERS.contains(&k) || CAI_SHARED.contains(&k) || k == "model";
    if fields.is_empty() || !fields.keys().all(|k| cai_key(k)) {
        return None;
    }
    let strings: Vec<&str> = CAI_NUMBERS
        .into_iter()
        .filter(|k| fields.get(*k).is_some_and(Value::is_string))
        .collect();
    if !strings.is_empty() {
        return Some(format!(
            "{} written as a string, as CAI's are",
            strings.join(" and ")
        ));
    }
    (fields.contains_key("file_limit") && !fields.contains_key("world_size"))
        .then(|| "no world_size beside its file_limit".into())
}

/// `payload` as a CosmicAI request, and a note for each thing set aside or
/// filled in; a payload that is not CAI's comes back as it was, with no notes.
/// `model` (with where it comes from, for the note) is run where CAI's payload
/// names none.
pub fn translate(
    payload: Value,
    partitions: PartitionsIn,
    model: Option<(&str, &str)>,
) -> Result<(Value, Vec<String>), String> {
    let Value::Object(mut fields) = payload else {
        return Ok((payload, Vec::new()));
    };
    let Some(shaped) = cais(&fields) else {
        return Ok((Value::Object(fields), Vec::new()));
    };
    let mut notes = Vec::new();
    // Why a payload without CAI's own keys is read as CAI's.
    let read_as = if shaped.is_empty() {
        "CAI's payload".to_string()
    } else {
        format!("read as CAI's payload (its keys are ones CAI's initializer reads, with {shaped})")
    };
    if !shaped.is_empty() {
        notes.push(read_as.clone());
    }
    let data_bucket = match partitions {
        PartitionsIn::Data => None,
        PartitionsIn::DataBucket => fields.remove("data_bucket"),
    };
    let set_aside: Vec<String> = std::iter::once(&"data_bucket")
        .chain(&CAI_ONLY)
        .filter_map(|k| fields.remove(*k).map(|v| format!("{k} {}", short(&v))))
        .collect();
    match partitions {
        PartitionsIn::Data => {
            let local = Value::String("local".into());
            if let Some(bucket) = fields.insert("bucket".into(), local.clone())
                && bucket != local
            {
                notes.push(format!(
                    "bucket {}: CAI's scripts bucket, not used (the partitions are read from --data)",
                    short(&bucket)
                ));
            }
        }
        // Read in place from CAI's data bucket (else from CAI's `bucket`, where
        // its partitions then are); the results go to the deployment's bucket,
        // which the handler fills in.
        PartitionsIn::DataBucket => {
            let scripts = fields.remove("bucket");
            match (data_bucket, scripts) {
                (Some(data), scripts) => {
                    if let Some(scripts) = scripts.filter(|b| *b != data) {
                        notes.push(format!(
                            "bucket {}: CAI's scripts bucket, not used (the partitions are read in place from data_bucket, the results written to this deployment's bucket)",
                            short(&scripts)
                        ));
                    }
                    fields.insert("data_bucket".into(), data);
                }
                (None, Some(bucket)) => {
                    notes.push(format!(
                        "bucket {}: read in place as the data_bucket (CAI's partitions are there), the results written to this deployment's bucket",
                        short(&bucket)
                    ));
                    fields.insert("data_bucket".into(), bucket);
                }
                (None, None) => {}
            }
        }
    }
    // CAI's initializer ignores keys it does not read; so does this, saying so.
    let ignored: Vec<String> = fields
        .keys()
        .filter(|k| !REQUEST_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !ignored.is_empty() {
        for key in &ignored {
            fields.remove(key);
        }
        notes.push(format!(
            "set aside {}, which neither CAI's initializer nor a CosmicAI request reads",
            ignored
                .iter()
                .map(|k| short(&Value::String(k.clone())))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !set_aside.is_empty() {
        // Reading --data, CAI's data bucket is set aside too; on AWS it is read.
        let what = match partitions {
            PartitionsIn::Data => "its own script and data bucket",
            PartitionsIn::DataBucket => "its own script",
        };
        notes.push(format!(
            "set aside CAI's settings for {what}: {}",
            set_aside.join(", ")
        ));
    }
    for key in CAI_NUMBERS {
        // CAI calls int() on them: 4.0 is 4 there too.
        if let Some(n) = fields
            .get(key)
            .filter(|v| v.is_f64())
            .and_then(Value::as_f64)
            .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
        {
            fields.insert(key.into(), Value::from(n as u64));
        }
        if let Some(Value::String(text)) = fields.get(key) {
            let n: u64 = text
                .trim()
                .parse()
                .map_err(|_| format!("{key}: {text:?} is not a whole number"))?;
            fields.insert(key.into(), Value::from(n));
        }
    }
    if !fields.contains_key("model") {
        let Some((model, from)) = model else {
            return Err(format!(
                "model not given: {read_as} runs AstroMAE, so name its checkpoint (\"model\": \"astromae:PATH\" in the payload, or cosmicai run's --model astromae:PATH), or photoz for ours"
            ));
        };
        notes.push(format!("model not given: {model}, {from}"));
        fields.insert("model".into(), Value::String(model.into()));
    }
    if !fields.contains_key("world_size")
        && let Some(limit) = fields.get("file_limit").cloned()
    {
        notes.push(format!(
            "world_size not given: {limit}, the file_limit, as CAI's initializer does"
        ));
        fields.insert("world_size".into(), limit);
    }
    Ok((Value::Object(fields), notes))
}

/// [`translate`] for the deployed state machine, whose own bucket is `own`: a
/// request that names no `bucket` (CAI's payload never does, once translated)
/// writes its results there, and is refused by name where none is known.
pub fn translate_on_deployment(
    payload: Value,
    model: Option<(&str, &str)>,
    own: Option<&str>,
) -> Result<(Value, Vec<String>), String> {
    let (mut value, notes) = translate(payload, PartitionsIn::DataBucket, model)?;
    if let Value::Object(fields) = &mut value
        && !fields.contains_key("bucket")
    {
        let Some(own) = own.filter(|b| !b.is_empty()) else {
            return Err(
                "no bucket for the results, and this function names none of its own (COSMICAI_MODEL_BUCKET, which the template sets): give the request's bucket".into(),
            );
        };
        fields.insert("bucket".into(), own.into());
    }
    Ok((value, notes))
}

/// A value for a note, cut short: a payload may hold anything.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunRequest;

    /// CAI's `aws/demo input.json`, as its repository ships it.
    const DEMO_INPUT: &str = r#"{
      "bucket": "cosmicai2",
      "file_limit": "10",
      "batch_size": 512,
      "object_type": "folder",
      "S3_object_name": "scripts/Anomaly Detection",
      "data_path": "/tmp/scripts/Anomaly Detection/Inference/resized_inference.pt",
      "script": "/tmp/scripts/Anomaly Detection/Inference/inference.py",
      "result_path": "result/Batches/run 1",
      "data_bucket": "cosmicai-data",
      "data_prefix": ""
    }"#;

    #[test]
    fn cais_demo_input_becomes_a_request() {
        let (value, notes) = translate(
            serde_json::from_str(DEMO_INPUT).unwrap(),
            PartitionsIn::Data,
            Some(("astromae:ckpt.pt", "from --model")),
        )
        .unwrap();
        let request: RunRequest = serde_json::from_value(value).unwrap();
        assert_eq!(request.model, "astromae:ckpt.pt");
        assert_eq!(
            (
                request.bucket.as_str(),
                request.file_limit,
                request.world_size
            ),
            ("local", Some(10), 10)
        );
        assert_eq!(request.batch_size, 512);
        assert_eq!(request.result_path, "result/Batches/run 1");
        assert!(request.problems().is_empty(), "{:?}", request.problems());
        let notes = notes.join("\n");
        for said in [
            "\"cosmicai2\"",
            "data_bucket \"cosmicai-data\"",
            "script",
            "file_limit",
            "model not given: astromae:ckpt.pt, from --model",
        ] {
            assert!(notes.contains(said), "{said}: {notes}");
        }
        // No model to run: refused by name, not run on PhotoZ.
        let err = translate(
            serde_json::from_str(DEMO_INPUT).unwrap(),
            PartitionsIn::Data,
            None,
        )
        .unwrap_err();
        assert!(
            err.starts_with("model not given: CAI's payload runs AstroMAE"),
            "{err}"
        );
        // One the payload names is kept.
        let mut named: Value = serde_json::from_str(DEMO_INPUT).unwrap();
        named["model"] = "photoz".into();
        let (value, notes) = translate(named, PartitionsIn::Data, None).unwrap();
        assert_eq!(value["model"], "photoz");
        assert!(!notes.join("\n").contains("model"), "{notes:?}");
    }

    #[test]
    fn cais_1000_gb_payload_is_a_valid_request() {
        // CAI's 1,000 GB is 40,000 files of 25 MB; its initializer runs a rank
        // per file when the payload gives no world_size.
        let input = DEMO_INPUT.replace("\"file_limit\": \"10\"", "\"file_limit\": \"40000\"");
        assert_ne!(input, DEMO_INPUT, "the demo payload's file_limit moved");
        let (value, _) = translate(
            serde_json::from_str(&input).unwrap(),
            PartitionsIn::DataBucket,
            Some(("astromae:s3://cosmicai-data/m.pt", "the deployment's")),
        )
        .unwrap();
        let mut request: RunRequest = serde_json::from_value(value).unwrap();
        request.result_path = "results/cai-1000".into();
        request.bucket = "stack-bucket".into();
        assert_eq!(request.world_size, 40_000);
        assert_eq!(request.problems(), Vec::<String>::new());
        request.world_size = crate::run::MAX_WORLD_SIZE + 1;
        assert!(request.problems().join(";").contains("world_size"));
    }

    #[test]
    fn on_aws_the_partitions_are_read_from_cais_data_bucket() {
        let (value, notes) = translate(
            serde_json::from_str(DEMO_INPUT).unwrap(),
            PartitionsIn::DataBucket,
            Some(("photoz", "the deployment's")),
        )
        .unwrap();
        // The results' bucket is left to the deployment to fill in.
        assert!(value.get("bucket").is_none(), "{value}");
        let mut request: RunRequest = serde_json::from_value(value).unwrap();
        request.bucket = "stack-bucket".into();
        assert_eq!(
            (request.partitions_bucket(), request.data_prefix.as_str()),
            ("cosmicai-data", "")
        );
        assert!(request.problems().is_empty(), "{:?}", request.problems());
        assert_eq!((request.file_limit, request.world_size), (Some(10), 10));
        let notes = notes.join("\n");
        assert!(
            notes.contains("bucket \"cosmicai2\": CAI's scripts bucket, not used (the partitions are read in place from data_bucket, the results written to this deployment's bucket)"),
            "{notes}"
        );
        assert!(!notes.contains("data_bucket \"cosmicai-data\""), "{notes}");
        // Without a data_bucket, CAI's bucket is where its partitions are.
        let (value, notes) = translate(
            serde_json::json!({"bucket": "b", "script": "s", "batch_size": 1, "file_limit": 2, "result_path": "r"}),
            PartitionsIn::DataBucket,
            Some(("photoz", "the deployment's")),
        )
        .unwrap();
        assert_eq!(value["data_bucket"], "b");
        assert!(value.get("bucket").is_none(), "{value}");
        assert!(
            notes
                .join("\n")
                .contains("read in place as the data_bucket"),
            "{notes:?}"
        );
        // Neither: the partitions are beside the results, in the deployment's bucket.
        let (value, _) = translate(
            serde_json::json!({"script": "s", "batch_size": 1, "file_limit": 2, "result_path": "r"}),
            PartitionsIn::DataBucket,
            Some(("photoz", "the deployment's")),
        )
        .unwrap();
        assert!(value.get("bucket").is_none(), "{value}");
        assert!(value.get("data_bucket").is_none(), "{value}");
        let request: RunRequest = serde_json::from_value(value).unwrap();
        assert!(request.problems().is_empty(), "{:?}", request.problems());
    }

    #[test]
    fn whole_floats_are_whole_numbers_as_cai_reads_them() {
        let cai = serde_json::json!({"script": "s", "file_limit": 4.0, "batch_size": "8", "result_path": "r"});
        let (value, notes) =
            translate(cai, PartitionsIn::Data, Some(("photoz", "--model"))).unwrap();
        assert_eq!(
            (value["file_limit"].as_u64(), value["world_size"].as_u64()),
            (Some(4), Some(4)),
            "{value}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n == "world_size not given: 4, the file_limit, as CAI's initializer does"),
            "{notes:?}"
        );
        // A fraction is left for the request's own check to refuse.
        let half = serde_json::json!({"script": "s", "file_limit": 2.5, "batch_size": 8, "result_path": "r"});
        let (value, _) = translate(half, PartitionsIn::Data, Some(("photoz", "--model"))).unwrap();
        assert_eq!(value["file_limit"], 2.5);
    }

    #[test]
    fn the_request_fields_are_a_requests_own() {
        let mut request: RunRequest = serde_json::from_value(serde_json::json!(
            {"data_bucket": "d", "batch_size": 1, "world_size": 1, "result_path": "r", "precision": "bf16", "timeout_s": 1.0}
        ))
        .unwrap();
        request.file_limit = Some(1);
        let Value::Object(fields) = serde_json::to_value(&request).unwrap() else {
            panic!("a request is an object");
        };
        let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut expected = REQUEST_FIELDS.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn cais_shape_without_its_script_keys_is_read_by_cais_rules() {
        let model = Some(("astromae:ckpt.pt", "from --model"));
        // CAI's demo payload, its script's settings taken out.
        let stripped = serde_json::json!({"bucket": "cosmicai2", "file_limit": "11", "batch_size": 512,
            "result_path": "r/min", "data_bucket": "cosmicai-data", "data_prefix": "100MB"});
        let (value, notes) = translate(stripped, PartitionsIn::Data, model).unwrap();
        let request: RunRequest = serde_json::from_value(value).unwrap();
        assert_eq!((request.file_limit, request.world_size), (Some(11), 11));
        assert_eq!(request.bucket, "local");
        assert!(
            notes[0].contains("with file_limit written as a string, as CAI's are"),
            "{notes:?}"
        );
        // Numbers, but no world_size: CAI's default.
        let no_world = serde_json::json!({"file_limit": 3, "batch_size": 8, "result_path": "r"});
        let (value, notes) = translate(no_world, PartitionsIn::Data, model).unwrap();
        assert_eq!(value["world_size"], 3, "{notes:?}");
        // Its model named in it (as `cosmicai run --model` puts it there).
        let named = serde_json::json!({"file_limit": "3", "batch_size": 8, "result_path": "r", "model": "photoz"});
        let (value, _) = translate(named, PartitionsIn::Data, None).unwrap();
        assert_eq!(
            (value["world_size"].as_u64(), value["model"].as_str()),
            (Some(3), Some("photoz"))
        );
        // Without a model, refused, saying why it was read as CAI's.
        let string = serde_json::json!({"batch_size": 10, "world_size": "4", "result_path": "r"});
        let err = translate(string, PartitionsIn::Data, None).unwrap_err();
        assert!(
            err.starts_with("model not given: read as CAI's payload (its keys are ones CAI's initializer reads, with world_size written as a string, as CAI's are) runs AstroMAE"),
            "{err}"
        );
        // A key CAI's initializer ignores is set aside, by name.
        let extra = serde_json::json!({"script": "s", "file_limit": 2, "batch_size": 8, "result_path": "r", "some_new_cai_key": 1, "model": "photoz"});
        let (value, notes) = translate(extra, PartitionsIn::Data, None).unwrap();
        assert!(value.get("some_new_cai_key").is_none(), "{value}");
        assert_eq!(value["model"], "photoz");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("set aside \"some_new_cai_key\"")),
            "{notes:?}"
        );
        // One of ours, valid as it is, stays ours (PhotoZ by default, no notes).
        let ours = serde_json::json!({"file_limit": 2, "world_size": 2, "batch_size": 8, "result_path": "r"});
        let (value, notes) = translate(ours.clone(), PartitionsIn::Data, None).unwrap();
        assert_eq!((value, notes.len()), (ours, 0));
    }

    #[test]
    fn a_cosmicai_request_is_left_strict() {
        let ours = serde_json::json!({"batch_size": "10", "worldsize": 2, "result_path": "r"});
        let (value, notes) = translate(ours.clone(), PartitionsIn::Data, None).unwrap();
        assert_eq!((value, notes.len()), (ours, 0));
        // Ours may name a data_bucket (partitions read in place) and stays ours,
        // its bucket kept.
        let in_place = serde_json::json!({"bucket": "stack", "data_bucket": "cai-data", "batch_size": 1, "world_size": 1, "result_path": "r"});
        let (value, notes) = translate(in_place.clone(), PartitionsIn::DataBucket, None).unwrap();
        assert_eq!((value, notes.len()), (in_place, 0));
        // CAI's, with a count that is no number: named.
        let bad = serde_json::json!({"script": "s", "file_limit": "ten", "batch_size": 1});
        let err = translate(bad, PartitionsIn::Data, None).unwrap_err();
        assert!(
            err.contains("file_limit") && err.contains("\"ten\""),
            "{err}"
        );
    }
}
