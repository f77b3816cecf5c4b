//! `cosmicai synth`: labelled cutouts rendered from real catalog magnitudes, with
//! seeing and noise measured on real frames. Every object is marked synthetic.

use crate::progress;
use anyhow::{Context, Result, bail};
use clap::Args;
use cosmicai_engine::catalog::read_catalogs;
use cosmicai_engine::dataset::{PartitionBy, PartitionSink};
use cosmicai_engine::imagery::calibrate::{Calibration, measure_field};
use cosmicai_engine::imagery::frame::open_fields;
use cosmicai_engine::imagery::synth::{Renderer, Scratch};
use cosmicai_engine::partition::{ObjectRow, PartitionMeta, Source};
use cosmicai_shared::Provenance;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai synth --catalog assets/catalogs/skyserver_dr14.csv.gz --out data/synth --size 64 --seed 1\n  \
    cosmicai synth --catalog assets/catalogs/*.csv.gz --objects 660000 --size 32 --objects-per-file 8192 --out data/cai-scale\n\n\
    Stars and quasars are the PSF, galaxies Sersic profiles sized by magnitude and redshift;\n\
    fluxes come from each object's asinh magnitudes; seeing and sky noise per band from\n\
    assets/imagery/calibration.json (measured by `cosmicai calibrate`) or --frames.")]
pub struct SynthArgs {
    /// Catalog CSVs (their real magnitudes, class and redshift label the cutouts).
    #[arg(long, required = true, num_args = 1..)]
    pub catalog: Vec<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    /// Cutout side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Objects to make, drawn from the catalog with replacement (default: each object once).
    #[arg(long)]
    pub objects: Option<usize>,
    /// Measure seeing and noise on these frames instead of the bundled calibration.
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Objects per partition file.
    #[arg(long, default_value_t = 4096)]
    pub objects_per_file: usize,
    #[arg(long)]
    pub json: bool,
}

/// Renders `rows` (object numbers `first..`) into `out`, `[5, size, size]` each, on every core.
pub fn render_rows(renderer: &Renderer, first: usize, rows: &[ObjectRow], out: &mut [f32]) {
    let per_object = 5 * renderer.size() * renderer.size();
    out.par_chunks_mut(per_object)
        .zip(rows)
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (k, (cutout, row))| {
            renderer.render((first + k) as u64, row, scratch, cutout)
        });
}

/// Objects rendered between writes: enough to keep every core busy.
const CHUNK: usize = 4096;

pub fn run(args: SynthArgs) -> Result<()> {
    let report = render(
        &args.catalog,
        &args.out,
        args.size,
        args.seed,
        args.objects,
        args.frames.as_deref(),
        args.objects_per_file,
    )?;
    if args.json {
        crate::output::emit(&(serde_json::to_string(&report)? + "\n"))
    } else {
        crate::output::emit(&format!(
            "rendered {objects} synthetic {size}x{size} cutouts in {seconds:.1} s into {partitions} partitions in {out} (seeing and noise from {calibration})\n",
            objects = report.objects,
            size = report.size,
            seconds = report.seconds,
            partitions = report.partitions,
            out = args.out.display(),
            calibration = report.calibration
        ))
    }
}

/// What a rendering made.
#[derive(serde::Serialize)]
pub struct SynthReport {
    pub objects: usize,
    /// Always true: every object rendered here is marked synthetic.
    pub synthetic: bool,
    pub size: usize,
    pub seconds: f64,
    /// Where the seeing and noise were measured.
    pub calibration: String,
    pub partitions: usize,
}

/// Renders `objects` labelled `size` x `size` cutouts (default: each catalog
/// object once; more are drawn with replacement) from the magnitudes, class and
/// redshift of `catalogs`, with seeing and noise from `frames` or the bundled
/// calibration, into partitions of `objects_per_file` under `out`.
pub fn render(
    catalogs: &[PathBuf],
    out: &Path,
    size: usize,
    seed: u64,
    objects: Option<usize>,
    frames: Option<&Path>,
    objects_per_file: usize,
) -> Result<SynthReport> {
    if !(8..=512).contains(&size) {
        bail!("--size {size}: cutouts are 8 to 512 pixels");
    }
    let calibration = match frames {
        Some(dir) => {
            let fields = open_fields(dir)?;
            measure_field(fields.first().context("no field")?)?
        }
        None => Calibration::bundled(),
    };
    let catalog: Vec<ObjectRow> = read_catalogs(catalogs, |_, _| {})?
        .into_iter()
        .flat_map(|c| c.objects)
        .collect();
    if catalog.is_empty() {
        bail!("the catalogs hold no usable objects");
    }
    let total = objects.unwrap_or(catalog.len());
    if total == 0 {
        bail!("--objects 0: nothing to make");
    }
    let renderer = Renderer::new(&calibration, size, seed);
    let source = Source {
        name: format!("cosmicai synth seed {seed}"),
        provenance: Provenance::Synthetic,
        detail: format!(
            "synthetic images rendered by CosmicAI (PSF / Sersic, seeing and noise from {}); magnitudes, class and redshift from {}",
            calibration.measured_on,
            catalogs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut sink = PartitionSink::create(
        out,
        PartitionBy::Objects(objects_per_file),
        PartitionMeta::default(),
    )?;
    let per_object = 5 * size * size;
    let bar = progress::count_bar(total as u64, "rendering");
    let start = std::time::Instant::now();
    let mut pixels = vec![0.0f32; CHUNK * per_object];
    for first in (0..total).step_by(CHUNK) {
        let n = CHUNK.min(total - first);
        let rows: Vec<ObjectRow> = (first..first + n)
            .map(|i| draw(&catalog, i, objects.is_some(), seed))
            .collect();
        render_rows(&renderer, first, &rows, &mut pixels[..n * per_object]);
        for (k, row) in rows.iter().enumerate() {
            let image = &pixels[k * per_object..(k + 1) * per_object];
            sink.push(*row, &source, Some((image, size, size)))?;
        }
        bar.set_position((first + n) as u64);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let written = sink.finish()?;
    Ok(SynthReport {
        objects: total,
        synthetic: true,
        size,
        seconds,
        calibration: calibration.measured_on,
        partitions: written.len(),
    })
}

/// Object `i` of the output: the catalog in order, or a draw with replacement.
/// A repeated catalog object gets its own id, so ids stay unique in the dataset.
fn draw(catalog: &[ObjectRow], i: usize, with_replacement: bool, seed: u64) -> ObjectRow {
    if !with_replacement {
        return catalog[i];
    }
    let h = mix(seed ^ mix(i as u64));
    let mut row = catalog[(h % catalog.len() as u64) as usize];
    row.object_id = (mix(row.object_id as u64 ^ mix(i as u64 + 1)) & ((1 << 53) - 1)) as i64;
    row
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
