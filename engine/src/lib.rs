//! The CosmicAI engine: everything between the raw survey data and a result.
//!
//! Read top-down, the data flows like this:
//! 1. [`catalog`] reads real SDSS spectroscopic catalogs (CSV, two schemas) into
//!    [`partition::ObjectRow`]s, skipping and counting rows that cannot be trusted.
//! 2. [`partition`] is the on-disk unit of work: one safetensors file holding a
//!    columnar [`partition::Partition`] (magnitudes, redshift, class, position,
//!    provenance and, optionally, 5-band images). Its reader validates every field.
//! 3. [`dataset`] is a directory of partitions: listing them in order and
//!    re-splitting them by size or object count, as CAI's experiments do.
//!    [`cai`] reads CAI's own `.pt` data partitions into partitions.
//! 4. [`inspect`] summarises a partition or a dataset.
//! 5. [`redshift_model`] loads the model a run names (PhotoZ or a CAI user's
//!    AstroMAE checkpoint); [`predict`] runs it over objects; [`metrics`] scores the predictions
//!    against spectroscopic labels; [`split`] fixes which objects validate.
//!
//!    [`shipped`] holds the PhotoZ weights every binary carries; `gpu_astromae`
//!    (feature `cuda`) runs AstroMAE's fused schedule on an NVIDIA GPU;
//!    [`placement`] says, from a run's request, on which of these a rank runs.
//!
//! 6. [`archive`]: the SDSS frames a catalog's objects lie on, chosen within a
//!    disk budget and fetched from the SDSS archive into a local cache;
//!    [`imagery`]: real cutouts cut from those frames, a renderer calibrated on
//!    them for labelled synthetic cutouts, and PNG views.
//!
//! 7. [`pipeline`]: Initialize → Map over ranks → Summarize, reading and writing
//!    through an [`store::ObjectStore`]; [`executor`] runs each rank as its own
//!    process and measures it like Lambda; [`cost`] prices the run at AWS rates;
//!    [`projection`] projects a run of a size not at hand onto Lambda.
//!
//! Beside the flow: [`size`] reads and prints sizes (`25MB`), [`system`] what
//! the host has (cores, memory, a process's peak RSS), and [`fuzz`] the
//! hostile-input targets every reader above is run against (here, so that
//! `cargo test` runs them on every change, and cargo-fuzz under `fuzz/` too).

pub mod archive;
pub mod cai;
pub mod catalog;
pub mod cost;
pub mod dataset;
pub mod executor;
pub mod fuzz;
#[cfg(feature = "cuda")]
pub mod gpu_astromae;
pub mod imagery;
pub mod inspect;
pub mod metrics;
pub mod partition;
pub mod pipeline;
pub mod placement;
pub mod predict;
pub mod projection;
pub mod redshift_model;
pub mod shipped;
pub mod size;
pub mod split;
pub mod store;
pub mod system;
