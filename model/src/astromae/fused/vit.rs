//! The ViT encoder on the fused path: patch embedding as one product, then
//! pre-norm blocks whose LayerNorm, bias, GELU, softmax and residual steps run
//! on rows while they are in cache.

use super::dense::{Dense, Mat, matmul};
use super::kernels::{gelu, layer_norm, softmax_rows};
use super::{EPS, FusedError, bf16, or_zeros, values};
use crate::astromae::vit::{Block, VitEncoder};
use crate::crop::CROP;
use burn::nn::LayerNorm;
use burn::prelude::*;

#[derive(Debug, Clone)]
pub(super) struct Norm {
    pub(super) gamma: Vec<f32>,
    pub(super) beta: Vec<f32>,
}

impl Norm {
    pub(super) fn new<B: Backend>(norm: &LayerNorm<B>) -> Self {
        let gamma = values(norm.gamma.val());
        let beta = or_zeros(norm.beta.as_ref(), gamma.len());
        Norm { gamma, beta }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Layer {
    pub(super) norm1: Norm,
    pub(super) qkv: Dense,
    pub(super) out: Dense,
    pub(super) norm2: Norm,
    pub(super) mlp_in: Dense,
    pub(super) mlp_out: Dense,
}

#[derive(Debug, Clone)]
pub(super) struct Vit {
    /// `[bands * patch * patch, dim]`: the patch embedding as a matrix.
    pub(super) patch_weight: Vec<f32>,
    pub(super) patch: usize,
    /// What each token starts from before its patch is added: the class token
    /// plus its position, then each patch's position plus the embedding's bias.
    pub(super) start: Vec<f32>,
    pub(super) layers: Vec<Layer>,
    pub(super) heads: usize,
    pub(super) fc_norm: Norm,
    pub(super) head: Dense,
    pub(super) dim: usize,
}

impl Vit {
    pub(super) fn new<B: Backend>(vit: &VitEncoder<B>) -> Result<Self, FusedError> {
        let [dim, bands, kh, kw] = vit.patch_embed.weight.dims();
        let patch = kh;
        if kh != kw || vit.patch_embed.stride != [kh, kw] || !CROP.is_multiple_of(patch) {
            return Err(FusedError(format!(
                "a {kh}x{kw} patch embedding with stride {:?} is not a patch grid of the {CROP}x{CROP} crop",
                vit.patch_embed.stride
            )));
        }
        let tokens = (CROP / patch).pow(2) + 1;
        let position = values(vit.position.val());
        let cls = values(vit.cls_token.val());
        if position.len() != tokens * dim || cls.len() != dim {
            return Err(FusedError(format!(
                "position embedding of {} values for {tokens} tokens of {dim}",
                position.len()
            )));
        }
        let patch_bias = or_zeros(vit.patch_embed.bias.as_ref(), dim);
        // Token 0 starts as the class token, the others as their patch's bias.
        let mut start = position;
        for (token, row) in start.chunks_exact_mut(dim).enumerate() {
            let add = if token == 0 { &cls } else { &patch_bias };
            for (s, a) in row.iter_mut().zip(add) {
                *s += a;
            }
        }
        // Conv weight [dim, bands*k*k] -> [bands*k*k, dim].
        let w = values(vit.patch_embed.weight.val());
        let depth = bands * kh * kw;
        let mut patch_weight = vec![0.0; w.len()];
        for o in 0..dim {
            for d in 0..depth {
                patch_weight[d * dim + o] = w[o * depth + d];
            }
        }
        let heads = vit.blocks.first().map_or(1, |b| b.attention.heads);
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(FusedError(format!(
                "{heads} heads do not divide width {dim}"
            )));
        }
        Ok(Vit {
            patch_weight,
            patch,
            start,
            layers: vit.blocks.iter().map(Layer::new).collect(),
            heads,
            fc_norm: Norm::new(&vit.fc_norm),
            head: Dense::new(&vit.head),
            dim,
        })
    }

    /// `[n, bands, 32, 32]` -> pooled features `[n, dim]`.
    pub(super) fn forward(&self, images: &[f32], n: usize) -> Vec<f32> {
        let (p, dim) = (self.patch, self.dim);
        let side = CROP / p;
        let tokens = side * side + 1;
        let bands = images.len() / (n * CROP * CROP);
        let depth = bands * p * p;
        // Each patch's pixels as a row, in the kernel's (band, row, column) order.
        let mut columns = vec![0.0; n * side * side * depth];
        for obj in 0..n {
            for (py, px) in (0..side).flat_map(|y| (0..side).map(move |x| (y, x))) {
                let row = &mut columns[((obj * side + py) * side + px) * depth..][..depth];
                for c in 0..bands {
                    for ky in 0..p {
                        let src = ((obj * bands + c) * CROP + py * p + ky) * CROP + px * p;
                        row[(c * p + ky) * p..][..p].copy_from_slice(&images[src..src + p]);
                    }
                }
            }
        }
        let mut x = vec![0.0; n * tokens * dim];
        for obj in 0..n {
            let rows = &mut x[obj * tokens * dim..(obj + 1) * tokens * dim];
            rows.copy_from_slice(&self.start);
            let patches = &columns[obj * (tokens - 1) * depth..(obj + 1) * (tokens - 1) * depth];
            matmul(
                Mat::rows(patches, tokens - 1, depth),
                Mat::rows(&self.patch_weight, depth, dim),
                &mut rows[dim..],
                dim,
                true,
                1.0,
            );
        }
        let mut scratch = Scratch::new(n * tokens, dim);
        for layer in &self.layers {
            layer.forward(&mut x, tokens, self.heads, &mut scratch);
        }
        let mut pooled = vec![0.0; n * dim];
        for (obj, out) in pooled.chunks_exact_mut(dim).enumerate() {
            for token in 1..tokens {
                let row = &x[(obj * tokens + token) * dim..][..dim];
                for (o, v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
            for o in out.iter_mut() {
                *o /= (tokens - 1) as f32;
            }
        }
        let mut normed = vec![0.0; n * dim];
        layer_norm(
            &pooled,
            &mut normed,
            &self.fc_norm.gamma,
            &self.fc_norm.beta,
            EPS,
        );
        self.head.forward(&normed, n)
    }
}

/// Buffers one slice reuses through the transformer's layers.
pub(super) struct Scratch {
    pub(super) normed: Vec<f32>,
    pub(super) qkv: Vec<f32>,
    pub(super) attended: Vec<f32>,
    pub(super) hidden: Vec<f32>,
    pub(super) scores: Vec<f32>,
    pub(super) pairs: bf16::Pairs,
}

impl Scratch {
    pub(super) fn new(rows: usize, dim: usize) -> Self {
        Scratch {
            normed: vec![0.0; rows * dim],
            qkv: Vec::new(),
            attended: vec![0.0; rows * dim],
            hidden: Vec::new(),
            scores: Vec::new(),
            pairs: bf16::Pairs::default(),
        }
    }
}

impl Layer {
    pub(super) fn new<B: Backend>(block: &Block<B>) -> Self {
        Layer {
            norm1: Norm::new(&block.norm1),
            qkv: Dense::new(&block.attention.qkv),
            out: Dense::new(&block.attention.out),
            norm2: Norm::new(&block.norm2),
            mlp_in: Dense::new(&block.mlp_in),
            mlp_out: Dense::new(&block.mlp_out),
        }
    }

    /// One pre-norm transformer block over `x` `[n * tokens, dim]`, in place.
    pub(super) fn forward(&self, x: &mut [f32], tokens: usize, heads: usize, s: &mut Scratch) {
        let dim = self.norm1.gamma.len();
        let rows = x.len() / dim;
        let head_dim = dim / heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        layer_norm(x, &mut s.normed, &self.norm1.gamma, &self.norm1.beta, EPS);
        s.qkv.resize(rows * 3 * dim, 0.0);
        self.qkv
            .apply_with(&s.normed, rows, &mut s.qkv, false, &mut s.pairs);
        s.scores.resize(tokens * tokens, 0.0);
        let stride = 3 * dim;
        for obj in 0..rows / tokens {
            let qkv = &s.qkv[obj * tokens * stride..(obj + 1) * tokens * stride];
            for h in 0..heads {
                let part = |i: usize| {
                    Mat::strided(&qkv[i * dim + h * head_dim..], tokens, head_dim, stride)
                };
                matmul(
                    part(0),
                    part(1).transposed(),
                    &mut s.scores,
                    tokens,
                    false,
                    scale,
                );
                softmax_rows(&mut s.scores, tokens);
                matmul(
                    Mat::rows(&s.scores, tokens, tokens),
                    part(2),
                    &mut s.attended[obj * tokens * dim + h * head_dim..],
                    dim,
                    false,
                    1.0,
                );
            }
        }
        self.out
            .apply_with(&s.attended, rows, x, true, &mut s.pairs);
        layer_norm(x, &mut s.normed, &self.norm2.gamma, &self.norm2.beta, EPS);
        s.hidden.resize(rows * self.mlp_in.d_out, 0.0);
        self.mlp_in
            .apply_with(&s.normed, rows, &mut s.hidden, false, &mut s.pairs);
        gelu(&mut s.hidden);
        self.mlp_out
            .apply_with(&s.hidden, rows, x, true, &mut s.pairs);
    }
}
