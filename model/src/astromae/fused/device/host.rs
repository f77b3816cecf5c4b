//! [`Kernels`] on the CPU, one thread, with the fused path's own kernels: the
//! reference every device implementation is tested against, and what tests
//! the schedule in [`super::OnDevice`] on machines without a GPU.

use super::super::bf16::round_in_place;
use super::super::kernels::{gelu, layer_norm, relu, softmax_rows};
use super::super::{FusedError, Mat, matmul};
use super::bounds::{self, out_of};
use super::{Activation, Copy6, Kernels, Operand, Pool, Product, Region};

/// The CPU as a [`Kernels`] device.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostKernels;

impl Operand {
    /// Item `b` of the batch as a [`Mat`] of `rows x cols`, checked to lie in `data`.
    fn mat<'a>(&self, data: &'a [f32], b: usize, rows: usize, cols: usize) -> Option<Mat<'a>> {
        let start = self.offset + b * self.batch_stride;
        let m = if self.transposed {
            Mat::strided(data.get(start..)?, cols, rows, self.ld).transposed()
        } else {
            Mat::strided(data.get(start..)?, rows, cols, self.ld)
        };
        m.fits().then_some(m)
    }
}

impl Kernels for HostKernels {
    type Buf = Vec<f32>;
    type Half = Vec<f32>;

    fn gemm_bf16(
        &self,
        p: &Product,
        a: &Vec<f32>,
        b: &Vec<f32>,
        c: &mut Vec<f32>,
    ) -> Result<(), FusedError> {
        // bf16 values times bf16 values, summed in f32: what the CPU path's
        // bf16 does where it lacks AVX-512 BF16.
        self.gemm(p, a, b, c)
    }

    fn upload_bf16(&self, values: &[f32]) -> Result<Vec<f32>, FusedError> {
        let mut half = values.to_vec();
        round_in_place(&mut half);
        Ok(half)
    }

    fn alloc_bf16(&self, len: usize) -> Result<Vec<f32>, FusedError> {
        self.alloc(len)
    }

    fn round_bf16(&self, x: &Vec<f32>, y: &mut Vec<f32>, len: usize) -> Result<(), FusedError> {
        bounds::values("a rounding", x.len(), y.len(), len)?;
        y[..len].copy_from_slice(&x[..len]);
        round_in_place(&mut y[..len]);
        Ok(())
    }

    fn upload(&self, values: &[f32]) -> Result<Vec<f32>, FusedError> {
        Ok(values.to_vec())
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>, FusedError> {
        // Filled with NaN, so a step that reads what no step wrote shows.
        Ok(vec![f32::NAN; len])
    }

    fn download(&self, buf: &Vec<f32>, len: usize) -> Result<Vec<f32>, FusedError> {
        bounds::values("a download", buf.len(), len, len)?;
        Ok(buf[..len].to_vec())
    }

    fn gemm(
        &self,
        p: &Product,
        a: &Vec<f32>,
        b: &Vec<f32>,
        c: &mut Vec<f32>,
    ) -> Result<(), FusedError> {
        if !p.ready(a.len(), b.len(), c.len())? {
            return Ok(());
        }
        for item in 0..p.batch {
            let am =
                p.a.mat(a, item, p.m, p.k)
                    .ok_or_else(|| out_of("a product's A"))?;
            let bm =
                p.b.mat(b, item, p.k, p.n)
                    .ok_or_else(|| out_of("a product's B"))?;
            let start = p.c.offset + item * p.c.batch_stride;
            let end = start + (p.m - 1) * p.c.ld + p.n;
            let dst = c
                .get_mut(start..end)
                .ok_or_else(|| out_of("a product's C"))?;
            if p.beta == 0.0 {
                for row in 0..p.m {
                    dst[row * p.c.ld..row * p.c.ld + p.n].fill(0.0);
                }
            } else if p.beta != 1.0 {
                for row in 0..p.m {
                    dst[row * p.c.ld..row * p.c.ld + p.n]
                        .iter_mut()
                        .for_each(|v| *v *= p.beta);
                }
            }
            matmul(am, bm, dst, p.c.ld, true, p.alpha);
        }
        Ok(())
    }

    fn copy(&self, c: &Copy6, src: &Vec<f32>, dst: &mut Vec<f32>) -> Result<(), FusedError> {
        if !c.ready(src.len(), dst.len())? {
            return Ok(());
        }
        for i in 0..c.len() {
            let (mut rest, mut from, mut to) = (i, c.src_offset, c.dst_offset);
            for d in (0..6).rev() {
                let at = rest % c.shape[d];
                rest /= c.shape[d];
                from += at * c.src[d];
                to += at * c.dst[d];
            }
            dst[to] = src[from];
        }
        Ok(())
    }

    fn bias_act(
        &self,
        y: &mut Vec<f32>,
        at: Region,
        bias: &Vec<f32>,
        per_row: bool,
        act: Activation,
    ) -> Result<(), FusedError> {
        if !at.ready(y.len(), bias.len(), per_row)? {
            return Ok(());
        }
        for r in 0..at.rows {
            let row = &mut y[at.offset + r * at.ld..][..at.cols];
            for (c, v) in row.iter_mut().enumerate() {
                *v += bias[if per_row { r } else { c }];
            }
            match act {
                Activation::None => {}
                Activation::Relu => relu(row),
                Activation::Gelu => gelu(row),
            }
        }
        Ok(())
    }

    fn layer_norm(
        &self,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<(), FusedError> {
        bounds::layer_norm(x.len(), y.len(), gamma.len(), beta.len(), rows, dim)?;
        let len = rows * dim;
        layer_norm(&x[..len], &mut y[..len], gamma, beta, eps);
        Ok(())
    }

    fn softmax_rows(&self, x: &mut Vec<f32>, rows: usize, cols: usize) -> Result<(), FusedError> {
        bounds::values("a softmax", x.len(), x.len(), rows * cols)?;
        softmax_rows(&mut x[..rows * cols], cols);
        Ok(())
    }

    fn windows(
        &self,
        x: &Vec<f32>,
        x_offset: usize,
        y: &mut Vec<f32>,
        channels: usize,
        planes: usize,
        side: usize,
        k: usize,
    ) -> Result<(), FusedError> {
        let (end, total) = bounds::windows(x.len(), x_offset, y.len(), channels, planes, side, k)?;
        let out = super::super::inception::window_columns(&x[x_offset..end], channels, side, k);
        y[..total].copy_from_slice(&out);
        Ok(())
    }

    fn pool(
        &self,
        pool: Pool,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
        planes: usize,
        side: usize,
    ) -> Result<(), FusedError> {
        let (read, written) = bounds::pool(pool, x.len(), y.len(), planes, side)?;
        let out = match pool {
            Pool::Max3 => super::super::inception::max_pool3(&x[..read], side),
            Pool::Avg2 => super::super::inception::avg_pool2(&x[..read], side),
        };
        y[..written].copy_from_slice(&out);
        Ok(())
    }
}
