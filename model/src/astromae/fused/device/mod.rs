//! [`FusedAstroMae`]'s computation as a schedule of a few device kernels, for
//! accelerators.
//!
//! The CPU path runs a batch as slices on threads, each slice in cache. A GPU
//! wants the opposite: whole batches, each step one launch over every object.
//! [`OnDevice`] holds the same weights in a [`Kernels`] implementation's
//! buffers and runs the same steps as whole-batch launches of eight
//! operations: batched matrix products (the layers, every object's attention
//! a head at a time, the convolutions as products over their windows, the
//! token mean), a strided copy (crops, patches, layouts, flatten), bias with
//! an activation, LayerNorm, row softmax, the convolutions' windows, and the
//! Inception branch's two poolings.
//!
//! [`host::HostKernels`] runs them on the CPU, reusing the fused path's
//! kernels, so the schedule (shapes, strides, offsets, the order of steps) is
//! tested against [`FusedAstroMae::forward`] on any machine. With the `cuda`
//! feature, `cuda::CudaKernels` runs them on cuBLAS and a handful of NVRTC
//! kernels; its tests need a GPU and compare each operation with the host's.

use super::{Conv, Dense, EPS, FusedAstroMae, FusedError, InceptionBlock, Norm};
use crate::crop::CROP;

mod bounds;
pub mod column_major;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod host;
pub mod ledger;

/// A matrix operand of [`Kernels::gemm`]: element (i, j) of batch item b lies at
/// `offset + b * batch_stride + i * ld + j`, or `… + j * ld + i` when
/// `transposed` (the buffer holds the operand's transpose, row-major).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Operand {
    pub offset: usize,
    pub ld: usize,
    pub batch_stride: usize,
    pub transposed: bool,
}

impl Operand {
    /// Row-major, `ld` apart, one matrix every `batch_stride` values.
    pub fn rows(offset: usize, ld: usize, batch_stride: usize) -> Self {
        Operand {
            offset,
            ld,
            batch_stride,
            transposed: false,
        }
    }

    fn transposed(self) -> Self {
        Operand {
            transposed: true,
            ..self
        }
    }

    /// One past the last value `batch` matrices of `rows x cols` reach (as the
    /// product reads them), or `None` when `ld` is shorter than a stored row.
    fn end(&self, batch: usize, rows: usize, cols: usize) -> Option<usize> {
        let (stored_rows, stored_cols) = if self.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        if self.ld < stored_cols || batch == 0 || stored_rows == 0 || stored_cols == 0 {
            return None;
        }
        Some(
            self.offset
                + (batch - 1) * self.batch_stride
                + (stored_rows - 1) * self.ld
                + stored_cols,
        )
    }
}

/// `C_b = alpha A_b B_b + beta C_b` for `b` in `0..batch`: `A_b` is `m x k`,
/// `B_b` `k x n`, `C_b` `m x n` (never transposed). With `beta` 0, `C` is only
/// written (what it held, even NaN, does not matter).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub alpha: f32,
    pub beta: f32,
    pub a: Operand,
    pub b: Operand,
    pub c: Operand,
}

impl Product {
    /// Whether nothing is to be computed.
    pub fn is_empty(&self) -> bool {
        self.m == 0 || self.n == 0 || self.batch == 0
    }

    /// Whether there is anything to compute, or an error naming the product
    /// when an operand reaches past buffers of `a`, `b` and `c` values.
    pub fn ready(&self, a: usize, b: usize, c: usize) -> Result<bool, FusedError> {
        if self.is_empty() {
            Ok(false)
        } else if self.fits(a, b, c) {
            Ok(true)
        } else {
            Err(FusedError(
                "a product's operand reaches past its buffer".into(),
            ))
        }
    }

    /// Whether every matrix lies inside buffers of `a`, `b` and `c` values,
    /// with no leading dimension shorter than a row (`C` never transposed).
    pub fn fits(&self, a: usize, b: usize, c: usize) -> bool {
        // An operand not read (k = 0) must still start inside its buffer.
        let inside = |op: &Operand, rows, cols, len| {
            op.offset <= len
                && (rows * cols == 0 || op.end(self.batch, rows, cols).is_some_and(|e| e <= len))
        };
        !self.c.transposed
            && inside(&self.a, self.m, self.k, a)
            && inside(&self.b, self.k, self.n, b)
            && inside(&self.c, self.m, self.n, c)
    }
}

