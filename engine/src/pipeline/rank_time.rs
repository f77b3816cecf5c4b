//! How long a rank may take on Lambda, bounded from the plan alone (file sizes),
//! so Initialize can refuse a plan whose CPU ranks would outlive their Express
//! child execution (Step Functions stops those at 5 minutes, the Infer task
//! times out at [`EXPRESS_RANK_TIMEOUT_S`], a rank stops itself at
//! [`RANK_STOP_S`]) before any rank is paid for.

use super::{Payload, PipelineError};
use crate::projection::lambda_vcpus;
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::Device;

/// The Infer task's timeout in `infra/aws/statemachine.asl.json`: an Express
/// execution's 300 s, less 10 s for its own states.
pub const EXPRESS_RANK_TIMEOUT_S: f64 = 290.0;

/// Seconds after its Infer state began that a Lambda rank stops itself: the
/// task's timeout less time for the rank's writes, so that none is made after it.
pub const RANK_STOP_S: f64 = EXPRESS_RANK_TIMEOUT_S - 10.0;

/// The longest a plan may bound a rank at: it stops at [`RANK_STOP_S`] after
/// its Infer state began, so its Lambda call retried under throttling (the
/// state's Retry: up to 5 retries, 1, 2, 4, 8 and 8 s apart at most: 23 s) and
/// the SDK's retries of S3 calls take their time out of the same window
/// (`tests/python/test_infra.py` holds the state machine's schedule to it). A plan bounded between this and the task's
/// timeout would be accepted and then stopped.
pub const RANK_PLANNED_MAX_S: f64 = RANK_STOP_S - 30.0;
const _: () = assert!(RANK_PLANNED_MAX_S < RANK_STOP_S && RANK_STOP_S < EXPRESS_RANK_TIMEOUT_S);

/// The most memory a Lambda function can have, and with it the most vCPUs (six).
pub const LAMBDA_MAX_MEMORY_MB: u32 = 10_240;

/// Bytes a 32 x 32 five-band f32 cutout takes: no image partition holds more
/// objects than its size over this, so the objects counted are an upper bound
/// where no partition header was read.
const CUTOUT_BYTES: f64 = 5.0 * 32.0 * 32.0 * 4.0;
/// AstroMAE (full size, batch 256) objects per second per vCPU: `cosmicai run`
/// measured 28.1 and 29.3 per single-core rank on the development machine; the
/// bound takes a little less.
const ASTROMAE_OBJECTS_PER_VCPU_S: f64 = 25.0;
/// S3 to Lambda, one stream; conservative.
const S3_BYTES_PER_S: f64 = 50e6;
/// A GET's wait for its first byte: AWS's S3 performance guide puts small
/// requests' median latency "in the tens of milliseconds"; this takes 50 ms.
pub const S3_REQUEST_S: f64 = 0.05;
/// GETs a file is counted at: the most a catalog-only read makes (its first
/// 128 KiB, the rest of a header longer than that, the rest of the columns
/// before the images, and the columns after them); a whole read makes one.
const GETS_PER_FILE: f64 = 4.0;
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

/// A GPU rank's attempt limit: the template's job definition
/// (`AttemptDurationSeconds`). AWS Batch does not retry an attempt stopped for
/// time, so a rank planned past it fails after a paid GPU hour.
pub const BATCH_ATTEMPT_S: f64 = 3600.0;
/// The longest a plan may bound a GPU rank at: the attempt's limit less time for
/// the container to start and pull its image.
pub const BATCH_RANK_PLANNED_MAX_S: f64 = BATCH_ATTEMPT_S - 300.0;
/// vCPUs of a GPU job (the template's job definition): the GPU's own speed is
/// not measured here, so its ranks are bounded at what these would compute.
pub const BATCH_JOB_VCPUS: f64 = 4.0;

/// The vCPUs a rank of `request` computes with: Lambda's share of its memory,
/// or a GPU job's.
fn rank_vcpus(request: &cosmicai_shared::run::RunRequest) -> f64 {
    match request.device {
        Device::Cpu => lambda_vcpus(request.memory_mb),
        Device::Cuda => BATCH_JOB_VCPUS,
    }
}

/// Bytes an object of `payload` is counted at: what its partitions' headers
/// said, else the smallest cutout's.
fn bytes_per_object(payload: &Payload) -> f64 {
    payload
        .bytes_per_object
        .filter(|b| b.is_finite() && *b > 0.0)
        .unwrap_or(CUTOUT_BYTES)
}

