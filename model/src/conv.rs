//! Convolution as one matrix product (im2col), for the CPU backends.
//!
//! burn-ndarray convolves with a direct loop that is many times slower per
//! multiply-add than its matrix product (which can also go through OpenBLAS):
//! in AstroMAE's Inception branch the 3x3 and 5x5 convolutions took about a
//! fifth of the time for about 1% of the arithmetic. Here each output pixel's
//! input window becomes a column, and the kernel a matrix.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::PadMode;

/// `conv.forward(x)` for stride 1, dilation 1, one group and symmetric padding
/// (Inception's convolutions) and for a stride equal to the kernel without padding
/// (ViT's patch embedding); any other convolution goes to `conv.forward`.
pub fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, kh, kw] = conv.weight.dims();
    let [_, _, h, w] = x.dims();
    let pad = match conv.padding {
        PaddingConfig2d::Valid => Some((0, 0)),
        PaddingConfig2d::Same if kh % 2 == 1 && kw % 2 == 1 => Some((kh / 2, kw / 2)),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some((top, left))
        }
        _ => None,
    };
    let simple = conv.dilation == [1, 1] && conv.groups == 1;
    match pad {
        Some((0, 0)) if simple && conv.stride == [kh, kw] && h % kh == 0 && w % kw == 0 => {
            let (rows, cols) = (h / kh, w / kw);
            apply_kernel(conv, patch_columns(x, kh, kw), rows, cols)
        }
        Some((ph, pw)) if simple && conv.stride == [1, 1] => {
            let (h_out, w_out) = (h + 2 * ph + 1 - kh, w + 2 * pw + 1 - kw);
            apply_kernel(conv, window_columns(x, kh, kw, ph, pw), h_out, w_out)
        }
        _ => conv.forward(x),
    }
}

/// `[N, C*kh*kw, H'*W']`: every stride-1 window of the (zero-padded) input as a column.
fn window_columns<B: Backend>(
    x: Tensor<B, 4>,
    kh: usize,
    kw: usize,
    ph: usize,
    pw: usize,
) -> Tensor<B, 3> {
    let [n, c, h, w] = x.dims();
    if (kh, kw, ph, pw) == (1, 1, 0, 0) {
        return x.reshape([n, c, h * w]);
    }
    let x = if ph + pw > 0 {
        x.pad([(ph, ph), (pw, pw)], PadMode::Constant(0.0))
    } else {
        x
    };
    let (h_out, w_out) = (h + 2 * ph + 1 - kh, w + 2 * pw + 1 - kw);
    // [N, C, kh*kw, H', W'], window offsets in the kernel's (row, column) order.
    let shifted = (0..kh)
        .flat_map(|dy| (0..kw).map(move |dx| (dy, dx)))
        .map(|(dy, dx)| {
            x.clone()
                .slice([0..n, 0..c, dy..dy + h_out, dx..dx + w_out])
        })
        .collect();
    Tensor::stack::<5>(shifted, 2).reshape([n, c * kh * kw, h_out * w_out])
}

/// The columns of a convolution whose stride is its kernel: each output pixel reads
/// its own patch, so they are the input rearranged, without copies of overlapping windows.
fn patch_columns<B: Backend>(x: Tensor<B, 4>, kh: usize, kw: usize) -> Tensor<B, 3> {
    let [n, c, h, w] = x.dims();
    let (rows, cols) = (h / kh, w / kw);
    x.reshape([n, c, rows, kh, cols, kw])
        .permute([0, 1, 3, 5, 2, 4]) // [N, C, y, x, row, col]
        .reshape([n, c * kh * kw, rows * cols])
}

/// The kernel `[O, C*kh*kw]` times the columns, plus the bias: `[N, O, h_out, w_out]`.
fn apply_kernel<B: Backend>(
    conv: &Conv2d<B>,
    columns: Tensor<B, 3>,
    h_out: usize,
    w_out: usize,
) -> Tensor<B, 4> {
    let [c_out, c_in, kh, kw] = conv.weight.dims();
    let n = columns.dims()[0];
    let kernel = conv.weight.val().reshape([1, c_out, c_in * kh * kw]);
    let mut y = kernel.matmul(columns); // [N, O, H'*W']
    if let Some(bias) = &conv.bias {
        y = y + bias.val().reshape([1, c_out, 1]);
    }
    y.reshape([n, c_out, h_out, w_out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    #[test]
    fn matches_burns_convolution() {
        type B = NdArray<f32>;
        let device = Default::default();
        let x = Tensor::<B, 4>::random([3, 6, 10, 9], Distribution::Normal(0.0, 1.0), &device);
        for (k, padding) in [
            (1, PaddingConfig2d::Valid),
            (3, PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (5, PaddingConfig2d::Explicit(2, 2, 2, 2)),
            (3, PaddingConfig2d::Valid),
            (5, PaddingConfig2d::Same),
        ] {
            let conv = Conv2dConfig::new([6, 4], [k, k])
                .with_padding(padding.clone())
                .init::<B>(&device);
            let want = conv.forward(x.clone());
            let got = conv2d(&conv, x.clone());
            assert_eq!(got.dims(), want.dims(), "k {k} {padding:?}");
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(diff < 1e-5, "k {k} {padding:?}: max difference {diff}");
        }
        // Patches: stride = kernel (10x9 does not divide by 3 in rows: burn's own path).
        for (k, side) in [(2, 10), (3, 9)] {
            let x =
                Tensor::<B, 4>::random([2, 5, side, side], Distribution::Normal(0.0, 1.0), &device);
            let conv = Conv2dConfig::new([5, 7], [k, k])
                .with_stride([k, k])
                .init::<B>(&device);
            let diff: f32 = (conv2d(&conv, x.clone()) - conv.forward(x))
                .abs()
                .max()
                .into_scalar();
            assert!(diff < 1e-5, "patches {k}: max difference {diff}");
        }
    }
}
