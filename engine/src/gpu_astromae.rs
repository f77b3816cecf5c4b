//! AstroMAE on an NVIDIA GPU through the fused path's schedule: cuBLAS for the
//! products, NVRTC kernels for the rest (`cosmicai_model::astromae::fused::device`).
//!
//! `run --device cuda` takes this path for AstroMAE in fp32 and bf16 when
//! `COSMICAI_CUDA_KERNELS=fused`; burn's CUDA backend stays the default until
//! this path has been timed on a GPU beside it (`tools/gpu_check.sh` times
//! both). f16 and PhotoZ always run on burn. Each batch goes up as the centre
//! 32x32 of its cutouts (a quarter of a 64x64 partition's pixels), in parts the
//! GPU's free memory holds.

use cosmicai_model::astromae::fused::FusedAstroMae;
use cosmicai_model::astromae::fused::device::cuda::CudaKernels;
use cosmicai_model::astromae::fused::device::{OnDevice, ledger::Footprint};
use cosmicai_model::crop::CROP;
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::Precision;

/// The variable that picks AstroMAE's kernels on CUDA: `fused` or `burn` (the default).
pub const KERNELS_VAR: &str = "COSMICAI_CUDA_KERNELS";

/// Whether a CUDA rank of `spec` in `precision` runs here rather than on burn.
pub fn takes(spec: &ModelSpec, precision: Precision) -> bool {
    let fused = std::env::var(KERNELS_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("fused"));
    fused && matches!(spec, ModelSpec::AstroMae(_)) && precision != Precision::F16
}

/// AstroMAE's weights on the GPU, and what each object of a batch takes there.
pub struct GpuAstroMae {
    on: OnDevice<CudaKernels>,
    footprint: Footprint,
    bf16: bool,
}

impl std::fmt::Debug for GpuAstroMae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuAstroMae")
            .field("footprint", &self.footprint)
            .field("bf16", &self.bf16)
            .finish()
    }
}

impl GpuAstroMae {
    /// `model`'s weights uploaded to GPU 0, the transformer's products in bf16
    /// where `bf16` (as the CPU path's `--precision bf16`).
    pub fn new(model: &FusedAstroMae, bf16: bool) -> Result<Self, String> {
        let err = |e: cosmicai_model::astromae::fused::FusedError| format!("AstroMAE on CUDA: {e}");
        let footprint = Footprint::of(model, bf16, [CROP, CROP]).map_err(err)?;
        let kernels = CudaKernels::new(0).map_err(err)?;
        let on = if bf16 {
            OnDevice::with_bf16_products(model, kernels)
        } else {
            OnDevice::new(model, kernels)
        }
        .map_err(err)?;
        Ok(GpuAstroMae {
            on,
            footprint,
            bf16,
        })
    }

    /// What computes the model, for the rank's record.
    pub fn kernels(&self) -> &'static str {
        if self.bf16 {
            "fused GPU, cuBLAS: transformer products bf16 (f32 sums), the rest fp32"
        } else {
            "fused GPU, cuBLAS: fp32"
        }
    }

    /// Redshifts of `n` objects from their `[n, 5, 32, 32]` centre crops and
    /// `[n, 5]` magnitudes, in parts that fit the GPU's free memory (a tenth
    /// left for cuBLAS's workspace and the allocator).
    pub fn forward(&self, crops: &[f32], magnitudes: &[f32], n: usize) -> Result<Vec<f32>, String> {
        let err = |e: cosmicai_model::astromae::fused::FusedError| format!("AstroMAE on CUDA: {e}");
        let (free, _) = self.on.kernels().memory().map_err(err)?;
        let part = self.footprint.objects_within(free / 10 * 9);
        self.on
            .forward_in_parts(crops, magnitudes, n, [CROP, CROP], part)
            .map_err(err)
    }
}
