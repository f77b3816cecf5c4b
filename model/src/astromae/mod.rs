//! AstroMAE, the redshift model of the CAI pipeline, ported to burn.
//!
//! Three branches read one object and are concatenated (1096 + 1096 + 1024 = 3216)
//! into a small head that outputs the redshift:
//! - [`vit`]: a ViT encoder on the 32x32 centre crop of the 5 bands (patch 4,
//!   embed 192, depth 12, 3 heads), mean-pooled over patch tokens;
//! - [`inception`]: an Inception network on the same crop;
//! - a magnitude MLP on the 5 ugriz magnitudes.
//!
//! [`load`] builds the model from a safetensors file with PyTorch `state_dict`
//! names (those of `astromae_torch.py`).

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
        let inception =
            InceptionBranchConfig::new(self.bands, self.image, self.branch_width).init(device);
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
}