/// A copy of a block of up to six dimensions between strided layouts; element
/// `i` (row-major over `shape`) goes from `src_offset + Σ i_d src[d]` to
/// `dst_offset + Σ i_d dst[d]`. A zero source stride repeats (broadcasts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Copy6 {
    pub shape: [usize; 6],
    pub src: [usize; 6],
    pub dst: [usize; 6],
    pub src_offset: usize,
    pub dst_offset: usize,
}

impl Copy6 {
    /// A copy of `shape` (at most six dimensions, outermost first), padded
    /// with leading dimensions of one.
    fn new(shape: &[usize], src: &[usize], dst: &[usize]) -> Self {
        let pad = |v: &[usize], fill: usize| {
            let mut out = [fill; 6];
            out[6 - v.len()..].copy_from_slice(v);
            out
        };
        Copy6 {
            shape: pad(shape, 1),
            src: pad(src, 0),
            dst: pad(dst, 0),
            src_offset: 0,
            dst_offset: 0,
        }
    }

    fn at(self, src_offset: usize, dst_offset: usize) -> Self {
        Copy6 {
            src_offset,
            dst_offset,
            ..self
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether there is anything to copy, or an error when an index reaches
    /// past buffers of `src` and `dst` values.
    pub fn ready(&self, src: usize, dst: usize) -> Result<bool, FusedError> {
        if !self.fits(src, dst) {
            return Err(bounds::out_of("a copy"));
        }
        Ok(!self.is_empty())
    }

    /// Whether every index lies inside buffers of `src` and `dst` values.
    pub fn fits(&self, src: usize, dst: usize) -> bool {
        let last = |strides: &[usize; 6], offset: usize| {
            offset
                + self
                    .shape
                    .iter()
                    .zip(strides)
                    .map(|(s, st)| s.saturating_sub(1) * st)
                    .sum::<usize>()
        };
        self.is_empty()
            || (last(&self.src, self.src_offset) < src && last(&self.dst, self.dst_offset) < dst)
    }
}

/// `rows x cols` values from `offset`, rows `ld` apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

impl Region {
    /// Whether there is anything to add to, or an error when the region or
    /// its bias reaches past buffers of `y` and `bias` values.
    pub fn ready(&self, y: usize, bias: usize, per_row: bool) -> Result<bool, FusedError> {
        if !self.fits(y, bias, per_row) {
            return Err(bounds::out_of("a bias"));
        }
        Ok(self.rows * self.cols > 0)
    }

    /// Whether the region lies inside `y` values, rows no longer than `ld`,
    /// with a bias of `bias` values for each row (`per_row`) or column.
    pub fn fits(&self, y: usize, bias: usize, per_row: bool) -> bool {
        self.rows * self.cols == 0
            || (self.ld >= self.cols
                && bias >= if per_row { self.rows } else { self.cols }
                && self.offset + (self.rows - 1) * self.ld + self.cols <= y)
    }
}

/// The Inception branch's poolings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// 3x3 max, stride 1, padding 1 that never wins: the same size out.
    Max3,
    /// 2x2 average, stride 2: half the side out.
    Avg2,
}

impl Pool {
    /// The side of a pooled `side x side` plane.
    pub fn out_side(self, side: usize) -> usize {
        match self {
            Pool::Max3 => side,
            Pool::Avg2 => side / 2,
        }
    }
}

/// What follows a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Activation {
    None = 0,
    Relu = 1,
    /// The exact (erf) GELU, as timm's ViT and the CPU path use.
    Gelu = 2,
}

/// The operations [`OnDevice`] is written in. Buffers hold f32 values; every
/// index is in values. Implementations may run asynchronously: only
/// [`Kernels::download`] has to wait for what came before.
pub trait Kernels {
    type Buf;
    /// bf16 values: on a GPU 16-bit words, on the host f32s already rounded.
    type Half;

