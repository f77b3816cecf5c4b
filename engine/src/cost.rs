//! What a run would cost on AWS, from measured billed durations.
//!
//! Prices (us-east-1), in one table so they are easy to check and update.

use cosmicai_shared::run::{Cost, RankMeasure};

/// Lambda compute, USD per GB-second, x86_64.
pub const LAMBDA_GB_S_X86: f64 = 0.0000166667;
/// Lambda compute, USD per GB-second, arm64.
pub const LAMBDA_GB_S_ARM: f64 = 0.0000133334;
/// Lambda requests, USD per request ($0.20 per million).
pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
/// Step Functions Standard, USD per state transition ($0.025 per 1,000).
pub const STATE_TRANSITION: f64 = 0.025 / 1e3;
/// Step Functions Express, USD per execution ($1.00 per million).
pub const EXPRESS_REQUEST: f64 = 1.00 / 1e6;
/// Step Functions Express duration, USD per GB-second (first 1,000 hours a month).
pub const EXPRESS_GB_S: f64 = 0.00001667;
/// Express bills memory in 64 MB steps; a child that only calls a Lambda uses the first.
pub const EXPRESS_BILLED_GB: f64 = 64.0 / 1024.0;
/// Steps the parent execution takes: Initialize, the Device choice, the Map, Summarize.
pub const PARENT_TRANSITIONS: u64 = 4;
/// State transitions a STANDARD child makes (its start, the Infer task, its end).
pub const STANDARD_CHILD_TRANSITIONS: u64 = 3;
/// S3 PUT, COPY, POST, LIST, USD per request ($0.005 per 1,000).
pub const S3_PUT_LIST: f64 = 0.005 / 1e3;
/// S3 GET, USD per request ($0.0004 per 1,000).
pub const S3_GET: f64 = 0.0004 / 1e3;
/// S3 Standard storage, USD per GB-month (the first 50 TB a month). S3 bills
/// binary gigabytes (its FAQ: 100 GB is 107,374,182,400 bytes).
pub const S3_STORAGE_GB_MONTH: f64 = 0.023;

/// A GPU rank's instance, USD per second: g5.xlarge on demand ($1.006 an hour;
/// the template lets Batch pick g5.2xlarge too, at $1.212).
pub const GPU_INSTANCE_S: f64 = 1.006 / 3600.0;

/// Whether this build prices Lambda as arm64 (Graviton) rather than x86_64.
pub const ARM64: bool = cfg!(target_arch = "aarch64");

/// What the Distributed Map's child executions are (the template's choice): CPU
/// ranks run on Lambda in EXPRESS children (or STANDARD ones); CUDA ranks in
/// STANDARD children, each waiting on an AWS Batch GPU job (`.sync`), whose time
/// is billed as the GPU instance's, not as Lambda's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Children {
    Express,
    Standard,
    BatchGpu,
}

impl Children {
    pub fn for_device(device: cosmicai_shared::run::Device) -> Self {
        match device {
            cosmicai_shared::run::Device::Cpu => Children::Express,
            cosmicai_shared::run::Device::Cuda => Children::BatchGpu,
        }
    }

    /// The children of a stack deployed with `child_execution_type` (the
    /// template's ChildExecutionType, EXPRESS or STANDARD) for a run on `device`:
    /// CUDA ranks are always STANDARD children waiting on Batch.
    pub fn deployed(
        device: cosmicai_shared::run::Device,
        child_execution_type: Option<&str>,
    ) -> Self {
        match (Self::for_device(device), child_execution_type) {
            (Children::Express, Some(t)) if t.eq_ignore_ascii_case("STANDARD") => {
                Children::Standard
            }
            (children, _) => children,
        }
    }
}

