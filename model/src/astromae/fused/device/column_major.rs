//! A [`Product`] as cuBLAS's strided-batched GEMM takes it. cuBLAS is
//! column-major, and a row-major buffer read column-major is its transpose:
//! so the row-major `C = A B` is the column-major `Cᵀ = Bᵀ Aᵀ`, B goes first,
//! and an operand stored transposed is multiplied as `T`.
//!
//! The translation lives here, outside the `cuda` feature, so that it is
//! tested on any machine against cuBLAS's own definition of its arguments
//! (`cublas<t>gemmStridedBatched` in the cuBLAS documentation), which no GPU
//! is needed to evaluate. cuBLAS answers an argument outside its rules with
//! `CUBLAS_STATUS_INVALID_VALUE`; [`ColumnMajor::of`] refuses it first, with
//! the product named, and the 32-bit sizes the API takes are checked here too.

use super::Product;
use crate::astromae::fused::FusedError;

/// The arguments of `cublasSgemmStridedBatched` (and of
/// `cublasGemmStridedBatchedEx`) for one [`Product`], in cuBLAS's order and
/// names. `a`, `b` and `c` name cuBLAS's operands: cuBLAS's A is the
/// product's B, and its B the product's A.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnMajor {
    /// `transa`, `transb`: whether cuBLAS reads its A, B as `T` (else `N`).
    pub transa: bool,
    pub transb: bool,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub alpha: f32,
    /// cuBLAS's A: the product's B, from `a_offset` of its buffer.
    pub a_offset: usize,
    pub lda: i32,
    pub stride_a: i64,
    /// cuBLAS's B: the product's A.
    pub b_offset: usize,
    pub ldb: i32,
    pub stride_b: i64,
    pub beta: f32,
    pub c_offset: usize,
    pub ldc: i32,
    pub stride_c: i64,
    pub batch_count: i32,
}

fn int(what: &str, v: usize) -> Result<i32, FusedError> {
    i32::try_from(v).map_err(|_| {
        FusedError(format!(
            "a product's {what} ({v}) exceeds cuBLAS's 32-bit sizes"
        ))
    })
}

fn long(what: &str, v: usize) -> Result<i64, FusedError> {
    i64::try_from(v)
        .map_err(|_| FusedError(format!("a product's {what} ({v}) exceeds a 64-bit stride")))
}

impl ColumnMajor {
    /// cuBLAS's arguments for `p`, or an error where a size does not fit the
    /// API's integers or an argument breaks cuBLAS's rules. `p` is taken as
    /// checked against its buffers ([`Product::ready`]); this checks only
    /// what cuBLAS itself would refuse.
    pub fn of(p: &Product) -> Result<Self, FusedError> {
        if p.c.transposed {
            return Err(FusedError(
                "a product's C cannot be transposed on cuBLAS".into(),
            ));
        }
        let args = ColumnMajor {
            transa: p.b.transposed,
            transb: p.a.transposed,
            m: int("n", p.n)?,
            n: int("m", p.m)?,
            k: int("k", p.k)?,
            alpha: p.alpha,
            a_offset: p.b.offset,
            lda: int("B's leading dimension", p.b.ld)?,
            stride_a: long("B's batch stride", p.b.batch_stride)?,
            b_offset: p.a.offset,
            ldb: int("A's leading dimension", p.a.ld)?,
            stride_b: long("A's batch stride", p.a.batch_stride)?,
            beta: p.beta,
            c_offset: p.c.offset,
            ldc: int("C's leading dimension", p.c.ld)?,
            stride_c: long("C's batch stride", p.c.batch_stride)?,
            batch_count: int("batch", p.batch)?,
        };
        args.valid()?;
        Ok(args)
    }

