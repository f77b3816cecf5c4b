//! Where a rank's model runs, decided once from its request for every rank
//! runner (the local worker, the Lambda handler, the AWS Batch job): the CPU,
//! AstroMAE's fused schedule on the GPU, or burn's CUDA backend in the request's
//! number format. Each runner reads weights its own way (a file, S3); this says
//! how to build the model and on which backend to run it.

use crate::redshift_model::{Cpu, RedshiftModel};
use cosmicai_model::astromae::AstroMae;
use cosmicai_shared::run::{Device, Precision, RunRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the CPU: AstroMAE on its fused path, PhotoZ on burn's ndarray.
    Cpu,
    /// AstroMAE's fused schedule on the GPU (`COSMICAI_CUDA_KERNELS=fused`, fp32
    /// or bf16), its weights read as for the CPU.
    #[cfg(feature = "cuda")]
    FusedGpu,
    /// Burn's CUDA backend, whole batches in the request's number format.
    #[cfg(feature = "cuda")]
    BurnCuda,
}

/// Work a rank runner does on the backend a placement names, built for each.
pub trait OnBackend {
    type Output;
    fn on<B: burn::prelude::Backend>(self, placement: Placement) -> Self::Output
    where
        AstroMae<B>: Sync;
}

impl Placement {
    /// Where `request`'s ranks run; device cuda in a build without CUDA is an
    /// error that says so.
    pub fn of(request: &RunRequest) -> Result<Placement, String> {
        match request.device {
            Device::Cpu => Ok(Placement::Cpu),
            #[cfg(feature = "cuda")]
            Device::Cuda => Ok(
                if crate::gpu_astromae::takes(&request.model_spec()?, request.precision) {
                    Placement::FusedGpu
                } else {
                    Placement::BurnCuda
                },
            ),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => Err(format!(
                "device cuda: {}",
                crate::system::BUILT_WITHOUT_CUDA
            )),
        }
    }

    /// Whether the weights are read for the fused CPU path (the fused GPU
    /// schedule starts from it); `cpu` of [`RedshiftModel::load`].
    pub fn fused(self) -> bool {
        match self {
            Placement::Cpu => true,
            #[cfg(feature = "cuda")]
            Placement::FusedGpu => true,
            #[cfg(feature = "cuda")]
            Placement::BurnCuda => false,
        }
    }

    /// `model`, loaded with [`Placement::fused`], made ready to run here with
    /// its products in `precision`.
    pub fn finish<B: burn::prelude::Backend>(
        self,
        model: RedshiftModel<B>,
        precision: Precision,
    ) -> Result<RedshiftModel<B>, String> {
        match self {
            Placement::Cpu => model.in_precision(precision, true),
            #[cfg(feature = "cuda")]
            Placement::FusedGpu => model.on_gpu(precision),
            #[cfg(feature = "cuda")]
            Placement::BurnCuda => model.in_precision(precision, false),
        }
    }

    /// Runs `work` on this placement's backend: the CPU's for the fused paths,
    /// burn's CUDA in `precision`'s element type otherwise.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn run<W: OnBackend>(self, precision: Precision, work: W) -> W::Output {
        match self {
            Placement::Cpu => work.on::<Cpu>(self),
            #[cfg(feature = "cuda")]
            Placement::FusedGpu => work.on::<Cpu>(self),
            #[cfg(feature = "cuda")]
            Placement::BurnCuda => {
                use burn::backend::Cuda;
                use burn::tensor::{bf16, f16};
                match precision {
                    Precision::Fp32 => work.on::<Cuda<f32>>(self),
                    Precision::Bf16 => work.on::<Cuda<bf16>>(self),
                    Precision::F16 => work.on::<Cuda<f16>>(self),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(device: &str, model: &str) -> RunRequest {
        serde_json::from_value(serde_json::json!({
            "batch_size": 8, "world_size": 1, "result_path": "r", "device": device, "model": model,
        }))
        .unwrap()
    }

    /// Says which backend it ran on.
    struct Name;
    impl OnBackend for Name {
        type Output = String;
        fn on<B: burn::prelude::Backend>(self, placement: Placement) -> String
        where
            AstroMae<B>: Sync,
        {
            format!("{placement:?} on {}", std::any::type_name::<B>())
        }
    }

    #[test]
    fn cpu_requests_run_on_the_cpu_and_cuda_needs_a_cuda_build() {
        let cpu = Placement::of(&request("cpu", "photoz")).unwrap();
        assert_eq!(cpu, Placement::Cpu);
        assert!(cpu.fused());
        assert!(cpu.run(Precision::Fp32, Name).contains("NdArray"));
        // The CPU's PhotoZ runs fp32 only: `finish` refuses bf16, naming it.
        let photoz = RedshiftModel::<Cpu>::load(
            &cosmicai_shared::model::ModelSpec::PhotoZ(None),
            &Default::default(),
            cpu.fused(),
        )
        .unwrap();
        let e = cpu.finish(photoz, Precision::Bf16).err().unwrap();
        assert!(
            e.contains("precision bf16 on the CPU runs AstroMAE only"),
            "{e}"
        );
        let cuda = Placement::of(&request("cuda", "photoz"));
        if cfg!(feature = "cuda") {
            // PhotoZ has no fused GPU schedule: burn's CUDA backend.
            assert!(!cuda.unwrap().fused());
        } else {
            assert!(cuda.unwrap_err().contains("built without CUDA"));
        }
    }
}
