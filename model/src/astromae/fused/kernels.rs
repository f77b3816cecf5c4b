//! The elementwise steps between AstroMAE's matrix products, written so the
//! compiler vectorises them, and compiled for AVX-512 and AVX2 beside the
//! baseline, the widest the CPU has chosen at run time.
//!
//! Vectorising needs two things plain `f32` code lacks: an `exp` that is not a
//! libm call (here range reduction and a polynomial, within 2e-7 relative), and
//! sums kept in several lanes (a single running sum is a dependency chain the
//! compiler may not reorder).

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

/// Runs `$body` (an `#[inline(always)]` function of the arguments) compiled for
/// the best instruction set this CPU has.
macro_rules! dispatch {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) { $body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has every feature the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

dispatch!(gelu, gelu_body, (x: &mut [f32]));
dispatch!(softmax_rows, softmax_body, (x: &mut [f32], width: usize));
dispatch!(layer_norm, layer_norm_body, (x: &[f32], y: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32));
dispatch!(add_bias, add_bias_body, (y: &mut [f32], bias: &[f32]));
dispatch!(relu, relu_body, (x: &mut [f32]));

/// `e^x` within 2e-7 relative for x in [-87, 88]; the clamped value's outside.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits,
    // read back without a float-to-int conversion (Rust's saturating `as` does
    // not vectorise).
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + SHIFTER;
    let k = shifted - SHIFTER;
    // ln 2 in two parts, so k * ln 2 is exact enough for large k.
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // 2^k through the exponent bits: k is in [-126, 127], its bits the low ones.
    let k_bits = shifted.to_bits().wrapping_sub(SHIFTER.to_bits());
    p * f32::from_bits(k_bits.wrapping_add(127) << 23)
}

/// The error function, within 3e-7 (Abramowitz and Stegun 7.1.26).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let e = 1.0 - poly * exp(-z * z);
    if x < 0.0 { -e } else { e }
}

/// GELU with the error function, as PyTorch's `nn.GELU()` and burn's `Gelu`.
#[inline(always)]
fn gelu_body(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * FRAC_1_SQRT_2));
    }
}

const LANES: usize = 16;

/// The sum of `x`, in [`LANES`] partial sums.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The sum of squared distances of `x` from `mean`, in [`LANES`] partial sums.
#[inline(always)]
fn sum_sq(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += (v - mean) * (v - mean);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// Softmax of each `width`-wide row, in place.
#[inline(always)]
fn softmax_body(x: &mut [f32], width: usize) {
    for row in x.chunks_exact_mut(width) {
        let m = max(row);
        for v in row.iter_mut() {
            *v = exp(*v - m);
        }
        let inv = 1.0 / sum(row);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// LayerNorm of each `gamma.len()`-wide row of `x` into `y`.
#[inline(always)]
fn layer_norm_body(x: &[f32], y: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let d = gamma.len();
    for (row, out) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mean = sum(row) / d as f32;
        let inv = 1.0 / (sum_sq(row, mean) / d as f32 + eps).sqrt();
        for (((o, v), g), b) in out.iter_mut().zip(row).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

/// Adds `bias` to each `bias.len()`-wide row of `y`.
#[inline(always)]
fn add_bias_body(y: &mut [f32], bias: &[f32]) {
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

#[inline(always)]
fn relu_body(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_the_standard_library() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -8000..=8000 {
            let x = i as f32 * 0.01;
            let want = f64::from(x).exp();
            worst_exp = worst_exp.max(((f64::from(exp(x)) - want) / want).abs());
            let xs = x / 20.0;
            worst_erf = worst_erf.max((f64::from(erf(xs)) - erf_reference(f64::from(xs))).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 5e-7, "erf error {worst_erf}");
        assert!(exp(-200.0) < 1e-37, "far below the range is near 0");
    }

    /// erf by Simpson's rule on 2/sqrt(pi) e^{-t^2}, to 1e-12.
    fn erf_reference(x: f64) -> f64 {
        let n = 4000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn softmax_rows_sum_to_one_and_layer_norm_centres() {
        let mut x: Vec<f32> = (0..130).map(|i| (i as f32 * 0.37).sin() * 30.0).collect();
        softmax_rows(&mut x, 65);
        for row in x.chunks(65) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let x: Vec<f32> = (0..192).map(|i| i as f32).collect();
        let mut y = vec![0.0; 192];
        layer_norm(&x, &mut y, &[1.0; 192], &[0.5; 192], 1e-6);
        let mean = y.iter().sum::<f32>() / 192.0;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 192.0;
        assert!(
            (mean - 0.5).abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
        let mut g = vec![-1.0, 0.0, 1.0];
        gelu(&mut g);
        assert!(
            (g[0] + 0.158_655_25).abs() < 1e-6 && g[1] == 0.0 && (g[2] - 0.841_344_7).abs() < 1e-6,
            "{g:?}"
        );
    }
}
