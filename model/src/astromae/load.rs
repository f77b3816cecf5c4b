//! AstroMAE from a CAI checkpoint's `state_dict` names.
//!
//! The names are what a CAI user gets from `torch.load(ckpt).module.state_dict()`
//! (timm's `VisionTransformer` blocks, CAI's Inception and magnitude branches):
//! `cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.{i}.{norm1,attn.qkv,attn.proj,
//! norm2,mlp.fc1,mlp.fc2}`, `fc_norm`, `head`, `vit_block.{0,2}`, `concat_block.{0,2}`,
//! `inception_model.vis_inception.{k}` and `inception_model.magnitude_block.{k}`.
//! DataParallel's `module.` prefix is dropped by [`Weights`]. Every size comes
//! from the file; a missing or misshapen tensor is an error naming it.

use super::inception::{ConvBlock, Inception, InceptionBranch};
use super::vit::{Block, VitEncoder};
use super::{AstroMae, AstroMaeConfig, MagnitudeMlp, TwoLayer};
use crate::crop::CROP;
use crate::weights::{Weights, WeightsError};
use burn::module::Param;
use burn::prelude::*;

/// Positions in CAI's `vis_inception` Sequential: conv, avgpool, inc, inc, avgpool,
/// inc, inc, avgpool, inc, flatten, linear, relu, linear.
const INCEPTION_BLOCKS: [usize; 5] = [2, 3, 5, 6, 8];
const INCEPTION_MLP: (usize, usize) = (10, 12);
const INCEPTION: &str = "inception_model.vis_inception";
const MAGNITUDES: &str = "inception_model.magnitude_block";
/// The bands every path reads (ugriz).
const BANDS: usize = 5;
/// The stem convolution is one module registered twice, so a state_dict lists it
/// under both names; either is enough.
const STEM: &str = "inception_model.conv2d_init";
const STEM_AGAIN: &str = "inception_model.vis_inception.0";

/// Width of a weight matrix (`[out, in]` or `[out, in, kh, kw]`): its first dimension.
fn rows(weights: &Weights, name: &str) -> Result<usize, WeightsError> {
    weights
        .shape(name)?
        .first()
        .copied()
        .ok_or_else(|| weights.error(name, "is a scalar, expected a weight matrix"))
}

/// The stem's prefix: whichever of its two names the file has, after checking that
/// the two agree when both are present.
fn stem(weights: &Weights) -> Result<&'static str, WeightsError> {
    let (a, b) = (
        weights.contains(&format!("{STEM}.weight")),
        weights.contains(&format!("{STEM_AGAIN}.weight")),
    );
    if a && b {
        for part in ["weight", "bias"] {
            let (x, y) = (format!("{STEM}.{part}"), format!("{STEM_AGAIN}.{part}"));
            if weights.values(&x) != weights.values(&y) {
                return Err(weights.error(
                    &x,
                    format!("differs from {y}: the file holds two different stem convolutions"),
                ));
            }
        }
    }
    Ok(if a || !b { STEM } else { STEM_AGAIN })
}

impl<B: Backend> AstroMae<B> {
    /// Loads a CAI checkpoint's weights; `heads` is the number of attention heads
    /// (3 for AstroMAE), the only size a weight file cannot tell.
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
                    .map(|(j, l)| weights.linear(&format!("{MAGNITUDES}.{}", 2 * j), l))
                    .collect::<Result<_, _>>()?,
            },
            head: two_layer(weights, "concat_block.0", "concat_block.2", model.head)?,
        })
    }
}

/// The configuration a weight file describes (depth, widths, image size).
pub fn config_of(weights: &Weights, heads: usize) -> Result<AstroMaeConfig, WeightsError> {
    let name = "patch_embed.proj.weight";
    let patch = weights.shape(name)?.to_vec();
    let [dim, bands, p, _] = patch[..] else {
        return Err(weights.error(
            name,
            format!("shape {patch:?}, expected [dim, bands, patch, patch]"),
        ));
    };
    if p == 0 || heads == 0 || dim % heads != 0 {
        return Err(weights.error(
            name,
            format!("embedding width {dim} is not divisible by {heads} heads (patch {p})"),
        ));
    }
    let tokens = weights.shape("pos_embed")?.get(1).copied().unwrap_or(0);
    let side = ((tokens.saturating_sub(1)) as f64).sqrt() as usize;
    // Every path runs the model on the centre 32x32 of five bands (ugriz), so a
    // file made for other images is refused here, named, not left to fail in a
    // forward pass on some device.
    if side * side + 1 != tokens || side * p != CROP {
        return Err(weights.error(
            "pos_embed",
            format!(
                "{tokens} tokens of {p}x{p} patches: a model for {0}x{0} images, not the \
                 {CROP}x{CROP} crop AstroMAE reads",
                side * p
            ),
        ));
    }
    if bands != BANDS {
        return Err(weights.error(
            name,
            format!("a model of {bands} bands, not the {BANDS} (ugriz) of SDSS images"),
        ));
    }
    let first = format!("{MAGNITUDES}.0.weight");
    match weights.shape(&first)? {
        [_, inputs] if *inputs == BANDS => {}
        other => {
            return Err(weights.error(
                &first,
                format!("shape {other:?}: the magnitudes' first layer must take {BANDS} (ugriz)"),
            ));
        }
    }
    let depth = (0..)
        .take_while(|i| weights.contains(&format!("blocks.{i}.norm1.weight")))
        .count();
    let magnitude_linears = (0..)
        .take_while(|j| weights.contains(&format!("{MAGNITUDES}.{}.weight", 2 * j)))
        .count();
    let mut widths = [0; 5];
    for (w, k) in widths.iter_mut().zip(INCEPTION_BLOCKS) {
        *w = rows(weights, &format!("{INCEPTION}.{k}.branch1.conv.weight"))?;
    }
    let config = AstroMaeConfig::new()
        .with_branch_width(rows(weights, "vit_block.0.weight")?)
        .with_magnitude_width(rows(weights, &format!("{MAGNITUDES}.0.weight"))?)
        // the first and last linears are not hidden layers
        .with_magnitude_layers(magnitude_linears.saturating_sub(2))
        .with_head_width(rows(weights, "concat_block.0.weight")?)
        .with_inception_widths(widths)
        .with_inception_stem(rows(weights, &format!("{}.weight", stem(weights)?))?)
        .with_dim(dim)
        .with_depth(depth)
        .with_heads(heads)
        .with_patch(p)
        .with_bands(bands)
        .with_image(side * p);
    check_size(weights, &config, tokens)?;
    Ok(config)
}

