//! AstroMAE from a safetensors file with PyTorch `state_dict` names.
//!
//! The names are those of `astromae_torch.py` (CAI's architecture): `patch`,
//! `cls`, `pos`, `blocks.{i}.{n1,attn,n2,mlp}`, `fc_norm`, `head`, `vit_block`,
//! `incept.{k}` (an `nn.Sequential`), `mag.{k}`, `concat`. Depth and width
//! come from the file; a wrong shape or a missing tensor is an error naming it.

use super::inception::{ConvBlock, Inception, InceptionBranch};
use super::vit::{Block, VitEncoder};
use super::{AstroMae, AstroMaeConfig, MagnitudeMlp, TwoLayer};
use crate::weights::{Weights, WeightsError};
use burn::module::Param;
use burn::prelude::*;

/// Positions of the Inception blocks and the final linears in PyTorch's `incept` Sequential:
/// conv, avgpool, inc, inc, avgpool, inc, inc, avgpool, inc, flatten, linear, relu, linear.
const INCEPTION_BLOCKS: [usize; 5] = [2, 3, 5, 6, 8];
const INCEPTION_MLP: (usize, usize) = (10, 12);

impl<B: Backend> AstroMae<B> {
    /// Loads PyTorch weights; `heads` is the number of attention heads (3 for AstroMAE),
    /// the only size a weight file cannot tell.
    pub fn from_pytorch(
        weights: &Weights,
        heads: usize,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        let config = config_of(weights, heads)?;
        let model = config.init::<B>(device);
        Ok(AstroMae {
            vit: vit(weights, model.vit)?,
            vit_block: two_layer(weights, "vit_block.0", "vit_block.2", model.vit_block)?,
            inception: inception_branch(weights, model.inception)?,
            magnitudes: MagnitudeMlp {
                layers: model
                    .magnitudes
                    .layers
                    .into_iter()
                    .enumerate()
                    .map(|(j, l)| weights.linear(&format!("mag.{}", 2 * j), l))
                    .collect::<Result<_, _>>()?,
            },
            head: two_layer(weights, "concat.0", "concat.2", model.head)?,
        })
    }
}

/// The configuration a weight file describes (depth, embedding width, image size).
pub fn config_of(weights: &Weights, heads: usize) -> Result<AstroMaeConfig, WeightsError> {
    let patch = weights.shape("patch.weight")?.to_vec();
    let [dim, bands, p, _] = patch[..] else {
        return Err(weights.error(
            "patch.weight",
            format!("shape {patch:?}, expected [dim, bands, patch, patch]"),
        ));
    };
    let tokens = weights.shape("pos")?.get(1).copied().unwrap_or(0);
    let side = ((tokens.saturating_sub(1)) as f64).sqrt() as usize;
    let depth = (0..)
        .take_while(|i| weights.contains(&format!("blocks.{i}.n1.weight")))
        .count();
    if dim % heads != 0 {
        return Err(weights.error(
            "patch.weight",
            format!("embedding width {dim} is not divisible by {heads} heads"),
        ));
    }
    let branch_width = weights.shape("vit_block.0.weight")?[0];
    let magnitude_width = weights.shape("mag.0.weight")?[0];
    let head_width = weights.shape("concat.0.weight")?[0];
    // mag.0 and the last layer are not hidden layers: 2 + hidden linears in all.
    let magnitude_linears = (0..)
        .take_while(|j| weights.contains(&format!("mag.{}.weight", 2 * j)))
        .count();
    Ok(AstroMaeConfig::new()
        .with_branch_width(branch_width)
        .with_magnitude_width(magnitude_width)
        .with_magnitude_layers(magnitude_linears.saturating_sub(2))
        .with_head_width(head_width)
        .with_dim(dim)
        .with_depth(depth)
        .with_heads(heads)
        .with_patch(p)
        .with_bands(bands)
        .with_image(side * p))
}

fn two_layer<B: Backend>(
    w: &Weights,
    first: &str,
    second: &str,
    m: TwoLayer<B>,
) -> Result<TwoLayer<B>, WeightsError> {
    Ok(TwoLayer {
        first: w.linear(first, m.first)?,
        second: w.linear(second, m.second)?,
    })
}

fn vit<B: Backend>(w: &Weights, m: VitEncoder<B>) -> Result<VitEncoder<B>, WeightsError> {
    let device = m.cls_token.device();
    let blocks = m
        .blocks
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let p = format!("blocks.{i}");
            let mut attention = b.attention;
            attention.qkv = w.linear_named(
                &format!("{p}.attn.in_proj_weight"),
                &format!("{p}.attn.in_proj_bias"),
                attention.qkv,
            )?;
            attention.out = w.linear(&format!("{p}.attn.out_proj"), attention.out)?;
            Ok(Block {
                norm1: w.layer_norm(&format!("{p}.n1"), b.norm1)?,
                attention,
                norm2: w.layer_norm(&format!("{p}.n2"), b.norm2)?,
                mlp_in: w.linear(&format!("{p}.mlp.0"), b.mlp_in)?,
                mlp_out: w.linear(&format!("{p}.mlp.2"), b.mlp_out)?,
            })
        })
        .collect::<Result<_, WeightsError>>()?;
    Ok(VitEncoder {
        patch_embed: w.conv2d("patch", m.patch_embed)?,
        cls_token: Param::from_tensor(w.tensor("cls", m.cls_token.shape().dims(), &device)?),
        position: Param::from_tensor(w.tensor("pos", m.position.shape().dims(), &device)?),
        blocks,
        fc_norm: w.layer_norm("fc_norm", m.fc_norm)?,
        head: w.linear("head", m.head)?,
    })
}

fn conv_block<B: Backend>(
    w: &Weights,
    prefix: &str,
    m: ConvBlock<B>,
) -> Result<ConvBlock<B>, WeightsError> {
    Ok(ConvBlock {
        conv: w.conv2d(&format!("{prefix}.conv"), m.conv)?,
        norm: w.batch_norm(&format!("{prefix}.bn"), m.norm)?,
    })
}

fn inception_branch<B: Backend>(
    w: &Weights,
    m: InceptionBranch<B>,
) -> Result<InceptionBranch<B>, WeightsError> {
    let blocks = m
        .blocks
        .into_iter()
        .zip(INCEPTION_BLOCKS)
        .map(|(b, k)| {
            let p = format!("incept.{k}");
            Ok(Inception {
                b1: conv_block(w, &format!("{p}.b1"), b.b1)?,
                b3_reduce: conv_block(w, &format!("{p}.b2.0"), b.b3_reduce)?,
                b3: conv_block(w, &format!("{p}.b2.1"), b.b3)?,
                b5: match b.b5 {
                    Some((reduce, conv)) => Some((
                        conv_block(w, &format!("{p}.b3.0"), reduce)?,
                        conv_block(w, &format!("{p}.b3.1"), conv)?,
                    )),
                    None => None,
                },
                pool: b.pool,
                pool_proj: conv_block(w, &format!("{p}.b4.1"), b.pool_proj)?,
            })
        })
        .collect::<Result<_, WeightsError>>()?;
    let (first, second) = INCEPTION_MLP;
    Ok(InceptionBranch {
        stem: w.conv2d("incept.0", m.stem)?,
        pool: m.pool,
        blocks,
        mlp: two_layer(
            w,
            &format!("incept.{first}"),
            &format!("incept.{second}"),
            m.mlp,
        )?,
    })
}
