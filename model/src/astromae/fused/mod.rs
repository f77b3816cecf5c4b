//! AstroMAE inference on the CPU as a few large matrix products with fused steps.
//!
//! burn's CPU backends run the model one tensor operation at a time: each
//! LayerNorm, bias, GELU, softmax and residual add reads and writes the whole
//! activation, and their matrix products use AVX2 kernels. Here the weights of
//! a loaded [`AstroMae`] are copied once into plain row-major matrices (BatchNorm
//! folded into its convolution, the three 1x1 convolutions that open an
//! Inception block stacked into one), products go to the `gemm` crate (AVX-512
//! kernels where the CPU has them, chosen at run time), and every elementwise
//! step runs on rows while they are in cache: bias and GELU after the MLP's first
//! product, the residual add inside the second product (`gemm` accumulates into
//! its destination), softmax over each head's 65x65 scores.
//!
//! It computes what [`AstroMae::forward`] computes; the parity tests hold both to
//! PyTorch's outputs. A batch runs as slices of objects on rayon's threads, each
//! slice on one thread with its activations in cache.

use super::AstroMae;
use super::inception::{ConvBlock, Inception, InceptionBranch};
use super::vit::{Block, LAYER_NORM_EPS, VitEncoder};

pub mod bf16;
pub mod device;
mod kernels;

const EPS: f32 = LAYER_NORM_EPS as f32;
use crate::crop::CROP;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use gemm::{Parallelism, gemm};
use kernels::{add_bias, gelu, layer_norm, relu, softmax_rows};

use rayon::prelude::*;

/// AstroMAE's weights laid out for [`FusedAstroMae::forward`].
#[derive(Debug, Clone)]
pub struct FusedAstroMae {
    vit: Vit,
    vit_block: [Dense; 2],
    inception: Inceptions,
    magnitudes: Vec<Dense>,
    head: [Dense; 2],
    bands: usize,
}

/// Why a loaded model cannot run on this path.
#[derive(Debug, thiserror::Error)]
#[error("AstroMAE on the fused path: {0}")]
pub struct FusedError(String);

impl FusedAstroMae {
    /// The weights of `model`, copied out of its backend.
    pub fn new<B: Backend>(model: &AstroMae<B>) -> Result<Self, FusedError> {
        let vit = Vit::new(&model.vit)?;
        let bands = model.vit.patch_embed.weight.dims()[1];
        let fused = FusedAstroMae {
            vit,
            vit_block: [
                Dense::new(&model.vit_block.first),
                Dense::new(&model.vit_block.second),
            ],
            inception: Inceptions::new(&model.inception, bands)?,
            magnitudes: model.magnitudes.layers.iter().map(Dense::new).collect(),
            head: [
                Dense::new(&model.head.first),
                Dense::new(&model.head.second),
            ],
            bands,
        };
        fused.check_widths()?;
        Ok(fused)
    }

    /// The model with the transformer blocks' products in bf16 (`--precision
    /// bf16`): their four products (qkv, projection, the two MLP layers) are
    /// nine tenths of the model's work. The patch embedding, attention scores,
    /// Inception branch, magnitude branch and head stay f32;
    /// the magnitudes (values near 20) would be rounded to steps of 0.125 mag in
    /// bf16.
    pub fn with_bf16_products(self) -> Self {
        self.with_bf16(bf16::native())
    }

    /// [`FusedAstroMae::with_bf16_products`], on AVX-512 BF16 (`native`) or not.
    fn with_bf16(mut self, native: bool) -> Self {
        for layer in &mut self.vit.layers {
            for dense in [
                &mut layer.qkv,
                &mut layer.out,
                &mut layer.mlp_in,
                &mut layer.mlp_out,
            ] {
                dense.use_bf16(native);
            }
        }
        self
    }

