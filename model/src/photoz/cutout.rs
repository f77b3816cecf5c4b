//! PhotoZ's optional image branch: a small CNN over the centre of the five-band
//! cutout whose output joins the magnitude features in the first hidden layer.
//! Objects without a cutout simply skip it (mask 0), so the same weights work on
//! magnitudes alone.

use crate::crop::{CROP, centre_crop};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::nn::{Gelu, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

/// Channels through the convolutions: the 5 bands in, then 16 and 32.
pub const CHANNELS: [usize; 3] = [5, 16, 32];
/// Pixels are nanomaggies; asinh(x / SOFTENING) keeps sky noise (about 0.02–0.1)
/// near linear and bright cores in range.
const SOFTENING: f32 = 0.1;

#[derive(Module, Debug)]
pub struct CutoutEncoder<B: Backend> {
    pub conv: Vec<Conv2d<B>>,
    pool: AvgPool2d,
    /// 32 image features -> the first hidden layer's width.
    pub join: Linear<B>,
}

impl<B: Backend> CutoutEncoder<B> {
    pub fn new(width: usize, device: &B::Device) -> CutoutEncoder<B> {
        CutoutEncoder {
            conv: CHANNELS
                .windows(2)
                .map(|c| {
                    Conv2dConfig::new([c[0], c[1]], [3, 3])
                        .with_padding(PaddingConfig2d::Same)
                        .init(device)
                })
                .collect(),
            pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            join: LinearConfig::new(CHANNELS[CHANNELS.len() - 1], width).init(device),
        }
    }

    /// `[N, 5, H, W]` cutouts (H, W ≥ 32; NaN = outside the frame) -> `[N, width]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = centre_crop(images, CROP);
        let x = x.clone().mask_fill(x.is_nan(), 0.0) / SOFTENING;
        // asinh(x) = ln(x + sqrt(x² + 1)); burn has no asinh on every backend.
        let x = (x.clone() + (x.clone() * x + 1.0).sqrt()).log();
        // 32 -> 16 (binning: galaxies here span a few pixels), then a conv per scale.
        let mut x = self.pool.forward(x);
        for (i, conv) in self.conv.iter().enumerate() {
            x = Gelu::new().forward(conv.forward(x));
            if i + 1 < self.conv.len() {
                x = self.pool.forward(x);
            }
        }
        let [n, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([n, c]);
        self.join.forward(pooled)
    }
}

#[cfg(test)]
mod tests {
    use crate::photoz::{PhotoZ, PhotoZConfig};
    use crate::weights::Weights;
    use burn::backend::NdArray;
    use burn::prelude::*;

    type B = NdArray<f32>;

    fn inputs(device: &burn::backend::ndarray::NdArrayDevice) -> (Tensor<B, 2>, Tensor<B, 4>) {
        let mags = Tensor::<B, 2>::from_data(
            TensorData::new(
                vec![19.0, 18.0, 17.5, 17.2, 17.0, 21.0, 19.5, 18.9, 18.6, 18.4],
                [2, 5],
            ),
            device,
        );
        // Ramps with a NaN corner (outside the frame), 64x64 like partition cutouts.
        let mut px: Vec<f32> = (0..2 * 5 * 64 * 64)
            .map(|i| (i % 97) as f32 / 50.0)
            .collect();
        px[0] = f32::NAN;
        let images = Tensor::<B, 4>::from_data(TensorData::new(px, [2, 5, 64, 64]), device);
        (mags, images)
    }

    #[test]
    fn a_zero_mask_is_the_magnitude_only_model_and_weights_round_trip() {
        let device = Default::default();
        let model: PhotoZ<B> = PhotoZConfig::new()
            .with_width(16)
            .with_layers(2)
            .with_dropout(0.0)
            .with_cutout(true)
            .init(&device);
        let (mags, images) = inputs(&device);
        let plain = model.forward(mags.clone()).class_logits;
        let masked = model
            .forward_with(
                mags.clone(),
                Some((images.clone(), Tensor::zeros([2, 1], &device))),
            )
            .class_logits;
        plain
            .to_data()
            .assert_approx_eq::<f32>(&masked.to_data(), burn::tensor::Tolerance::absolute(1e-6));
        let shown = model
            .forward_with(
                mags.clone(),
                Some((images.clone(), Tensor::ones([2, 1], &device))),
            )
            .class_logits;
        let moved: f32 = (shown.clone() - plain).abs().sum().into_scalar();
        assert!(moved > 1e-4, "the cutouts change nothing ({moved})");
        assert!(
            !shown.clone().is_nan().any().into_scalar(),
            "NaN pixels leak"
        );

        let bytes = model.to_safetensors(Default::default()).unwrap();
        let weights = Weights::from_bytes("photoz.safetensors", &bytes).unwrap();
        assert!(weights.contains("cutout.conv.1.weight"));
        let loaded = PhotoZ::<B>::from_weights(&weights, &device).unwrap();
        let again = loaded
            .forward_with(mags, Some((images, Tensor::ones([2, 1], &device))))
            .class_logits;
        shown
            .to_data()
            .assert_approx_eq::<f32>(&again.to_data(), burn::tensor::Tolerance::absolute(1e-6));
    }
}
