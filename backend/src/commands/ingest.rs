//! `cosmicai ingest`: real 5-band cutouts from SDSS frames, at catalog positions
//! or at sources found in the r band.

use anyhow::{Result, bail};
use clap::Args;
use cosmicai_engine::catalog::read_catalogs;
use cosmicai_engine::dataset::{PartitionBy, PartitionSink, WrittenPartition};
use cosmicai_engine::imagery::detect::DetectOptions;
use cosmicai_engine::imagery::frame::list_fields;
use cosmicai_engine::imagery::ingest::{cut_catalog, cut_detections};
use cosmicai_engine::partition::{PartitionMeta, Source};
use cosmicai_shared::Provenance;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai ingest --frames assets/fields/2820-3-0122 --detect --out data/real-cutouts\n  \
    cosmicai ingest --frames FRAMES_DIR --catalog catalog.csv --size 64 --out data/cutouts\n\n\
    Frames are SDSS corrected frames, frame-{u,g,r,i,z}-RUN-CAMCOL-FIELD.fits[.bz2], in nanomaggies.\n\
    Each band is cut through its own WCS (nearest pixel, no resampling); pixels outside the\n\
    frame are NaN and the report gives each field's valid fraction.")]
pub struct IngestArgs {
    /// Directory holding the frames of one or more fields (all five bands each).
    #[arg(long)]
    pub frames: PathBuf,
    /// Catalog CSVs whose objects are cut where they fall on a field.
    #[arg(long, num_args = 1.., conflicts_with = "detect")]
    pub catalog: Vec<PathBuf>,
    /// Without a catalog: find sources (peaks of the smoothed r band) and cut those.
    #[arg(long)]
    pub detect: bool,
    /// Detection threshold, in units of the r frame's noise.
    #[arg(long, default_value_t = 8.0)]
    pub threshold: f32,
    /// Most sources kept per field with --detect, brightest first.
    #[arg(long, default_value_t = 1000)]
    pub max_sources: usize,
    /// Cutout side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Output dataset directory (created; must not hold partitions yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Objects per partition file.
    #[arg(long, default_value_t = 4096)]
    pub objects_per_file: usize,
    #[arg(long)]
    pub json: bool,
}

/// One field's cutouts.
#[derive(Serialize)]
pub struct FieldReport {
    pub field: String,
    pub objects: usize,
    pub mean_valid_fraction: f32,
    pub min_valid_fraction: f32,
}

pub fn run(args: IngestArgs) -> Result<()> {
    if args.catalog.is_empty() && !args.detect {
        bail!("give --catalog CSV... to cut catalog objects, or --detect to find sources");
    }
    let at = if args.detect {
        CutAt::Detections {
            threshold_sigma: args.threshold,
            max_sources: args.max_sources,
        }
    } else {
        CutAt::Catalog(&args.catalog)
    };
    let report = cut(
        &args.frames,
        at,
        args.size,
        &args.out,
        args.objects_per_file,
    )?;
    if args.json {
        crate::output::emit(&(serde_json::to_string(&report)? + "\n"))
    } else {
        let mut out = String::new();
        for r in &report.fields {
            if r.objects == 0 {
                crate::line!(out, "field {}: no objects", r.field);
                continue;
            }
            crate::line!(
                out,
                "field {}: {} cutouts of {}x{} px, valid fraction mean {:.3}, min {:.3}",
                r.field,
                r.objects,
                args.size,
                args.size,
                r.mean_valid_fraction,
                r.min_valid_fraction
            );
        }
        crate::line!(
            out,
            "wrote {} partitions to {}",
            report.partitions.len(),
            args.out.display()
        );
        crate::output::emit(&out)
    }
}

/// Where cutouts are cut.
pub enum CutAt<'a> {
    /// At the sources found in the r band (peaks above `threshold_sigma` times
    /// its noise), the brightest `max_sources` per field.
    Detections {
        threshold_sigma: f32,
        max_sources: usize,
    },
    /// At the positions of these catalogs' objects that fall on a field.
    Catalog(&'a [PathBuf]),
}