    /// Which kernels run the products: `fp32`, `bf16 (AVX-512 BF16)` or, on a
    /// CPU without it, `bf16 (rounded, on fp32 kernels)`.
    pub fn kernels(&self) -> &'static str {
        match self.vit.layers.first().map(|l| &l.qkv.products) {
            Some(Products::Bf16(_)) => bf16::NATIVE,
            Some(Products::Bf16OnF32) => bf16::ROUNDED,
            _ => "fp32",
        }
    }

    /// Each layer reads what the one before it writes, so no product is ever
    /// handed mismatched matrices (the loader checks names and shapes; this
    /// checks that they chain).
    fn check_widths(&self) -> Result<(), FusedError> {
        let v = &self.vit;
        let mut chain: Vec<(&str, usize, usize)> = Vec::new();
        for l in &v.layers {
            chain.extend([
                ("a block's qkv", l.qkv.d_in, v.dim),
                ("a block's qkv output", l.qkv.d_out, 3 * v.dim),
                ("a block's projection", l.out.d_in, v.dim),
                ("a block's projection output", l.out.d_out, v.dim),
                ("a block's first MLP layer", l.mlp_in.d_in, v.dim),
                ("a block's second MLP layer", l.mlp_out.d_in, l.mlp_in.d_out),
                ("a block's MLP output", l.mlp_out.d_out, v.dim),
                (
                    "a block's LayerNorm",
                    l.norm1.gamma.len().min(l.norm2.gamma.len()),
                    v.dim,
                ),
            ]);
        }
        chain.extend([
            ("the ViT head", v.head.d_in, v.dim),
            ("vit_block", self.vit_block[0].d_in, v.head.d_out),
            (
                "vit_block's second layer",
                self.vit_block[1].d_in,
                self.vit_block[0].d_out,
            ),
            (
                "the Inception MLP's second layer",
                self.inception.mlp[1].d_in,
                self.inception.mlp[0].d_out,
            ),
            (
                "the head's second layer",
                self.head[1].d_in,
                self.head[0].d_out,
            ),
            ("the head's output", self.head[1].d_out, 1),
            (
                "the head",
                self.head[0].d_in,
                self.vit_block[1].d_out + self.inception.out_width() + self.magnitudes_width(),
            ),
        ]);
        let mut reads = self.bands;
        for layer in &self.magnitudes {
            chain.push(("a magnitude layer", layer.d_in, reads));
            reads = layer.d_out;
        }
        if self.magnitudes.is_empty() {
            return Err(FusedError("no magnitude layers".into()));
        }
        match chain.into_iter().find(|(_, got, want)| got != want) {
            Some((what, got, want)) => Err(FusedError(format!(
                "{what} reads or writes {got} values where {want} are needed"
            ))),
            None => Ok(()),
        }
    }

    /// Redshifts of `n` objects: `images` `[n, bands, height, width]` (at least
    /// 32x32; the centre 32x32 is read) and `magnitudes` `[n, bands]`, in slices
    /// of `slice` objects on rayon's threads.
    pub fn forward(
        &self,
        images: &[f32],
        magnitudes: &[f32],
        n: usize,
        [height, width]: [usize; 2],
        slice: usize,
    ) -> Result<Vec<f32>, FusedError> {
        let per = check_batch(self.bands, images, magnitudes, n, [height, width])?;
        let slice = slice.clamp(1, n.max(1));
        let out: Vec<Vec<f32>> = (0..n)
            .step_by(slice)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let m = slice.min(n - start);
                let crop = centre_crop(
                    &images[start * per..(start + m) * per],
                    m,
                    self.bands,
                    [height, width],
                );
                let mags = &magnitudes[start * self.bands..(start + m) * self.bands];
                self.forward_cropped(&crop, mags, m)
            })
            .collect();
        Ok(out.concat())
    }

    /// Redshifts of `n` objects whose images are already `[n, bands, 32, 32]`.
    fn forward_cropped(&self, images: &[f32], magnitudes: &[f32], n: usize) -> Vec<f32> {
        let width = self.vit_block[1].d_out + self.inception.out_width() + self.magnitudes_width();
        let mut joined = vec![0.0; n * width];
        let mut column = 0;
        let mut put = |part: Vec<f32>, w: usize| {
            for (row, values) in part.chunks_exact(w).enumerate() {
                joined[row * width + column..row * width + column + w].copy_from_slice(values);
            }
            column += w;
        };
        let vit = self.vit.forward(images, n);
        let vit = two_layer(&self.vit_block, &vit, n);
        put(vit, self.vit_block[1].d_out);
        put(
            self.inception.forward(images, n),
            self.inception.out_width(),
        );
        let mut x = magnitudes.to_vec();
        let last = self.magnitudes.len() - 1;
        for (i, layer) in self.magnitudes.iter().enumerate() {
            x = layer.forward(&x, n);
            if i < last {
                relu(&mut x);
            }
        }
        put(x, self.magnitudes_width());
        two_layer(&self.head, &joined, n)
    }

    /// Floating-point operations per object in the model's products (a
    /// multiply-add counts two): what a GFLOP/s figure divides by. The
    /// elementwise steps, a few percent more, are left out, as PyTorch's
    /// `FlopCounterMode` leaves them out.
    pub fn flops_per_object(&self) -> f64 {
        let dense = |d: &Dense| 2.0 * (d.d_in * d.d_out) as f64;
        let v = &self.vit;
        let side = CROP / v.patch;
        let tokens = (side * side + 1) as f64;
        let patches = (side * side * v.patch_weight.len()) as f64 * 2.0;
        let layers: f64 = v
            .layers
            .iter()
            .map(|l| {
                let products = [&l.qkv, &l.out, &l.mlp_in, &l.mlp_out].map(dense);
                // Scores and their weighted sum: two tokens x tokens x dim products.
                tokens * products.iter().sum::<f64>() + 4.0 * tokens * tokens * v.dim as f64
            })
            .sum();
        let conv =
            |c: &Conv, side: usize| 2.0 * (c.c_out * c.c_in * c.k * c.k * side * side) as f64;
        let mut inception = conv(&self.inception.stem, CROP);
        let mut at = CROP / 2;
        for (i, b) in self.inception.blocks.iter().enumerate() {
            inception += [
                Some(&b.entry),
                Some(&b.b3),
                b.b5.as_ref(),
                Some(&b.pool_proj),
            ]
            .into_iter()
            .flatten()
            .map(|c| conv(c, at))
            .sum::<f64>();
            if i % 2 == 1 {
                at /= 2;
            }
        }
        let mlps: f64 = [&self.vit_block[0], &self.vit_block[1], &v.head]
            .into_iter()
            .chain(&self.inception.mlp)
            .chain(&self.magnitudes)
            .chain(&self.head)
            .map(dense)
            .sum();
        patches + layers + inception + mlps
    }

    fn magnitudes_width(&self) -> usize {
        self.magnitudes.last().map_or(0, |l| l.d_out)
    }
}

