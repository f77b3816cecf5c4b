//! The fused path's linear layers and products: a [`Dense`] layer's weights
//! as a row-major matrix (fp32, or bf16 pairs), and [`matmul`] over strided views.

use super::kernels::{add_bias, relu};
use super::{bf16, or_zeros, values};
use burn::nn::Linear;
use burn::prelude::*;
use gemm::{Parallelism, gemm};

/// A linear layer: `y = x W + b`, `W` `[d_in, d_out]` row-major (burn's layout).
#[derive(Debug, Clone)]
pub(super) struct Dense {
    pub(super) weight: Vec<f32>,
    pub(super) bias: Vec<f32>,
    pub(super) d_in: usize,
    pub(super) d_out: usize,
    pub(super) products: Products,
}

/// How a [`Dense`] layer multiplies.
#[derive(Debug, Clone)]
pub(super) enum Products {
    F32,
    /// Weights packed for AVX-512 BF16.
    Bf16(bf16::PackedWeights),
    /// Weights (already in `weight`) and inputs rounded to bf16, multiplied by
    /// the f32 kernels: where the CPU lacks AVX-512 BF16.
    Bf16OnF32,
}

impl Dense {
    pub(super) fn new<B: Backend>(linear: &Linear<B>) -> Self {
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
    pub(super) fn use_bf16(&mut self, native: bool) {
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

    pub(super) fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = vec![0.0; rows * self.d_out];
        self.apply(x, rows, &mut y, false);
        y
    }

    /// `y = x W + b`, or `y += x W + b` when `accumulate` (a residual add).
    pub(super) fn apply(&self, x: &[f32], rows: usize, y: &mut [f32], accumulate: bool) {
        self.apply_with(x, rows, y, accumulate, &mut bf16::Pairs::default());
    }

    /// [`Dense::apply`], with a buffer for bf16 inputs that is kept between calls.
    pub(super) fn apply_with(
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
    pub(super) fn product(&self, x: &[f32], rows: usize, y: &mut [f32], accumulate: bool) {
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
pub(super) fn fill_rows(y: &mut [f32], row: &[f32]) {
    for r in y.chunks_exact_mut(row.len()) {
        r.copy_from_slice(row);
    }
}

/// A matrix read through strides, for [`matmul`].
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub(super) data: &'a [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row_stride: usize,
    pub(super) col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows` x `cols` matrix.
    pub(super) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// `rows` x `cols` starting at `data[0]`, rows `row_stride` apart.
    pub(super) fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    pub(super) fn transposed(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    pub(super) fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = scale * a b` (or `dst += …` when `accumulate`), `dst` row-major with rows
/// `dst_stride` apart, on the calling thread.
pub(super) fn matmul(
    a: Mat,
    b: Mat,
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
    scale: f32,
) {
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
pub(super) fn two_layer(layers: &[Dense; 2], x: &[f32], rows: usize) -> Vec<f32> {
    let mut h = layers[0].forward(x, rows);
    relu(&mut h);
    layers[1].forward(&h, rows)
}
