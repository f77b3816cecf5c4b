//! Running the models over catalog objects in batches: PhotoZ, with their
//! cutouts when the model has an image branch and the objects have images, and
//! AstroMAE, which always reads the cutouts.

use burn::prelude::*;
use cosmicai_model::astromae::AstroMae;
use cosmicai_model::astromae::fused::FusedAstroMae;
use cosmicai_model::crop::CROP;
use cosmicai_model::photoz::{PhotoZ, read_predictions};

pub use cosmicai_shared::model::Prediction;

/// The cutouts of the objects being predicted, in the same order:
/// `[N, 5, height, width]` flattened, NaN where a pixel lies outside its frame.
#[derive(Debug, Clone, Copy)]
pub struct Cutouts<'a> {
    pub pixels: &'a [f32],
    pub height: usize,
    pub width: usize,
}

impl Cutouts<'_> {
    fn values_per_object(&self) -> usize {
        5 * self.height * self.width
    }

    /// Whether these are cutouts of `objects` objects that `reader` can crop.
    fn check(&self, objects: usize, reader: &str) -> Result<(), String> {
        if self.height < CROP || self.width < CROP {
            return Err(format!(
                "cutouts are {}x{} pixels; {reader} reads the centre {CROP}x{CROP}",
                self.height, self.width
            ));
        }
        if self.pixels.len() != objects * self.values_per_object() {
            return Err(format!(
                "{} cutout values for {objects} objects of 5x{}x{}",
                self.pixels.len(),
                self.height,
                self.width
            ));
        }
        Ok(())
    }

    /// Whether object `i` has a pixel inside the centre crop the model reads
    /// (a cutout off its frame is all NaN: that object goes on magnitudes alone).
    fn usable(&self, i: usize) -> bool {
        let (top, left) = ((self.height - CROP) / 2, (self.width - CROP) / 2);
        let object = &self.pixels[i * self.values_per_object()..(i + 1) * self.values_per_object()];
        object
            .chunks_exact(self.height * self.width)
            .flat_map(|band| band.chunks_exact(self.width).skip(top).take(CROP))
            .any(|row| row[left..left + CROP].iter().any(|p| p.is_finite()))
    }
}

/// Predictions and how many objects the image branch saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predicted {
    pub predictions: Vec<Prediction>,
    pub with_cutouts: usize,
}

/// Predictions for `magnitudes` alone, `batch_size` objects at a time.
pub fn predict_photoz<B: Backend>(
    model: &PhotoZ<B>,
    magnitudes: &[[f32; 5]],
    batch_size: usize,
    device: &B::Device,
) -> Vec<Prediction> {
    run(model, magnitudes, None, batch_size, device).predictions
}

/// Predictions for `magnitudes` and, if any, their `cutouts`. The cutouts are
/// used when the model has an image branch; objects whose cutout is empty get
/// the magnitudes-only answer. Errors name what is wrong with the cutouts.
pub fn predict_photoz_with<B: Backend>(
    model: &PhotoZ<B>,
    magnitudes: &[[f32; 5]],
    cutouts: Option<Cutouts>,
    batch_size: usize,
    device: &B::Device,
) -> Result<Predicted, String> {
    let Some(cutouts) = cutouts.filter(|_| model.cutout.is_some()) else {
        return Ok(run(model, magnitudes, None, batch_size, device));
    };
    cutouts.check(magnitudes.len(), "the model's image branch")?;
    Ok(run(model, magnitudes, Some(cutouts), batch_size, device))
}