/// An upper bound of a rank's time reading `files` of `payload`'s partitions,
/// `bytes` in all, with `vcpus` computing.
fn seconds(files: usize, bytes: u64, payload: &Payload, model: &ModelSpec, vcpus: f64) -> f64 {
    let compute = match model {
        ModelSpec::AstroMae(_) => {
            bytes as f64 / bytes_per_object(payload) / (ASTROMAE_OBJECTS_PER_VCPU_S * vcpus)
        }
        // PhotoZ runs at hundreds of thousands of objects per second: the
        // download is its time. Counted whole, though the shipped PhotoZ reads
        // only the catalog columns (weights with a cutout branch read it all),
        // which keeps the bound an upper one.
        ModelSpec::PhotoZ(_) => 0.0,
    };
    files as f64 * GETS_PER_FILE * S3_REQUEST_S + bytes as f64 / S3_BYTES_PER_S + compute
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
        .map(|(_, s)| seconds(1, *s, payload, &model, rank_vcpus(request)))
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
                seconds: COLD_START_S
                    + seconds(keys.len(), bytes, payload, &model, rank_vcpus(request)),
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

/// Refuses a plan whose slowest rank could run past the time its ranks have:
/// [`RANK_PLANNED_MAX_S`] in a Lambda (CPU), [`BATCH_RANK_PLANNED_MAX_S`] in a
/// GPU job; says which world size (or which file size) would fit.
pub fn check_rank_time(payload: &Payload) -> Result<(), PipelineError> {
    let Some(slowest) = slowest_rank(payload) else {
        return Ok(());
    };
    let request = &payload.request;
    let (limit, on, why) = match request.device {
        Device::Cpu => (
            RANK_PLANNED_MAX_S,
            format!("at {} MB", request.memory_mb),
            format!(
                "a rank may be planned at in an Express child execution (it stops itself at \
                 {RANK_STOP_S:.0} s, before the task's {EXPRESS_RANK_TIMEOUT_S:.0} s timeout, and \
                 throttled calls are retried within that)"
            ),
        ),
        Device::Cuda => (
            BATCH_RANK_PLANNED_MAX_S,
            "on a GPU job (bounded at its 4 vCPUs' speed)".to_string(),
            format!(
                "a rank may be planned at on AWS Batch (the job definition stops an attempt at \
                 {BATCH_ATTEMPT_S:.0} s, and Batch does not retry it)"
            ),
        ),
    };
    if slowest.seconds <= limit {
        return Ok(());
    }
    let budget = limit - COLD_START_S;
    let fix = if slowest.seconds_per_file > budget {
        // At Lambda's largest memory, more is not to be had; a GPU job's is fixed.
        let memory = if request.device == Device::Cpu && request.memory_mb < LAMBDA_MAX_MEMORY_MB {
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
        "rank {} would read {} files ({:.1} MB) with model '{}' in up to {:.0} s {on}, \
         past the {limit:.0} s {why}; {fix}",
        slowest.rank,
        slowest.files,
        slowest.bytes as f64 / 1e6,
        request.model,
        slowest.seconds,
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
            bytes_per_object: None,
            notes: Vec::new(),
            run_id: "r".into(),
            ranks: plan_ranks(&keys, world_size),
            files: keys.into_iter().map(|k| (k, bytes)).collect(),
            request,
        }
    }

    /// The world size a refusal says would fit.
    fn named_world_size(e: &str) -> usize {
        e.split("world_size ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no world size named in: {e}"))
    }

    #[test]
    fn cai_1000_gb_fits_at_10000_ranks_not_at_1000() {
        // 40,000 partitions of 25 MB, AstroMAE, 2,048 MB.
        let fits = payload(40_000, 25_000_000, 10_000, "astromae:m.pt");
        check_rank_time(&fits).unwrap();
        let slow = payload(40_000, 25_000_000, 1_000, "astromae:m.pt");
        let e = check_rank_time(&slow).unwrap_err().to_string();
        assert!(e.contains("rank 0 would read 40 files"), "{e}");
        let needed = named_world_size(&e);
        // The world size it names fits; one file fewer per rank is what it means.
        check_rank_time(&payload(40_000, 25_000_000, needed, "astromae:m.pt")).unwrap();
        assert!(
            check_rank_time(&payload(40_000, 25_000_000, needed / 2, "astromae:m.pt")).is_err()
        );
    }

    #[test]
    fn headers_that_say_64x64_cutouts_plan_1000_gb_on_fewer_than_a_third_of_the_ranks() {
        // Cutouts of 5 x 64 x 64 f32 (81,920 bytes, ours by default) plus
        // magnitudes and redshift: read from the headers, a 25 MB file holds 4x
        // fewer objects than the 32 x 32 assumed without them (CAI's `.pt`).
        let with_64x64_headers = |world_size| {
            let mut p = payload(40_000, 25_000_000, world_size, "astromae:m.pt");
            p.bytes_per_object = Some(81_944.0);
            p
        };
        let e = check_rank_time(&with_64x64_headers(1_000))
            .unwrap_err()
            .to_string();
        let needed = named_world_size(&e);
        let unsampled = named_world_size(
            &check_rank_time(&payload(40_000, 25_000_000, 1_000, "astromae:m.pt"))
                .unwrap_err()
                .to_string(),
        );
        assert!(needed * 3 < unsampled, "{needed} vs {unsampled} ranks");
        check_rank_time(&with_64x64_headers(needed)).unwrap();
        // A header that said nothing sensible is not believed.
        let mut odd = with_64x64_headers(needed);
        odd.bytes_per_object = Some(0.0);
        assert!(check_rank_time(&odd).is_err());
    }

    #[test]
    fn a_rank_is_planned_within_the_time_it_stops_at_less_retries() {
        // PhotoZ: the start and the download (50 MB/s) are the bound.
        let at = |seconds: f64| {
            let bytes = (seconds - COLD_START_S - GETS_PER_FILE * S3_REQUEST_S) * S3_BYTES_PER_S;
            payload(1, bytes as u64, 1, "photoz")
        };
        check_rank_time(&at(RANK_PLANNED_MAX_S - 1.0)).unwrap();
        // Between the plan's bound and the task's timeout: the rank would stop
        // itself at 280 s, so it is refused, by the figures that decide it.
        for seconds in [
            RANK_PLANNED_MAX_S + 1.0,
            RANK_STOP_S + 1.0,
            EXPRESS_RANK_TIMEOUT_S - 1.0,
        ] {
            let e = check_rank_time(&at(seconds)).unwrap_err().to_string();
            assert!(
                e.contains("past the 250 s") && e.contains("at 280 s"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_gpu_rank_is_planned_within_its_batch_attempt() {
        // CAI's 1,000 GB on the default GPU queue's 4 jobs: 250 GB a rank, whose
        // download alone (5,000 s at 50 MB/s) is past Batch's 3,600 s attempt.
        let gpu = |world_size| {
            let mut p = payload(40_000, 25_000_000, world_size, "astromae:m.pt");
            p.request.device = Device::Cuda;
            p
        };
        let e = check_rank_time(&gpu(4)).unwrap_err().to_string();
        assert!(
            e.contains("rank 0 would read 10000 files")
                && e.contains("on a GPU job")
                && e.contains("past the 3300 s")
                && e.contains("stops an attempt at 3600 s"),
            "{e}"
        );
        let needed = named_world_size(&e);
        check_rank_time(&gpu(needed)).unwrap();
        assert!(check_rank_time(&gpu(needed / 2)).is_err());
        // Bounded at the job's 4 vCPUs, not at the request's Lambda memory.
        let mut small_memory = gpu(needed);
        small_memory.request.memory_mb = 128;
        check_rank_time(&small_memory).unwrap();
        // A GPU job's memory is fixed: not offered.
        let mut huge = payload(1, 40_000_000_000, 1, "astromae:m.pt");
        huge.request.device = Device::Cuda;
        let e = check_rank_time(&huge).unwrap_err().to_string();
        assert!(
            e.contains("split the partitions smaller") && !e.contains("memory"),
            "{e}"
        );
    }

    #[test]
    fn many_small_files_are_bounded_by_their_requests() {
        // 10,000 files of 100 KB: 20 s of download, but up to 40,000 GETs of 50 ms.
        let e = check_rank_time(&payload(10_000, 100_000, 1, "photoz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("in up to 2022 s"), "{e}");
        check_rank_time(&payload(10_000, 100_000, named_world_size(&e), "photoz")).unwrap();
    }

    #[test]
    fn photoz_is_bounded_by_the_download_and_a_huge_file_by_its_size() {
        check_rank_time(&payload(100, 100_000_000, 10, "photoz")).unwrap();
        let e = check_rank_time(&payload(1, 400_000_000, 1, "astromae:m.pt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("split the partitions smaller"), "{e}");
        assert!(e.contains("give the function more memory"), "{e}");
        // At Lambda's largest memory, more is not offered.
        let mut largest = payload(1, 4_000_000_000, 1, "astromae:m.pt");
        largest.request.memory_mb = LAMBDA_MAX_MEMORY_MB;
        let e = check_rank_time(&largest).unwrap_err().to_string();
        assert!(e.contains("split the partitions smaller"), "{e}");
        assert!(!e.contains("more memory"), "{e}");
    }
}
