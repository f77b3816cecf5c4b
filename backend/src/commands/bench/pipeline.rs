//! `cosmicai bench pipeline`: the local pipeline's own cost (orchestration,
//! scaling from one worker to two, cold start).

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use std::time::Instant;

#[derive(Args)]
pub struct PipelineArgs {
    /// A dataset directory of partitions.
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// Copies of its partitions in the scratch dataset (more objects, steadier figures).
    #[arg(long, default_value_t = 20)]
    pub copies: usize,
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct PipelineFigures {
    objects: usize,
    files: usize,
    pure_inference_s: f64,
    world_1_s: f64,
    overhead_pct: f64,
    world_2_s: f64,
    scaling_efficiency_pct: f64,
    cold_start_ms: f64,
    init_ms: f64,
}

pub fn bench_pipeline(args: PipelineArgs) -> Result<()> {
    use crate::commands::run::{DeviceArg, RunArgs, execute_run};
    use cosmicai_engine::partition::PartitionFile;
    let inputs = cosmicai_engine::dataset::list_partitions(&args.data)?;
    let scratch = tempfile::tempdir()?;
    let mut files = Vec::new();
    for copy in 0..args.copies.max(1) {
        for input in &inputs {
            let name = format!(
                "copy{copy:03}-{}",
                input
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            );
            let path = scratch.path().join(name);
            std::fs::copy(input, &path)?;
            files.push(path);
        }
    }
    // Pure inference: the model's compute alone, in this process, on all cores.
    let model = crate::models::load_photoz(None)?;
    let (mut pure, mut objects) = (0.0, 0);
    for f in &files {
        let file = PartitionFile::open(f)?;
        let start = Instant::now();
        objects += cosmicai_engine::predict::predict_photoz::<crate::models::Cpu>(
            &model,
            &file.catalog().magnitudes,
            args.batch_size,
            &Default::default(),
        )
        .len();
        pure += start.elapsed().as_secs_f64();
    }
    let run = |world_size| {
        let run_args = RunArgs::new(
            scratch.path().to_path_buf(),
            world_size,
            args.batch_size,
            DeviceArg::Cpu,
        );
        execute_run(&run_args, true, false)
    };
    let one = run(1)?;
    let two = run(2)?;
    let mean = |f: fn(&cosmicai_shared::run::RankMeasure) -> f64| {
        let all: Vec<f64> = one.per_rank.iter().chain(&two.per_rank).map(f).collect();
        all.iter().sum::<f64>() / all.len().max(1) as f64
    };
    let figures = PipelineFigures {
        objects,
        files: files.len(),
        pure_inference_s: pure,
        world_1_s: one.duration_s,
        overhead_pct: 100.0 * (one.duration_s - pure) / pure,
        world_2_s: two.duration_s,
        scaling_efficiency_pct: 100.0 * one.duration_s / (2.0 * two.duration_s),
        cold_start_ms: 1000.0 * mean(|m| m.first_batch_s),
        init_ms: 1000.0 * mean(|m| m.init_duration_s),
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "{} objects in {} files: pure inference {:.2} s; world 1 {:.2} s (overhead {:.1}%); world 2 {:.2} s (scaling efficiency {:.1}%); cold start {:.1} ms (model ready {:.1} ms)",
            figures.objects,
            figures.files,
            figures.pure_inference_s,
            figures.world_1_s,
            figures.overhead_pct,
            figures.world_2_s,
            figures.scaling_efficiency_pct,
            figures.cold_start_ms,
            figures.init_ms
        )
    };
    crate::output::emit(&(text + "\n"))
}
