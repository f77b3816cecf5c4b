pub mod bench;
pub mod calibrate;
pub mod catalog;
pub mod cross_validate;
pub mod eval;
pub mod fetch;
pub mod ingest;
pub mod inspect;
pub mod model;
pub mod partition;
pub mod project;
pub mod real_cutouts;
pub mod run;
pub mod runs;
pub mod sweep;
pub mod synth;
pub mod train;
pub mod worker;

use cosmicai_engine::dataset::SplitBy;
use cosmicai_engine::size::parse_size;

/// `--size` / `--objects`, shared by the commands that write partitions.
#[derive(clap::Args, Debug)]
#[group(multiple = false)]
pub struct SplitArgs {
    /// Largest file per partition, e.g. 25MB, 50MB, 100MB (CAI's sizes) or 64MiB.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Objects per partition instead of a size.
    #[arg(long)]
    pub objects: Option<usize>,
}

impl SplitArgs {
    pub fn split(&self, default: SplitBy) -> SplitBy {
        match (self.size, self.objects) {
            (Some(bytes), _) => SplitBy::Bytes(bytes),
            (None, Some(n)) => SplitBy::Objects(n),
            (None, None) => default,
        }
    }
}
