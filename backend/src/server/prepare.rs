//! First start: build the served datasets from the bundled real data, so a fresh
//! clone serves real catalog objects, real cutouts and labelled synthetic cutouts.

use crate::commands::{SplitArgs, catalog, ingest, synth};
use anyhow::{Context, Result};
use std::path::Path;

/// Synthetic cutouts made on first start (drawn from the bundled catalogs).
const SYNTHETIC_OBJECTS: usize = 3000;

/// Creates whichever of `catalog/`, `real/`, `synthetic/` is missing under `data_dir`.
pub fn prepare(data_dir: &Path, assets: &Path) -> Result<()> {
    let catalogs: Vec<_> = ["sdss17_star_classification.csv.gz", "skyserver_dr14.csv.gz"]
        .iter()
        .map(|f| assets.join("catalogs").join(f))
        .collect();
    for c in &catalogs {
        anyhow::ensure!(
            c.is_file(),
            "{} is missing: run serve from the repository root or give --assets DIR",
            c.display()
        );
    }
    if !data_dir.join("catalog").is_dir() {
        eprintln!(
            "preparing {}: importing the bundled catalogs",
            data_dir.display()
        );
        catalog::run(catalog::CatalogCommand::Import(catalog::ImportArgs {
            csv: catalogs.clone(),
            out: data_dir.join("catalog"),
            split: SplitArgs {
                size: None,
                objects: Some(4096),
            },
            json: false,
        }))
        .context("importing the bundled catalogs")?;
    }
    let field = assets.join("fields/2820-3-0122");
    if !data_dir.join("real").is_dir() && field.is_dir() {
        eprintln!(
            "preparing {}: real cutouts of the bundled SDSS field",
            data_dir.display()
        );
        ingest::run(ingest::IngestArgs {
            frames: field,
            catalog: Vec::new(),
            detect: true,
            threshold: 8.0,
            max_sources: 1000,
            size: 64,
            out: data_dir.join("real"),
            objects_per_file: 4096,
            json: false,
        })
        .context("cutting the bundled field")?;
    }
    if !data_dir.join("synthetic").is_dir() {
        eprintln!(
            "preparing {}: {SYNTHETIC_OBJECTS} synthetic cutouts",
            data_dir.display()
        );
        synth::run(synth::SynthArgs {
            catalog: catalogs,
            out: data_dir.join("synthetic"),
            size: 64,
            seed: 1,
            objects: Some(SYNTHETIC_OBJECTS),
            frames: None,
            objects_per_file: 4096,
            json: false,
        })
        .context("rendering synthetic cutouts")?;
    }
    Ok(())
}
