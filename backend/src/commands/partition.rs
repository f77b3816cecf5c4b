//! `cosmicai partition`: re-split a dataset by size or object count.

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
pub struct PartitionArgs {
    /// Dataset directory (or one partition file) to split.
    #[arg(long)]
    pub input: PathBuf,
    /// Output directory (created; must not hold partitions yet).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PartitionArgs) -> Result<()> {
    let (size, objects) = (args.split.size, args.split.objects);
    if size.is_none() && objects.is_none() {
        bail!("give --size (e.g. 25MB) or --objects N");
    }
    let split = args
        .split
        .split(cosmicai_engine::dataset::SplitBy::Objects(1));
    let inputs = list_partitions(&args.input)?;
    let total: u64 = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress::bytes_bar(total, "partitioning");
    let written = repartition(&inputs, &args.out, split, |done| bar.set_position(done))?;
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
            "wrote {objects} objects in {} partitions ({})",
            written.len(),
            format_size(bytes)
        );
        crate::output::emit(&out)?;
    }
    Ok(())
}