/// Where AstroMAE runs: through burn on `device` (whole batches, for a GPU), or
/// on the fused CPU path in slices of that many objects.
pub enum AstroMaeOn<'a, B: Backend> {
    Burn(&'a AstroMae<B>, &'a B::Device),
    Fused(&'a FusedAstroMae, usize),
    /// The fused path's schedule on an NVIDIA GPU, fed centre crops.
    #[cfg(feature = "cuda")]
    Gpu(&'a crate::gpu_astromae::GpuAstroMae),
}

/// AstroMAE's redshifts for `magnitudes` and their `cutouts` (at least 32x32; the
/// model reads the centre 32x32, as CAI crops). Pixels outside an object's frame
/// (NaN) read as 0, the level of the sky-subtracted background; an object counts
/// in `with_cutouts` when its centre crop has a pixel on the frame.
pub fn predict_astromae<B: Backend>(
    model: &AstroMaeOn<B>,
    magnitudes: &[[f32; 5]],
    cutouts: Cutouts,
    batch_size: usize,
) -> Result<Predicted, String> {
    cutouts.check(magnitudes.len(), "AstroMAE")?;
    let per = cutouts.values_per_object();
    let mut out = Predicted {
        predictions: Vec::with_capacity(magnitudes.len()),
        with_cutouts: 0,
    };
    let batch_size = batch_size.max(1);
    for (b, chunk) in magnitudes.chunks(batch_size).enumerate() {
        let (n, first) = (chunk.len(), b * batch_size);
        out.with_cutouts += (first..first + n).filter(|&i| cutouts.usable(i)).count();
        let pixels = &cutouts.pixels[first * per..(first + n) * per];
        let mags = chunk.as_flattened().to_vec();
        let shape = [cutouts.height, cutouts.width];
        let z: Vec<f32> = match model {
            AstroMaeOn::Burn(model, device) => {
                let images = TensorData::new(on_sky(pixels), [n, 5, shape[0], shape[1]]);
                model
                    .forward(
                        Tensor::from_data(images, *device),
                        Tensor::from_data(TensorData::new(mags, [n, 5]), *device),
                    )
                    .into_data()
                    .convert::<f32>() // half-precision backends read back as f32
                    .to_vec()
                    .map_err(|e| format!("{e:?}"))?
            }
            AstroMaeOn::Fused(model, slice) => model
                .forward(&on_sky(pixels), &mags, n, shape, *slice)
                .map_err(|e| e.to_string())?,
            #[cfg(feature = "cuda")]
            AstroMaeOn::Gpu(model) => model.forward(&centre_crops(pixels, shape), &mags, n)?,
        };
        out.predictions
            .extend(z.into_iter().map(Prediction::redshift_only));
    }
    Ok(out)
}

/// A pixel outside its frame (NaN) reads as the sky-subtracted background.
fn finite_or_sky(p: f32) -> f32 {
    if p.is_finite() { p } else { 0.0 }
}

fn on_sky(pixels: &[f32]) -> Vec<f32> {
    pixels.iter().map(|&p| finite_or_sky(p)).collect()
}

/// The centre 32x32 of each of `[n, 5, h, w]` cutouts (checked to be at least
/// that), pixels outside the frame read as the sky: a GPU is sent only what
/// the model reads.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))] // tested on every build
fn centre_crops(pixels: &[f32], [h, w]: [usize; 2]) -> Vec<f32> {
    let n = pixels.len() / (5 * h * w);
    let mut crops = cosmicai_model::astromae::fused::centre_crop(pixels, n, 5, [h, w]);
    crops.iter_mut().for_each(|p| *p = finite_or_sky(*p));
    crops
}

fn run<B: Backend>(
    model: &PhotoZ<B>,
    magnitudes: &[[f32; 5]],
    cutouts: Option<Cutouts>,
    batch_size: usize,
    device: &B::Device,
) -> Predicted {
    let mut out = Predicted {
        predictions: Vec::with_capacity(magnitudes.len()),
        with_cutouts: 0,
    };
    let batch_size = batch_size.max(1);
    for (b, chunk) in magnitudes.chunks(batch_size).enumerate() {
        let n = chunk.len();
        let input = Tensor::from_data(
            TensorData::new(chunk.as_flattened().to_vec(), [n, 5]),
            device,
        );
        let images = cutouts.and_then(|c| {
            let first = b * batch_size;
            let mask: Vec<f32> = (first..first + n)
                .map(|i| if c.usable(i) { 1.0 } else { 0.0 })
                .collect();
            let used = mask.iter().filter(|&&m| m > 0.0).count();
            if used == 0 {
                return None; // Nothing to look at: skip the branch's cost.
            }
            out.with_cutouts += used;
            let per = c.values_per_object();
            let pixels = c.pixels[first * per..(first + n) * per].to_vec();
            Some((
                Tensor::from_data(TensorData::new(pixels, [n, 5, c.height, c.width]), device),
                Tensor::from_data(TensorData::new(mask, [n, 1]), device),
            ))
        });
        let predicted = model.predict_with(input, images);
        let probability: Vec<f32> = predicted
            .probability
            .into_data()
            .convert::<f32>() // half-precision backends read back as f32
            .to_vec()
            .unwrap_or_default();
        let redshift: Vec<f32> = predicted
            .redshift
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        let pdf: Option<Vec<f32>> = predicted
            .pdf
            .map(|p| p.into_data().convert::<f32>().to_vec().unwrap_or_default());
        out.predictions
            .extend(read_predictions(&probability, &redshift, pdf.as_deref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    /// The crops a GPU is sent are the model's own centre crop, on the sky.
    #[test]
    fn centre_crops_are_the_models_crop_with_nan_as_sky() {
        for [h, w] in [[64, 64], [33, 35], [32, 32]] {
            let n = 3;
            let pixels: Vec<f32> = (0..n * 5 * h * w)
                .map(|i| {
                    if i % 97 == 5 {
                        f32::NAN
                    } else {
                        (i as f32 * 0.37).sin()
                    }
                })
                .collect();
            let device = Default::default();
            let images = Tensor::<NdArray, 4>::from_data(
                TensorData::new(on_sky(&pixels), [n, 5, h, w]),
                &device,
            );
            let expected: Vec<f32> = cosmicai_model::crop::centre_crop(images, CROP)
                .into_data()
                .to_vec()
                .unwrap();
            let got = centre_crops(&pixels, [h, w]);
            assert_eq!(got.len(), n * 5 * CROP * CROP, "{h}x{w}");
            assert_eq!(got, expected, "{h}x{w}");
        }
    }
}
