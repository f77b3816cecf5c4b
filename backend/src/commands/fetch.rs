//! `cosmicai fetch`: the SDSS frames a catalog's objects lie on, from the SDSS
//! archive into a local frame cache that `cosmicai ingest --frames` reads.

use anyhow::{Context, Result, bail};
use clap::Args;
use cosmicai_engine::archive::fetch::{
    ARCHIVE_ENV, DEFAULT_ARCHIVE, FetchEvent, FetchOptions, FrameJob, Outcome, check_archive, fetch,
};
use cosmicai_engine::archive::plan::{ESTIMATED_FRAME_BYTES, Selection, choose, count_fields};
use cosmicai_engine::archive::{FrameCache, SdssField};
use cosmicai_engine::catalog::read_catalogs;
use cosmicai_engine::size::{format_size, parse_size};
use cosmicai_shared::{BANDS, Band};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai fetch --catalog assets/catalogs/*.csv.gz --fields 20 --out data/frames\n  \
    cosmicai ingest --frames data/frames --catalog assets/catalogs/*.csv.gz --out data/real-labelled\n\n\
    Frames come from the SDSS Science Archive Server (about 3.4 MB per band, 17 MB per field).\n\
    Only checked frames (a whole bzip2 stream holding a FITS image with a WCS) enter the cache;\n\
    a broken transfer resumes on the next try or the next run, and a second run fetches nothing\n\
    it already has. --dry-run shows the plan without downloading.")]
pub struct FetchArgs {
    /// Catalog CSVs whose rows name their field (run, rerun, camcol, field).
    #[arg(long, num_args = 1.., required = true)]
    pub catalog: Vec<PathBuf>,
    /// The frame cache (created): frames under their archive file names.
    #[arg(long)]
    pub out: PathBuf,
    /// Bands to fetch; ingest needs all five.
    #[arg(long, default_value = "ugriz", value_parser = parse_bands)]
    pub bands: Bands,
    /// The N fields holding the most labelled objects.
    #[arg(long, conflicts_with = "objects")]
    pub fields: Option<usize>,
    /// As few fields as cover N catalog objects.
    #[arg(long, conflicts_with = "all")]
    pub objects: Option<usize>,
    /// Every field the catalogs name (within --budget).
    #[arg(long, conflicts_with = "fields")]
    pub all: bool,
    /// Most bytes the cache may hold (frames already there included).
    #[arg(long, default_value = "20GB", value_parser = parse_size)]
    pub budget: u64,
    /// Archive root holding RERUN/RUN/CAMCOL/frame-*.fits.bz2 (a mirror, say);
    /// default $COSMICAI_SDSS_ARCHIVE, else the SDSS Science Archive Server's DR17 frames.
    #[arg(long)]
    pub archive: Option<String>,
    /// Transfers at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
    /// Tries per frame before it is reported failed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
    /// First wait before a retry, in milliseconds (doubled each time, with jitter).
    #[arg(long, default_value_t = 500)]
    pub backoff_ms: u64,
    /// Show the plan; download nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

/// Bands named by their letters (`ugriz`, `gri`).
#[derive(Clone)]
pub struct Bands(pub Vec<Band>);

fn parse_bands(text: &str) -> Result<Bands, String> {
    let mut bands = Vec::new();
    for c in text.chars() {
        let band = BANDS
            .into_iter()
            .find(|b| b.letter() == c)
            .ok_or_else(|| format!("{c:?} is not an SDSS band (u, g, r, i, z)"))?;
        if !bands.contains(&band) {
            bands.push(band);
        }
    }
    if bands.is_empty() {
        return Err("no bands given".into());
    }
    Ok(Bands(bands))
}

#[derive(Serialize)]
struct FetchSummary {
    catalog_objects: usize,
    objects_with_field: usize,
    fields_named: usize,
    fields_chosen: usize,
    fields_over_budget: usize,
    objects_covered: usize,
    labelled_covered: usize,
    estimated_bytes: u64,
    frames: usize,
    cached: usize,
    downloaded: usize,
    missing: usize,
    over_budget: usize,
    failed: usize,
    downloaded_bytes: u64,
    seconds: f64,
    cache_bytes: u64,
    failures: Vec<String>,
}

pub fn run(args: FetchArgs) -> Result<()> {
    let bands = args.bands.0.clone();
    let catalogs = read_catalogs(&args.catalog, |_, _| {})?;
    let catalog_objects = catalogs.iter().map(|c| c.objects.len()).sum();
    let counts = count_fields(&catalogs);
    let objects_with_field: usize = counts.iter().map(|c| c.objects).sum();
    if counts.is_empty() {
        bail!(
            "no row of {} names its SDSS field: fetch needs the columns run, rerun, camcol and field \
             (SDSS17: run_ID, rerun_ID, cam_col, field_ID)",
            args.catalog
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let selection = match (args.fields, args.objects, args.all) {
        (Some(n), _, _) => Selection::Fields(n),
        (None, Some(n), _) => Selection::Objects(n),
        (None, None, true) => Selection::All,
        // No silent default: every field of a big catalog is many gigabytes.
        (None, None, false) => bail!(
            "fetch needs --fields N, --objects N or --all: the catalogs name {} fields, about {} in {} bands for all of them",
            counts.len(),
            format_size(counts.len() as u64 * bands.len() as u64 * ESTIMATED_FRAME_BYTES),
            bands.len()
        ),
    };
    let archive = check_archive(&archive_url(args.archive.as_deref()))?;
    let cache = FrameCache::open(&args.out)
        .with_context(|| format!("cannot create the frame cache {}", args.out.display()))?;
    let _lock = match cache.lock() {
        Ok(Some(lock)) => lock,
        Ok(None) => bail!(
            "another cosmicai fetch is writing to {}: wait for it, or give another --out",
            args.out.display()
        ),
        Err(e) => bail!("cannot lock the frame cache {}: {e}", args.out.display()),
    };
    let has_all = |f: &SdssField| bands.iter().all(|&b| cache.has_frame(f, b));
    let plan = choose(
        &counts,
        selection,
        bands.len(),
        cache.bytes(),
        args.budget,
        has_all,
    );
    let jobs: Vec<FrameJob> = plan
        .fields
        .iter()
        .flat_map(|f| {
            bands.iter().map(|&band| FrameJob {
                field: f.field,
                band,
            })
        })
        .collect();
    let mut summary = FetchSummary {
        catalog_objects,
        objects_with_field,
        fields_named: counts.len(),
        fields_chosen: plan.fields.len(),
        fields_over_budget: plan.over_budget,
        objects_covered: plan.objects(),
        labelled_covered: plan.labelled(),
        estimated_bytes: plan.estimated_bytes,
        frames: jobs.len(),
        cached: 0,
        downloaded: 0,
        missing: 0,
        over_budget: 0,
        failed: 0,
        downloaded_bytes: 0,
        seconds: 0.0,
        cache_bytes: cache.bytes(),
        failures: Vec::new(),
    };
    if !args.dry_run && !jobs.is_empty() {
        let to_get = jobs
            .iter()
            .filter(|j| !cache.has_frame(&j.field, j.band))
            .count() as u64;
        let bar = if args.json {
            indicatif::ProgressBar::hidden()
        } else {
            crate::progress::bytes_bar(to_get * ESTIMATED_FRAME_BYTES, "fetching")
        };
        let events = {
            let bar = bar.clone();
            Arc::new(move |event: FetchEvent| match event {
                // The estimate per frame gives way to its real size.
                FetchEvent::Sized { remaining } => bar.set_length(
                    bar.length()
                        .unwrap_or(0)
                        .saturating_add(remaining)
                        .saturating_sub(ESTIMATED_FRAME_BYTES),
                ),
                FetchEvent::Received(n) => bar.inc(n),
                FetchEvent::Done => {}
            })
        };
        let options = FetchOptions {
            archive,
            concurrency: usize::from(args.concurrency),
            attempts: args.attempts,
            backoff: Duration::from_millis(args.backoff_ms),
            budget: args.budget,
            ..FetchOptions::default()
        };
        let report = fetch(&cache, &jobs, &options, events)?;
        bar.finish_and_clear();
        for (job, outcome) in &report.frames {
            let file = job.field.frame_file(job.band);
            match outcome {
                Outcome::Cached => summary.cached += 1,
                Outcome::Downloaded { .. } => summary.downloaded += 1,
                Outcome::OverBudget => summary.over_budget += 1,
                Outcome::Missing { status } => {
                    summary.missing += 1;
                    summary
                        .failures
                        .push(format!("{file}: not in the archive (HTTP {status})"));
                }
                Outcome::Failed { attempts, error } => {
                    summary.failed += 1;
                    summary
                        .failures
                        .push(format!("{file}: failed after {attempts} tries: {error}"));
                }
            }
        }
        summary.downloaded_bytes = report.downloaded_bytes;
        summary.seconds = report.seconds;
        summary.cache_bytes = cache.bytes();
    } else {
        summary.cached = jobs
            .iter()
            .filter(|j| cache.has_frame(&j.field, j.band))
            .count();
    }
    if args.json {
        crate::output::emit(&(serde_json::to_string(&summary)? + "\n"))?;
    } else {
        print_summary(&summary, &args)?;
    }
    if summary.failed + summary.missing > 0 {
        bail!(
            "{} of {} frames did not arrive (frames that did are kept; run again to retry)",
            summary.failed + summary.missing,
            summary.frames
        );
    }
    // What was asked for and left out is a failure too, so a script sees it.
    if !args.dry_run && summary.fields_over_budget + summary.over_budget > 0 {
        bail!(
            "{} fields and {} frames did not fit --budget {} (frames that did are kept; raise --budget, or ask for fewer fields)",
            summary.fields_over_budget,
            summary.over_budget,
            format_size(args.budget)
        );
    }
    Ok(())
}

/// `--archive`, else the environment's mirror, else SDSS itself.
pub fn archive_url(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .or_else(|| std::env::var(ARCHIVE_ENV).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_ARCHIVE.to_string())
}

fn print_summary(s: &FetchSummary, args: &FetchArgs) -> Result<()> {
    let mut out = String::new();
    crate::line!(
        out,
        "catalogs: {} objects, {} on {} named SDSS fields",
        s.catalog_objects,
        s.objects_with_field,
        s.fields_named
    );
    crate::line!(
        out,
        "plan: {} fields holding {} objects ({} labelled){}, about {} to download",
        s.fields_chosen,
        s.objects_covered,
        s.labelled_covered,
        if s.fields_over_budget > 0 {
            format!(
                "; {} more fields do not fit the {} budget",
                s.fields_over_budget,
                format_size(args.budget)
            )
        } else {
            String::new()
        },
        format_size(s.estimated_bytes)
    );
    if s.estimated_bytes > 0 {
        crate::line!(
            out,
            "about {:.0} objects per GB downloaded",
            s.objects_covered as f64 / (s.estimated_bytes as f64 / 1e9)
        );
    }
    if args.dry_run {
        crate::line!(
            out,
            "dry run: {} of {} frames already cached",
            s.cached,
            s.frames
        );
    } else {
        let rate = s.downloaded_bytes as f64 / s.seconds.max(1e-9);
        crate::line!(
            out,
            "frames: {} downloaded ({} in {:.1} s, {}/s), {} already cached, {} over budget, {} missing, {} failed",
            s.downloaded,
            format_size(s.downloaded_bytes),
            s.seconds,
            format_size(rate as u64),
            s.cached,
            s.over_budget,
            s.missing,
            s.failed
        );
        for failure in s.failures.iter().take(10) {
            crate::line!(out, "  {failure}");
        }
        if s.failures.len() > 10 {
            crate::line!(out, "  ... and {} more", s.failures.len() - 10);
        }
        crate::line!(
            out,
            "cache {}: {}; next: cosmicai ingest --frames {} --catalog ... --out DIR",
            args.out.display(),
            format_size(s.cache_bytes),
            args.out.display()
        );
    }
    crate::output::emit(&out)
}
