//! The models a rank can run, behind one type: PhotoZ (ours) and AstroMAE (CAI's).
//!
//! A [`RedshiftModel`] is loaded once per worker (per Lambda container) from a
//! [`ModelSpec`], then predicts batch after batch. AstroMAE reads every object's
//! cutout and predicts no class; PhotoZ reads magnitudes, and cutouts when it has
//! an image branch.

use crate::predict::{AstroMaeOn, Cutouts, Predicted, predict_astromae, predict_photoz_with};
use cosmicai_model::astromae::AstroMae;
use cosmicai_model::astromae::fused::FusedAstroMae;
use cosmicai_model::photoz::PhotoZ;
use cosmicai_model::weights::Weights;
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::Precision;

/// Attention heads of AstroMAE: the one size a checkpoint does not record.
pub const ASTROMAE_HEADS: usize = 3;

/// Objects per parallel slice of an AstroMAE batch on the CPU: a slice's
/// activations stay in cache (`cosmicai bench infer --slice` measures others).
pub const CPU_SLICE: usize = 32;

/// A loaded model.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per rank process: boxing would buy nothing
pub enum RedshiftModel<B: burn::prelude::Backend> {
    PhotoZ(PhotoZ<B>),
    /// AstroMAE through burn: whole batches, for a GPU.
    AstroMae(AstroMae<B>),
    /// AstroMAE on the CPU: fused kernels over gemm, slices of a batch on
    /// rayon's threads (about 3x burn-ndarray's speed; see the README).
    FusedAstroMae(FusedAstroMae),
    /// AstroMAE on an NVIDIA GPU through the fused path's schedule
    /// (`COSMICAI_CUDA_KERNELS=fused`; see [`crate::gpu_astromae`]).
    #[cfg(feature = "cuda")]
    GpuAstroMae(crate::gpu_astromae::GpuAstroMae),
}

/// The CPU backend runs build models on (and checks build them with).
pub type Cpu = burn::backend::NdArray<f32>;

/// Builds the model `spec` names from `weights`, which checks every tensor it
/// needs, and says what is wrong by name (an optimizer state, another model):
/// before a run starts any rank, locally or on AWS.
pub fn check_weights(spec: &ModelSpec, weights: &Weights) -> Result<(), String> {
    RedshiftModel::<Cpu>::from_weights(spec, weights, &Default::default(), false)
        .map(drop)
        .map_err(|e| format!("model '{spec}': {e}; no rank was started"))
}

impl<B: burn::prelude::Backend> RedshiftModel<B> {
    /// The model `spec` names, its weights read from the local file system
    /// (the shipped PhotoZ when it names none). `cpu` runs AstroMAE on the fused
    /// CPU path.
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
            ModelSpec::AstroMae(_) => {
                let model = AstroMae::from_pytorch(weights, ASTROMAE_HEADS, device)
                    .map_err(|e| format!("loading AstroMAE: {e}"))?;
                if cpu {
                    FusedAstroMae::new(&model)
                        .map(RedshiftModel::FusedAstroMae)
                        .map_err(|e| format!("loading AstroMAE: {e}"))
                } else {
                    Ok(RedshiftModel::AstroMae(model))
                }
            }
        }
    }

    /// The model computing its products in `precision`. On the fused CPU path
    /// bf16 packs the transformer's weights (see `astromae::fused::bf16`); on
    /// CUDA the precision is the backend's element type, chosen by the caller,
    /// so the model is returned as it is. A request's validation refuses the
    /// other CPU combinations; this refuses them again (`cpu`) so no result
    /// records a precision that did not run.
    pub fn in_precision(self, precision: Precision, cpu: bool) -> Result<Self, String> {
        match (self, precision) {
            (RedshiftModel::FusedAstroMae(m), Precision::Bf16) => {
                Ok(RedshiftModel::FusedAstroMae(m.with_bf16_products()))
            }
            (RedshiftModel::FusedAstroMae(_), Precision::F16) => {
                Err("precision f16 runs on device cuda only".into())
            }
            (RedshiftModel::PhotoZ(_), p) if cpu && p != Precision::Fp32 => Err(format!(
                "precision {} on the CPU runs AstroMAE only",
                p.name()
            )),
            (model, _) => Ok(model),
        }
    }

    /// AstroMAE loaded for the CPU's fused path, moved onto GPU 0 with its
    /// products in `precision` (fp32 or bf16); another model as it is.
    #[cfg(feature = "cuda")]
    pub fn on_gpu(self, precision: Precision) -> Result<Self, String> {
        use crate::gpu_astromae::GpuAstroMae;
        match (self, precision) {
            (RedshiftModel::FusedAstroMae(_), Precision::F16) => {
                Err("precision f16 runs AstroMAE on burn's CUDA backend".into())
            }
            (RedshiftModel::FusedAstroMae(m), p) => {
                GpuAstroMae::new(&m, p == Precision::Bf16).map(RedshiftModel::GpuAstroMae)
            }
            (model, _) => Ok(model),
        }
    }

    /// What computes the model, for the rank's record: burn and its backend
    /// on `device`, or AstroMAE's fused kernels with their number format.
    pub fn kernels(&self, device: &B::Device) -> String {
        match self {
            RedshiftModel::PhotoZ(_) | RedshiftModel::AstroMae(_) => {
                format!("burn ({})", B::name(device))
            }
            RedshiftModel::FusedAstroMae(m) => format!("fused CPU, {}", m.kernels()),
            #[cfg(feature = "cuda")]
            RedshiftModel::GpuAstroMae(m) => m.kernels().to_string(),
        }
    }

    /// Whether the model looks at pixels (so a rank must read them).
    pub fn reads_cutouts(&self) -> bool {
        match self {
            RedshiftModel::PhotoZ(m) => m.cutout.is_some(),
            RedshiftModel::AstroMae(_) | RedshiftModel::FusedAstroMae(_) => true,
            #[cfg(feature = "cuda")]
            RedshiftModel::GpuAstroMae(_) => true,
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
    ) -> Result<Predicted, String> {
        match self {
            RedshiftModel::PhotoZ(m) => {
                predict_photoz_with(m, magnitudes, cutouts, batch_size, device)
            }
            RedshiftModel::AstroMae(model) => predict_astromae(
                &AstroMaeOn::Burn(model, device),
                magnitudes,
                needs(cutouts)?,
                batch_size,
            ),
            RedshiftModel::FusedAstroMae(model) => predict_astromae(
                &AstroMaeOn::<B>::Fused(model, CPU_SLICE),
                magnitudes,
                needs(cutouts)?,
                batch_size,
            ),
            #[cfg(feature = "cuda")]
            RedshiftModel::GpuAstroMae(model) => predict_astromae(
                &AstroMaeOn::<B>::Gpu(model),
                magnitudes,
                needs(cutouts)?,
                batch_size,
            ),
        }
    }
}

fn needs(cutouts: Option<Cutouts>) -> Result<Cutouts, String> {
    cutouts.ok_or_else(|| {
        "has no cutouts: AstroMAE predicts from images (5 bands, at least 32x32)".into()
    })
}
