//! `result_path/payload.json`: what Initialize planned (the request, and the
//! files each rank reads), read by every rank and by whoever follows the run.

use super::payload_key;
use crate::store::{ObjectStore, StoreError};
use cosmicai_shared::run::RunRequest;
use serde::{Deserialize, Serialize};

/// `result_path/payload.json`: the request and which files each rank reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub run_id: String,
    pub request: RunRequest,
    /// Partition keys with their sizes in bytes, in order.
    pub files: Vec<(String, u64)>,
    /// `ranks[r]` = the keys rank r reads (possibly none).
    pub ranks: Vec<Vec<String>>,
    /// For models that read cutouts: the fewest bytes an object takes in the
    /// partitions whose headers were read (see `plan::sampled_headers`);
    /// the rank-time bound counts objects with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_object: Option<f64>,
    /// What the plan did that its request may not have meant (files it did
    /// not read, ranks it gave none), for its launcher to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Payload {
    /// Whether rank `rank` was planned files: on AWS only those ranks are Map
    /// items (and run, and are billed); the others are done with nothing read.
    pub fn reads_files(&self, rank: usize) -> bool {
        self.ranks.get(rank).is_some_and(|keys| !keys.is_empty())
    }

    /// Bytes of every partition planned, as listed.
    pub fn data_bytes(&self) -> u64 {
        self.files.iter().map(|(_, size)| size).sum()
    }

    /// Whether rank `rank` was planned none (more ranks than files).
    pub fn reads_nothing(&self, rank: usize) -> bool {
        self.ranks.get(rank).is_some_and(Vec::is_empty)
    }
}

/// What a result path's `payload.json` says of a run.
#[derive(Debug)]
pub enum PayloadOf {
    /// There is none (Initialize has not written it, or nothing ran there).
    Missing,
    /// There is one, but it is not a payload: why.
    Unreadable(String),
    /// It is another run's plan: that run's id.
    OtherRun(String),
    /// The run's own plan.
    Its(Box<Payload>),
}

impl PayloadOf {
    /// The run's own plan, if that is what is there.
    pub fn its(self) -> Option<Payload> {
        match self {
            PayloadOf::Its(payload) => Some(*payload),
            _ => None,
        }
    }
}

/// Reads `result_path/payload.json` for run `run_id` (`None`: whichever run's
/// it is). A store error (other than a missing object) is the error.
pub fn read_payload(
    store: &dyn ObjectStore,
    result_path: &str,
    run_id: Option<&str>,
) -> Result<PayloadOf, StoreError> {
    let bytes = match store.get(&payload_key(result_path)) {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. }) => return Ok(PayloadOf::Missing),
        Err(e) => return Err(e),
    };
    Ok(match serde_json::from_slice::<Payload>(&bytes) {
        Err(e) => PayloadOf::Unreadable(format!("not a payload: {e}")),
        Ok(payload) if run_id.is_some_and(|id| id != payload.run_id) => {
            PayloadOf::OtherRun(payload.run_id)
        }
        Ok(payload) => PayloadOf::Its(Box::new(payload)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;

    #[test]
    fn a_payload_is_missing_unreadable_another_runs_or_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let read = |run: Option<&str>| read_payload(&store, "results/a", run).unwrap();
        assert!(matches!(read(Some("a")), PayloadOf::Missing));
        store.put("results/a/payload.json", b"{}").unwrap();
        assert!(matches!(read(Some("a")), PayloadOf::Unreadable(e) if e.contains("not a payload")));
        let request: RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 8, "world_size": 1, "result_path": "results/a",
        }))
        .unwrap();
        let payload = Payload {
            run_id: "a".into(),
            request,
            files: Vec::new(),
            ranks: vec![Vec::new()],
            bytes_per_object: None,
            notes: Vec::new(),
        };
        store
            .put(
                "results/a/payload.json",
                &serde_json::to_vec(&payload).unwrap(),
            )
            .unwrap();
        assert!(matches!(read(Some("b")), PayloadOf::OtherRun(id) if id == "a"));
        assert_eq!(read(Some("a")).its().unwrap().run_id, "a");
        assert_eq!(read(None).its().unwrap().run_id, "a");
    }
}