/// What a rank that took `duration_s` here, using `cpu_time_s` of CPU, would
/// take on a Lambda of `memory_mb`: Lambda gives a share of vCPUs by memory
/// (one at 1,769 MB, 0.072 at 128 MB), so a rank that used more CPU here than
/// that share gives in its time would run longer there, and be billed so.
pub fn lambda_duration_s(duration_s: f64, cpu_time_s: f64, memory_mb: u32) -> f64 {
    duration_s.max(cpu_time_s / crate::projection::lambda_vcpus(memory_mb))
}

/// Lambda bills duration rounded up to the millisecond.
pub fn billed_ms(duration_s: f64) -> u64 {
    (duration_s * 1000.0).ceil().max(1.0) as u64
}

/// The pipeline's AWS bill: one Lambda invocation per rank attempt plus Initialize
/// and Summarize (`stage_durations_s`); Step Functions: the parent's transitions
/// (a step each for the four states a run executes: Initialize, the Device
/// choice, the Map and Summarize; and one per child execution the Distributed
/// Map starts), and each child's own bill (an EXPRESS child: a request and its
/// duration at 64 MB; a STANDARD child: its transitions); and S3 requests
/// (Initialize LISTs the data, a page per 1,000 keys, and PUTs `payload.json` and
/// `plan.json`; each rank GETs `payload.json` and its partitions and PUTs its
/// predictions, result and measures; Summarize GETs each rank's three and PUTs
/// two files; a rank that read less than whole partitions is priced for the
/// GETs it counted). Not priced: the upload of the data, the launcher's copy of the
/// results, and a failed attempt that left no measure; the data's storage is
/// priced a month at a time beside the run (see [`price_storage`]).
pub fn run_cost(
    ranks: &[RankMeasure],
    files_per_rank: &[usize],
    stage_durations_s: &[f64],
    memory_mb: u32,
    arm64: bool,
    children: Children,
) -> Cost {
    let gb = f64::from(memory_mb) / 1024.0;
    let on_gpu = children == Children::BatchGpu;
    // A rank planned no file is no Map item on AWS: no time, call, child, GET or
    // PUT (a local run starts it all the same; its cost at AWS prices is AWS's).
    // Nor is one a cancel kept from starting (no attempt: the local executor's
    // count; on AWS a rank that left no measures may have been called, and is
    // priced as one attempt).
    let planned = |rank: usize| files_per_rank.get(rank).is_none_or(|&files| files > 0);
    let never_started =
        |r: &RankMeasure| r.attempts == 0 && r.error.as_deref() == Some(crate::executor::CANCELLED);
    // The ranks that ran, numbered: their measures, and the files they read.
    let ran = || {
        ranks
            .iter()
            .enumerate()
            .filter(move |(rank, r)| planned(*rank) && !never_started(r))
    };
    let running = || ran().map(|(_, r)| r);
    let running_files = || ran().map(|(rank, _)| files_per_rank.get(rank).copied().unwrap_or(0));
    let ranks_s: f64 = running()
        .map(|r| r.billed_duration_ms as f64 / 1000.0)
        .sum();
    let stages_s: f64 = stage_durations_s
        .iter()
        .map(|&d| billed_ms(d) as f64 / 1000.0)
        .sum();
    // Initialize and Summarize run on Lambda either way; GPU ranks do not.
    let (lambda_s, gpu_instance_s) = if on_gpu {
        (stages_s, ranks_s)
    } else {
        (ranks_s + stages_s, 0.0)
    };
    let lambda_gb_s = lambda_s * gb;
    let price = if arm64 {
        LAMBDA_GB_S_ARM
    } else {
        LAMBDA_GB_S_X86
    };
    let attempts: u64 = running().map(|r| u64::from(r.attempts.max(1))).sum();
    let lambda_requests = if on_gpu { 0 } else { attempts } + stage_durations_s.len() as u64;
    let world = running().count() as u64;
    let (state_transitions, express_executions, express_gb_s) = match children {
        Children::Express => {
            // The child lasts as long as its Lambda call, billed in 100 ms steps.
            let seconds: f64 = running()
                .map(|r| (r.billed_duration_ms as f64 / 100.0).ceil() / 10.0)
                .sum();
            (
                PARENT_TRANSITIONS + world,
                world,
                seconds * EXPRESS_BILLED_GB,
            )
        }
        Children::Standard | Children::BatchGpu => (
            PARENT_TRANSITIONS + world * (1 + STANDARD_CHILD_TRANSITIONS),
            0,
            0.0,
        ),
    };
    // Initialize lists every file; ranks GET only their own.
    let listed = files_per_rank.iter().sum::<usize>() as u64;
    let list_pages = listed.div_ceil(1000).max(1);
    let files = running_files().sum::<usize>() as u64;
    let s3_put_list = (list_pages + 2) + 3 * world + 2;
    let s3_get = (files + world) + 3 * world;
    let mut cost = Cost {
        lambda_gb_s,
        lambda_compute_usd: lambda_gb_s * price,
        lambda_architecture: Some(if arm64 { "arm64" } else { "x86_64" }.into()),
        lambda_requests,
        lambda_requests_usd: lambda_requests as f64 * LAMBDA_REQUEST,
        state_transitions,
        express_executions,
        express_gb_s,
        step_functions_usd: state_transitions as f64 * STATE_TRANSITION
            + express_executions as f64 * EXPRESS_REQUEST
            + express_gb_s * EXPRESS_GB_S,
        s3_put_list,
        s3_get,
        s3_usd: s3_put_list as f64 * S3_PUT_LIST + s3_get as f64 * S3_GET,
        gpu_instance_s,
        gpu_instance_usd: gpu_instance_s * GPU_INSTANCE_S,
        total_usd: 0.0,
        data_bytes: 0,
        storage_usd_month: 0.0,
    };
    total(&mut cost);
    cost
}

