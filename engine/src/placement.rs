//! Where a rank's model runs, decided once from its request for every rank
//! runner (the local worker, the Lambda handler, the AWS Batch job): the CPU,
//! AstroMAE's fused schedule on the GPU, or burn's CUDA backend in the request's
//! number format. Each runner reads weights its own way (a file, S3); this says
//! how to build the model and on which backend to run it.

use crate::redshift_model::{Cpu, RedshiftModel};
use cosmicai_model::astromae::AstroMae;
use cosmicai_shared::run::{Device, Precision, RunRequest};

/// Where a rank runs, and in which number format its products are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the CPU: AstroMAE on its fused path, PhotoZ on burn's ndarray.
    Cpu(Precision),
    /// AstroMAE's fused schedule on the GPU (`COSMICAI_CUDA_KERNELS=fused`, fp32
    /// or bf16), its weights read as for the CPU.
    #[cfg(feature = "cuda")]
    FusedGpu(Precision),
    /// Burn's CUDA backend, whole batches in the number format's element type.
    #[cfg(feature = "cuda")]
    BurnCuda(Precision),
}

/// Work a rank runner does on the backend a placement names, built for each.
pub trait OnBackend {
    type Output;
    fn on<B: burn::prelude::Backend>(self, placement: Placement) -> Self::Output
    where
        AstroMae<B>: Sync;
}

impl Placement {
    /// Where `request`'s ranks run, in its precision; device cuda in a build
    /// without CUDA is an error that says so.
    pub fn of(request: &RunRequest) -> Result<Placement, String> {
        let precision = request.precision;
        match request.device {
            Device::Cpu => Ok(Placement::Cpu(precision)),
            #[cfg(feature = "cuda")]
            Device::Cuda => Ok(
                if crate::gpu_astromae::takes(&request.model_spec()?, precision) {
                    Placement::FusedGpu(precision)
                } else {
                    Placement::BurnCuda(precision)
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
            Placement::Cpu(_) => true,
            #[cfg(feature = "cuda")]
            Placement::FusedGpu(_) => true,
            #[cfg(feature = "cuda")]
            Placement::BurnCuda(_) => false,
        }
    }

    /// `model`, loaded with [`Placement::fused`], made ready to run here with
    /// its products in this placement's precision.
    pub fn finish<B: burn::prelude::Backend>(
        self,
        model: RedshiftModel<B>,
    ) -> Result<RedshiftModel<B>, String> {
        match self {
            Placement::Cpu(precision) => model.in_precision(precision, true),
            #[cfg(feature = "cuda")]
            Placement::FusedGpu(precision) => model.on_gpu(precision),
            #[cfg(feature = "cuda")]
            Placement::BurnCuda(precision) => model.in_precision(precision, false),
        }
    }

    /// Runs `work` on this placement's backend: the CPU's for the fused paths,
    /// burn's CUDA in the precision's element type otherwise.
    pub fn run<W: OnBackend>(self, work: W) -> W::Output {
        match self {
            Placement::Cpu(_) => work.on::<Cpu>(self),
            #[cfg(feature = "cuda")]
            Placement::FusedGpu(_) => work.on::<Cpu>(self),
            #[cfg(feature = "cuda")]
            Placement::BurnCuda(precision) => {
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
        assert_eq!(cpu, Placement::Cpu(Precision::Fp32));
        // The request's number format goes with the placement.
        let mut bf16 = request("cpu", "astromae");
        bf16.precision = Precision::Bf16;
        assert_eq!(
            Placement::of(&bf16).unwrap(),
            Placement::Cpu(Precision::Bf16)
        );
        assert!(cpu.fused());
        assert!(cpu.run(Name).contains("NdArray"));
        // The CPU's PhotoZ runs fp32 only: `finish` refuses bf16, naming it.
        let photoz = RedshiftModel::<Cpu>::load(
            &cosmicai_shared::model::ModelSpec::PhotoZ(None),
            &Default::default(),
            cpu.fused(),
        )
        .unwrap();
        let e = Placement::Cpu(Precision::Bf16)
            .finish(photoz)
            .err()
            .unwrap();
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
