//! A run on Lambda projected from throughput measured on this machine, for a
//! dataset that is not here (CAI's published 12.6 GB, 100 GB and 1,000 GB): its
//! partitions planned like CAI's initializer, each rank's time from the measured
//! rate and stated assumptions, ranks in waves of the concurrency limit, and the
//! bill from the same prices as real runs ([`crate::cost::run_cost`]).

use crate::cost::{billed_ms, run_cost};
use crate::pipeline::RANK_PLANNED_MAX_S;
use cosmicai_shared::run::{Cost, RankMeasure};
use serde::Serialize;

/// Lambda gives one vCPU per 1,769 MB of memory, up to 6.
pub const MB_PER_VCPU: f64 = 1769.0;

/// The vCPUs Lambda gives a function of `memory_mb` (its share of a vCPU below
/// 1,769 MB, at most 6 at 10,240 MB).
pub fn lambda_vcpus(memory_mb: u32) -> f64 {
    (f64::from(memory_mb) / MB_PER_VCPU).clamp(0.07, 6.0)
}

/// What a projection starts from: the dataset, the deployment, and the rates.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionInput {
    pub dataset_bytes: u64,
    pub partition_bytes: u64,
    /// Bytes one object takes in a partition (cutouts and catalog columns).
    pub bytes_per_object: f64,
    /// Whether the model reads cutouts; one that does not (PhotoZ) reads only
    /// the catalog columns of a partition, in two GETs (see `pipeline::download`).
    pub reads_cutouts: bool,
    pub world_size: usize,
    /// Ranks running at once (the account's Lambda concurrency, or the template's
    /// reserved concurrency).
    pub concurrency: usize,
    pub memory_mb: u32,
    /// Measured: objects per second on one core of this machine.
    pub objects_per_vcpu_s: f64,
    /// Measured: a rank's start (process and model) before its first batch.
    pub cold_start_s: f64,
    /// Assumed: S3 to Lambda, one stream.
    pub s3_bytes_per_s: f64,
    /// Assumed: a GET's wait for its first byte.
    pub s3_request_s: f64,
    pub arm64: bool,
}

/// What the projection says.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    pub objects: u64,
    pub partitions: u64,
    pub files_per_rank: u64,
    pub objects_per_rank: u64,
    /// The longest rank: cold start, downloads and inference.
    pub rank_s: f64,
    /// Whether that rank stays within the Express child's limit.
    pub fits_express: bool,
    pub waves: u64,
    /// Waves of ranks, one after another (Initialize and Summarize not included).
    pub map_s: f64,
    pub cost_usd: f64,
    pub cost: Cost,
    /// Step Functions' share had the children been STANDARD (the template's
    /// other choice), beside `cost.step_functions_usd` for EXPRESS ones.
    pub step_functions_standard_usd: f64,
}

