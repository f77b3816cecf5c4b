pub mod bench;
pub mod calibrate;
pub mod catalog;
pub mod eval;
pub mod fetch;
pub mod ingest;
pub mod inspect;
pub mod model;
pub mod partition;
pub mod predictions;
pub mod project;
pub mod run;
pub mod runs;
pub mod sweep;
pub mod synth;
pub mod train;
pub mod worker;

use cosmicai_engine::dataset::PartitionBy;
use cosmicai_engine::size::parse_size;
use cosmicai_shared::run::RunStatus;

/// A run that ended without succeeding. Its summary is printed first; then the
/// command exits non-zero, so that a script or a job chain stops there: 3 where
/// it is partial (some ranks failed for good), 1 otherwise, 130 where Ctrl-C
/// stopped it ([`crate::interrupt`]).
#[derive(Debug)]
pub struct NotSucceeded {
    pub run_id: String,
    pub status: RunStatus,
    /// Where its outcome was shown, where not in its own summary above (a
    /// sweep's table), and what else the reader should know.
    pub shown: Option<String>,
}

impl NotSucceeded {
    pub fn exit_code(&self) -> u8 {
        if crate::interrupt::interrupted() {
            return 130;
        }
        match self.status {
            RunStatus::Partial => 3,
            _ => 1,
        }
    }
}

impl std::fmt::Display for NotSucceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        if self.status == RunStatus::Succeeded {
            // Only an interrupt makes a succeeded run no success (exit 130).
            return write!(
                f,
                "run {} was interrupted after every rank had ended: it succeeded ({}); exit code {} for the interrupt",
                self.run_id,
                self.shown.as_deref().unwrap_or("see its summary above"),
                self.exit_code()
            );
        }
        let how = if crate::interrupt::interrupted() && self.status != RunStatus::Cancelled {
            "was interrupted and ended"
        } else {
            "ended"
        };
        write!(
            f,
            "run {} {how} {}: {} (exit code {})",
            self.run_id,
            self.status.name(),
            self.shown.as_deref().unwrap_or("see its summary above"),
            self.exit_code()
        )
    }
}

impl std::error::Error for NotSucceeded {}

/// Ok where run `run_id` succeeded, else [`NotSucceeded`].
pub fn succeeded(run_id: &str, status: RunStatus) -> anyhow::Result<()> {
    match status {
        RunStatus::Succeeded if !crate::interrupt::interrupted() => Ok(()),
        status => Err(NotSucceeded {
            run_id: run_id.to_string(),
            status,
            shown: None,
        }
        .into()),
    }
}

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
    pub fn split(&self, default: PartitionBy) -> PartitionBy {
        match (self.size, self.objects) {
            (Some(bytes), _) => PartitionBy::Bytes(bytes),
            (None, Some(n)) => PartitionBy::Objects(n),
            (None, None) => default,
        }
    }
}
