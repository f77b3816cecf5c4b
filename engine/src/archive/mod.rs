//! Real SDSS images for catalog objects, from the SDSS Science Archive Server.
//!
//! Every catalog row names the imaging field it was measured on ([`SdssField`]);
//! [`plan`] counts objects per field and picks the fields worth fetching within a
//! disk budget; [`fetch`] (feature `archive`) downloads their five frames into a
//! [`FrameCache`], which `ingest` then cuts labelled real cutouts from.

mod cache;
mod field;
pub mod plan;

#[cfg(feature = "archive")]
pub mod fetch;

pub use cache::FrameCache;
pub use field::SdssField;