    fn upload(&self, values: &[f32]) -> Result<Self::Buf, FusedError>;
    /// A buffer of `len` values, contents unspecified.
    fn alloc(&self, len: usize) -> Result<Self::Buf, FusedError>;
    fn download(&self, buf: &Self::Buf, len: usize) -> Result<Vec<f32>, FusedError>;
    fn gemm(
        &self,
        p: &Product,
        a: &Self::Buf,
        b: &Self::Buf,
        c: &mut Self::Buf,
    ) -> Result<(), FusedError>;
    /// `C = alpha A B + beta C` as [`Kernels::gemm`], with `A` and `B` in
    /// bf16 and the sums and `C` in f32.
    fn gemm_bf16(
        &self,
        p: &Product,
        a: &Self::Half,
        b: &Self::Half,
        c: &mut Self::Buf,
    ) -> Result<(), FusedError>;
    /// `values` rounded to bf16 (to nearest, ties to even), uploaded.
    fn upload_bf16(&self, values: &[f32]) -> Result<Self::Half, FusedError>;
    /// A bf16 buffer of `len` values, contents unspecified.
    fn alloc_bf16(&self, len: usize) -> Result<Self::Half, FusedError>;
    /// The first `len` values of `x` rounded to bf16 into `y`, as
    /// [`Kernels::upload_bf16`] rounds.
    fn round_bf16(&self, x: &Self::Buf, y: &mut Self::Half, len: usize) -> Result<(), FusedError>;
    fn copy(&self, c: &Copy6, src: &Self::Buf, dst: &mut Self::Buf) -> Result<(), FusedError>;
    /// `y[r, c] = act(y[r, c] + bias[c])` over `at`, or `bias[r]` when `per_row`.
    fn bias_act(
        &self,
        y: &mut Self::Buf,
        at: Region,
        bias: &Self::Buf,
        per_row: bool,
        act: Activation,
    ) -> Result<(), FusedError>;
    /// LayerNorm of each `dim`-wide row of `x` (`rows` of them) into `y`.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm(
        &self,
        x: &Self::Buf,
        y: &mut Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<(), FusedError>;
    /// Softmax of each `cols`-wide row of the first `rows * cols` values.
    fn softmax_rows(&self, x: &mut Self::Buf, rows: usize, cols: usize) -> Result<(), FusedError>;
    /// `y [channels * k * k, planes * side²]`: each output pixel's zero-padded
    /// `k x k` window of `x [channels, planes * side²]` read from `x_offset`.
    #[allow(clippy::too_many_arguments)]
    fn windows(
        &self,
        x: &Self::Buf,
        x_offset: usize,
        y: &mut Self::Buf,
        channels: usize,
        planes: usize,
        side: usize,
        k: usize,
    ) -> Result<(), FusedError>;
    /// `pool` of `planes` planes of `side x side`.
    fn pool(
        &self,
        pool: Pool,
        x: &Self::Buf,
        y: &mut Self::Buf,
        planes: usize,
        side: usize,
    ) -> Result<(), FusedError>;
}

/// A linear layer's weights on the device.
struct DeviceDense<K: Kernels> {
    weight: DeviceWeight<K>,
    bias: K::Buf,
    d_in: usize,
    d_out: usize,
}

/// A layer's weight matrix, in the number format its products take.
enum DeviceWeight<K: Kernels> {
    F32(K::Buf),
    Bf16(K::Half),
}

struct DeviceConv<K: Kernels> {
    weight: K::Buf,
    bias: K::Buf,
    c_in: usize,
    c_out: usize,
    k: usize,
}

struct DeviceNorm<K: Kernels> {
    gamma: K::Buf,
    beta: K::Buf,
}

struct DeviceLayer<K: Kernels> {
    norm1: DeviceNorm<K>,
    qkv: DeviceDense<K>,
    out: DeviceDense<K>,
    norm2: DeviceNorm<K>,
    mlp_in: DeviceDense<K>,
    mlp_out: DeviceDense<K>,
}

struct DeviceBlock<K: Kernels> {
    entry: DeviceConv<K>,
    width: usize,
    b3: DeviceConv<K>,
    b5: Option<DeviceConv<K>>,
    pool_proj: DeviceConv<K>,
}

/// AstroMAE's weights on a device, run a whole batch at a time.
pub struct OnDevice<K: Kernels> {
    kernels: K,
    bands: usize,
    dim: usize,
    heads: usize,
    patch: usize,
    patch_weight: K::Buf,
    start: K::Buf,
    layers: Vec<DeviceLayer<K>>,
    fc_norm: DeviceNorm<K>,
    vit_head: DeviceDense<K>,
    vit_block: [DeviceDense<K>; 2],
    stem: DeviceConv<K>,
    blocks: Vec<DeviceBlock<K>>,
    inception_mlp: [DeviceDense<K>; 2],
    magnitudes: Vec<DeviceDense<K>>,
    head: [DeviceDense<K>; 2],
    /// `1 / (tokens - 1)`-weighted ones: the token mean as a product.
    ones: K::Buf,
}

