//! How long a rank may take on Lambda, bounded from the plan alone (file sizes),
//! so Initialize can refuse a plan whose CPU ranks would outlive their Express
//! child execution (Step Functions stops those at 5 minutes, the Infer task
//! times out at [`EXPRESS_RANK_TIMEOUT_S`], a rank stops itself at
//! [`RANK_STOP_S`]) before any rank is paid for.

use super::{Payload, PipelineError};
use crate::projection::MB_PER_VCPU;
use cosmicai_shared::model::ModelSpec;

/// The Infer task's timeout in `infra/aws/statemachine.asl.json`: an Express
/// execution's 300 s, less 10 s for its own states.
pub const EXPRESS_RANK_TIMEOUT_S: f64 = 290.0;

/// Seconds after its Infer state began that a Lambda rank stops itself: the
/// task's timeout less time for the rank's writes, so that none is made after it.
pub const RANK_STOP_S: f64 = EXPRESS_RANK_TIMEOUT_S - 10.0;

/// The longest a plan may bound a rank at: it stops at [`RANK_STOP_S`], and S3
/// calls retried under throttling (up to 6 attempts, at most 8 s apart) take
/// their time out of the same window. A plan bounded between this and the task's
/// timeout would be accepted and then stopped.
pub const RANK_PLANNED_MAX_S: f64 = RANK_STOP_S - 30.0;
const _: () = assert!(RANK_PLANNED_MAX_S < RANK_STOP_S && RANK_STOP_S < EXPRESS_RANK_TIMEOUT_S);

/// The most memory a Lambda function can have, and with it the most vCPUs (six).
pub const LAMBDA_MAX_MEMORY_MB: u32 = 10_240;

/// Bytes a 32 x 32 five-band f32 cutout takes: no image partition holds more
/// objects than its size over this, so the objects counted are an upper bound.
const CUTOUT_BYTES: f64 = 5.0 * 32.0 * 32.0 * 4.0;
/// AstroMAE (full size, batch 256) objects per second per vCPU: `cosmicai run`
/// measured 28.1 and 29.3 per single-core rank on the development machine; the
/// bound takes a little less.
const ASTROMAE_OBJECTS_PER_VCPU_S: f64 = 25.0;
/// S3 to Lambda, one stream; conservative.
const S3_BYTES_PER_S: f64 = 50e6;
/// Start-up: process, weights read (0.7 s measured for AstroMAE's 63 MB).
const COLD_START_S: f64 = 2.0;

/// The longest rank of a plan, as bounded here.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowestRank {
    pub rank: usize,
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
    /// Seconds the slowest single file takes (the floor of any rank's time).
    pub seconds_per_file: f64,
}

/// An upper bound of rank `files`' time on Lambda with `memory_mb` of memory.
fn seconds(bytes: u64, model: &ModelSpec, memory_mb: u32) -> f64 {
    let vcpus = (f64::from(memory_mb) / MB_PER_VCPU).clamp(0.07, 6.0);
    let compute = match model {
        ModelSpec::AstroMae(_) => {
            bytes as f64 / CUTOUT_BYTES / (ASTROMAE_OBJECTS_PER_VCPU_S * vcpus)
        }
        // PhotoZ runs at hundreds of thousands of objects per second: the
        // download is its time.
        ModelSpec::PhotoZ(_) => 0.0,
    };
    bytes as f64 / S3_BYTES_PER_S + compute
}

/// The slowest rank of `payload`, by the bound above.
pub fn slowest_rank(payload: &Payload) -> Option<SlowestRank> {
    let request = &payload.request;
    let model = request.model_spec().ok()?;
    let sizes: std::collections::HashMap<&str, u64> = payload
        .files
        .iter()
        .map(|(k, s)| (k.as_str(), *s))
        .collect();
    let size = |key: &String| sizes.get(key.as_str()).copied().unwrap_or(0);
    let seconds_per_file = payload
        .files
        .iter()
        .map(|(_, s)| seconds(*s, &model, request.memory_mb))
        .fold(0.0, f64::max);
    payload
        .ranks
        .iter()
        .enumerate()
        .map(|(rank, keys)| {
            let bytes: u64 = keys.iter().map(size).sum();
            SlowestRank {
                rank,
                files: keys.len(),
                bytes,
                seconds: COLD_START_S + seconds(bytes, &model, request.memory_mb),
                seconds_per_file,
            }
        })
        .reduce(|slowest, r| {
            if r.seconds > slowest.seconds {
                r
            } else {
                slowest
            }
        })
}

