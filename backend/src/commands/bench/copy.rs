//! `cosmicai bench copy`: writing a run's results into the data directory as the
//! AWS follower brings them back, one sync per object (`LocalStore::put`) against
//! one for them all (`put_unsynced`, then `sync`).

use anyhow::Result;
use clap::Args;
use cosmicai_engine::store::{LocalStore, ObjectStore};
use serde::Serialize;
use std::time::Instant;

#[derive(Args)]
pub struct CopyBenchArgs {
    /// Objects to write (a run of 10,000 ranks leaves over 30,000).
    #[arg(long, default_value_t = 30_000)]
    pub objects: usize,
    /// Bytes each (a rank's result file is a few hundred).
    #[arg(long, default_value_t = 400)]
    pub bytes: usize,
    /// Scratch folder (on the disk to measure; default: the system's temporary one).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct CopyFigures {
    objects: usize,
    bytes: usize,
    synced_each_s: f64,
    synced_once_s: f64,
}

pub fn bench_copy(args: CopyBenchArgs) -> Result<()> {
    if args.objects == 0 || args.objects > 1_000_000 || args.bytes > 1 << 20 {
        anyhow::bail!("--objects must be 1 to 1,000,000 and --bytes at most 1 MiB");
    }
    let scratch = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let body = vec![b'x'; args.bytes];
    let key = |i: usize| format!("results/r/{}.json", i);
    let each = LocalStore::new(scratch.path().join("each"));
    let started = Instant::now();
    for i in 0..args.objects {
        each.put(&key(i), &body)?;
    }
    let synced_each_s = started.elapsed().as_secs_f64();
    let once = LocalStore::new(scratch.path().join("once"));
    let started = Instant::now();
    for i in 0..args.objects {
        once.put_unsynced(&key(i), &body)?;
    }
    once.sync()?;
    let synced_once_s = started.elapsed().as_secs_f64();
    let figures = CopyFigures {
        objects: args.objects,
        bytes: args.bytes,
        synced_each_s,
        synced_once_s,
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "{} objects of {} bytes: {:.2} s synced each, {:.2} s synced once ({:.1}x)",
            figures.objects,
            figures.bytes,
            figures.synced_each_s,
            figures.synced_once_s,
            figures.synced_each_s / figures.synced_once_s
        )
    };
    crate::output::emit(&(text + "\n"))
}