impl<K: Kernels> OnDevice<K> {
    /// `model`'s weights, uploaded through `kernels`, every product in fp32.
    /// `model` must hold fp32 weights (not switched to bf16: the packed copy
    /// has no f32 weights left).
    pub fn new(model: &FusedAstroMae, kernels: K) -> Result<Self, FusedError> {
        Self::with(model, kernels, false)
    }

    /// As [`OnDevice::new`], with the transformer blocks' four products in
    /// bf16 (f32 sums), as the CPU path's `--precision bf16`: the same
    /// products, so the same accuracy; the rest stays fp32.
    pub fn with_bf16_products(model: &FusedAstroMae, kernels: K) -> Result<Self, FusedError> {
        Self::with(model, kernels, true)
    }

    fn with(model: &FusedAstroMae, kernels: K, bf16: bool) -> Result<Self, FusedError> {
        if model.kernels() != "fp32" {
            return Err(FusedError(format!(
                "the device schedule takes fp32 weights, not {}",
                model.kernels()
            )));
        }
        let k = &kernels;
        let v = &model.vit;
        let dense_as = |d: &Dense, half: bool| -> Result<DeviceDense<K>, FusedError> {
            Ok(DeviceDense {
                weight: if half {
                    DeviceWeight::Bf16(k.upload_bf16(&d.weight)?)
                } else {
                    DeviceWeight::F32(k.upload(&d.weight)?)
                },
                bias: k.upload(&d.bias)?,
                d_in: d.d_in,
                d_out: d.d_out,
            })
        };
        let dense = |d: &Dense| dense_as(d, false);
        let conv = |c: &Conv| -> Result<DeviceConv<K>, FusedError> {
            Ok(DeviceConv {
                weight: k.upload(&c.weight)?,
                bias: k.upload(&c.bias)?,
                c_in: c.c_in,
                c_out: c.c_out,
                k: c.k,
            })
        };
        let norm = |n: &Norm| -> Result<DeviceNorm<K>, FusedError> {
            Ok(DeviceNorm {
                gamma: k.upload(&n.gamma)?,
                beta: k.upload(&n.beta)?,
            })
        };
        let block = |b: &InceptionBlock| -> Result<DeviceBlock<K>, FusedError> {
            Ok(DeviceBlock {
                entry: conv(&b.entry)?,
                width: b.width,
                b3: conv(&b.b3)?,
                b5: b.b5.as_ref().map(conv).transpose()?,
                pool_proj: conv(&b.pool_proj)?,
            })
        };
        let tokens = (CROP / v.patch).pow(2) + 1;
        let on = OnDevice {
            bands: model.bands,
            dim: v.dim,
            heads: v.heads,
            patch: v.patch,
            patch_weight: k.upload(&v.patch_weight)?,
            start: k.upload(&v.start)?,
            layers: v
                .layers
                .iter()
                .map(|l| {
                    Ok(DeviceLayer {
                        norm1: norm(&l.norm1)?,
                        qkv: dense_as(&l.qkv, bf16)?,
                        out: dense_as(&l.out, bf16)?,
                        norm2: norm(&l.norm2)?,
                        mlp_in: dense_as(&l.mlp_in, bf16)?,
                        mlp_out: dense_as(&l.mlp_out, bf16)?,
                    })
                })
                .collect::<Result<_, FusedError>>()?,
            fc_norm: norm(&v.fc_norm)?,
            vit_head: dense(&v.head)?,
            vit_block: [dense(&model.vit_block[0])?, dense(&model.vit_block[1])?],
            stem: conv(&model.inception.stem)?,
            blocks: model
                .inception
                .blocks
                .iter()
                .map(block)
                .collect::<Result<_, _>>()?,
            inception_mlp: [
                dense(&model.inception.mlp[0])?,
                dense(&model.inception.mlp[1])?,
            ],
            magnitudes: model
                .magnitudes
                .iter()
                .map(dense)
                .collect::<Result<_, _>>()?,
            head: [dense(&model.head[0])?, dense(&model.head[1])?],
            ones: k.upload(&vec![1.0 / (tokens - 1) as f32; tokens - 1])?,
            kernels,
        };
        Ok(on)
    }

    pub fn kernels(&self) -> &K {
        &self.kernels
    }

