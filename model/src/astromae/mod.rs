//! AstroMAE, the redshift model of the CAI pipeline, ported to burn.
//!
//! Three branches read one object and are concatenated (1096 + 1096 + 1024 = 3216)
//! into a small head that outputs the redshift:
//! - [`vit`]: a ViT encoder on the 32x32 centre crop of the 5 bands (patch 4,
//!   embed 192, depth 12, 3 heads), mean-pooled over patch tokens;
//! - [`inception`]: an Inception network on the same crop;
//! - a magnitude MLP on the 5 ugriz magnitudes.
//!
//! [`load`] builds the model from a CAI checkpoint's `state_dict` names, read from
//! safetensors or from the `.pt` file itself ([`crate::weights::Weights::open`]).
//! On the CPU, runs hand the loaded model to `fused` (feature `fused`), which
//! computes the same redshifts without burn's per-operation passes.

#[cfg(feature = "fused")]
pub mod fused;
pub mod inception;
pub mod load;
pub mod vit;

use crate::crop::{CROP, centre_crop};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use inception::{InceptionBranch, InceptionBranchConfig};
use vit::{VitEncoder, VitEncoderConfig};

#[derive(Config, Debug)]
pub struct AstroMaeConfig {
    #[config(default = 192)]
    pub dim: usize,
    #[config(default = 12)]
    pub depth: usize,
    #[config(default = 3)]
    pub heads: usize,
    #[config(default = 4)]
    pub patch: usize,
    #[config(default = 32)]
    pub image: usize,
    #[config(default = 5)]
    pub bands: usize,
    /// Width of the features each image branch hands to the head.
    #[config(default = 1096)]
    pub branch_width: usize,
    #[config(default = 1024)]
    pub magnitude_width: usize,
    /// Hidden 1024->1024 layers of the magnitude MLP.
    #[config(default = 3)]
    pub magnitude_layers: usize,
    #[config(default = 1024)]
    pub head_width: usize,
    /// Channels of each Inception branch, per block (the last block has three branches).
    #[config(default = "[16, 16, 8, 8, 4]")]
    pub inception_widths: [usize; 5],
    /// Channels of the Inception stem (`conv2d_init`).
    #[config(default = 32)]
    pub inception_stem: usize,
}

/// Two linear layers with a ReLU between them.
#[derive(Module, Debug)]
pub struct TwoLayer<B: Backend> {
    pub first: Linear<B>,
    pub second: Linear<B>,
}

impl<B: Backend> TwoLayer<B> {
    pub fn new(d_in: usize, hidden: usize, d_out: usize, device: &B::Device) -> Self {
        TwoLayer {
            first: LinearConfig::new(d_in, hidden).init(device),
            second: LinearConfig::new(hidden, d_out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.second
            .forward(Relu::new().forward(self.first.forward(x)))
    }
}

/// The magnitude MLP: 5 -> 1024, ReLU, three 1024 -> 1024 with ReLU, then 1024 -> 1024.
#[derive(Module, Debug)]
pub struct MagnitudeMlp<B: Backend> {
    pub layers: Vec<Linear<B>>,
}

impl<B: Backend> MagnitudeMlp<B> {
    pub fn new(bands: usize, width: usize, hidden_layers: usize, device: &B::Device) -> Self {
        let mut layers = vec![LinearConfig::new(bands, width).init(device)];
        for _ in 0..=hidden_layers {
            layers.push(LinearConfig::new(width, width).init(device));
        }
        MagnitudeMlp { layers }
    }

    pub fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = Relu::new().forward(x);
            }
        }
        x
    }
}

#[derive(Module, Debug)]
pub struct AstroMae<B: Backend> {
    pub vit: VitEncoder<B>,
    /// 192 -> 1096 -> 1096 on the pooled ViT features (`vit_block`).
    pub vit_block: TwoLayer<B>,
    pub inception: InceptionBranch<B>,
    pub magnitudes: MagnitudeMlp<B>,
    /// 3216 -> 1024 -> 1 (`concat`).
    pub head: TwoLayer<B>,
}

