//! bf16 products for `--precision bf16` on the CPU.
//!
//! A layer's weights are rounded to bf16 once, at load, and both operands of a
//! product are bf16 while its sums stay f32: what PyTorch's CPU autocast does.
//! Where the CPU has AVX-512 BF16, `vdpbf16ps` multiplies pairs of bf16 values
//! and adds both products into one f32 lane, twice the multiply rate of an f32
//! FMA, so the weights are packed with two consecutive k of one column in each
//! 32-bit lane ([`PackedWeights`]), and activations are rounded into the same
//! pairs before each product ([`Pairs`]).
//!
//! Where it does not (AVX2-only x86, ARM), the same bf16-rounded values go
//! through the f32 kernels ([`round_in_place`]): the same products (a product
//! of two bf16 values is exact in f32), summed in another order, at f32 speed.

/// Columns per block of packed weights: two 16-lane registers.
pub const NR: usize = 32;
/// Rows per micro-kernel call: 8 rows x 2 registers = 16 accumulators.
pub const MR: usize = 8;

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits.
#[inline(always)]
pub fn round(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7FFF_FFFF > 0x7F80_0000 {
        // A NaN stays a NaN (rounding could carry its payload into infinity).
        return ((bits >> 16) as u16) | 0x0040;
    }
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// The f32 value of bf16 bits.
#[inline(always)]
pub fn widen(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Every value of `x` rounded to bf16 (and kept as f32).
pub fn round_in_place(x: &mut [f32]) {
    for v in x {
        *v = widen(round(*v));
    }
}

/// What runs bf16 products here: AVX-512 BF16, or the fp32 kernels on rounded values.
pub fn kernels() -> &'static str {
    if native() { NATIVE } else { ROUNDED }
}

pub const NATIVE: &str = "bf16 (AVX-512 BF16)";
pub const ROUNDED: &str = "bf16 (rounded, on fp32 kernels)";

/// Set to `off`, the bf16 products take the path of a CPU without AVX-512
/// BF16 even where it has it: to time or check that path (Graviton's, an
/// AVX2-only x86's) on a machine that has the instructions, as PyTorch's
/// `ATEN_CPU_CAPABILITY` does for its kernels.
pub const FORCE_ENV: &str = "COSMICAI_CPU_BF16";

/// Whether bf16 products run `vdpbf16ps` here: the CPU has AVX-512 BF16 and
/// [`FORCE_ENV`] is not `off` (read once).
pub fn native() -> bool {
    static NATIVE_HERE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NATIVE_HERE.get_or_init(|| {
        let off = std::env::var(FORCE_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off"));
        !off && cpu_has_bf16()
    })
}

fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A `[k, n]` row-major weight matrix rounded to bf16 and packed for
/// [`matmul`]: blocks of [`NR`] columns, each `[k / 2][NR]` lanes of two bf16
/// (k even in the low half, k odd in the high half). Columns past `n` and the
/// odd k past `k` are zeros.
#[derive(Debug, Clone)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernel
pub struct PackedWeights {
    lanes: Vec<u32>,
    n: usize,
    pairs: usize,
}

impl PackedWeights {
    pub fn new(weight: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), k * n, "weights of {k}x{n}");
        let pairs = k.div_ceil(2);
        let blocks = n.div_ceil(NR);
        let mut lanes = vec![0u32; blocks * pairs * NR];
        for (b, block) in lanes.chunks_exact_mut(pairs * NR).enumerate() {
            for (p, row) in block.chunks_exact_mut(NR).enumerate() {
                for (j, lane) in row.iter_mut().enumerate() {
                    let col = b * NR + j;
                    if col >= n {
                        continue;
                    }
                    let at = |kk: usize| {
                        if kk < k {
                            round(weight[kk * n + col])
                        } else {
                            0
                        }
                    };
                    *lane = u32::from(at(2 * p)) | u32::from(at(2 * p + 1)) << 16;
                }
            }
        }
        PackedWeights { lanes, n, pairs }
    }
}

/// Activations `[rows, k]` rounded to bf16 pairs, `[rows rounded up to MR, k / 2]`,
/// kept between products so the buffer is allocated once per slice.
#[derive(Debug, Default)]
pub struct Pairs {
    lanes: Vec<u32>,
    rows: usize,
    pairs: usize,
}

impl Pairs {
    /// `x` (`rows` rows of `k`, row-major) rounded into `self`.
    pub fn fill(&mut self, x: &[f32], rows: usize, k: usize) {
        assert!(x.len() >= rows * k, "{rows} rows of {k}");
        let pairs = k.div_ceil(2);
        let padded = rows.div_ceil(MR) * MR;
        self.lanes.clear();
        self.lanes.resize(padded * pairs, 0);
        // The CPU is asked once per product, not once per row.
        let fill_row: fn(&[f32], &mut [u32]) = fill_row_for(native());
        for (src, dst) in x
            .chunks_exact(k)
            .take(rows)
            .zip(self.lanes.chunks_exact_mut(pairs))
        {
            fill_row(src, dst);
        }
        self.rows = rows;
        self.pairs = pairs;
    }
}