    /// Redshifts of `n` objects: `images` `[n, bands, height, width]` (at least
    /// 32x32; the centre 32x32 is read) and `magnitudes` `[n, bands]`, the
    /// whole batch at once.
    pub fn forward(
        &self,
        images: &[f32],
        magnitudes: &[f32],
        n: usize,
        [height, width]: [usize; 2],
    ) -> Result<Vec<f32>, FusedError> {
        let bands = self.bands;
        super::check_batch(bands, images, magnitudes, n, [height, width])?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let k = &self.kernels;
        let area = CROP * CROP;
        let full = k.upload(images)?;
        let mut crop = k.alloc(n * bands * area)?;
        let (top, left) = ((height - CROP) / 2, (width - CROP) / 2);
        k.copy(
            &Copy6::new(
                &[n * bands, CROP, CROP],
                &[height * width, width, 1],
                &[area, CROP, 1],
            )
            .at(top * width + left, 0),
            &full,
            &mut crop,
        )?;
        drop(full);

        let joined_width = self.vit_block[1].d_out
            + self.inception_mlp[1].d_out
            + self.magnitudes.last().map_or(0, |l| l.d_out);
        let mut joined = k.alloc(n * joined_width)?;
        let vit = self.vit(&crop, n)?;
        let hidden = self.dense(&self.vit_block[0], &vit, n, Activation::Relu)?;
        drop(vit);
        self.dense_into(
            &self.vit_block[1],
            &hidden,
            n,
            &mut joined,
            0,
            joined_width,
            false,
            Activation::None,
        )?;
        let mut column = self.vit_block[1].d_out;
        let flat = self.inception(&crop, n)?;
        let hidden = self.dense(&self.inception_mlp[0], &flat, n, Activation::Relu)?;
        drop(flat);
        self.dense_into(
            &self.inception_mlp[1],
            &hidden,
            n,
            &mut joined,
            column,
            joined_width,
            false,
            Activation::None,
        )?;
        column += self.inception_mlp[1].d_out;
        let mut x = k.upload(magnitudes)?;
        let last = self.magnitudes.len() - 1;
        for (i, layer) in self.magnitudes.iter().enumerate() {
            if i < last {
                x = self.dense(layer, &x, n, Activation::Relu)?;
            } else {
                self.dense_into(
                    layer,
                    &x,
                    n,
                    &mut joined,
                    column,
                    joined_width,
                    false,
                    Activation::None,
                )?;
            }
        }
        let hidden = self.dense(&self.head[0], &joined, n, Activation::Relu)?;
        let z = self.dense(&self.head[1], &hidden, n, Activation::None)?;
        k.download(&z, n)
    }

    /// `x [rows, d_in] -> act(x W + b) [rows, d_out]` in a new buffer.
    fn dense(
        &self,
        d: &DeviceDense<K>,
        x: &K::Buf,
        rows: usize,
        act: Activation,
    ) -> Result<K::Buf, FusedError> {
        let mut y = self.kernels.alloc(rows * d.d_out)?;
        self.dense_into(d, x, rows, &mut y, 0, d.d_out, false, act)?;
        Ok(y)
    }

    /// `x W + b` into the columns of `y` from `column`, rows `ld` apart; added
    /// to what is there when `accumulate` (a residual).
    #[allow(clippy::too_many_arguments)]
    fn dense_into(
        &self,
        d: &DeviceDense<K>,
        x: &K::Buf,
        rows: usize,
        y: &mut K::Buf,
        column: usize,
        ld: usize,
        accumulate: bool,
        act: Activation,
    ) -> Result<(), FusedError> {
        let k = &self.kernels;
        let product = Product {
            m: rows,
            n: d.d_out,
            k: d.d_in,
            batch: 1,
            alpha: 1.0,
            beta: if accumulate { 1.0 } else { 0.0 },
            a: Operand::rows(0, d.d_in, 0),
            b: Operand::rows(0, d.d_out, 0),
            c: Operand::rows(column, ld, 0),
        };
        match &d.weight {
            DeviceWeight::F32(w) => k.gemm(&product, x, w, y)?,
            DeviceWeight::Bf16(w) => {
                let mut half = k.alloc_bf16(rows * d.d_in)?;
                k.round_bf16(x, &mut half, rows * d.d_in)?;
                k.gemm_bf16(&product, &half, w, y)?;
            }
        }
        k.bias_act(
            y,
            Region {
                offset: column,
                rows,
                cols: d.d_out,
                ld,
            },
            &d.bias,
            false,
            act,
        )
    }

