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
//!
//! The model's parts each have their file: `dense` (linear layers and the
//! products), `vit` (the encoder), `inception` (the convolutional branch);
//! `kernels` holds the row steps, [`bf16`] the bf16 products, [`device`] the
//! same computation as a schedule of whole-batch steps for a GPU.

use super::AstroMae;
use super::vit::LAYER_NORM_EPS;

pub mod bf16;
mod dense;
pub mod device;
mod inception;
mod kernels;
mod vit;

const EPS: f32 = LAYER_NORM_EPS as f32;
use crate::crop::CROP;
use burn::prelude::*;
use dense::{Dense, Mat, Products, matmul, two_layer};
use inception::{Conv, InceptionBlock, Inceptions};
use kernels::relu;
use vit::{Norm, Vit};

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
