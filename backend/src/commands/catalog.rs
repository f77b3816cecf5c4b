//! `cosmicai catalog import`: real SDSS catalogs (CSV) into a dataset of partitions.

use super::SplitArgs;
use crate::progress;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cosmicai_engine::catalog::{CatalogReport, read_catalogs};
use cosmicai_engine::dataset::{PartitionBy, PartitionSink, WrittenPartition};
use cosmicai_engine::partition::{PartitionMeta, Source};
use cosmicai_engine::size::format_size;
use cosmicai_shared::Provenance;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Build a dataset (catalog-only partitions) from SDSS catalogs.
    #[command(after_help = "Example:\n  \
        cosmicai catalog import assets/catalogs/skyserver_dr14.csv.gz assets/catalogs/sdss17_star_classification.csv.gz --out data/catalog\n\n\
        Both SkyServer (objid,ra,dec,u,g,r,i,z,...,class,redshift) and SDSS17 (obj_ID,alpha,delta,...) CSV\n\
        schemas are read; .csv.gz is decompressed on the fly. Rows with sentinel (-9999) or impossible\n\
        magnitudes, a missing class or bad coordinates are skipped and counted by reason.")]
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// Catalog CSV files (.csv or .csv.gz).
    #[arg(required = true)]
    pub csv: Vec<PathBuf>,
    /// Output dataset directory (created; must not hold partitions yet).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// Objects per partition when neither --size nor --objects is given: small
/// enough that the bundled catalogs make several partitions to spread over workers.
const DEFAULT_OBJECTS: usize = 4096;

/// What a catalog import read and wrote.
#[derive(Serialize)]
pub struct ImportReport {
    pub objects: usize,
    pub catalogs: Vec<CatalogReport>,
    pub partitions: Vec<WrittenPartition>,
}

pub fn run(command: CatalogCommand) -> Result<()> {
    let CatalogCommand::Import(args) = command;
    let split = args.split.split(PartitionBy::Objects(DEFAULT_OBJECTS));
    let report = import_catalogs(&args.csv, &args.out, split)?;
    if args.json {
        crate::output::emit(&(serde_json::to_string(&report)? + "\n"))?;
    } else {
        crate::output::emit(&report_text(&report, &args.out))?;
    }
    Ok(())
}

/// Reads SDSS catalog CSVs (both schemas, `.csv.gz` too) into partitions under
/// `out`, split by `split`; rows that cannot be trusted are skipped and counted.
pub fn import_catalogs(csv: &[PathBuf], out: &Path, split: PartitionBy) -> Result<ImportReport> {
    let bar = progress::counter("reading");
    let catalogs = read_catalogs(csv, |file, rows| {
        bar.set_message(format!("reading {}", file.display()));
        bar.set_position(rows as u64);
    })?;
    bar.finish_and_clear();
    let mut sink = PartitionSink::create(out, split, PartitionMeta::default())?;
    for catalog in &catalogs {
        let source = catalog_source(&catalog.report);
        for row in &catalog.objects {
            sink.push(*row, &source, None)?;
        }
    }
    let partitions = sink
        .finish()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(ImportReport {
        objects: partitions.iter().map(|p| p.objects).sum(),
        catalogs: catalogs.into_iter().map(|c| c.report).collect(),
        partitions,
    })
}

/// The source every object of a catalog file points at.
fn catalog_source(report: &CatalogReport) -> Source {
    let name = report
        .file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    Source {
        name: name.trim_end_matches(".gz").to_string(),
        provenance: Provenance::Real,
        detail: format!(
            "SDSS spectroscopic catalog ({} schema)",
            report.schema.name()
        ),
    }
}

fn report_text(report: &ImportReport, dir: &Path) -> String {
    let mut out = String::new();
    for c in &report.catalogs {
        crate::line!(
            out,
            "{}: {} rows, {} kept, {} skipped",
            c.file.display(),
            c.rows,
            c.kept,
            c.skipped_rows()
        );
        for (reason, count) in &c.skipped {
            crate::line!(
                out,
                "  skipped {:>6}  {} (first at line {})",
                count.rows,
                reason.describe(),
                count.first_line
            );
        }
        if c.unknown_redshift > 0 {
            crate::line!(
                out,
                "  kept {} rows with no usable redshift (stored as unknown)",
                c.unknown_redshift
            );
        }
    }
    let bytes: u64 = report.partitions.iter().map(|p| p.bytes).sum();
    crate::line!(
        out,
        "wrote {} objects in {} ({}) to {}",
        report.objects,
        cosmicai_shared::counted(report.partitions.len(), "partition"),
        format_size(bytes),
        dir.display()
    );
    out
}