    /// As [`OnDevice::forward`], at most `max_objects` at a time: a batch
    /// larger than the device's memory holds goes through in parts (each
    /// part's memory is [`ledger::Footprint::peak`] of its objects).
    pub fn forward_in_parts(
        &self,
        images: &[f32],
        magnitudes: &[f32],
        n: usize,
        [height, width]: [usize; 2],
        max_objects: usize,
    ) -> Result<Vec<f32>, FusedError> {
        let bands = self.bands;
        let pixels = super::check_batch(bands, images, magnitudes, n, [height, width])?;
        let part = max_objects.max(1);
        let mut z = Vec::with_capacity(n);
        for start in (0..n).step_by(part) {
            let m = part.min(n - start);
            z.extend(self.forward(
                &images[start * pixels..(start + m) * pixels],
                &magnitudes[start * bands..(start + m) * bands],
                m,
                [height, width],
            )?);
        }
        Ok(z)
    }

    /// `[n, bands, 32, 32]` -> the ViT's head output `[n, head width]`.
    fn vit(&self, crop: &K::Buf, n: usize) -> Result<K::Buf, FusedError> {
        let k = &self.kernels;
        let (p, dim, bands) = (self.patch, self.dim, self.bands);
        let side = CROP / p;
        let patches = side * side;
        let tokens = patches + 1;
        let depth = bands * p * p;
        let rows = n * tokens;
        // Each patch's pixels as a row, in the kernel's (band, row, column) order.
        let mut columns = k.alloc(n * patches * depth)?;
        k.copy(
            &Copy6::new(
                &[n, side, side, bands, p, p],
                &[bands * CROP * CROP, p * CROP, p, CROP * CROP, CROP, 1],
                &[patches * depth, side * depth, depth, p * p, p, 1],
            ),
            crop,
            &mut columns,
        )?;
        let mut x = k.alloc(rows * dim)?;
        k.copy(
            &Copy6::new(&[n, tokens * dim], &[0, 1], &[tokens * dim, 1]),
            &self.start,
            &mut x,
        )?;
        k.gemm(
            &Product {
                m: patches,
                n: dim,
                k: depth,
                batch: n,
                alpha: 1.0,
                beta: 1.0,
                a: Operand::rows(0, depth, patches * depth),
                b: Operand::rows(0, dim, 0),
                c: Operand::rows(dim, dim, tokens * dim),
            },
            &columns,
            &self.patch_weight,
            &mut x,
        )?;
        drop(columns);

        let mut normed = k.alloc(rows * dim)?;
        let hidden_width = self
            .layers
            .iter()
            .map(|l| l.mlp_in.d_out)
            .max()
            .unwrap_or(0);
        let mut qkv = k.alloc(rows * 3 * dim)?;
        let mut scores = k.alloc(n * tokens * tokens)?;
        let mut attended = k.alloc(rows * dim)?;
        let mut hidden = k.alloc(rows * hidden_width)?;
        let (h, d) = (self.heads, dim / self.heads);
        // Columns of query (0), key (1) or value (2) for `head`, in each object's qkv rows.
        let part =
            |i: usize, head: usize| Operand::rows(i * dim + head * d, 3 * dim, tokens * 3 * dim);
        for l in &self.layers {
            k.layer_norm(
                &x,
                &mut normed,
                &l.norm1.gamma,
                &l.norm1.beta,
                rows,
                dim,
                EPS,
            )?;
            self.dense_into(
                &l.qkv,
                &normed,
                rows,
                &mut qkv,
                0,
                3 * dim,
                false,
                Activation::None,
            )?;
            // Head by head (AstroMAE has 3), every object's attention in one
            // batched product, read in place: no copy into a per-head layout.
            for head in 0..h {
                k.gemm(
                    &Product {
                        m: tokens,
                        n: tokens,
                        k: d,
                        batch: n,
                        alpha: 1.0 / (d as f32).sqrt(),
                        beta: 0.0,
                        a: part(0, head),
                        b: part(1, head).transposed(),
                        c: Operand::rows(0, tokens, tokens * tokens),
                    },
                    &qkv,
                    &qkv,
                    &mut scores,
                )?;
                k.softmax_rows(&mut scores, n * tokens, tokens)?;
                k.gemm(
                    &Product {
                        m: tokens,
                        n: d,
                        k: tokens,
                        batch: n,
                        alpha: 1.0,
                        beta: 0.0,
                        a: Operand::rows(0, tokens, tokens * tokens),
                        b: part(2, head),
                        c: Operand::rows(head * d, dim, tokens * dim),
                    },
                    &scores,
                    &qkv,
                    &mut attended,
                )?;
            }
            self.dense_into(
                &l.out,
                &attended,
                rows,
                &mut x,
                0,
                dim,
                true,
                Activation::None,
            )?;
            k.layer_norm(
                &x,
                &mut normed,
                &l.norm2.gamma,
                &l.norm2.beta,
                rows,
                dim,
                EPS,
            )?;
            self.dense_into(
                &l.mlp_in,
                &normed,
                rows,
                &mut hidden,
                0,
                l.mlp_in.d_out,
                false,
                Activation::Gelu,
            )?;
            self.dense_into(
                &l.mlp_out,
                &hidden,
                rows,
                &mut x,
                0,
                dim,
                true,
                Activation::None,
            )?;
        }
        drop((qkv, scores, attended, hidden));
        // The mean of each object's patch tokens (the class token left out).
        let mut pooled = k.alloc(n * dim)?;
        k.gemm(
            &Product {
                m: 1,
                n: dim,
                k: patches,
                batch: n,
                alpha: 1.0,
                beta: 0.0,
                a: Operand::rows(0, patches, 0),
                b: Operand::rows(dim, dim, tokens * dim),
                c: Operand::rows(0, dim, dim),
            },
            &self.ones,
            &x,
            &mut pooled,
        )?;
        k.layer_norm(
            &pooled,
            &mut normed,
            &self.fc_norm.gamma,
            &self.fc_norm.beta,
            n,
            dim,
            EPS,
        )?;
        self.dense(&self.vit_head, &normed, n, Activation::None)
    }

