//! The Inception branch on the fused path: convolutions (BatchNorm folded in)
//! as products over their windows, the blocks' poolings, and the MLP on the
//! flattened features.

use super::dense::{Dense, Mat, matmul, two_layer};
use super::kernels::relu;
use super::{FusedError, or_zeros, values};
use crate::astromae::inception::{ConvBlock, Inception, InceptionBranch};
use crate::crop::CROP;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// A convolution with its BatchNorm folded in: `[out, in * k * k]`, stride 1,
/// padding `k / 2`.
#[derive(Debug, Clone)]
pub(super) struct Conv {
    pub(super) weight: Vec<f32>,
    pub(super) bias: Vec<f32>,
    pub(super) c_in: usize,
    pub(super) c_out: usize,
    pub(super) k: usize,
}

impl Conv {
    /// `conv` alone (no BatchNorm), when it is 1x1 or pads by half its kernel.
    pub(super) fn plain<B: Backend>(conv: &Conv2d<B>) -> Result<Self, FusedError> {
        let [c_out, c_in, kh, kw] = conv.weight.dims();
        let pad = kh / 2;
        let padded = matches!(conv.padding, burn::nn::PaddingConfig2d::Explicit(t, l, b, r) if [t, l, b, r] == [pad; 4])
            || (kh == 1 && matches!(conv.padding, burn::nn::PaddingConfig2d::Valid));
        if kh != kw || kh % 2 == 0 || conv.stride != [1, 1] || conv.groups != 1 || !padded {
            return Err(FusedError(format!(
                "a {kh}x{kw} convolution with {:?} padding and stride {:?}",
                conv.padding, conv.stride
            )));
        }
        Ok(Conv {
            weight: values(conv.weight.val()),
            bias: or_zeros(conv.bias.as_ref(), c_out),
            c_in,
            c_out,
            k: kh,
        })
    }

    /// `block`'s convolution with its inference-time BatchNorm folded in.
    pub(super) fn folded<B: Backend>(block: &ConvBlock<B>) -> Result<Self, FusedError> {
        let mut conv = Conv::plain(&block.conv)?;
        let gamma = values(block.norm.gamma.val());
        let beta = values(block.norm.beta.val());
        let mean = values(block.norm.running_mean.value());
        let var = values(block.norm.running_var.value());
        let per = conv.c_in * conv.k * conv.k;
        for o in 0..conv.c_out {
            let s = gamma[o] / (var[o] + block.norm.epsilon as f32).sqrt();
            for w in &mut conv.weight[o * per..(o + 1) * per] {
                *w *= s;
            }
            conv.bias[o] = (conv.bias[o] - mean[o]) * s + beta[o];
        }
        Ok(conv)
    }

    /// Several convolutions of the same input and kernel as one.
    pub(super) fn stack(convs: Vec<Conv>) -> Conv {
        let mut all = convs[0].clone();
        for c in &convs[1..] {
            all.weight.extend_from_slice(&c.weight);
            all.bias.extend_from_slice(&c.bias);
            all.c_out += c.c_out;
        }
        all
    }

    /// `x` `[c_in, n * side * side]` (channel-major, objects side by side) into
    /// `y` `[c_out, n * side * side]`, with ReLU when `relu`.
    pub(super) fn forward(&self, x: &[f32], side: usize, y: &mut [f32], relu_after: bool) {
        let plane = x.len() / self.c_in;
        let columns;
        let input = if self.k == 1 {
            x
        } else {
            columns = window_columns(x, self.c_in, side, self.k);
            &columns
        };
        let y = &mut y[..self.c_out * plane];
        for (row, &b) in y.chunks_exact_mut(plane).zip(&self.bias) {
            row.fill(b);
        }
        matmul(
            Mat::rows(&self.weight, self.c_out, self.c_in * self.k * self.k),
            Mat::rows(input, self.c_in * self.k * self.k, plane),
            y,
            plane,
            true,
            1.0,
        );
        if relu_after {
            relu(y);
        }
    }
}

