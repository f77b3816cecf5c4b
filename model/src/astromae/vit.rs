//! The ViT encoder of AstroMAE: patch embedding, class token, learned position
//! embedding, pre-norm transformer blocks, mean pool over patch tokens, `fc_norm`, `head`.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Gelu, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

/// LayerNorm epsilon of AstroMAE (timm's ViT).
pub const LAYER_NORM_EPS: f64 = 1e-6;

#[derive(Config, Debug)]
pub struct VitEncoderConfig {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub patch: usize,
    pub image: usize,
    pub bands: usize,
    #[config(default = 4)]
    pub mlp_ratio: usize,
}

/// Multi-head self-attention with one fused q,k,v projection, as PyTorch's
/// `nn.MultiheadAttention` stores it (`in_proj_weight`, `out_proj`).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub qkv: Linear<B>,
    pub out: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> Attention<B> {
    /// `x` holds `tokens` rows per object, `[N * tokens, D]`: linear layers then run
    /// as one large matrix product instead of N small ones.
    pub fn forward(&self, x: Tensor<B, 2>, tokens: usize) -> Tensor<B, 2> {
        let [rows, dim] = x.dims();
        let batch = rows / tokens;
        let head_dim = dim / self.heads;
        // [N*T, 3D] -> [3, N, H, T, Dh]
        let qkv = self
            .qkv
            .forward(x)
            .reshape([batch, tokens, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(0, i, 1)
                .reshape([batch, self.heads, tokens, head_dim])
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let scores = q
            .mul_scalar(1.0 / (head_dim as f64).sqrt())
            .matmul(k.swap_dims(2, 3));
        let attended = softmax(scores, 3).matmul(v);
        self.out
            .forward(attended.swap_dims(1, 2).reshape([rows, dim]))
    }
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attention: Attention<B>,
    pub norm2: LayerNorm<B>,
    pub mlp_in: Linear<B>,
    pub mlp_out: Linear<B>,
}

impl<B: Backend> Block<B> {
    /// Pre-norm transformer block over `[N * tokens, D]` rows.
    pub fn forward(&self, x: Tensor<B, 2>, tokens: usize) -> Tensor<B, 2> {
        let x = x.clone() + self.attention.forward(self.norm1.forward(x), tokens);
        let h = Gelu::new().forward(self.mlp_in.forward(self.norm2.forward(x.clone())));
        x + self.mlp_out.forward(h)
    }
}

#[derive(Module, Debug)]
pub struct VitEncoder<B: Backend> {
    pub patch_embed: Conv2d<B>,
    pub cls_token: Param<Tensor<B, 3>>,
    pub position: Param<Tensor<B, 3>>,
    pub blocks: Vec<Block<B>>,
    pub fc_norm: LayerNorm<B>,
    pub head: Linear<B>,
}

impl VitEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> VitEncoder<B> {
        let tokens = (self.image / self.patch).pow(2) + 1;
        let norm = || {
            LayerNormConfig::new(self.dim)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device)
        };
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let blocks = (0..self.depth)
            .map(|_| Block {
                norm1: norm(),
                attention: Attention {
                    qkv: linear(self.dim, 3 * self.dim),
                    out: linear(self.dim, self.dim),
                    heads: self.heads,
                },
                norm2: norm(),
                mlp_in: linear(self.dim, self.mlp_ratio * self.dim),
                mlp_out: linear(self.mlp_ratio * self.dim, self.dim),
            })
            .collect();
        VitEncoder {
            patch_embed: Conv2dConfig::new([self.bands, self.dim], [self.patch, self.patch])
                .with_stride([self.patch, self.patch])
                .init(device),
            cls_token: small.init([1, 1, self.dim], device),
            position: small.init([1, tokens, self.dim], device),
            blocks,
            fc_norm: norm(),
            head: linear(self.dim, self.dim),
        }
    }
}

impl<B: Backend> VitEncoder<B> {
    /// `[N, 5, 32, 32]` -> pooled features `[N, dim]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let patches = crate::conv::conv2d(&self.patch_embed, images); // [N, D, 8, 8]
        let [n, dim, _, _] = patches.dims();
        let patches = patches.flatten::<3>(2, 3).swap_dims(1, 2); // [N, 64, D]
        let cls = self.cls_token.val().expand([n, 1, dim]);
        let x = Tensor::cat(vec![cls, patches], 1) + self.position.val();
        let tokens = x.dims()[1];
        let mut x = x.reshape([n * tokens, dim]);
        for block in &self.blocks {
            x = block.forward(x, tokens);
        }
        let pooled = x
            .reshape([n, tokens, dim])
            .slice([0..n, 1..tokens, 0..dim])
            .mean_dim(1)
            .reshape([n, dim]);
        self.head.forward(self.fc_norm.forward(pooled))
    }
}