    /// `[n, bands, 32, 32]` -> the Inception blocks' output flattened as burn
    /// flattens `[n, c, h, w]`: `[n, c * h * w]`.
    fn inception(&self, crop: &K::Buf, n: usize) -> Result<K::Buf, FusedError> {
        let k = &self.kernels;
        let (bands, area) = (self.bands, CROP * CROP);
        // [n, bands, area] -> channel-major [bands, n * area].
        let mut x = k.alloc(n * bands * area)?;
        k.copy(
            &Copy6::new(
                &[bands, n, area],
                &[area, bands * area, 1],
                &[n * area, area, 1],
            ),
            crop,
            &mut x,
        )?;
        let mut stem = k.alloc(self.stem.c_out * n * area)?;
        self.conv(&self.stem, &x, 0, n, CROP, &mut stem, 0, Activation::None)?;
        let mut side = CROP / 2;
        let mut x = k.alloc(self.stem.c_out * n * side * side)?;
        k.pool(Pool::Avg2, &stem, &mut x, self.stem.c_out * n, CROP)?;
        drop(stem);
        let mut channels = self.stem.c_out;
        for (i, block) in self.blocks.iter().enumerate() {
            x = self.block(block, &x, channels, n, side)?;
            channels = block.width * if block.b5.is_some() { 4 } else { 3 };
            if i % 2 == 1 {
                let mut pooled = k.alloc(channels * n * (side / 2) * (side / 2))?;
                k.pool(Pool::Avg2, &x, &mut pooled, channels * n, side)?;
                x = pooled;
                side /= 2;
            }
        }
        // [c, n, area] -> [n, c * area].
        let area = side * side;
        let mut flat = k.alloc(channels * n * area)?;
        k.copy(
            &Copy6::new(
                &[n, channels, area],
                &[area, n * area, 1],
                &[channels * area, area, 1],
            ),
            &x,
            &mut flat,
        )?;
        Ok(flat)
    }

    /// One Inception block: `x [c_in, n * side²]` -> `[out channels, n * side²]`.
    fn block(
        &self,
        b: &DeviceBlock<K>,
        x: &K::Buf,
        c_in: usize,
        n: usize,
        side: usize,
    ) -> Result<K::Buf, FusedError> {
        let k = &self.kernels;
        let plane = n * side * side;
        let w = b.width;
        let branches = if b.b5.is_some() { 4 } else { 3 };
        let mut entry = k.alloc(b.entry.c_out * plane)?;
        self.conv(&b.entry, x, 0, n, side, &mut entry, 0, Activation::Relu)?;
        let mut out = k.alloc(branches * w * plane)?;
        k.copy(&Copy6::new(&[w * plane], &[1], &[1]), &entry, &mut out)?;
        self.conv(
            &b.b3,
            &entry,
            w * plane,
            n,
            side,
            &mut out,
            w * plane,
            Activation::Relu,
        )?;
        let mut next = 2;
        if let Some(b5) = &b.b5 {
            self.conv(
                b5,
                &entry,
                2 * w * plane,
                n,
                side,
                &mut out,
                2 * w * plane,
                Activation::Relu,
            )?;
            next = 3;
        }
        drop(entry);
        let mut pooled = k.alloc(c_in * plane)?;
        k.pool(Pool::Max3, x, &mut pooled, c_in * n, side)?;
        self.conv(
            &b.pool_proj,
            &pooled,
            0,
            n,
            side,
            &mut out,
            next * w * plane,
            Activation::Relu,
        )?;
        Ok(out)
    }