/// A linear layer: `y = x W + b`, `W` `[d_in, d_out]` row-major (burn's layout).
#[derive(Debug, Clone)]
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
    products: Products,
}

/// How a [`Dense`] layer multiplies.
#[derive(Debug, Clone)]
enum Products {
    F32,
    /// Weights packed for AVX-512 BF16.
    Bf16(bf16::PackedWeights),
    /// Weights (already in `weight`) and inputs rounded to bf16, multiplied by
    /// the f32 kernels: where the CPU lacks AVX-512 BF16.
    Bf16OnF32,
}

impl Dense {
    fn new<B: Backend>(linear: &Linear<B>) -> Self {
        let [d_in, d_out] = linear.weight.dims();
        Dense {
            weight: values(linear.weight.val()),
            bias: or_zeros(linear.bias.as_ref(), d_out),
            d_in,
            d_out,
            products: Products::F32,
        }
    }

    /// The layer with its products in bf16 (the bias stays f32).
    fn use_bf16(&mut self, native: bool) {
        if !matches!(self.products, Products::F32) {
            return; // already bf16 (the packed copy has replaced the f32 weights)
        }
        if native {
            self.products = Products::Bf16(bf16::PackedWeights::new(
                &self.weight,
                self.d_in,
                self.d_out,
            ));
            // The packed copy is what runs: the f32 one would only take memory.
            self.weight = Vec::new();
        } else {
            bf16::round_in_place(&mut self.weight);
            self.products = Products::Bf16OnF32;
        }
    }

    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = vec![0.0; rows * self.d_out];
        self.apply(x, rows, &mut y, false);
        y
    }

    /// `y = x W + b`, or `y += x W + b` when `accumulate` (a residual add).
    fn apply(&self, x: &[f32], rows: usize, y: &mut [f32], accumulate: bool) {
        self.apply_with(x, rows, y, accumulate, &mut bf16::Pairs::default());
    }

    /// [`Dense::apply`], with a buffer for bf16 inputs that is kept between calls.
    fn apply_with(
        &self,
        x: &[f32],
        rows: usize,
        y: &mut [f32],
        accumulate: bool,
        pairs: &mut bf16::Pairs,
    ) {
        let y = &mut y[..rows * self.d_out];
        let x = &x[..rows * self.d_in];
        match &self.products {
            Products::Bf16(packed) => {
                // The bias goes in inside the kernel's registers.
                pairs.fill(x, rows, self.d_in);
                bf16::matmul(pairs, packed, Some(&self.bias), y, self.d_out, accumulate);
            }
            Products::F32 => self.product(x, rows, y, accumulate),
            Products::Bf16OnF32 => {
                let mut rounded = x.to_vec();
                bf16::round_in_place(&mut rounded);
                self.product(&rounded, rows, y, accumulate);
            }
        }
    }

    /// `y = x W + b` (or `y += …`) in f32. The bias goes in first and the
    /// product accumulates onto it: one pass less over `y` than adding it after.
    fn product(&self, x: &[f32], rows: usize, y: &mut [f32], accumulate: bool) {
        if accumulate {
            add_bias(y, &self.bias);
        } else {
            fill_rows(y, &self.bias);
        }
        matmul(
            Mat::rows(x, rows, self.d_in),
            Mat::rows(&self.weight, self.d_in, self.d_out),
            y,
            self.d_out,
            true,
            1.0,
        );
    }
}

