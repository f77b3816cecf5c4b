//! `cosmicai partition`: re-split a dataset by size or object count;
//! `cosmicai partition import`: CAI's `.pt` partitions into CosmicAI partitions.

use super::SplitArgs;
use crate::progress;
use anyhow::{Result, bail};
use clap::Args;
use cosmicai_engine::dataset::{list_partitions, repartition};
use cosmicai_engine::size::format_size;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai partition --input data/synthetic --size 25MB --out data/parts-25MB\n  \
    cosmicai partition --input data/catalog --objects 1000 --out data/parts-1k\n\n\
    Objects keep their order (input files by name, then rows); output files are\n\
    named part-000000.safetensors, part-000001.safetensors, ... so they sort.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct PartitionArgs {
    #[command(subcommand)]
    pub command: Option<PartitionCommand>,
    /// Dataset directory (or one partition file) to split.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output directory (created; must not hold partitions yet).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum PartitionCommand {
    /// Convert CAI's .pt partitions (TensorDatasets of images, magnitudes, redshift) in Rust.
    #[command(after_help = "Example:\n  \
        cosmicai partition import cai_data/ --out data/cai\n  \
        cosmicai run --data data/cai --model astromae:astromae.safetensors --world-size 4 --batch-size 512\n\n\
        Each FILE.pt becomes FILE.safetensors in --out: images and magnitudes as they are, the\n\
        redshift as the label, class unknown, positions unknown, provenance real. Files already\n\
        converted are skipped, so an interrupted import can simply be run again.")]
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// CAI .pt files, or folders holding them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output dataset directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Source name recorded in the partitions (default: each file's name).
    #[arg(long)]
    pub source: Option<String>,
    /// Every object's class, when known (CAI's partitions hold galaxies): GALAXY, STAR, QSO.
    #[arg(long, default_value = "UNKNOWN", value_parser = parse_class)]
    pub class: cosmicai_shared::Class,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PartitionArgs) -> Result<()> {
    if let Some(PartitionCommand::Import(import)) = args.command {
        return run_import(import);
    }
    let (Some(input), Some(out)) = (args.input.clone(), args.out.clone()) else {
        bail!("give --input DATASET and --out DIR (or `cosmicai partition import`)");
    };
    let (size, objects) = (args.split.size, args.split.objects);
    if size.is_none() && objects.is_none() {
        bail!("give --size (e.g. 25MB) or --objects N");
    }
    let split = args
        .split
        .split(cosmicai_engine::dataset::PartitionBy::Objects(1));
    let inputs = list_partitions(&input)?;
    let total: u64 = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress::bytes_bar(total, "partitioning");
    let written = repartition(&inputs, &out, split, |done| bar.set_position(done))?;
    bar.finish_and_clear();

    let objects: usize = written.iter().map(|w| w.objects).sum();
    let bytes: u64 = written.iter().map(|w| w.bytes).sum();
    if args.json {
        crate::output::emit(
            &(json!({ "objects": objects, "bytes": bytes, "partitions": written }).to_string()
                + "\n"),
        )?;
    } else {
        let mut out = String::new();
        for w in &written {
            crate::line!(
                out,
                "{}  {:>8} objects  {:>10}",
                w.path.display(),
                w.objects,
                format_size(w.bytes)
            );
        }
        crate::line!(
            out,
            "wrote {objects} objects in {} ({})",
            cosmicai_shared::counted(written.len(), "partition"),
            format_size(bytes)
        );
        crate::output::emit(&out)?;
    }
    Ok(())
}

fn run_import(args: ImportArgs) -> Result<()> {
    let files = cosmicai_engine::cai::cai_files(&args.inputs)?;
    let total: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress::bytes_bar(total, "importing CAI partitions");
    let started = std::time::Instant::now();
    let cosmicai_engine::cai::ImportReport {
        written,
        skipped,
        checkpoints,
    } = cosmicai_engine::cai::import(
        &files,
        &args.out,
        args.source.as_deref(),
        args.class,
        |file, size| {
            bar.set_message(file.display().to_string());
            bar.inc(size);
        },
    )?;
    bar.finish_and_clear();
    for (file, why) in &checkpoints {
        crate::say!(
            "{}: a model checkpoint, not a CAI partition ({why}); left out",
            file.display()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let objects: usize = written.iter().map(|w| w.objects).sum();
    let bytes: u64 = written.iter().map(|w| w.bytes).sum();
    if args.json {
        return crate::output::emit(
            &(json!({
                "files": files.len(), "written": written.len(), "skipped": skipped,
                "checkpoints_left_out": checkpoints.iter().map(|(f, _)| f.display().to_string()).collect::<Vec<_>>(),
                "objects": objects, "bytes": bytes, "seconds": seconds,
                "mb_per_s": total as f64 / 1e6 / seconds.max(1e-9),
                "partitions": written,
            })
            .to_string()
                + "\n"),
        );
    }
    crate::output::emit(&format!(
        "{} CAI files: wrote {} partitions ({objects} objects, {}), skipped {skipped} already converted, in {seconds:.2} s ({:.0} MB/s read)\n",
        files.len(),
        written.len(),
        format_size(bytes),
        total as f64 / 1e6 / seconds.max(1e-9)
    ))
}

fn parse_class(text: &str) -> Result<cosmicai_shared::Class, String> {
    text.to_ascii_uppercase().parse()
}
