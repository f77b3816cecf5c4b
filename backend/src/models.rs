//! The models the CLI runs: the CPU backend and the weights shipped in the binary.

use anyhow::Result;
use cosmicai_model::photoz::PhotoZ;
use std::path::Path;

pub use cosmicai_engine::shipped::SHIPPED_PHOTOZ;

/// The CPU backend for inference.
pub type Cpu = burn::backend::NdArray<f32>;

/// The backend `cosmicai train` runs burn's autodiff on: burn-flex, faster than
/// ndarray at training here (the README has the figures).
pub type Train = burn::backend::Autodiff<burn::backend::Flex>;
/// [`Train`] in words, for model cards.
pub const TRAIN_BACKEND: &str = "burn 0.21 autodiff on flex (CPU)";

/// PhotoZ from `path`, or the shipped weights when `path` is `None`, on the CPU.
pub fn load_photoz(path: Option<&Path>) -> Result<PhotoZ<Cpu>> {
    load_photoz_on::<Cpu>(path, &Default::default())
}

/// PhotoZ on any backend.
pub fn load_photoz_on<B: burn::prelude::Backend>(
    path: Option<&Path>,
    device: &B::Device,
) -> Result<PhotoZ<B>> {
    cosmicai_engine::shipped::load_photoz_on(path, device).map_err(anyhow::Error::msg)
}
