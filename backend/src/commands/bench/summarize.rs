//! `cosmicai bench summarize`: the Summarize stage's time and memory at a run's
//! size, on rank files written for the purpose (no inference), so the largest run
//! a Summarize function's memory handles is a measured figure, not a guess.

use anyhow::Result;
use clap::Args;
use cosmicai_engine::pipeline::{
    Payload, RankPredictions, encode_predictions, predictions_key, rank_key, summarize,
};
use cosmicai_engine::predict::Prediction;
use cosmicai_engine::store::{LocalStore, ObjectStore};
use cosmicai_shared::Class;
use cosmicai_shared::run::{RankMeasure, RankResult, RunRequest};
use serde::Serialize;
use std::time::Instant;

#[derive(Args)]
pub struct SummarizeBenchArgs {
    /// Objects in the run (CAI's 1,000 GB run: about 26 million).
    #[arg(long, default_value_t = 2_600_000)]
    pub objects: usize,
    /// Ranks the objects are spread over (one result and predictions file each).
    #[arg(long, default_value_t = 1000)]
    pub ranks: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct SummarizeFigures {
    objects: usize,
    ranks: usize,
    prepare_s: f64,
    summarize_s: f64,
    objects_per_s: f64,
    peak_rss_before_mb: f64,
    peak_rss_after_mb: f64,
    /// Peak RSS Summarize added, per object scored.
    bytes_per_object: f64,
}

pub fn bench_summarize(args: SummarizeBenchArgs) -> Result<()> {
    if args.ranks == 0
        || args.ranks > cosmicai_shared::run::MAX_WORLD_SIZE
        || args.objects < args.ranks
    {
        anyhow::bail!(
            "--ranks must be 1 to {} and --objects at least --ranks",
            cosmicai_shared::run::MAX_WORLD_SIZE
        );
    }
    let dir = tempfile::tempdir()?;
    let store = LocalStore::new(dir.path());
    let request: RunRequest = serde_json::from_value(serde_json::json!({
        "batch_size": 512, "world_size": args.ranks, "result_path": "bench",
    }))?;
    // A file a rank (never read: Summarize reads the ranks' results), since
    // Summarize reads only ranks that were planned a file.
    let files: Vec<String> = (0..args.ranks)
        .map(|rank| format!("bench-data/p{rank}.safetensors"))
        .collect();
    let payload = Payload {
        bytes_per_object: None,
        notes: Vec::new(),
        run_id: "bench".into(),
        request: request.clone(),
        files: files.iter().map(|f| (f.clone(), 1)).collect(),
        ranks: files.iter().map(|f| vec![f.clone()]).collect(),
    };
    let started = Instant::now();
    let mut measures = Vec::with_capacity(args.ranks);
    for rank in 0..args.ranks {
        let n = args.objects / args.ranks + usize::from(rank < args.objects % args.ranks);
        let first = rank * (args.objects / args.ranks) + rank.min(args.objects % args.ranks);
        let predictions = synthetic_predictions(first, n);
        store.put(
            &predictions_key(&request.result_path, rank),
            &encode_predictions(&predictions)?,
        )?;
        let result = rank_result(rank, n, &request);
        store.put(
            &rank_key(&request.result_path, rank),
            &serde_json::to_vec(&result)?,
        )?;
        measures.push(RankMeasure {
            rank,
            objects: n,
            ..Default::default()
        });
    }
    let prepare_s = started.elapsed().as_secs_f64();
    let before = cosmicai_engine::system::peak_rss_mb();
    let started = Instant::now();
    let summary = summarize(&store, &payload, &measures, 1.0, 0.0, started)?;
    let summarize_s = started.elapsed().as_secs_f64();
    let after = cosmicai_engine::system::peak_rss_mb();
    anyhow::ensure!(
        summary.objects == args.objects,
        "Summarize counted {}",
        summary.objects
    );
    let figures = SummarizeFigures {
        objects: args.objects,
        ranks: args.ranks,
        prepare_s,
        summarize_s,
        objects_per_s: args.objects as f64 / summarize_s.max(1e-9),
        peak_rss_before_mb: before,
        peak_rss_after_mb: after,
        bytes_per_object: (after - before).max(0.0) * 1048576.0 / args.objects as f64,
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "Summarize over {} objects in {} ranks: {:.2} s ({:.0} objects/s); peak RSS {:.0} MB -> {:.0} MB ({:.1} bytes per object); rank files written in {:.1} s",
            figures.objects,
            figures.ranks,
            figures.summarize_s,
            figures.objects_per_s,
            figures.peak_rss_before_mb,
            figures.peak_rss_after_mb,
            figures.bytes_per_object,
            figures.prepare_s
        )
    };
    crate::output::emit(&(text + "\n"))
}

/// `n` labelled galaxies and QSOs with predictions off by a few percent.
fn synthetic_predictions(first: usize, n: usize) -> RankPredictions {
    let mut p = RankPredictions::default();
    for i in first..first + n {
        let z = (i % 1000) as f32 / 400.0;
        let class = if i % 10 == 0 {
            Class::Qso
        } else {
            Class::Galaxy
        };
        let error = ((i * 7919) % 201) as f32 / 2000.0 - 0.05;
        p.object_id.push(i as i64);
        p.redshift.push(z);
        p.class.push(class);
        p.predicted.push(Prediction {
            class,
            class_probability: [0.8, 0.1, 0.1],
            redshift: z + error * (1.0 + z),
            // As PhotoZ writes them: with σ_z and the outlier chance.
            redshift_sigma: Some(0.03 * (1.0 + z)),
            outlier_probability: Some(0.05),
        });
    }
    p
}

fn rank_result(rank: usize, objects: usize, request: &RunRequest) -> RankResult {
    RankResult {
        rank,
        run_id: "bench".into(),
        total_time_s: 1.0,
        memory_mb: 0.0,
        execution_time_per_batch_s: 0.0,
        num_batches: objects.div_ceil(request.batch_size),
        batch_size: request.batch_size,
        device: request.device,
        precision: request.precision,
        throughput_bps: 0.0,
        sample_persec: objects as f64,
        result_path: request.result_path.clone(),
        data_path: Vec::new(),
        objects,
        objects_with_cutouts: 0,
        model: request.model.clone(),
        kernels: String::new(),
        downloaded_bytes: 0,
        partition_gets: 0,
        system: Default::default(),
    }
}
