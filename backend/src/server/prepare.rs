//! First start: build the served datasets from the bundled real data, so a fresh
//! clone serves real catalog objects, real cutouts and labelled synthetic cutouts.

use crate::commands::{catalog, ingest, synth};
use anyhow::{Context, Result};
use cosmicai_engine::dataset::SplitBy;
use std::path::{Path, PathBuf};

/// Synthetic cutouts made on first start (drawn from the bundled catalogs).
const SYNTHETIC_OBJECTS: usize = 3000;

/// The bundled real catalogs, which fill `catalog/`.
pub fn bundled_catalogs(assets: &Path) -> Vec<PathBuf> {
    ["sdss17_star_classification.csv.gz", "skyserver_dr14.csv.gz"]
        .iter()
        .map(|f| assets.join("catalogs").join(f))
        .collect()
}

/// Creates whichever of `catalog/`, `real/`, `synthetic/` is missing under `data_dir`.
pub fn prepare(data_dir: &Path, assets: &Path) -> Result<()> {
    let catalogs = bundled_catalogs(assets);
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
        catalog::import_catalogs(&catalogs, &data_dir.join("catalog"), SplitBy::Objects(4096))
            .context("importing the bundled catalogs")?;
    }
    let field = assets.join("fields/2820-3-0122");
    if !data_dir.join("real").is_dir() && field.is_dir() {
        eprintln!(
            "preparing {}: real cutouts of the bundled SDSS field",
            data_dir.display()
        );
        ingest::cut(
            &field,
            ingest::CutAt::Detections {
                threshold_sigma: 8.0,
                max_sources: 1000,
            },
            64,
            &data_dir.join("real"),
            4096,
        )
        .context("cutting the bundled field")?;
    }
    if !data_dir.join("synthetic").is_dir() {
        eprintln!(
            "preparing {}: {SYNTHETIC_OBJECTS} synthetic cutouts",
            data_dir.display()
        );
        synth::render(
            &catalogs,
            &data_dir.join("synthetic"),
            64,
            1,
            Some(SYNTHETIC_OBJECTS),
            None,
            4096,
        )
        .context("rendering synthetic cutouts")?;
    }
    Ok(())
}