/// What was cut, per field, and the partitions written.
#[derive(Serialize)]
pub struct IngestReport {
    pub fields: Vec<FieldReport>,
    pub partitions: Vec<WrittenPartition>,
}

/// Cuts `size` x `size` five-band cutouts from the SDSS fields in `frames` into
/// partitions of `objects_per_file` under `out`.
pub fn cut(
    frames: &Path,
    at: CutAt,
    size: usize,
    out: &Path,
    objects_per_file: usize,
) -> Result<IngestReport> {
    if !(8..=512).contains(&size) {
        bail!("--size {size}: cutouts are 8 to 512 pixels");
    }
    // Fields are read one at a time: a frame cache may hold hundreds.
    let listing = list_fields(frames)?;
    // A frame cache may hold fields a fetch left short of a band: the rest are
    // still worth cutting, and the short ones are named so a rerun can finish them.
    for (name, missing) in &listing.incomplete {
        let bands: String = missing.iter().map(|b| b.letter()).collect();
        crate::say!(
            "warning: field {name} skipped: it has no {bands} frame (run cosmicai fetch again to complete it)"
        );
    }
    if listing.complete.is_empty() {
        bail!(
            "{}: no field has all five bands (ugriz); {} fields are incomplete",
            frames.display(),
            listing.incomplete.len()
        );
    }
    let fields = listing.complete;
    let catalogs: &[PathBuf] = match at {
        CutAt::Catalog(c) => c,
        CutAt::Detections { .. } => &[],
    };
    let objects: Vec<_> = read_catalogs(catalogs, |_, _| {})?
        .into_iter()
        .flat_map(|c| c.objects)
        .collect();
    let catalog_names: Vec<String> = catalogs
        .iter()
        .map(|p| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let mut sink = PartitionSink::create(
        out,
        PartitionBy::Objects(objects_per_file),
        PartitionMeta::default(),
    )?;
    let mut reports = Vec::new();
    // Neighbouring fields overlap by a few arcseconds: an object on both is cut once.
    let mut cut_already = std::collections::HashSet::new();
    let bar = crate::progress::count_bar(fields.len() as u64, "fields");
    for files in &fields {
        let field = &files.open()?;
        bar.inc(1);
        let (cutouts, detail) = match at {
            CutAt::Detections {
                threshold_sigma,
                max_sources,
            } => {
                let options = DetectOptions {
                    threshold_sigma,
                    ..DetectOptions::default()
                };
                (
                    cut_detections(field, size, options, max_sources),
                    "real SDSS corrected-frame cutouts at sources detected in r; unlabelled, 3\" aperture magnitudes".to_string(),
                )
            }
            CutAt::Catalog(_) => (
                cut_catalog(field, &objects, size),
                format!(
                    "real SDSS corrected-frame cutouts at the positions of {}",
                    catalog_names.join(", ")
                ),
            ),
        };
        let source = Source {
            name: format!("SDSS frame {}", field.name),
            provenance: Provenance::Real,
            detail,
        };
        let cutouts: Vec<_> = cutouts
            .into_iter()
            .filter(|c| cut_already.insert(c.row.object_id))
            .collect();
        for c in &cutouts {
            sink.push(c.row, &source, Some((&c.pixels, size, size)))?;
        }
        let valid: Vec<f32> = cutouts.iter().map(|c| c.valid_fraction).collect();
        reports.push(FieldReport {
            field: field.name.clone(),
            objects: cutouts.len(),
            mean_valid_fraction: valid.iter().sum::<f32>() / valid.len().max(1) as f32,
            min_valid_fraction: valid.iter().copied().fold(f32::NAN, f32::min),
        });
    }
    bar.finish_and_clear();
    let written = sink.finish()?;
    if written.is_empty() {
        bail!(
            "no objects fall on the frames in {}; nothing written",
            frames.display()
        );
    }
    Ok(IngestReport {
        fields: reports,
        partitions: written,
    })
}