fn total(cost: &mut Cost) {
    cost.total_usd = cost.lambda_compute_usd
        + cost.lambda_requests_usd
        + cost.step_functions_usd
        + cost.s3_usd
        + cost.gpu_instance_usd;
}

/// Prices keeping `data_bytes` of partitions in the bucket for a month, beside
/// the run's own bill (not in its total: the data may serve many runs, or be
/// deleted after one).
pub fn price_storage(cost: &mut Cost, data_bytes: u64) {
    cost.data_bytes = data_bytes;
    cost.storage_usd_month = data_bytes as f64 / (1u64 << 30) as f64 * S3_STORAGE_GB_MONTH;
}

/// Prices `gets` GETs for `files` partitions in place of the one a partition
/// [`run_cost`] counted: a rank that reads only the catalog makes two to four
/// (see `pipeline::download`), counted by the rank itself.
pub(crate) fn price_partition_gets(cost: &mut Cost, files: u64, gets: u64) {
    let added = gets as i64 - files as i64;
    cost.s3_get = cost.s3_get.saturating_add_signed(added);
    cost.s3_usd += added as f64 * S3_GET;
    total(cost);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_is_billed_for_the_time_a_lambda_of_its_memory_would_take() {
        // 3 s of CPU in 3.4 s here: at 2,048 MB (1.16 vCPUs) Lambda is no slower.
        assert_eq!(lambda_duration_s(3.4, 3.0, 2048), 3.4);
        // At 128 MB (128/1,769 of a vCPU) it takes the CPU time over that share.
        let small = lambda_duration_s(3.4, 3.0, 128);
        assert!((small - 3.0 * 1769.0 / 128.0).abs() < 1e-9, "{small}");
        // Two cores' worth in 3 s: a Lambda of one vCPU takes 6 s.
        let one = lambda_duration_s(3.0, 6.0, 1769);
        assert!((one - 6.0).abs() < 1e-9, "{one}");
    }

    #[test]
    fn partition_gets_counted_by_ranks_replace_one_a_file() {
        let rank = RankMeasure {
            attempts: 1,
            billed_duration_ms: 1000,
            ..Default::default()
        };
        let once = run_cost(&[rank], &[3], &[], 1024, false, Children::Express);
        let mut twice = once.clone();
        price_partition_gets(&mut twice, 3, 6);
        assert_eq!(twice.s3_get, once.s3_get + 3);
        assert!((twice.total_usd - once.total_usd - 3.0 * S3_GET).abs() < 1e-12);
        let mut same = once.clone();
        price_partition_gets(&mut same, 0, 0);
        assert_eq!(same, once);
    }

    #[test]
    fn gpu_ranks_are_billed_as_instance_time_not_lambda() {
        let rank = RankMeasure {
            billed_duration_ms: 3_600_000,
            attempts: 1,
            ..Default::default()
        };
        let gpu = run_cost(
            std::slice::from_ref(&rank),
            &[3],
            &[2.0, 1.0],
            2048,
            false,
            Children::BatchGpu,
        );
        // One hour of g5.xlarge, and Lambda only for Initialize and Summarize.
        assert!((gpu.gpu_instance_s - 3600.0).abs() < 1e-9);
        assert!((gpu.gpu_instance_usd - 1.006).abs() < 1e-9);
        assert!((gpu.lambda_gb_s - 3.0 * 2.0).abs() < 1e-9);
        assert_eq!(gpu.lambda_requests, 2);
        assert!(
            (gpu.total_usd
                - gpu.gpu_instance_usd
                - gpu.lambda_compute_usd
                - gpu.lambda_requests_usd
                - gpu.step_functions_usd
                - gpu.s3_usd)
                .abs()
                < 1e-12
        );
        // The same hour on Lambda at 2 GB: about a tenth of it.
        let cpu = run_cost(&[rank], &[3], &[2.0, 1.0], 2048, false, Children::Standard);
        assert_eq!(cpu.gpu_instance_usd, 0.0);
        assert!(
            cpu.total_usd < gpu.total_usd / 5.0,
            "{} vs {}",
            cpu.total_usd,
            gpu.total_usd
        );
        assert_eq!(cpu.state_transitions, gpu.state_transitions);
    }

    #[test]
    fn ranks_planned_no_file_cost_nothing() {
        let rank = |ms| RankMeasure {
            billed_duration_ms: ms,
            attempts: 1,
            ..Default::default()
        };
        let two = run_cost(
            &[rank(1000), rank(2000)],
            &[1, 1],
            &[],
            2048,
            false,
            Children::Express,
        );
        // A third rank with no file (a local run starts it and measures it): the
        // same bill, since on AWS it is no Map item.
        let three = run_cost(
            &[rank(1000), rank(2000), rank(700)],
            &[1, 1, 0],
            &[],
            2048,
            false,
            Children::Express,
        );
        assert_eq!(two, three);
    }

    #[test]
    fn ranks_a_cancel_kept_from_starting_cost_nothing() {
        let rank = |ms, error: Option<&str>| RankMeasure {
            billed_duration_ms: ms,
            attempts: u32::from(ms > 0),
            error: error.map(str::to_string),
            ..Default::default()
        };
        let cost = |ranks: &[RankMeasure]| {
            run_cost(
                ranks,
                &[2, 2, 2],
                &[0.5, 0.5],
                2048,
                false,
                Children::Express,
            )
        };
        let one = cost(&[rank(1000, None)]);
        // Two more ranks the cancel kept from starting: only the LIST sees their files.
        let cancelled = cost(&[
            rank(1000, None),
            rank(0, Some(crate::executor::CANCELLED)),
            rank(0, Some(crate::executor::CANCELLED)),
        ]);
        assert_eq!(
            (cancelled.lambda_requests, cancelled.express_executions),
            (3, 1)
        );
        assert_eq!(cancelled.s3_get, one.s3_get);
        assert_eq!(cancelled.s3_put_list, one.s3_put_list);
        // One the cancel stopped on its way was called, and is billed.
        let stopped = cost(&[
            rank(1000, None),
            rank(40, Some(crate::executor::CANCELLED)),
            rank(0, Some(crate::executor::CANCELLED)),
        ]);
        assert_eq!(
            (stopped.lambda_requests, stopped.express_executions),
            (4, 2)
        );
        assert!(stopped.s3_get > one.s3_get && stopped.total_usd > one.total_usd);
        // On AWS a rank that left no measures is marked cancelled with one
        // attempt: it may have been called, and is priced as one.
        let missing = RankMeasure {
            attempts: 1,
            ..rank(0, Some(crate::executor::CANCELLED))
        };
        let on_aws = cost(&[rank(1000, None), missing.clone(), missing]);
        assert_eq!(on_aws.lambda_requests, 5);
    }

    #[test]
    fn billed_duration_rounds_up_to_the_millisecond() {
        assert_eq!(billed_ms(0.0011), 2);
        assert_eq!(billed_ms(1.0), 1000);
        assert_eq!(billed_ms(0.0), 1);
    }

    #[test]
    fn one_rank_of_ten_seconds_at_one_gb() {
        let rank = RankMeasure {
            billed_duration_ms: 10_000,
            attempts: 1,
            ..Default::default()
        };
        let c = run_cost(&[rank], &[3], &[], 1024, false, Children::Standard);
        assert!((c.lambda_gb_s - 10.0).abs() < 1e-12);
        assert!((c.lambda_compute_usd - 10.0 * 0.0000166667).abs() < 1e-15);
        assert_eq!(
            (
                c.lambda_requests,
                c.state_transitions,
                c.s3_put_list,
                c.s3_get
            ),
            // 4 + 1 + 3 transitions; LIST, 2 PUTs, 3 a rank, 2; 3 partitions
            // and the payload, then the rank's 3 files.
            (1, 8, 8, 7)
        );
        let sum = c.lambda_compute_usd + c.lambda_requests_usd + c.step_functions_usd + c.s3_usd;
        assert!((c.total_usd - sum).abs() < 1e-15);
        let arm = run_cost(
            &[RankMeasure {
                billed_duration_ms: 10_000,
                attempts: 1,
                ..Default::default()
            }],
            &[3],
            &[],
            1024,
            true,
            Children::Standard,
        );
        assert!(arm.lambda_compute_usd < c.lambda_compute_usd);
    }

    #[test]
    fn express_children_cost_a_request_and_their_duration() {
        let rank = |ms| RankMeasure {
            billed_duration_ms: ms,
            attempts: 1,
            ..Default::default()
        };
        let ranks = [rank(34_001), rank(100)];
        let express = run_cost(&ranks, &[1, 1], &[], 2048, true, Children::Express);
        // The parent's 4 steps and one transition per child; 34.1 s + 0.1 s at 64 MB.
        assert_eq!(
            (express.state_transitions, express.express_executions),
            (6, 2)
        );
        assert!((express.express_gb_s - 34.2 / 16.0).abs() < 1e-9);
        let expected = 6.0 * STATE_TRANSITION + 2.0 * EXPRESS_REQUEST + 34.2 / 16.0 * EXPRESS_GB_S;
        assert!((express.step_functions_usd - expected).abs() < 1e-12);
        // STANDARD children: their own transitions instead, nothing per second.
        let standard = run_cost(&ranks, &[1, 1], &[], 2048, true, Children::Standard);
        assert_eq!(
            (standard.state_transitions, standard.express_executions),
            (12, 0)
        );
        // Short ranks are cheaper in EXPRESS children; from about 71 s on, STANDARD.
        let long = [rank(140_000)];
        let (e, s) = (
            run_cost(&long, &[1], &[], 2048, true, Children::Express),
            run_cost(&long, &[1], &[], 2048, true, Children::Standard),
        );
        assert!(express.step_functions_usd / 2.0 < standard.step_functions_usd / 2.0);
        assert!(e.step_functions_usd > s.step_functions_usd);
    }
}