pub fn project(input: &ProjectionInput) -> Projection {
    let partitions = input
        .dataset_bytes
        .div_ceil(input.partition_bytes.max(1))
        .max(1);
    let objects = (input.dataset_bytes as f64 / input.bytes_per_object.max(1.0)).round() as u64;
    let world = (input.world_size.max(1) as u64).min(partitions);
    // CAI's initializer: ceil(files left / ranks left) files per rank, so the
    // first `partitions % world` ranks read one more; the busiest sets the pace.
    let files_per_rank = partitions.div_ceil(world);
    let files_of = |r: u64| partitions / world + u64::from(r < partitions % world);
    let objects_per_file = objects as f64 / partitions as f64;
    let vcpus = lambda_vcpus(input.memory_mb);
    let read_share = if input.reads_cutouts {
        1.0
    } else {
        (crate::partition::bytes_per_object(None) as f64 / input.bytes_per_object.max(1.0)).min(1.0)
    };
    let gets_per_file = if input.reads_cutouts { 1 } else { 2 };
    // A catalog-only read takes a partition's first 128 KiB whole (its header
    // and first columns), then the columns after the images.
    let read_per_file = if input.reads_cutouts {
        input.partition_bytes as f64
    } else {
        (crate::pipeline::FIRST_READ_BYTES as f64 + input.partition_bytes as f64 * read_share)
            .min(input.partition_bytes as f64)
    };
    let rank_time = |files: u64| {
        let bytes = files as f64 * read_per_file;
        input.cold_start_s
            + (files * gets_per_file) as f64 * input.s3_request_s
            + bytes / input.s3_bytes_per_s.max(1.0)
            + files as f64 * objects_per_file / (input.objects_per_vcpu_s.max(1e-9) * vcpus)
    };
    let rank_s = rank_time(files_per_rank);
    let waves = world.div_ceil(input.concurrency.max(1) as u64);
    // Every rank billed for its own files (the last ranks may have fewer).
    let ranks: Vec<RankMeasure> = (0..world)
        .map(|r| {
            let files = files_of(r);
            RankMeasure {
                rank: r as usize,
                attempts: 1,
                billed_duration_ms: billed_ms(rank_time(files)),
                ..Default::default()
            }
        })
        .collect();
    let files: Vec<usize> = (0..world).map(|r| files_of(r) as usize).collect();
    let priced = |children| {
        let mut cost = run_cost(
            &ranks,
            &files,
            &[1.0, 1.0],
            input.memory_mb,
            input.arm64,
            children,
        );
        crate::cost::price_partition_gets(&mut cost, partitions, gets_per_file * partitions);
        crate::cost::price_storage(&mut cost, input.dataset_bytes);
        cost
    };
    // CPU ranks: EXPRESS children, as the template runs them.
    let cost = priced(crate::cost::Children::Express);
    let standard = priced(crate::cost::Children::Standard);
    Projection {
        step_functions_standard_usd: standard.step_functions_usd,
        objects,
        partitions,
        files_per_rank,
        objects_per_rank: (files_per_rank as f64 * objects_per_file).round() as u64,
        rank_s,
        fits_express: rank_s <= RANK_PLANNED_MAX_S,
        waves,
        map_s: waves as f64 * rank_s,
        cost_usd: cost.total_usd,
        cost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(world_size: usize, concurrency: usize) -> ProjectionInput {
        ProjectionInput {
            dataset_bytes: 100_000_000_000,
            partition_bytes: 25_000_000,
            bytes_per_object: 20_000.0,
            world_size,
            concurrency,
            memory_mb: 1769,
            objects_per_vcpu_s: 100.0,
            cold_start_s: 1.0,
            s3_bytes_per_s: 50e6,
            s3_request_s: 0.0,
            arm64: false,
            reads_cutouts: true,
        }
    }

    #[test]
    fn a_model_that_reads_no_cutouts_downloads_the_catalog_alone() {
        let all = project(&input(1000, 500));
        let catalog = project(&ProjectionInput {
            reads_cutouts: false,
            ..input(1000, 500)
        });
        // 4 files of 25 MB: their first 128 KiB and 53 bytes of 20,000 an
        // object, 789 KB, not 100 MB.
        let download = 4.0 * (131_072.0 + 25e6 * 53.0 / 20_000.0) / 50e6;
        assert!(
            (catalog.rank_s - (1.0 + download + 50.0)).abs() < 1e-9,
            "{}",
            catalog.rank_s
        );
        assert!((all.rank_s - catalog.rank_s - (2.0 - download)).abs() < 1e-9);
        // Two GETs a partition instead of one.
        assert_eq!(catalog.cost.s3_get, all.cost.s3_get + 4000);
        // Each GET waits for its first byte: 4 files, 4 or 8 GETs of 50 ms.
        let waits = |reads_cutouts| {
            project(&ProjectionInput {
                s3_request_s: 0.05,
                reads_cutouts,
                ..input(1000, 500)
            })
            .rank_s
        };
        assert!((waits(true) - all.rank_s - 0.2).abs() < 1e-9);
        assert!((waits(false) - catalog.rank_s - 0.4).abs() < 1e-9);
    }

    #[test]
    fn ranks_split_like_cai_and_run_in_waves() {
        // 100 GB in 25 MB partitions: 4,000 files, 5 million objects.
        let p = project(&input(1000, 500));
        assert_eq!(
            (p.partitions, p.objects, p.files_per_rank),
            (4000, 5_000_000, 4)
        );
        // 4 files: 1 s + 100 MB / 50 MB/s + 5,000 objects / 100 per s.
        assert!((p.rank_s - 53.0).abs() < 1e-9, "{}", p.rank_s);
        assert_eq!(p.waves, 2);
        assert!((p.map_s - 106.0).abs() < 1e-9);
        assert!(p.fits_express);
        // The bill is every rank's time at the GB-second price, and more ranks in
        // parallel cost the same compute.
        let wide = project(&input(1000, 1000));
        assert!((wide.cost.lambda_gb_s - p.cost.lambda_gb_s).abs() < 1e-6);
        assert!(wide.map_s < p.map_s);
        // Fewer ranks: each one longer, past the Express limit.
        let narrow = project(&input(100, 100));
        assert_eq!(narrow.files_per_rank, 40);
        assert!(!narrow.fits_express);
    }
}
