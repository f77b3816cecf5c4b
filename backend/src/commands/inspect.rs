//! `cosmicai inspect`: what a partition file or dataset holds.

use anyhow::Result;
use clap::Args;
use cosmicai_engine::inspect::{Summary, inspect};
use cosmicai_engine::size::format_size;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai inspect data/catalog\n  \
    cosmicai inspect data/catalog/part-000000.safetensors --json\n\n\
    --json prints one object with objects, classes, provenance, sources, redshift, images, bytes, partitions.")]
pub struct InspectArgs {
    /// A partition file or a dataset directory.
    pub path: PathBuf,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let summary = inspect(&args.path)?;
    if args.json {
        crate::output::emit(&(serde_json::to_string(&summary)? + "\n"))?;
    } else {
        crate::output::emit(&report_text(&summary))?;
    }
    Ok(())
}

fn report_text(s: &Summary) -> String {
    let mut out = String::new();
    let counts = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    crate::line!(
        out,
        "{}: {} partition file(s), {}",
        s.path.display(),
        s.files,
        format_size(s.bytes)
    );
    crate::line!(out, "  objects     {}", s.objects);
    crate::line!(out, "  classes     {}", counts(&s.classes));
    crate::line!(out, "  provenance  {}", counts(&s.provenance));
    for (name, source) in &s.sources {
        crate::line!(
            out,
            "    {name}: {} objects ({})",
            source.objects,
            source.provenance
        );
    }
    match (s.redshift.min, s.redshift.max) {
        (Some(min), Some(max)) => {
            crate::line!(
                out,
                "  redshift    {} known, from {min:.4} to {max:.4}",
                s.redshift.known
            )
        }
        _ => crate::line!(out, "  redshift    none known"),
    }
    match &s.images {
        Some(i) => crate::line!(
            out,
            "  images      {} objects with 5x{}x{} cutouts",
            i.objects,
            i.height,
            i.width
        ),
        None => crate::line!(out, "  images      none (catalog only: magnitudes)"),
    }
    out
}