    /// A convolution of `x [c_in, n * side²]` (from `x_offset`) into `y
    /// [c_out, n * side²]` (from `y_offset`), as one product over its windows.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        c: &DeviceConv<K>,
        x: &K::Buf,
        x_offset: usize,
        n: usize,
        side: usize,
        y: &mut K::Buf,
        y_offset: usize,
        act: Activation,
    ) -> Result<(), FusedError> {
        let k = &self.kernels;
        let plane = n * side * side;
        let depth = c.c_in * c.k * c.k;
        let product = |b_offset: usize| Product {
            m: c.c_out,
            n: plane,
            k: depth,
            batch: 1,
            alpha: 1.0,
            beta: 0.0,
            a: Operand::rows(0, depth, 0),
            b: Operand::rows(b_offset, plane, 0),
            c: Operand::rows(y_offset, plane, 0),
        };
        if c.k == 1 {
            k.gemm(&product(x_offset), &c.weight, x, y)?;
        } else {
            let mut windows = k.alloc(depth * plane)?;
            k.windows(x, x_offset, &mut windows, c.c_in, n, side, c.k)?;
            k.gemm(&product(0), &c.weight, &windows, y)?;
        }
        k.bias_act(
            y,
            Region {
                offset: y_offset,
                rows: c.c_out,
                cols: plane,
                ld: plane,
            },
            &c.bias,
            true,
            act,
        )
    }
}

/// The largest difference between two tests' outputs of the same length.
#[cfg(test)]
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Test values in [-2, 2) from a fixed sequence.
#[cfg(test)]
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::host::HostKernels;
    use super::*;
    use crate::astromae::fused::{random_objects, values};

    #[test]
    fn the_device_schedule_computes_what_the_fused_path_computes() {
        let n = 5;
        let (model, images, mags) = random_objects(2, n, [40, 36], 11);
        let (images, mags) = (values(images), values(mags));
        let fused = FusedAstroMae::new(&model).unwrap();
        let want = fused.forward(&images, &mags, n, [40, 36], 2).unwrap();
        let on = OnDevice::new(&fused, HostKernels).unwrap();
        let got = on.forward(&images, &mags, n, [40, 36]).unwrap();
        assert_eq!(got.len(), n);
        let spread = want.iter().fold(0f32, |m, z| m.max((z - want[0]).abs()));
        assert!(spread > 1e-3, "objects should differ: {want:?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 1e-5,
                "device schedule {got:?} vs fused {want:?}"
            );
        }
        // In parts of 2, 2 and 1: the same redshifts.
        let parts = on.forward_in_parts(&images, &mags, n, [40, 36], 2).unwrap();
        assert_eq!(parts.len(), n);
        assert!(worst(&parts, &got) < 1e-6, "{parts:?} vs {got:?}");
        assert!(
            on.forward_in_parts(&images[1..], &mags, n, [40, 36], 2)
                .is_err()
        );
        assert!(on.forward(&images, &mags, n, [20, 36]).is_err());
        assert!(on.forward(&images[1..], &mags, n, [40, 36]).is_err());
        // bf16: the same products as the CPU path's bf16 on its fp32 kernels.
        let half = OnDevice::with_bf16_products(&fused, HostKernels).unwrap();
        let got = half.forward(&images, &mags, n, [40, 36]).unwrap();
        let rounded = fused.clone().with_bf16(false);
        let want_half = rounded.forward(&images, &mags, n, [40, 36], 2).unwrap();
        assert!(worst(&got, &want_half) < 1e-5, "{got:?} vs {want_half:?}");
        assert!(worst(&got, &want) > 0.0, "bf16 should round something");
        assert!(OnDevice::new(&rounded, HostKernels).is_err());
    }
}