/// Each `row.len()`-wide row of `y` set to `row`.
fn fill_rows(y: &mut [f32], row: &[f32]) {
    for r in y.chunks_exact_mut(row.len()) {
        r.copy_from_slice(row);
    }
}

/// A matrix read through strides, for [`matmul`].
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows` x `cols` matrix.
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// `rows` x `cols` starting at `data[0]`, rows `row_stride` apart.
    fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    fn transposed(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = scale * a b` (or `dst += …` when `accumulate`), `dst` row-major with rows
/// `dst_stride` apart, on the calling thread.
fn matmul(a: Mat, b: Mat, dst: &mut [f32], dst_stride: usize, accumulate: bool, scale: f32) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k && a.fits() && b.fits(), "matmul shapes");
    assert!(
        m == 0 || n == 0 || (m - 1) * dst_stride + n <= dst.len(),
        "matmul destination"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every element gemm reads or writes inside
    // the three slices; `dst` is borrowed mutably, so it overlaps neither input.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Two linear layers with a ReLU between them.
fn two_layer(layers: &[Dense; 2], x: &[f32], rows: usize) -> Vec<f32> {
    let mut h = layers[0].forward(x, rows);
    relu(&mut h);
    layers[1].forward(&h, rows)
}

/// The values per object of a batch of `n` objects, `images` `[n, bands,
/// height, width]` (at least 32x32) and `magnitudes` `[n, bands]`, or an error
/// naming what does not fit.
fn check_batch(
    bands: usize,
    images: &[f32],
    magnitudes: &[f32],
    n: usize,
    [height, width]: [usize; 2],
) -> Result<usize, FusedError> {
    let per = bands * height * width;
    if height < CROP || width < CROP {
        return Err(FusedError(format!(
            "images are {height}x{width}, smaller than the {CROP}x{CROP} the model reads"
        )));
    }
    if images.len() != n * per || magnitudes.len() != n * bands {
        return Err(FusedError(format!(
            "{n} objects need {} pixel values and {} magnitudes, got {} and {}",
            n * per,
            n * bands,
            images.len(),
            magnitudes.len()
        )));
    }
    Ok(per)
}

/// `[n, bands, 32, 32]`: the centre crop of `[n, bands, h, w]` images (at
/// least 32x32).
pub fn centre_crop(images: &[f32], n: usize, bands: usize, [h, w]: [usize; 2]) -> Vec<f32> {
    debug_assert_eq!(images.len(), n * bands * h * w);
    crate::crop::centre_crop_planes(images, [h, w], CROP)
}

/// A layer's optional bias (or LayerNorm shift), `len` zeros when it has none.
fn or_zeros<B: Backend>(bias: Option<&burn::module::Param<Tensor<B, 1>>>, len: usize) -> Vec<f32> {
    bias.map_or_else(|| vec![0.0; len], |b| values(b.val()))
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn new<B: Backend>(norm: &LayerNorm<B>) -> Self {
        let gamma = values(norm.gamma.val());
        let beta = or_zeros(norm.beta.as_ref(), gamma.len());
        Norm { gamma, beta }
    }
}

#[derive(Debug, Clone)]
struct Layer {
    norm1: Norm,
    qkv: Dense,
    out: Dense,
    norm2: Norm,
    mlp_in: Dense,
    mlp_out: Dense,
}

#[derive(Debug, Clone)]
struct Vit {
    /// `[bands * patch * patch, dim]`: the patch embedding as a matrix.
    patch_weight: Vec<f32>,
    patch: usize,
    /// What each token starts from before its patch is added: the class token
    /// plus its position, then each patch's position plus the embedding's bias.
    start: Vec<f32>,
    layers: Vec<Layer>,
    heads: usize,
    fc_norm: Norm,
    head: Dense,
    dim: usize,
}

impl Vit {
    fn new<B: Backend>(vit: &VitEncoder<B>) -> Result<Self, FusedError> {
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
    fn forward(&self, images: &[f32], n: usize) -> Vec<f32> {
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
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attended: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
    pairs: bf16::Pairs,
}

impl Scratch {
    fn new(rows: usize, dim: usize) -> Self {
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
    fn new<B: Backend>(block: &Block<B>) -> Self {
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
    fn forward(&self, x: &mut [f32], tokens: usize, heads: usize, s: &mut Scratch) {
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

/// A convolution with its BatchNorm folded in: `[out, in * k * k]`, stride 1,
/// padding `k / 2`.
#[derive(Debug, Clone)]
struct Conv {
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    k: usize,
}

impl Conv {
    /// `conv` alone (no BatchNorm), when it is 1x1 or pads by half its kernel.
    fn plain<B: Backend>(conv: &Conv2d<B>) -> Result<Self, FusedError> {
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
    fn folded<B: Backend>(block: &ConvBlock<B>) -> Result<Self, FusedError> {
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
    fn stack(convs: Vec<Conv>) -> Conv {
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
    fn forward(&self, x: &[f32], side: usize, y: &mut [f32], relu_after: bool) {
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
fn window_columns(x: &[f32], c: usize, side: usize, k: usize) -> Vec<f32> {
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
fn max_pool3(x: &[f32], side: usize) -> Vec<f32> {
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
fn avg_pool2(x: &[f32], side: usize) -> Vec<f32> {
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
struct InceptionBlock {
    /// The 1x1 convolutions reading the block's input, stacked: the 1x1
    /// branch, the 3x3 branch's reduction and (when present) the 5x5's.
    entry: Conv,
    width: usize,
    b3: Conv,
    b5: Option<Conv>,
    pool_proj: Conv,
}

impl InceptionBlock {
    fn new<B: Backend>(block: &Inception<B>) -> Result<Self, FusedError> {
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

    fn out_channels(&self) -> usize {
        self.width * if self.b5.is_some() { 4 } else { 3 }
    }

    /// `x` `[c_in, n * side * side]` -> `[out_channels, n * side * side]`.
    fn forward(&self, x: &[f32], side: usize) -> Vec<f32> {
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
struct Inceptions {
    stem: Conv,
    blocks: Vec<InceptionBlock>,
    mlp: [Dense; 2],
}

impl Inceptions {
    fn new<B: Backend>(branch: &InceptionBranch<B>, bands: usize) -> Result<Self, FusedError> {
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

    fn out_width(&self) -> usize {
        self.mlp[1].d_out
    }

    /// `[n, bands, 32, 32]` -> `[n, out_width]`.
    fn forward(&self, images: &[f32], n: usize) -> Vec<f32> {
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

#[cfg(test)]
type TestBackend = burn::backend::NdArray<f32>;

/// A random AstroMAE of `depth` blocks with `n` random objects of `height x
/// width` and their magnitudes, for tests here and in [`device`].
#[cfg(test)]
pub(crate) fn random_objects(
    depth: usize,
    n: usize,
    [height, width]: [usize; 2],
    seed: u64,
) -> (
    super::AstroMae<TestBackend>,
    Tensor<TestBackend, 4>,
    Tensor<TestBackend, 2>,
) {
    use burn::tensor::Distribution;
    type B = TestBackend;
    let device = Default::default();
    B::seed(&device, seed);
    let model = super::AstroMaeConfig::new()
        .with_depth(depth)
        .init::<B>(&device);
    let images = Tensor::<B, 4>::random(
        [n, 5, height, width],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mags = Tensor::<B, 2>::random([n, 5], Distribution::Normal(18.0, 1.0), &device);
    (model, images, mags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astromae::AstroMaeConfig;
    use burn::backend::NdArray;

    #[test]
    fn fused_redshifts_equal_burns_for_64x64_cutouts_in_uneven_slices() {
        let n = 7;
        let (model, images, mags) = random_objects(2, n, [64, 64], 1);
        let want = values(model.forward(images.clone(), mags.clone()));
        let fused = FusedAstroMae::new(&model).unwrap();
        let got = fused
            .forward(&values(images), &values(mags), n, [64, 64], 3)
            .unwrap();
        assert_eq!(got.len(), n);
        let spread = want.iter().fold(0f32, |m, z| m.max((z - want[0]).abs()));
        assert!(spread > 1e-3, "objects should differ: {want:?}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "fused {got:?} vs burn {want:?}");
        }
    }

    #[test]
    fn bf16_products_agree_on_both_kernels_and_stay_near_fp32() {
        let n = 9;
        let (model, images, mags) = random_objects(2, n, [32, 32], 7);
        let (images, mags) = (values(images), values(mags));
        let fp32 = FusedAstroMae::new(&model).unwrap();
        let run = |m: &FusedAstroMae| m.forward(&images, &mags, n, [32, 32], 4).unwrap();
        let want = run(&fp32);
        let rounded = fp32.clone().with_bf16(false);
        assert_eq!(rounded.kernels(), "bf16 (rounded, on fp32 kernels)");
        let got = run(&rounded);
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        let off = worst(&got, &want);
        assert!(off > 0.0 && off < 1e-3, "bf16 vs fp32: {off}");
        if bf16::native() {
            let native = fp32.clone().with_bf16(true);
            assert_eq!(native.kernels(), "bf16 (AVX-512 BF16)");
            // The same products summed in another order (the order's rounding
            // grows through the layers: 1.02e-5 was seen), far inside bf16's own.
            let apart = worst(&run(&native), &got);
            assert!(
                apart < 5e-5,
                "AVX-512 BF16 vs rounded fp32 kernels: {apart}"
            );
        }
    }

    #[test]
    fn wrong_sizes_are_errors() {
        type B = NdArray<f32>;
        let model = AstroMaeConfig::new()
            .with_depth(1)
            .init::<B>(&Default::default());
        let fused = FusedAstroMae::new(&model).unwrap();
        let e = fused
            .forward(&[0.0; 5 * 16 * 16], &[0.0; 5], 1, [16, 16], 4)
            .unwrap_err();
        assert!(e.to_string().contains("smaller than the 32x32"), "{e}");
        let e = fused
            .forward(&[0.0; 10], &[0.0; 5], 1, [32, 32], 4)
            .unwrap_err();
        assert!(e.to_string().contains("need 5120 pixel values"), "{e}");
    }

    #[test]
    fn layers_that_do_not_chain_are_refused_by_name() {
        type B = NdArray<f32>;
        let device = Default::default();
        let mut model = AstroMaeConfig::new().with_depth(1).init::<B>(&device);
        model.magnitudes.layers[1] = burn::nn::LinearConfig::new(7, 1024).init(&device);
        let e = FusedAstroMae::new(&model).unwrap_err().to_string();
        assert!(
            e.contains("a magnitude layer reads or writes 7 values where 1024 are needed"),
            "{e}"
        );
    }

    #[test]
    fn the_full_size_model_costs_what_pytorch_counts() {
        type B = NdArray<f32>;
        let model = AstroMaeConfig::new().init::<B>(&Default::default());
        let flops = FusedAstroMae::new(&model).unwrap().flops_per_object();
        // torch.utils.flop_counter.FlopCounterMode on the peer: 0.765 GFLOP per object.
        assert!((flops / 1e9 - 0.765).abs() < 0.005, "{flops}");
    }
}
