//! Types shared by every part of CosmicAI: the CLI, the HTTP API, the Lambda
//! handlers and the browser explorer.
//!
//! This crate is deliberately small (serde only) so it compiles to wasm and
//! every side agrees on the same words: a [`Class`] of object, the five SDSS
//! [`Band`]s, and the [`Provenance`] that keeps real and synthetic data apart;
//! in [`run`] the pipeline's request, per-rank results, cost and status; and in
//! [`display`] the asinh colour composite both the server and the browser draw;
//! in [`api`] the HTTP API's bodies; in [`aws`] the events of the AWS state machine;
//! in [`model`] the names of the models a run can use; in [`size`] byte sizes
//! as people read them.

pub mod api;
pub mod aws;
pub mod axis;
pub mod cai_payload;
pub mod cutouts;
pub mod display;
mod domain;
pub mod metrics;
pub mod model;
pub mod run;
pub mod size;
pub mod sky;

pub use domain::{BANDS, Band, Class, Provenance};

/// A fingerprint of this crate's sources, which the server reports at
/// `/api/health`: an explorer built with another (an old `dist/`) tells its
/// user, since the replies it reads may have changed shape.
pub const API_FINGERPRINT: &str = env!("COSMICAI_API_FINGERPRINT");

/// `n` and its noun, plural where `n` is not 1: "1 rank", "3 ranks".
pub fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(super::counted(1, "rank"), "1 rank");
        assert_eq!(super::counted(0, "rank"), "0 ranks");
        assert_eq!(super::counted(40_000, "rank"), "40000 ranks");
    }
}