/// The row rounder for this CPU: `vcvtne2ps2bf16` when `native`.
fn fill_row_for(native: bool) -> fn(&[f32], &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if native {
        // SAFETY: `native` says the CPU has the features the function is compiled for.
        return |src, dst| unsafe { x86::fill_row_native(src, dst) };
    }
    let _ = native;
    fill_row_portable
}

#[inline(always)]
fn fill_row_portable(src: &[f32], dst: &mut [u32]) {
    let mut pairs = src.chunks_exact(2);
    for (d, s) in dst.iter_mut().zip(&mut pairs) {
        *d = u32::from(round(s[0])) | u32::from(round(s[1])) << 16;
    }
    if let [last] = pairs.remainder() {
        dst[src.len() / 2] = u32::from(round(*last));
    }
}

/// `dst = x W` (or `dst += x W` when `accumulate`), plus a `bias` row added to
/// each row in the registers (one pass over `dst` less than adding it before or
/// after); `x` the rows in `a`, `dst` row-major with rows `dst_stride` apart, on
/// the calling thread. Needs [`native`].
pub fn matmul(
    a: &Pairs,
    w: &PackedWeights,
    bias: Option<&[f32]>,
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
) {
    assert!(
        bias.is_none_or(|b| b.len() == w.n),
        "bias of {} columns",
        w.n
    );
    assert_eq!(
        a.pairs, w.pairs,
        "activations of {} pairs, weights of {}",
        a.pairs, w.pairs
    );
    assert!(dst_stride >= w.n, "destination stride");
    assert!(
        a.rows == 0 || (a.rows - 1) * dst_stride + w.n <= dst.len(),
        "destination of {} values for {} rows of {}",
        dst.len(),
        a.rows,
        w.n
    );
    assert!(native(), "bf16 products need AVX-512 BF16");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the asserts above keep every read inside `a` and `w` (both padded
    // to whole blocks) and every write inside `dst`; the CPU has the features.
    unsafe {
        x86::matmul(a, w, bias, dst, dst_stride, accumulate)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (accumulate, bias); // unreachable: `native` is false off x86
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NR, PackedWeights, Pairs};
    use std::arch::x86_64::*;

    /// Rows per pass over the weights, so the rows being read stay in L2.
    const MC: usize = 12 * MR;

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn fill_row_native(src: &[f32], dst: &mut [u32]) {
        let mut chunks = src.chunks_exact(32);
        for (i, c) in (&mut chunks).enumerate() {
            // SAFETY: `c` holds 32 values and `dst` k/2 >= 16 (i + 1) lanes.
            unsafe {
                let lo = _mm512_loadu_ps(c.as_ptr());
                let hi = _mm512_loadu_ps(c.as_ptr().add(16));
                let packed = _mm512_cvtne2ps_pbh(hi, lo);
                _mm512_storeu_si512(
                    dst.as_mut_ptr().add(16 * i).cast(),
                    std::mem::transmute::<__m512bh, __m512i>(packed),
                );
            }
        }
        let done = src.len() - chunks.remainder().len();
        super::fill_row_portable(chunks.remainder(), &mut dst[done / 2..]);
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn matmul(
        a: &Pairs,
        w: &PackedWeights,
        bias: Option<&[f32]>,
        dst: &mut [f32],
        dst_stride: usize,
        accumulate: bool,
    ) {
        let pairs = w.pairs;
        let blocks = w.n.div_ceil(NR);
        for chunk in (0..a.rows).step_by(MC) {
            let chunk_rows = MC.min(a.rows - chunk);
            for b in 0..blocks {
                let cols = NR.min(w.n - b * NR);
                let masks = [mask(cols), mask(cols.saturating_sub(16))];
                let panel = &w.lanes[b * pairs * NR..(b + 1) * pairs * NR];
                let bias = bias.map_or(std::ptr::null(), |bias| bias[b * NR..].as_ptr());
                for r0 in (chunk..chunk + chunk_rows).step_by(MR) {
                    let rows = MR.min(a.rows - r0);
                    // SAFETY: rows r0..r0 + MR of `a` exist (padded to MR), the
                    // panel holds `pairs` x NR lanes, and rows r0..r0 + rows of
                    // `dst` hold the masked columns b*NR.. (checked by the caller).
                    unsafe {
                        kernel(
                            a.lanes.as_ptr().add(r0 * pairs),
                            pairs,
                            panel.as_ptr(),
                            bias,
                            dst.as_mut_ptr().add(r0 * dst_stride + b * NR),
                            dst_stride,
                            rows,
                            masks,
                            accumulate,
                        )
                    };
                }
            }
        }
    }

    fn mask(cols: usize) -> __mmask16 {
        if cols >= 16 {
            0xFFFF
        } else {
            ((1u32 << cols) - 1) as __mmask16
        }
    }

    /// An MR x NR block of `dst`: `rows` of its rows are written, the masked
    /// columns; `bias` (null for none) holds the block's masked columns.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        a: *const u32,
        pairs: usize,
        panel: *const u32,
        bias: *const f32,
        dst: *mut f32,
        dst_stride: usize,
        rows: usize,
        masks: [__mmask16; 2],
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        // SAFETY: `a` holds MR rows of `pairs` lanes, `panel` `pairs` x NR lanes,
        // `bias` (when not null) and `dst`'s `rows` rows the masked columns (the
        // caller's bounds).
        unsafe {
            let start = if bias.is_null() {
                [_mm512_setzero_ps(); 2]
            } else {
                [
                    _mm512_maskz_loadu_ps(masks[0], bias),
                    // wrapping: past a short last block this points beyond
                    // the bias, and the mask reads none of it.
                    _mm512_maskz_loadu_ps(masks[1], bias.wrapping_add(16)),
                ]
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = start;
                if accumulate && r < rows {
                    let d = dst.add(r * dst_stride);
                    acc[0] = _mm512_add_ps(acc[0], _mm512_maskz_loadu_ps(masks[0], d));
                    let d16 = d.wrapping_add(16); // masked as the bias above
                    acc[1] = _mm512_add_ps(acc[1], _mm512_maskz_loadu_ps(masks[1], d16));
                }
            }
            for p in 0..pairs {
                let b0: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(panel.add(p * NR).cast()));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(panel.add(p * NR + 16).cast()));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(r * pairs + p) as i32));
                    acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                if r < rows {
                    let d = dst.add(r * dst_stride);
                    _mm512_mask_storeu_ps(d, masks[0], acc[0]);
                    _mm512_mask_storeu_ps(d.wrapping_add(16), masks[1], acc[1]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(widen(round(1.0)), 1.0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even 1.
        assert_eq!(widen(round(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(widen(round(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(widen(round(-2.5e-3)), -widen(round(2.5e-3)));
        assert_eq!(widen(round(f32::INFINITY)), f32::INFINITY);
        assert!(
            widen(round(f32::from_bits(0x7F80_0001))).is_nan(),
            "a NaN stays one"
        );
        assert!((widen(round(18.37)) - 18.37).abs() < 18.37 / 256.0);
    }

    /// The products of the bf16-rounded operands, summed in f64.
    fn reference(x: &[f32], w: &[f32], rows: usize, k: usize, n: usize) -> Vec<f64> {
        let r = |v: f32| f64::from(widen(round(v)));
        let mut out = vec![0.0; rows * n];
        for i in 0..rows {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|kk| r(x[i * k + kk]) * r(w[kk * n + j])).sum();
            }
        }
        out
    }

    #[test]
    fn products_match_the_rounded_reference_for_uneven_shapes() {
        if !native() {
            eprintln!("this CPU has no AVX-512 BF16: only the f32 path is checked, elsewhere");
            return;
        }
        for (rows, k, n) in [
            (1, 1, 1),
            (9, 7, 33),
            (100, 192, 576),
            (17, 768, 20),
            (8, 64, 32),
        ] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
                .collect();
            let w: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 91.0)
                .collect();
            let want = reference(&x, &w, rows, k, n);
            let mut a = Pairs::default();
            a.fill(&x, rows, k);
            let packed = PackedWeights::new(&w, k, n);
            // A wider destination with a sentinel past each row's n columns.
            let stride = n + 3;
            let mut dst = vec![7.0f32; rows * stride];
            matmul(&a, &packed, None, &mut dst, stride, false);
            let mut sum = dst.clone();
            matmul(&a, &packed, None, &mut sum, stride, true);
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
            let mut biased = vec![7.0f32; rows * stride];
            matmul(&a, &packed, Some(&bias), &mut biased, stride, false);
            for i in 0..rows {
                for j in 0..n {
                    let (got, want) = (f64::from(dst[i * stride + j]), want[i * n + j]);
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{rows}x{k}x{n} [{i},{j}]: {got} vs {want}"
                    );
                    let twice = f64::from(sum[i * stride + j]);
                    assert!(
                        (twice - 2.0 * want).abs() <= 2e-4 * (1.0 + want.abs()),
                        "accumulate"
                    );
                }
                assert!(
                    dst[i * stride + n..(i + 1) * stride]
                        .iter()
                        .all(|&v| v == 7.0),
                    "wrote past column {n}"
                );
            }
        }
    }
}