/// `[c * k * k, n * side * side]`: each output pixel's zero-padded k x k window.
pub(super) fn window_columns(x: &[f32], c: usize, side: usize, k: usize) -> Vec<f32> {
    let area = side * side;
    let plane = x.len() / c;
    let n = plane / area;
    let pad = k / 2;
    let mut out = vec![0.0; c * k * k * plane];
    for ch in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut out[((ch * k + ky) * k + kx) * plane..][..plane];
                for obj in 0..n {
                    let src = &x[ch * plane + obj * area..][..area];
                    let dst = &mut row[obj * area..][..area];
                    for y in 0..side {
                        let sy = y + ky;
                        if sy < pad || sy - pad >= side {
                            continue;
                        }
                        for xx in 0..side {
                            let sx = xx + kx;
                            if sx >= pad && sx - pad < side {
                                dst[y * side + xx] = src[(sy - pad) * side + sx - pad];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// 3x3 max pool, stride 1, padding 1 (padding never wins, as in PyTorch), as a
/// maximum over each row's neighbours, then over each column's.
pub(super) fn max_pool3(x: &[f32], side: usize) -> Vec<f32> {
    let mut rows = vec![0.0; x.len()];
    for (src, dst) in x.chunks_exact(side).zip(rows.chunks_exact_mut(side)) {
        dst.copy_from_slice(src);
        if side > 1 {
            for (d, s) in dst[..side - 1].iter_mut().zip(&src[1..]) {
                *d = d.max(*s);
            }
            for (d, s) in dst[1..].iter_mut().zip(&src[..side - 1]) {
                *d = d.max(*s);
            }
        }
    }
    let mut out = rows.clone();
    for (src, dst) in rows
        .chunks_exact(side * side)
        .zip(out.chunks_exact_mut(side * side))
    {
        for y in 0..side {
            let dst = &mut dst[y * side..(y + 1) * side];
            for ny in [y.wrapping_sub(1), y + 1] {
                if ny < side {
                    for (d, s) in dst.iter_mut().zip(&src[ny * side..(ny + 1) * side]) {
                        *d = d.max(*s);
                    }
                }
            }
        }
    }
    out
}

/// 2x2 average pool, stride 2, of `side` x `side` planes.
pub(super) fn avg_pool2(x: &[f32], side: usize) -> Vec<f32> {
    let half = side / 2;
    let mut out = Vec::with_capacity(x.len() / 4);
    for src in x.chunks_exact(side * side) {
        for y in 0..half {
            for xx in 0..half {
                let at = |dy: usize, dx: usize| src[(2 * y + dy) * side + 2 * xx + dx];
                out.push((at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) * 0.25);
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
pub(super) struct InceptionBlock {
    /// The 1x1 convolutions reading the block's input, stacked: the 1x1
    /// branch, the 3x3 branch's reduction and (when present) the 5x5's.
    pub(super) entry: Conv,
    pub(super) width: usize,
    pub(super) b3: Conv,
    pub(super) b5: Option<Conv>,
    pub(super) pool_proj: Conv,
}

impl InceptionBlock {
    pub(super) fn new<B: Backend>(block: &Inception<B>) -> Result<Self, FusedError> {
        let mut entry = vec![Conv::folded(&block.b1)?, Conv::folded(&block.b3_reduce)?];
        let b5 = match &block.b5 {
            Some((reduce, conv)) => {
                entry.push(Conv::folded(reduce)?);
                Some(Conv::folded(conv)?)
            }
            None => None,
        };
        let width = entry[0].c_out;
        if entry.iter().any(|c| c.c_out != width || c.k != 1) {
            return Err(FusedError("Inception branches of different widths".into()));
        }
        Ok(InceptionBlock {
            entry: Conv::stack(entry),
            width,
            b3: Conv::folded(&block.b3)?,
            b5,
            pool_proj: Conv::folded(&block.pool_proj)?,
        })
    }

    pub(super) fn out_channels(&self) -> usize {
        self.width * if self.b5.is_some() { 4 } else { 3 }
    }

    /// `x` `[c_in, n * side * side]` -> `[out_channels, n * side * side]`.
    pub(super) fn forward(&self, x: &[f32], side: usize) -> Vec<f32> {
        let plane = x.len() / self.entry.c_in;
        let w = self.width;
        let mut entry = vec![0.0; self.entry.c_out * plane];
        self.entry.forward(x, side, &mut entry, true);
        let mut out = vec![0.0; self.out_channels() * plane];
        out[..w * plane].copy_from_slice(&entry[..w * plane]);
        self.b3.forward(
            &entry[w * plane..2 * w * plane],
            side,
            &mut out[w * plane..2 * w * plane],
            true,
        );
        let mut next = 2;
        if let Some(b5) = &self.b5 {
            b5.forward(
                &entry[2 * w * plane..3 * w * plane],
                side,
                &mut out[2 * w * plane..3 * w * plane],
                true,
            );
            next = 3;
        }
        self.pool_proj.forward(
            &max_pool3(x, side),
            side,
            &mut out[next * w * plane..],
            true,
        );
        out
    }
}

#[derive(Debug, Clone)]
pub(super) struct Inceptions {
    pub(super) stem: Conv,
    pub(super) blocks: Vec<InceptionBlock>,
    pub(super) mlp: [Dense; 2],
}

impl Inceptions {
    pub(super) fn new<B: Backend>(
        branch: &InceptionBranch<B>,
        bands: usize,
    ) -> Result<Self, FusedError> {
        let stem = Conv::plain(&branch.stem)?;
        if stem.k != 1 || stem.c_in != bands {
            return Err(FusedError(
                "an Inception stem that is not 1x1 over the bands".into(),
            ));
        }
        let blocks = branch
            .blocks
            .iter()
            .map(InceptionBlock::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mlp = [
            Dense::new(&branch.mlp.first),
            Dense::new(&branch.mlp.second),
        ];
        let side = CROP / 8;
        let channels = blocks
            .last()
            .map_or(stem.c_out, InceptionBlock::out_channels);
        if mlp[0].d_in != channels * side * side {
            return Err(FusedError(format!(
                "the Inception MLP reads {} values, the blocks give {}",
                mlp[0].d_in,
                channels * side * side
            )));
        }
        Ok(Inceptions { stem, blocks, mlp })
    }

    pub(super) fn out_width(&self) -> usize {
        self.mlp[1].d_out
    }

    /// `[n, bands, 32, 32]` -> `[n, out_width]`.
    pub(super) fn forward(&self, images: &[f32], n: usize) -> Vec<f32> {
        let area = CROP * CROP;
        let bands = self.stem.c_in;
        // [n, bands, area] -> channel-major [bands, n * area].
        let mut x = vec![0.0; images.len()];
        for obj in 0..n {
            for c in 0..bands {
                x[(c * n + obj) * area..][..area]
                    .copy_from_slice(&images[(obj * bands + c) * area..][..area]);
            }
        }
        let mut stem = vec![0.0; self.stem.c_out * n * area];
        self.stem.forward(&x, CROP, &mut stem, false);
        let mut side = CROP / 2;
        let mut x = avg_pool2(&stem, CROP);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, side);
            if i % 2 == 1 {
                x = avg_pool2(&x, side);
                side /= 2;
            }
        }
        // [c, n, area] -> [n, c * area], burn's flatten of [n, c, h, w].
        let area = side * side;
        let c = x.len() / (n * area);
        let mut flat = vec![0.0; x.len()];
        for ch in 0..c {
            for obj in 0..n {
                flat[(obj * c + ch) * area..][..area]
                    .copy_from_slice(&x[(ch * n + obj) * area..][..area]);
            }
        }
        two_layer(&self.mlp, &flat, n)
    }
}
