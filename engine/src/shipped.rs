//! The PhotoZ weights shipped inside every binary (CLI, server, Lambda), so a
//! fresh clone or a bare Lambda package predicts without downloading anything.

use cosmicai_model::photoz::PhotoZ;
use cosmicai_model::weights::Weights;
use std::path::Path;

/// PhotoZ weights trained by `cosmicai train` on the bundled real catalogs (see its model card).
pub const SHIPPED_PHOTOZ: &[u8] = include_bytes!("../../assets/model/photoz.safetensors");
/// Their model card, shipped with them so a server never shows the card of
/// other weights than those it predicts with.
pub const SHIPPED_PHOTOZ_CARD: &str = include_str!("../../assets/model/photoz.card.json");

/// PhotoZ from `path`, or the shipped weights when `path` is `None`, on any backend.
pub fn load_photoz_on<B: burn::prelude::Backend>(
    path: Option<&Path>,
    device: &B::Device,
) -> Result<PhotoZ<B>, String> {
    let weights = match path {
        Some(p) => Weights::open(p).map_err(|e| e.to_string())?,
        None => Weights::from_bytes("shipped photoz.safetensors", SHIPPED_PHOTOZ)
            .map_err(|e| e.to_string())?,
    };
    PhotoZ::from_weights(&weights, device).map_err(|e| format!("loading PhotoZ: {e}"))
}
