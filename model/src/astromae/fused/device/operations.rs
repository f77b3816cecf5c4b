//! The device's operations: the operands, products, copies, regions, pools and
//! activations a [`Kernels`] implementation is asked for, and the trait itself.

use super::FusedError;
use super::bounds;

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

    pub(super) fn transposed(self) -> Self {
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
    pub(super) fn new(shape: &[usize], src: &[usize], dst: &[usize]) -> Self {
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

    pub(super) fn at(self, src_offset: usize, dst_offset: usize) -> Self {
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

/// The operations [`OnDevice`](super::OnDevice) is written in. Buffers hold f32 values; every
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
