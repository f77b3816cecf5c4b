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
/// S3 PUT, COPY, POST, LIST, USD per request ($0.005 per 1,000).
pub const S3_PUT_LIST: f64 = 0.005 / 1e3;
/// S3 GET, USD per request ($0.0004 per 1,000).
pub const S3_GET: f64 = 0.0004 / 1e3;

/// Whether this build prices Lambda as arm64 (Graviton) rather than x86_64.
pub const ARM64: bool = cfg!(target_arch = "aarch64");

/// Lambda bills duration rounded up to the millisecond.
pub fn billed_ms(duration_s: f64) -> u64 {
    (duration_s * 1000.0).ceil().max(1.0) as u64
}

/// The pipeline's AWS bill: one Lambda invocation per rank attempt plus Initialize
/// and Summarize (`stage_durations_s`), Step Functions transitions (start and end
/// of Initialize, Map and Summarize, plus two per Map item), and S3 requests
/// (LIST and payload PUT at Initialize; each rank GETs its partitions and PUTs
/// its result and predictions; Summarize GETs every rank result and PUTs two files).
pub fn run_cost(
    ranks: &[RankMeasure],
    files_per_rank: &[usize],
    stage_durations_s: &[f64],
    memory_mb: u32,
    arm64: bool,
) -> Cost {
    let gb = f64::from(memory_mb) / 1024.0;
    let billed_s: f64 = ranks
        .iter()
        .map(|r| r.billed_duration_ms as f64 / 1000.0)
        .sum::<f64>()
        + stage_durations_s
            .iter()
            .map(|&d| billed_ms(d) as f64 / 1000.0)
            .sum::<f64>();
    let lambda_gb_s = billed_s * gb;
    let price = if arm64 {
        LAMBDA_GB_S_ARM
    } else {
        LAMBDA_GB_S_X86
    };
    let attempts: u64 = ranks.iter().map(|r| u64::from(r.attempts.max(1))).sum();
    let lambda_requests = attempts + stage_durations_s.len() as u64;
    let world = ranks.len() as u64;
    let state_transitions = 6 + 2 * world;
    let s3_put_list = 2 + 2 * world + 2;
    let s3_get = files_per_rank.iter().sum::<usize>() as u64 + world;
    let mut cost = Cost {
        lambda_gb_s,
        lambda_compute_usd: lambda_gb_s * price,
        lambda_requests,
        lambda_requests_usd: lambda_requests as f64 * LAMBDA_REQUEST,
        state_transitions,
        step_functions_usd: state_transitions as f64 * STATE_TRANSITION,
        s3_put_list,
        s3_get,
        s3_usd: s3_put_list as f64 * S3_PUT_LIST + s3_get as f64 * S3_GET,
        total_usd: 0.0,
    };
    cost.total_usd =
        cost.lambda_compute_usd + cost.lambda_requests_usd + cost.step_functions_usd + cost.s3_usd;
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = run_cost(&[rank], &[3], &[], 1024, false);
        assert!((c.lambda_gb_s - 10.0).abs() < 1e-12);
        assert!((c.lambda_compute_usd - 10.0 * 0.0000166667).abs() < 1e-15);
        assert_eq!(
            (
                c.lambda_requests,
                c.state_transitions,
                c.s3_put_list,
                c.s3_get
            ),
            (1, 8, 6, 4)
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
        );
        assert!(arm.lambda_compute_usd < c.lambda_compute_usd);
    }
}
