//! The Inception branch of AstroMAE: a 1x1 stem, five Inception blocks with
//! average pooling between pairs, then 192 -> 1096 -> 1096.

use super::TwoLayer;
use crate::conv::conv2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// Convolution, BatchNorm, ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
}

impl<B: Backend> ConvBlock<B> {
    pub fn new(c_in: usize, c_out: usize, kernel: usize, device: &B::Device) -> Self {
        let pad = kernel / 2;
        ConvBlock {
            conv: Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .init(device),
            norm: BatchNormConfig::new(c_out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        Relu::new().forward(self.norm.forward(conv2d(&self.conv, x)))
    }
}

/// Branches 1x1 / 1x1->3x3 / 1x1->5x5 / maxpool3->1x1, concatenated on channels.
/// The last block of AstroMAE has no 5x5 branch.
#[derive(Module, Debug)]
pub struct Inception<B: Backend> {
    pub b1: ConvBlock<B>,
    pub b3_reduce: ConvBlock<B>,
    pub b3: ConvBlock<B>,
    pub b5: Option<(ConvBlock<B>, ConvBlock<B>)>,
    pub pool: MaxPool2d,
    pub pool_proj: ConvBlock<B>,
}

impl<B: Backend> Inception<B> {
    /// Every branch `width` channels wide; `with_5x5` false drops the 5x5 branch.
    pub fn new(c_in: usize, width: usize, with_5x5: bool, device: &B::Device) -> Self {
        Inception {
            b1: ConvBlock::new(c_in, width, 1, device),
            b3_reduce: ConvBlock::new(c_in, width, 1, device),
            b3: ConvBlock::new(width, width, 3, device),
            b5: with_5x5.then(|| {
                (
                    ConvBlock::new(c_in, width, 1, device),
                    ConvBlock::new(width, width, 5, device),
                )
            }),
            pool: MaxPool2dConfig::new([3, 3])
                .with_strides([1, 1])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            pool_proj: ConvBlock::new(c_in, width, 1, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut branches = vec![
            self.b1.forward(x.clone()),
            self.b3.forward(self.b3_reduce.forward(x.clone())),
        ];
        if let Some((reduce, conv)) = &self.b5 {
            branches.push(conv.forward(reduce.forward(x.clone())));
        }
        branches.push(self.pool_proj.forward(self.pool.forward(x)));
        Tensor::cat(branches, 1)
    }
}

#[derive(Config, Debug)]
pub struct InceptionBranchConfig {
    pub bands: usize,
    pub image: usize,
    pub out: usize,
    #[config(default = "[16, 16, 8, 8, 4]")]
    pub widths: [usize; 5],
    #[config(default = 32)]
    pub stem: usize,
}

#[derive(Module, Debug)]
pub struct InceptionBranch<B: Backend> {
    pub stem: Conv2d<B>,
    pub pool: AvgPool2d,
    pub blocks: Vec<Inception<B>>,
    pub mlp: TwoLayer<B>,
}

impl InceptionBranchConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> InceptionBranch<B> {
        let mut blocks = Vec::new();
        let mut c_in = self.stem;
        for (i, &width) in self.widths.iter().enumerate() {
            let with_5x5 = i < 4;
            blocks.push(Inception::new(c_in, width, with_5x5, device));
            c_in = width * if with_5x5 { 4 } else { 3 };
        }
        // Three 2x2 pools: after the stem, after block 2 and after block 4.
        let side = self.image / 8;
        InceptionBranch {
            stem: Conv2dConfig::new([self.bands, self.stem], [1, 1]).init(device),
            pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            blocks,
            mlp: TwoLayer::new(c_in * side * side, self.out, self.out, device),
        }
    }
}

impl<B: Backend> InceptionBranch<B> {
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = self.pool.forward(conv2d(&self.stem, images));
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if i % 2 == 1 {
                x = self.pool.forward(x);
            }
        }
        self.mlp.forward(x.flatten::<2>(1, 3))
    }
}