/// Refuses a configuration whose model would hold far more parameters than the
/// file has values: its sizes are read from shapes (and counts of names), and a
/// crafted file could otherwise make `init` allocate terabytes. The count is a
/// generous over-count of every layer, and the bound (16 times the file's
/// values, plus 4 M) leaves room for it: what a file can make us allocate stays
/// proportional to its size.
fn check_size(weights: &Weights, c: &AstroMaeConfig, tokens: usize) -> Result<(), WeightsError> {
    let values: u128 = weights
        .sorted()
        .iter()
        .map(|(_, _, v)| v.len() as u128)
        .sum();
    let u = |n: usize| n as u128;
    let (dim, bw, mw, hw) = (
        u(c.dim),
        u(c.branch_width),
        u(c.magnitude_width),
        u(c.head_width),
    );
    let channels = u(c.inception_stem) + 4 * c.inception_widths.iter().map(|w| u(*w)).sum::<u128>();
    let counted = u(c.depth) * 13 * dim * dim
        + dim * u(c.bands) * u(c.patch) * u(c.patch)
        + u(tokens) * dim
        + bw * (dim + bw + channels)
        + channels * channels * 25
        + mw * (u(c.magnitude_layers) * mw + bw + 8)
        + hw * (2 * bw + mw + hw);
    if u(c.depth) > 256 || u(c.magnitude_layers) > 256 || counted > 16 * values + 4_000_000 {
        return Err(weights.error(
            "patch_embed.proj.weight",
            format!(
                "its shapes describe a model of about {counted} parameters ({} blocks), but the file holds {values} values: not an AstroMAE checkpoint",
                c.depth
            ),
        ));
    }
    Ok(())
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
            attention.qkv = w.linear(&format!("{p}.attn.qkv"), attention.qkv)?;
            attention.out = w.linear(&format!("{p}.attn.proj"), attention.out)?;
            Ok(Block {
                norm1: w.layer_norm(&format!("{p}.norm1"), b.norm1)?,
                attention,
                norm2: w.layer_norm(&format!("{p}.norm2"), b.norm2)?,
                mlp_in: w.linear(&format!("{p}.mlp.fc1"), b.mlp_in)?,
                mlp_out: w.linear(&format!("{p}.mlp.fc2"), b.mlp_out)?,
            })
        })
        .collect::<Result<_, WeightsError>>()?;
    Ok(VitEncoder {
        patch_embed: w.conv2d("patch_embed.proj", m.patch_embed)?,
        cls_token: Param::from_tensor(w.tensor(
            "cls_token",
            m.cls_token.shape().dims(),
            &device,
        )?),
        position: Param::from_tensor(w.tensor("pos_embed", m.position.shape().dims(), &device)?),
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
            let p = format!("{INCEPTION}.{k}");
            Ok(Inception {
                b1: conv_block(w, &format!("{p}.branch1"), b.b1)?,
                b3_reduce: conv_block(w, &format!("{p}.branch2.0"), b.b3_reduce)?,
                b3: conv_block(w, &format!("{p}.branch2.1"), b.b3)?,
                b5: match b.b5 {
                    Some((reduce, conv)) => Some((
                        conv_block(w, &format!("{p}.branch3.0"), reduce)?,
                        conv_block(w, &format!("{p}.branch3.1"), conv)?,
                    )),
                    None => None,
                },
                pool: b.pool,
                pool_proj: conv_block(w, &format!("{p}.branch4.1"), b.pool_proj)?,
            })
        })
        .collect::<Result<_, WeightsError>>()?;
    let (first, second) = INCEPTION_MLP;
    Ok(InceptionBranch {
        stem: w.conv2d(stem(w)?, m.stem)?,
        pool: m.pool,
        blocks,
        mlp: two_layer(
            w,
            &format!("{INCEPTION}.{first}"),
            &format!("{INCEPTION}.{second}"),
            m.mlp,
        )?,
    })
}
