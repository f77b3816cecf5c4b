//! `cosmicai`: the command line of CosmicAI.
//!
//! Each subcommand lives in its own file under `commands/` and is a thin layer
//! over the `cosmicai-engine` crate: parse arguments, show progress, print a
//! report (for people, or one JSON object with `--json`). Runs and sweeps, from
//! here or from the HTTP API (`server/`), all go through [`coordinator`], which
//! owns a run from request to registry row, locally or on AWS (`aws/`).

mod aws;
mod commands;
mod coordinator;
mod interrupt;
mod models;
mod output;
mod plot;
mod progress;
mod registry;
mod server;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cosmicai",
    version,
    about = "Galaxy redshifts from SDSS data, at any scale",
    after_help = "Example: build a dataset from the bundled real catalogs and look at it\n  \
        cosmicai catalog import assets/catalogs/*.csv.gz --out data/catalog\n  \
        cosmicai partition --input data/catalog --objects 4096 --out data/parts\n  \
        cosmicai inspect data/parts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with SDSS spectroscopic catalogs (CSV).
    #[command(
        subcommand,
        after_help = "Example:\n  cosmicai catalog import assets/catalogs/skyserver_dr14.csv.gz --out data/catalog"
    )]
    Catalog(commands::catalog::CatalogCommand),
    /// Re-split a dataset into numbered partitions by size or object count.
    Partition(commands::partition::PartitionArgs),
    /// Summarise a partition file or a dataset directory.
    Inspect(commands::inspect::InspectArgs),
    /// Download the SDSS frames a catalog's objects lie on, into a local frame cache.
    Fetch(commands::fetch::FetchArgs),
    /// Cut real 5-band cutouts from SDSS frames (at catalog positions or detected sources).
    Ingest(commands::ingest::IngestArgs),
    /// Measure seeing and sky noise per band on real SDSS frames.
    Calibrate(commands::calibrate::CalibrateArgs),
    /// Render labelled synthetic cutouts from catalog magnitudes (calibrated on real frames).
    Synth(commands::synth::SynthArgs),
    /// Train PhotoZ on real catalogs; writes weights and a model card.
    Train(commands::train::TrainArgs),
    /// Score PhotoZ on a labelled catalog (NMAD, bias, outliers, class accuracy).
    Eval(commands::eval::EvalArgs),
    /// Run the pipeline (Initialize, Map over world_size ranks, Summarize) on this machine.
    Run(commands::run::RunArgs),
    /// Run the pipeline over several world sizes (and devices); writes a CSV and a chart.
    Sweep(commands::sweep::SweepArgs),
    /// Project a run of a given dataset size onto Lambda, from throughput measured here.
    Project(commands::project::ProjectArgs),
    /// List the runs recorded for a data directory.
    Runs(commands::runs::RunsArgs),
    /// One rank of a run (started by `cosmicai run`).
    #[command(hide = true)]
    Worker(commands::worker::WorkerArgs),
    /// Serve the HTTP API and the explorer (fills a new data directory from the bundled data).
    Serve(server::ServeArgs),
    /// Bring a model in: `model import` reads a CAI AstroMAE checkpoint (.pt).
    #[command(
        subcommand,
        after_help = "Example:\n  cosmicai model import Mixed_Inception_z_VITAE_Base_Img_Full_New_Full.pt --out astromae.safetensors"
    )]
    Model(commands::model::ModelCommand),
    /// Benchmarks that print figures (inference throughput, memory).
    #[command(
        subcommand,
        after_help = "Example:\n  cosmicai bench infer --model astromae --batch-size 512 --samples 2048 --threads 2 --json"
    )]
    Bench(commands::bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Catalog(command) => commands::catalog::run(command),
        Command::Partition(args) => commands::partition::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Fetch(args) => commands::fetch::run(args),
        Command::Ingest(args) => commands::ingest::run(args),
        Command::Calibrate(args) => commands::calibrate::run(args),
        Command::Synth(args) => commands::synth::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Serve(args) => server::run(args),
        Command::Bench(command) => commands::bench::run(command),
        Command::Model(command) => commands::model::run(command),
        Command::Run(args) => commands::run::run(args),
        Command::Runs(args) => commands::runs::run(args),
        Command::Project(args) => commands::project::run(args),
        Command::Sweep(args) => commands::sweep::run(args),
        Command::Worker(args) => commands::worker::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            crate::say!("error: {}", output::chain(&error));
            match error.downcast_ref::<commands::NotSucceeded>() {
                Some(run) => ExitCode::from(run.exit_code()),
                None if interrupt::interrupted() => ExitCode::from(130),
                None => ExitCode::FAILURE,
            }
        }
    }
}