    /// cuBLAS's rules for these arguments (the documentation's "Error
    /// values" of `cublas<t>gemm` and `cublas<t>gemmStridedBatched`): sizes
    /// and the batch count not negative; `lda >= max(1, m)` for `N` (else
    /// `max(1, k)`), `ldb >= max(1, k)` for `N` (else `max(1, n)`),
    /// `ldc >= max(1, m)`.
    fn valid(&self) -> Result<(), FusedError> {
        let rows_a = if self.transa { self.k } else { self.m };
        let rows_b = if self.transb { self.n } else { self.k };
        let broken = if self.m < 0 || self.n < 0 || self.k < 0 || self.batch_count < 0 {
            Some("a negative size")
        } else if self.lda < rows_a.max(1) {
            Some("lda shorter than cuBLAS's A")
        } else if self.ldb < rows_b.max(1) {
            Some("ldb shorter than cuBLAS's B")
        } else if self.ldc < self.m.max(1) {
            Some("ldc shorter than cuBLAS's C")
        } else {
            None
        };
        match broken {
            Some(why) => Err(FusedError(format!(
                "a product cuBLAS would refuse: {why} ({self:?})"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::host::HostKernels;
    use super::super::{Kernels, Operand, Product, noise};
    use super::ColumnMajor;

    /// `cublas<t>gemmStridedBatched` as its documentation defines it, on the
    /// host: for each `i` in the batch, `C + i*strideC = alpha op(A + i*strideA)
    /// op(B + i*strideB) + beta (C + i*strideC)`, every matrix column-major,
    /// `op(X)[r, c]` being `X[r + c*ldx]` for `N` and `X[c + r*ldx]` for `T`,
    /// and C only written when beta is 0.
    fn cublas_reference(g: &ColumnMajor, a: &[f32], b: &[f32], c: &mut [f32]) {
        let at = |x: &[f32], base: usize, ld: i32, t: bool, r: usize, col: usize| {
            let ld = ld as usize;
            x[base + if t { col + r * ld } else { r + col * ld }]
        };
        for i in 0..g.batch_count as usize {
            let (ab, bb) = (
                g.a_offset + i * g.stride_a as usize,
                g.b_offset + i * g.stride_b as usize,
            );
            let cb = g.c_offset + i * g.stride_c as usize;
            for col in 0..g.n as usize {
                for r in 0..g.m as usize {
                    let mut sum = 0f64;
                    for l in 0..g.k as usize {
                        sum += f64::from(at(a, ab, g.lda, g.transa, r, l))
                            * f64::from(at(b, bb, g.ldb, g.transb, l, col));
                    }
                    let out = &mut c[cb + r + col * g.ldc as usize];
                    let old = if g.beta == 0.0 {
                        0.0
                    } else {
                        f64::from(g.beta) * f64::from(*out)
                    };
                    *out = (f64::from(g.alpha) * sum + old) as f32;
                }
            }
        }
    }

    /// Products of every shape the schedule uses: each transposition, offsets,
    /// padded leading dimensions, shared (stride 0) operands, accumulation,
    /// and a C that starts as NaN where beta is 0.
    fn products() -> Vec<Product> {
        let mut out = Vec::new();
        let mut seed = 7u64;
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (m, n, k, batch) in [(1, 1, 1, 1), (5, 7, 3, 4), (65, 64, 9, 2), (3, 1, 17, 3)] {
                for (pad, share_b, beta) in [(0, false, 0.0), (2, true, 1.0), (1, false, 0.5)] {
                    seed += 1;
                    let (ra, ca) = if ta { (k, m) } else { (m, k) };
                    let (rb, cb) = if tb { (n, k) } else { (k, n) };
                    let a = Operand {
                        offset: (seed % 5) as usize,
                        ld: ca + pad,
                        batch_stride: ra * (ca + pad) + 3,
                        transposed: ta,
                    };
                    let b = Operand {
                        offset: 11,
                        ld: cb + pad,
                        batch_stride: if share_b { 0 } else { rb * (cb + pad) + 1 },
                        transposed: tb,
                    };
                    let c = Operand::rows(2, n + pad, m * (n + pad) + 5);
                    out.push(Product {
                        m,
                        n,
                        k,
                        batch,
                        alpha: 0.75,
                        beta,
                        a,
                        b,
                        c,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn cublas_computes_what_the_host_computes_with_these_arguments() {
        for (i, p) in products().into_iter().enumerate() {
            let len = |o: &Operand, rows: usize, cols: usize| {
                let (r, c) = if o.transposed {
                    (cols, rows)
                } else {
                    (rows, cols)
                };
                o.offset + (p.batch - 1) * o.batch_stride + (r - 1) * o.ld + c + 3
            };
            let a = noise(len(&p.a, p.m, p.k), 1 + i as u64);
            let b = noise(len(&p.b, p.k, p.n), 100 + i as u64);
            let mut c0 = noise(len(&p.c, p.m, p.n), 200 + i as u64);
            if p.beta == 0.0 {
                c0.iter_mut().for_each(|v| *v = f32::NAN);
            }
            let mut want = c0.clone();
            HostKernels.gemm(&p, &a, &b, &mut want).unwrap();
            let args = ColumnMajor::of(&p).unwrap();
            let mut got = c0.clone();
            // cuBLAS's A is the product's B, and its B the product's A.
            cublas_reference(&args, &b, &a, &mut got);
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                let both_nan = g.is_nan() && w.is_nan();
                assert!(
                    both_nan || (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "product {i} {p:?}: value {j} is {g} through cuBLAS's arguments, {w} on the host"
                );
            }
        }
    }

    #[test]
    fn products_the_host_takes_are_arguments_cublas_takes() {
        for p in products() {
            let args = ColumnMajor::of(&p).unwrap();
            // Back from cuBLAS's side, the same product: its A is our B.
            let back = |offset, ld: i32, stride: i64, transposed| Operand {
                offset,
                ld: ld as usize,
                batch_stride: stride as usize,
                transposed,
            };
            assert_eq!(
                back(args.a_offset, args.lda, args.stride_a, args.transa),
                p.b
            );
            assert_eq!(
                back(args.b_offset, args.ldb, args.stride_b, args.transb),
                p.a
            );
            assert_eq!(
                (args.m, args.n, args.k),
                (p.n as i32, p.m as i32, p.k as i32)
            );
        }
    }

    #[test]
    fn what_cublas_would_refuse_is_refused_first() {
        let p = products()[4];
        // A leading dimension a row short: cuBLAS's lda rule.
        let short = Product {
            b: Operand { ld: p.n - 1, ..p.b },
            ..p
        };
        let e = ColumnMajor::of(&short).unwrap_err().0;
        assert!(e.contains("lda shorter"), "{e}");
        let short = Product {
            a: Operand { ld: p.k - 1, ..p.a },
            ..p
        };
        assert!(
            ColumnMajor::of(&short)
                .unwrap_err()
                .0
                .contains("ldb shorter")
        );
        let short = Product {
            c: Operand { ld: p.n - 1, ..p.c },
            ..p
        };
        assert!(
            ColumnMajor::of(&short)
                .unwrap_err()
                .0
                .contains("ldc shorter")
        );
        // Sizes past cuBLAS's 32-bit integers, named.
        let wide = Product { n: 1 << 31, ..p };
        let e = ColumnMajor::of(&wide).unwrap_err().0;
        assert!(e.contains("n (2147483648)") && e.contains("32-bit"), "{e}");
        let many = Product {
            batch: 1 << 31,
            ..p
        };
        assert!(ColumnMajor::of(&many).unwrap_err().0.contains("batch"));
        let transposed_c = Product {
            c: p.c.transposed(),
            ..p
        };
        assert!(ColumnMajor::of(&transposed_c).is_err());
    }
}
