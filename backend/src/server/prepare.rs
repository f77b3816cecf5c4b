//! First start: build the served datasets from the bundled real data, so a fresh
//! clone serves real catalog objects, real cutouts and labelled synthetic cutouts.

use crate::commands::{catalog, ingest, synth};
use anyhow::{Context, Result};
use cosmicai_engine::dataset::PartitionBy;
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
    cosmicai_engine::partition::create_dir_synced(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    build(
        data_dir,
        "catalog",
        "importing the bundled catalogs",
        |dir| {
            catalog::import_catalogs(&catalogs, dir, PartitionBy::Objects(4096))
                .map(drop)
                .context("importing the bundled catalogs")
        },
    )?;
    let field = assets.join("fields/2820-3-0122");
    if field.is_dir() {
        build(
            data_dir,
            "real",
            "real cutouts of the bundled SDSS field",
            |dir| {
                let at = ingest::CutAt::Detections {
                    threshold_sigma: 8.0,
                    max_sources: 1000,
                };
                ingest::cut(&field, at, 64, dir, 4096)
                    .map(drop)
                    .context("cutting the bundled field")
            },
        )?;
    }
    let what = format!("{SYNTHETIC_OBJECTS} synthetic cutouts");
    build(data_dir, "synthetic", &what, |dir| {
        synth::render(&catalogs, dir, 64, 1, Some(SYNTHETIC_OBJECTS), None, 4096)
            .map(drop)
            .context("rendering synthetic cutouts")
    })?;
    Ok(())
}

/// Builds dataset `name` under `data_dir` with `make`, unless it is there. It is
/// made in a `.tmp-NAME` folder beside it and renamed into place whole (the
/// rename synced), so a first start cut short (Ctrl-C, a power cut) leaves no
/// half dataset that later starts would serve as whole: they build it again.
fn build(
    data_dir: &Path,
    name: &str,
    what: &str,
    make: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let dir = data_dir.join(name);
    if dir.is_dir() {
        return Ok(());
    }
    crate::say!("preparing {}: {what}", data_dir.display());
    let temp = data_dir.join(format!(".tmp-{name}"));
    if temp.exists() {
        std::fs::remove_dir_all(&temp)
            .with_context(|| format!("removing what a start cut short left: {}", temp.display()))?;
    }
    make(&temp)?;
    cosmicai_engine::partition::rename_synced(&temp, &dir)
        .with_context(|| format!("{}", dir.display()))
}
