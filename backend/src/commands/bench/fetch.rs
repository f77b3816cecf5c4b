//! `cosmicai bench fetch`: reading a run's rank files with many GETs in flight
//! (`for_each_fetched`, used by Summarize and the AWS follower's copy back), from
//! a store whose GETs wait as S3's do: most answer at the median, a few far later.
//! Prints the time against the ideal, where every reader is always busy.

use anyhow::Result;
use clap::Args;
use cosmicai_engine::store::{ObjectStore, StoreError, StoreObject, for_each_fetched};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct FetchBenchArgs {
    /// Objects to read (a run of 10,000 ranks has 20,000 for Summarize).
    #[arg(long, default_value_t = 4_000)]
    pub objects: usize,
    /// GETs in flight.
    #[arg(long, default_value_t = cosmicai_engine::store::PARALLEL_GETS)]
    pub parallel: usize,
    /// Milliseconds most GETs take.
    #[arg(long, default_value_t = 20)]
    pub median_ms: u64,
    /// One GET in this many is slow (S3's tail).
    #[arg(long, default_value_t = 50)]
    pub slow_every: usize,
    /// Milliseconds a slow GET takes.
    #[arg(long, default_value_t = 300)]
    pub slow_ms: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct FetchFigures {
    objects: usize,
    parallel: usize,
    seconds: f64,
    ideal_s: f64,
}

/// A store whose GET of key `i` waits `slow_ms` when `i` is a multiple of
/// `slow_every` (spread evenly, so every run waits the same), else `median_ms`.
struct Latent {
    median: Duration,
    slow: Duration,
    slow_every: usize,
}

impl Latent {
    fn wait_for(&self, i: usize) -> Duration {
        if i.is_multiple_of(self.slow_every) {
            self.slow
        } else {
            self.median
        }
    }
}

impl ObjectStore for Latent {
    fn list(&self, _: &str) -> Result<Vec<StoreObject>, StoreError> {
        Ok(Vec::new())
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let i: usize = key.parse().unwrap_or(0);
        std::thread::sleep(self.wait_for(i));
        Ok(vec![b'x'; 400])
    }
    fn put(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    fn put_if_absent(&self, _: &str, _: &[u8]) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn local_path(&self, _: &str) -> Option<std::path::PathBuf> {
        None
    }
    fn describe(&self) -> String {
        "a store with S3-like waits".into()
    }
}

pub fn bench_fetch(args: FetchBenchArgs) -> Result<()> {
    if args.objects == 0 || args.objects > 1_000_000 {
        anyhow::bail!("--objects must be 1 to 1,000,000");
    }
    if args.parallel == 0 || args.parallel > 256 || args.slow_every == 0 {
        anyhow::bail!("--parallel must be 1 to 256 and --slow-every at least 1");
    }
    if args.median_ms > 10_000 || args.slow_ms > 60_000 {
        anyhow::bail!("--median-ms must be at most 10,000 and --slow-ms at most 60,000");
    }
    let store = Latent {
        median: Duration::from_millis(args.median_ms),
        slow: Duration::from_millis(args.slow_ms),
        slow_every: args.slow_every,
    };
    let keys: Vec<String> = (0..args.objects).map(|i| i.to_string()).collect();
    let waited: Duration = (0..args.objects).map(|i| store.wait_for(i)).sum();
    let started = Instant::now();
    let mut bytes = 0;
    for_each_fetched(&store, &keys, args.parallel, |_, got| {
        bytes += got?.len();
        Ok::<_, StoreError>(())
    })?;
    let figures = FetchFigures {
        objects: args.objects,
        parallel: args.parallel,
        seconds: started.elapsed().as_secs_f64(),
        ideal_s: waited.as_secs_f64() / args.parallel as f64,
    };
    let text = if args.json {
        serde_json::to_string(&figures)?
    } else {
        format!(
            "{} objects ({} bytes), {} in flight: {:.2} s; ideal (every reader always busy) {:.2} s ({:.0}%)",
            figures.objects,
            bytes,
            figures.parallel,
            figures.seconds,
            figures.ideal_s,
            100.0 * figures.ideal_s / figures.seconds
        )
    };
    crate::output::emit(&(text + "\n"))
}
