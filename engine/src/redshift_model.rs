//! The models a rank can run, behind one type: PhotoZ (ours) and AstroMAE (CAI's).
//!
//! A [`RedshiftModel`] is loaded once per worker (per Lambda container) from a
//! [`ModelSpec`], then predicts batch after batch. AstroMAE reads every object's
//! cutout and predicts no class; PhotoZ reads magnitudes, and cutouts when it has
//! an image branch.

use crate::predict::{Cutouts, Predicted, predict_astromae, predict_photoz_with};
use cosmicai_model::astromae::AstroMae;
use cosmicai_model::photoz::PhotoZ;
use cosmicai_model::weights::Weights;
use cosmicai_shared::model::ModelSpec;

/// Attention heads of AstroMAE: the one size a checkpoint does not record.
pub const ASTROMAE_HEADS: usize = 3;

/// Objects per parallel slice of an AstroMAE batch on the CPU (see the model's
/// `forward_sliced`: about 3x faster than one large batch on this kind of machine).
pub const CPU_SLICE: usize = 16;

/// A loaded model.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per rank process: boxing would buy nothing
pub enum RedshiftModel<B: burn::prelude::Backend> {
    PhotoZ(PhotoZ<B>),
    AstroMae {
        model: AstroMae<B>,
        /// Objects per parallel slice; `None` runs whole batches (a GPU).
        slice: Option<usize>,
    },
}

impl<B: burn::prelude::Backend> RedshiftModel<B> {
    /// The model `spec` names, its weights read from the local file system
    /// (the shipped PhotoZ when it names none). `cpu` runs AstroMAE in slices.
    pub fn load(spec: &ModelSpec, device: &B::Device, cpu: bool) -> Result<Self, String> {
        match spec {
            ModelSpec::PhotoZ(path) => {
                crate::shipped::load_photoz_on(path.as_deref().map(std::path::Path::new), device)
                    .map(RedshiftModel::PhotoZ)
            }
            ModelSpec::AstroMae(path) => {
                let weights = Weights::open(path).map_err(|e| e.to_string())?;
                Self::from_weights(spec, &weights, device, cpu)
            }
        }
    }

    /// The model `spec` names, from weights already read (from S3, say).
    pub fn from_weights(
        spec: &ModelSpec,
        weights: &Weights,
        device: &B::Device,
        cpu: bool,
    ) -> Result<Self, String> {
        match spec {
            ModelSpec::PhotoZ(_) => PhotoZ::from_weights(weights, device)
                .map(RedshiftModel::PhotoZ)
                .map_err(|e| format!("loading PhotoZ: {e}")),
            ModelSpec::AstroMae(_) => AstroMae::from_pytorch(weights, ASTROMAE_HEADS, device)
                .map(|model| RedshiftModel::AstroMae {
                    model,
                    slice: cpu.then_some(CPU_SLICE),
                })
                .map_err(|e| format!("loading AstroMAE: {e}")),
        }
    }

    /// Whether the model looks at pixels (so a rank must read them).
    pub fn reads_cutouts(&self) -> bool {
        match self {
            RedshiftModel::PhotoZ(m) => m.cutout.is_some(),
            RedshiftModel::AstroMae { .. } => true,
        }
    }

    /// Whether predictions carry a class (AstroMAE predicts redshift only).
    pub fn predicts_class(&self) -> bool {
        matches!(self, RedshiftModel::PhotoZ(_))
    }

    /// Predictions for `magnitudes` and their `cutouts`, `batch_size` at a time.
    /// AstroMAE needs cutouts of at least 32x32: without them it is an error.
    pub fn predict(
        &self,
        magnitudes: &[[f32; 5]],
        cutouts: Option<Cutouts>,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Predicted, String>
    where
        AstroMae<B>: Sync,
    {
        match self {
            RedshiftModel::PhotoZ(m) => {
                predict_photoz_with(m, magnitudes, cutouts, batch_size, device)
            }
            RedshiftModel::AstroMae { model, slice } => {
                let Some(cutouts) = cutouts else {
                    return Err(
                        "has no cutouts: AstroMAE predicts from images (5 bands, at least 32x32)"
                            .into(),
                    );
                };
                predict_astromae(model, magnitudes, cutouts, batch_size, *slice, device)
            }
        }
    }
}