/// Refuses a plan whose slowest rank could run past [`RANK_PLANNED_MAX_S`],
/// saying which world size (or which file size) would fit.
pub fn check_express_time(payload: &Payload) -> Result<(), PipelineError> {
    let Some(slowest) = slowest_rank(payload) else {
        return Ok(());
    };
    if slowest.seconds <= RANK_PLANNED_MAX_S {
        return Ok(());
    }
    let request = &payload.request;
    let budget = RANK_PLANNED_MAX_S - COLD_START_S;
    let fix = if slowest.seconds_per_file > budget {
        // At Lambda's largest memory, more is not to be had.
        let memory = if request.memory_mb < LAMBDA_MAX_MEMORY_MB {
            ", or give the function more memory (memory_mb; on AWS, the template's MemorySize)"
        } else {
            ""
        };
        format!(
            "one file alone may take {:.0} s: split the partitions smaller (`cosmicai partition --size 25MB`){memory}",
            slowest.seconds_per_file
        )
    } else {
        let files_per_rank = (budget / slowest.seconds_per_file).floor().max(1.0) as usize;
        format!(
            "world_size {} or more keeps every rank within it (at most {files_per_rank} files each)",
            payload.files.len().div_ceil(files_per_rank)
        )
    };
    Err(PipelineError::Invalid(vec![format!(
        "rank {} would read {} files ({:.1} MB) with model '{}' in up to {:.0} s at {} MB, \
         past the {RANK_PLANNED_MAX_S:.0} s a rank may be planned at in an Express child execution \
         (it stops itself at {RANK_STOP_S:.0} s, before the task's {EXPRESS_RANK_TIMEOUT_S:.0} s timeout, \
         and throttled calls are retried within that); {fix}",
        slowest.rank,
        slowest.files,
        slowest.bytes as f64 / 1e6,
        request.model,
        slowest.seconds,
        request.memory_mb,
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::plan_ranks;

    fn payload(files: usize, bytes: u64, world_size: usize, model: &str) -> Payload {
        let request: cosmicai_shared::run::RunRequest = serde_json::from_value(serde_json::json!({
            "batch_size": 256, "world_size": world_size, "result_path": "r", "model": model,
        }))
        .unwrap();
        let keys: Vec<String> = (0..files).map(|i| format!("p/{i}.safetensors")).collect();
        Payload {
            run_id: "r".into(),
            ranks: plan_ranks(&keys, world_size),
            files: keys.into_iter().map(|k| (k, bytes)).collect(),
            request,
        }
    }

    #[test]
    fn cai_1000_gb_fits_at_10000_ranks_not_at_1000() {
        // 40,000 partitions of 25 MB, AstroMAE, 2,048 MB.
        let fits = payload(40_000, 25_000_000, 10_000, "astromae:m.pt");
        check_express_time(&fits).unwrap();
        let slow = payload(40_000, 25_000_000, 1_000, "astromae:m.pt");
        let e = check_express_time(&slow).unwrap_err().to_string();
        assert!(e.contains("rank 0 would read 40 files"), "{e}");
        let needed: usize = e
            .split("world_size ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        // The world size it names fits; one file fewer per rank is what it means.
        check_express_time(&payload(40_000, 25_000_000, needed, "astromae:m.pt")).unwrap();
        assert!(
            check_express_time(&payload(40_000, 25_000_000, needed / 2, "astromae:m.pt")).is_err()
        );
    }

    #[test]
    fn a_rank_is_planned_within_the_time_it_stops_at_less_retries() {
        // PhotoZ: the start and the download (50 MB/s) are the bound.
        let at = |seconds: f64| {
            let bytes = (seconds - COLD_START_S) * S3_BYTES_PER_S;
            payload(1, bytes as u64, 1, "photoz")
        };
        check_express_time(&at(RANK_PLANNED_MAX_S - 1.0)).unwrap();
        // Between the plan's bound and the task's timeout: the rank would stop
        // itself at 280 s, so it is refused, by the figures that decide it.
        for seconds in [
            RANK_PLANNED_MAX_S + 1.0,
            RANK_STOP_S + 1.0,
            EXPRESS_RANK_TIMEOUT_S - 1.0,
        ] {
            let e = check_express_time(&at(seconds)).unwrap_err().to_string();
            assert!(
                e.contains("past the 250 s") && e.contains("at 280 s"),
                "{e}"
            );
        }
    }

    #[test]
    fn photoz_is_bounded_by_the_download_and_a_huge_file_by_its_size() {
        check_express_time(&payload(100, 100_000_000, 10, "photoz")).unwrap();
        let e = check_express_time(&payload(1, 400_000_000, 1, "astromae:m.pt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("split the partitions smaller"), "{e}");
        assert!(e.contains("give the function more memory"), "{e}");
        // At Lambda's largest memory, more is not offered.
        let mut largest = payload(1, 4_000_000_000, 1, "astromae:m.pt");
        largest.request.memory_mb = LAMBDA_MAX_MEMORY_MB;
        let e = check_express_time(&largest).unwrap_err().to_string();
        assert!(e.contains("split the partitions smaller"), "{e}");
        assert!(!e.contains("more memory"), "{e}");
    }
}