impl AstroMaeConfig {
    /// A model with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AstroMae<B> {
        let vit = VitEncoderConfig::new(
            self.dim, self.depth, self.heads, self.patch, self.image, self.bands,
        )
        .init(device);
        let inception = InceptionBranchConfig::new(self.bands, self.image, self.branch_width)
            .with_widths(self.inception_widths)
            .with_stem(self.inception_stem)
            .init(device);
        let concat = 2 * self.branch_width + self.magnitude_width;
        AstroMae {
            vit,
            vit_block: TwoLayer::new(self.dim, self.branch_width, self.branch_width, device),
            inception,
            magnitudes: MagnitudeMlp::new(
                self.bands,
                self.magnitude_width,
                self.magnitude_layers,
                device,
            ),
            head: TwoLayer::new(concat, self.head_width, 1, device),
        }
    }
}

impl<B: Backend> AstroMae<B> {
    /// Redshift `[N, 1]` from images `[N, 5, H, W]` (cropped to the centre 32x32) and magnitudes `[N, 5]`.
    pub fn forward(&self, images: Tensor<B, 4>, magnitudes: Tensor<B, 2>) -> Tensor<B, 2> {
        let images = centre_crop(images, CROP);
        let vit = self.vit_block.forward(self.vit.forward(images.clone()));
        let inception = self.inception.forward(images);
        let magnitudes = self.magnitudes.forward(magnitudes);
        self.head
            .forward(Tensor::cat(vec![vit, inception, magnitudes], 1))
    }

    /// [`AstroMae::forward`] of a large batch, `slice` objects at a time, the slices
    /// spread over rayon's threads; the same redshifts. On a CPU this is about 3x
    /// faster for a batch of 512 (see the README): a slice's activations (65 tokens
    /// x 768 per object in the ViT's MLP) stay in cache, and whole slices run in
    /// parallel where single operations on a large batch parallelise poorly.
    #[cfg(feature = "parallel")]
    pub fn forward_sliced(
        &self,
        images: Tensor<B, 4>,
        magnitudes: Tensor<B, 2>,
        slice: usize,
    ) -> Tensor<B, 2>
    where
        Self: Sync,
    {
        use rayon::prelude::*;
        let n = images.dims()[0];
        let slice = slice.max(1);
        if slice >= n {
            return self.forward(images, magnitudes);
        }
        let slices: Vec<_> = (0..n)
            .step_by(slice)
            .map(|start| {
                let end = (start + slice).min(n);
                (
                    images.clone().narrow(0, start, end - start),
                    magnitudes.clone().narrow(0, start, end - start),
                )
            })
            .collect();
        let out: Vec<Tensor<B, 2>> = slices
            .into_par_iter()
            .map(|(images, magnitudes)| self.forward(images, magnitudes))
            .collect();
        Tensor::cat(out, 0)
    }
}

#[cfg(all(test, feature = "parallel"))]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    #[test]
    fn a_sliced_batch_gives_the_redshifts_of_the_whole_batch() {
        type B = NdArray<f32>;
        let device = Default::default();
        let config = AstroMaeConfig::new().with_depth(1);
        let model = config.init::<B>(&device);
        let images =
            Tensor::<B, 4>::random([11, 5, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let magnitudes = Tensor::<B, 2>::random([11, 5], Distribution::Normal(18.0, 1.0), &device);
        let whole: Vec<f32> = model
            .forward(images.clone(), magnitudes.clone())
            .into_data()
            .to_vec()
            .unwrap();
        // 4 + 4 + 3: the last slice is short.
        let sliced: Vec<f32> = model
            .forward_sliced(images, magnitudes, 4)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(whole.len(), 11);
        let spread = whole.iter().fold(0f32, |m, z| m.max((z - whole[0]).abs()));
        assert!(spread > 0.0, "objects should differ: {whole:?}");
        for (a, b) in whole.iter().zip(&sliced) {
            assert!((a - b).abs() < 1e-5, "{whole:?} vs {sliced:?}");
        }
    }
}
