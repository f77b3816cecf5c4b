//! The models the CLI runs: the CPU backend and the weights shipped in the binary.

use anyhow::{Context, Result};
use cosmicai_model::photoz::PhotoZ;
use cosmicai_model::weights::Weights;
use std::path::Path;

/// The CPU backend for inference.
pub type Cpu = burn::backend::NdArray<f32>;

/// PhotoZ weights trained by `cosmicai train` on the bundled real catalogs (see its model card).
pub const SHIPPED_PHOTOZ: &[u8] = include_bytes!("../../assets/model/photoz.safetensors");

/// The CUDA backend, when built with `--features cuda`.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda<f32>;

/// PhotoZ from `path`, or the shipped weights when `path` is `None`, on the CPU.
pub fn load_photoz(path: Option<&Path>) -> Result<PhotoZ<Cpu>> {
    load_photoz_on::<Cpu>(path, &Default::default())
}

/// PhotoZ on any backend.
pub fn load_photoz_on<B: burn::prelude::Backend>(
    path: Option<&Path>,
    device: &B::Device,
) -> Result<PhotoZ<B>> {
    let weights = match path {
        Some(p) => Weights::open(p)?,
        None => Weights::from_bytes("shipped photoz.safetensors", SHIPPED_PHOTOZ)?,
    };
    PhotoZ::from_weights(&weights, device).context("loading PhotoZ")
}
