//! `cosmicai train --real-cutouts DIR…`: real labelled cutouts for PhotoZ's image
//! branch. They come from `cosmicai ingest --frames … --catalog …` (frames fetched
//! from the SDSS archive), matched to the catalogs' labelled objects by object id;
//! the card scores the validation objects that have one, with and without it.

use anyhow::{Context, Result, bail};
use cosmicai_engine::dataset::list_partitions;
use cosmicai_engine::metrics::{Evaluation, evaluate};
use cosmicai_engine::partition::{ObjectRow, PartitionFile};
use cosmicai_engine::predict::{Cutouts, predict_photoz, predict_photoz_with};
use cosmicai_model::crop::CROP;
use cosmicai_model::photoz::PhotoZ;
use cosmicai_model::photoz::train::Examples;
use cosmicai_shared::Provenance;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

/// Values of one object's centre crop: 5 bands of `CROP`x`CROP`.
const VALUES: usize = 5 * CROP * CROP;

/// The real cutouts read, by object id: each the centre `CROP`x`CROP` of its five
/// bands, NaN where the frame ends.
pub struct RealCutouts {
    by_id: HashMap<i64, Vec<f32>>,
}

/// What the card says of the image branch on real cutouts.
#[derive(Serialize)]
pub struct RealCutoutUse {
    source: String,
    side: usize,
    /// Real cutouts read, and those of training and validation objects.
    read: usize,
    train: usize,
    validation: usize,
    /// The validation objects that have a real cutout, on magnitudes alone...
    validation_magnitudes_only: Evaluation,
    /// ...and shown their cutouts.
    validation_with_cutouts: Evaluation,
}

/// The folders, as the messages name them.
pub fn names(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads every real cutout with a pixel in its centre crop from the datasets `dirs`.
pub fn read(dirs: &[PathBuf]) -> Result<RealCutouts> {
    let mut by_id = HashMap::new();
    let mut synthetic = 0;
    for dir in dirs {
        let files =
            list_partitions(dir).with_context(|| format!("--real-cutouts {}", dir.display()))?;
        for path in files {
            let file = PartitionFile::open(&path)?;
            let Some((height, width)) = file.image_size() else {
                bail!(
                    "--real-cutouts {}: {} holds no images (a catalog-only dataset)",
                    dir.display(),
                    path.display()
                );
            };
            if height < CROP || width < CROP {
                bail!(
                    "--real-cutouts {}: {} has {height}x{width} cutouts; the image branch reads the centre {CROP}x{CROP}",
                    dir.display(),
                    path.display()
                );
            }
            let part = file.catalog();
            for row in 0..file.len() {
                if part.sources[part.source[row] as usize].provenance != Provenance::Real {
                    synthetic += 1;
                    continue;
                }
                let pixels = file.read_images(row..row + 1)?;
                let crop = cosmicai_model::crop::centre_crop_planes(&pixels, [height, width], CROP);
                if crop.iter().any(|p| p.is_finite()) {
                    by_id.insert(part.object_id[row], crop);
                }
            }
        }
    }
    if synthetic > 0 {
        crate::say!(
            "warning: --real-cutouts: {synthetic} synthetic cutouts left out (real images only)"
        );
    }
    Ok(RealCutouts { by_id })
}

impl RealCutouts {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Gives `set` (the examples of `rows`, in order) the cutouts of the objects that
    /// have one, empty slots and a 0 in the mask for the rest; returns how many have one.
    pub fn attach(&self, rows: &[ObjectRow], set: &mut Examples) -> usize {
        let mut pixels = vec![0.0; rows.len() * VALUES];
        let mut mask = vec![0.0; rows.len()];
        for (i, row) in rows.iter().enumerate() {
            if let Some(crop) = self.by_id.get(&row.object_id) {
                // Off the frame reads as the sky-subtracted background, as at inference.
                for (out, &p) in pixels[i * VALUES..(i + 1) * VALUES].iter_mut().zip(crop) {
                    *out = if p.is_finite() { p } else { 0.0 };
                }
                mask[i] = 1.0;
            }
        }
        let with = mask.iter().filter(|&&m| m > 0.0).count();
        set.cutouts = Some(pixels);
        set.cutout_mask = Some(mask);
        with
    }

    /// Scores the validation objects that have a real cutout, with it and without.
    pub fn score<B: burn::prelude::Backend>(
        &self,
        dirs: &[PathBuf],
        valid_rows: &[ObjectRow],
        model: &PhotoZ<B>,
        device: &B::Device,
        train_with: usize,
    ) -> Result<RealCutoutUse> {
        let rows: Vec<ObjectRow> = valid_rows
            .iter()
            .filter(|r| self.by_id.contains_key(&r.object_id))
            .copied()
            .collect();
        let magnitudes: Vec<[f32; 5]> = rows.iter().map(|r| r.magnitudes).collect();
        let pixels: Vec<f32> = rows
            .iter()
            .flat_map(|r| self.by_id[&r.object_id].iter().copied())
            .collect();
        let alone = predict_photoz(model, &magnitudes, 4096, device);
        let cutouts = Cutouts {
            pixels: &pixels,
            height: CROP,
            width: CROP,
        };
        let with = predict_photoz_with(model, &magnitudes, Some(cutouts), 4096, device)
            .map_err(anyhow::Error::msg)?
            .predictions;
        Ok(RealCutoutUse {
            source: format!(
                "real: SDSS corrected frames cut by cosmicai ingest, from {}",
                names(dirs)
            ),
            side: CROP,
            read: self.by_id.len(),
            train: train_with,
            validation: rows.len(),
            validation_magnitudes_only: evaluate(&rows, &alone),
            validation_with_cutouts: evaluate(&rows, &with),
        })
    }
}

impl RealCutoutUse {
    /// The card's lines for the terminal.
    pub fn report(&self) -> String {
        let line = |e: &Evaluation| {
            format!(
                "class accuracy {:.4}, galaxy NMAD {:.4}",
                e.class_accuracy.unwrap_or(f64::NAN),
                e.galaxy.as_ref().map_or(f64::NAN, |g| g.nmad)
            )
        };
        format!(
            "  image branch on REAL cutouts ({} read; {} training and {} validation objects have one)\n    validation objects with a cutout, shown it: {}\n    the same objects, magnitudes only: {}\n",
            self.read,
            self.train,
            self.validation,
            line(&self.validation_with_cutouts),
            line(&self.validation_magnitudes_only)
        )
    }
}
