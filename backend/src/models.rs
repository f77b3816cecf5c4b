//! The models the CLI runs: the CPU backend and the weights shipped in the binary.

use anyhow::Result;
use cosmicai_model::photoz::PhotoZ;
use std::path::Path;

pub use cosmicai_engine::shipped::{SHIPPED_PHOTOZ, SHIPPED_PHOTOZ_CARD};

/// The CPU backend for inference.
pub use cosmicai_engine::redshift_model::Cpu;

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

/// SHA-256 of `bytes` in lower-case hex, as model cards record their weights.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The shipped weights' model card, where it describes those weights. A card
/// whose `weights_sha256` names other bytes (training cut off between its two
/// writes, or a card edited by hand) would show another model's figures.
/// `weights_sha256` is the shipped weights' hash, worked out once by the caller.
pub fn shipped_photoz_card(weights_sha256: &str) -> Result<serde_json::Value> {
    let card: serde_json::Value = serde_json::from_str(SHIPPED_PHOTOZ_CARD)
        .map_err(|e| anyhow::anyhow!("the shipped photoz.card.json: {e}"))?;
    let named = card["weights_sha256"].as_str().unwrap_or("none");
    if named != weights_sha256 {
        anyhow::bail!(
            "the shipped photoz.card.json describes weights with SHA-256 {named}, but the shipped photoz.safetensors has {weights_sha256}: run `cosmicai train --out assets/model` again"
        );
    }
    Ok(card)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_card_describes_the_shipped_weights() {
        let card = super::shipped_photoz_card(&super::sha256_hex(super::SHIPPED_PHOTOZ))
            .expect("card and weights agree");
        assert_eq!(card["weights_bytes"], super::SHIPPED_PHOTOZ.len());
        assert_eq!(super::sha256_hex(b"abc").len(), 64);
        assert!(
            super::sha256_hex(b"abc").starts_with("ba7816bf"),
            "SHA-256 of abc"
        );
    }
}
