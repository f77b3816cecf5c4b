//! PhotoZ: CosmicAI's own model. From the five ugriz magnitudes (their colours
//! carry the redshift) it predicts the class (galaxy / star / QSO) and a
//! redshift for each class; the reported redshift is that of the most probable
//! class. It needs no image, so every catalog object can be scored, and it is
//! small enough (about 0.6 MB of weights) for the browser to fetch.
//!
//! Redshifts are learned as ln(1 + z), so an error means the same thing at z = 0.05
//! and at z = 3. The feature scaling is part of the weights.
//!
//! Weights with a distribution head (`pdf.*`, all trained since it came) also give
//! p(z) over bins of ln(1 + z), whatever the class: the reported redshift and its
//! σ_z are read from it ([`pdf::read`]), which keeps a galaxy the class head
//! takes for a quasar from getting a quasar's redshift.

pub mod cutout;
pub mod pdf;
pub mod train;

use cosmicai_shared::Class;
use cosmicai_shared::model::Prediction;
use cutout::CutoutEncoder;

use crate::weights::{Weights, WeightsError};
use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Gelu, Linear, LinearConfig};
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;

/// Number of classes predicted, in partition class-code order: GALAXY, STAR, QSO.
pub const CLASSES: usize = 3;
/// Features: 5 magnitudes and 4 adjacent colours (u-g, g-r, r-i, i-z).
pub const FEATURES: usize = 9;
/// The widest and deepest PhotoZ a weight file may describe (the shipped one
/// is far smaller); larger sizes are refused before any allocation.
pub const MAX_WIDTH: usize = 4096;
pub const MAX_LAYERS: usize = 64;

#[derive(Config, Debug)]
pub struct PhotoZConfig {
    #[config(default = 256)]
    pub width: usize,
    #[config(default = 3)]
    pub layers: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
    /// With the image branch ([`CutoutEncoder`]).
    #[config(default = false)]
    pub cutout: bool,
    /// With the redshift distribution head ([`pdf`]).
    #[config(default = true)]
    pub redshift_pdf: bool,
}

#[derive(Module, Debug)]
pub struct PhotoZ<B: Backend> {
    /// Feature mean and standard deviation of the training set (not trained).
    pub feature_mean: Param<Tensor<B, 1>>,
    pub feature_std: Param<Tensor<B, 1>>,
    pub hidden: Vec<Linear<B>>,
    pub dropout: Dropout,
    /// The optional image branch, added into the first hidden layer.
    pub cutout: Option<CutoutEncoder<B>>,
    /// Class logits (3) then ln(1+z) for each class (3).
    pub out: Linear<B>,
    /// Logits of p(z) over [`pdf::BINS`] bins of ln(1+z), whatever the class.
    pub pdf: Option<Linear<B>>,
}

/// What the model says about a batch.
pub struct PhotoZOutput<B: Backend> {
    /// `[N, 3]` unnormalised class scores.
    pub class_logits: Tensor<B, 2>,
    /// `[N, 3]` ln(1 + z) if the object were of each class.
    pub log1p_z: Tensor<B, 2>,
    /// `[N, BINS]` logits of p(z), with the distribution head.
    pub pdf_logits: Option<Tensor<B, 2>>,
}

/// Predictions for a batch, before the distribution is read (on the CPU, [`pdf::read`]).
pub struct PhotoZPredicted<B: Backend> {
    /// `[N, 3]` class probabilities.
    pub probability: Tensor<B, 2>,
    /// `[N]` the redshift of the most probable class (the per-class heads).
    pub redshift: Tensor<B, 1>,
    /// `[N, BINS]` p(z), with the distribution head.
    pub pdf: Option<Tensor<B, 2>>,
}

impl PhotoZConfig {
    /// A model with random weights and identity feature scaling.
    pub fn init<B: Backend>(&self, device: &B::Device) -> PhotoZ<B> {
        let mut hidden = vec![LinearConfig::new(FEATURES, self.width).init(device)];
        for _ in 1..self.layers {
            hidden.push(LinearConfig::new(self.width, self.width).init(device));
        }
        PhotoZ {
            feature_mean: Param::from_tensor(Tensor::zeros([FEATURES], device))
                .set_require_grad(false),
            feature_std: Param::from_tensor(Tensor::ones([FEATURES], device))
                .set_require_grad(false),
            hidden,
            dropout: DropoutConfig::new(self.dropout).init(),
            cutout: self.cutout.then(|| CutoutEncoder::new(self.width, device)),
            out: LinearConfig::new(self.width, 2 * CLASSES).init(device),
            pdf: self
                .redshift_pdf
                .then(|| LinearConfig::new(self.width, pdf::BINS).init(device)),
        }
    }
}

/// `[N, 5]` magnitudes -> `[N, 9]` magnitudes and adjacent colours.
pub fn features<B: Backend>(magnitudes: Tensor<B, 2>) -> Tensor<B, 2> {
    let n = magnitudes.dims()[0];
    let colours = magnitudes.clone().slice([0..n, 0..4]) - magnitudes.clone().slice([0..n, 1..5]);
    Tensor::cat(vec![magnitudes, colours], 1)
}

impl<B: Backend> PhotoZ<B> {
    pub fn forward(&self, magnitudes: Tensor<B, 2>) -> PhotoZOutput<B> {
        self.forward_with(magnitudes, None)
    }

    /// With cutouts: `images` `[N, 5, H, W]` and `mask` `[N, 1]` (1 where the object
    /// has a cutout to use, 0 where not). A model without the image branch ignores them.
    pub fn forward_with(
        &self,
        magnitudes: Tensor<B, 2>,
        cutouts: Option<(Tensor<B, 4>, Tensor<B, 2>)>,
    ) -> PhotoZOutput<B> {
        let mut x = (features(magnitudes) - self.feature_mean.val().unsqueeze())
            / self.feature_std.val().unsqueeze();
        let mut image = match (&self.cutout, cutouts) {
            (Some(branch), Some((images, mask))) => Some(branch.forward(images) * mask),
            _ => None,
        };
        for layer in &self.hidden {
            let mut h = layer.forward(x);
            if let Some(im) = image.take() {
                h = h + im;
            }
            x = self.dropout.forward(Gelu::new().forward(h));
        }
        let pdf_logits = self.pdf.as_ref().map(|head| head.forward(x.clone()));
        let out = self.out.forward(x);
        let n = out.dims()[0];
        PhotoZOutput {
            class_logits: out.clone().slice([0..n, 0..CLASSES]),
            log1p_z: out.slice([0..n, CLASSES..2 * CLASSES]),
            pdf_logits,
        }
    }

    /// Class probabilities, the most probable class's redshift and p(z).
    pub fn predict(&self, magnitudes: Tensor<B, 2>) -> PhotoZPredicted<B> {
        self.predict_with(magnitudes, None)
    }

    /// [`PhotoZ::predict`] with cutouts (see [`PhotoZ::forward_with`]).
    pub fn predict_with(
        &self,
        magnitudes: Tensor<B, 2>,
        cutouts: Option<(Tensor<B, 4>, Tensor<B, 2>)>,
    ) -> PhotoZPredicted<B> {
        let out = self.forward_with(magnitudes, cutouts);
        let n = out.class_logits.dims()[0];
        let best = out.class_logits.clone().argmax(1); // [N, 1]
        let z = out.log1p_z.gather(1, best).reshape([n]).exp() - 1.0;
        PhotoZPredicted {
            probability: burn::tensor::activation::softmax(out.class_logits, 1),
            redshift: z,
            pdf: out
                .pdf_logits
                .map(|l| burn::tensor::activation::softmax(l, 1)),
        }
    }

    /// The weights as a safetensors file (names `hidden.{i}.weight` in burn's `[in, out]` layout).
    pub fn to_safetensors(&self, metadata: HashMap<String, String>) -> Result<Vec<u8>, String> {
        let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut put = |name: String, data: TensorData| {
            let bytes = data
                .to_vec::<f32>()
                .map_err(|e| format!("{name}: {e:?}"))?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            named.push((name, data.shape.to_vec(), bytes));
            Ok::<(), String>(())
        };
        put("feature_mean".into(), self.feature_mean.val().into_data())?;
        put("feature_std".into(), self.feature_std.val().into_data())?;
        let heads = std::iter::once(("out".to_string(), &self.out))
            .chain(self.pdf.as_ref().map(|p| ("pdf".to_string(), p)));
        for (prefix, layer) in self
            .hidden
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("hidden.{i}"), l))
            .chain(heads)
        {
            put(format!("{prefix}.weight"), layer.weight.val().into_data())?;
            if let Some(bias) = &layer.bias {
                put(format!("{prefix}.bias"), bias.val().into_data())?;
            }
        }
        if let Some(branch) = &self.cutout {
            for (i, conv) in branch.conv.iter().enumerate() {
                put(
                    format!("cutout.conv.{i}.weight"),
                    conv.weight.val().into_data(),
                )?;
                if let Some(bias) = &conv.bias {
                    put(format!("cutout.conv.{i}.bias"), bias.val().into_data())?;
                }
            }
            put(
                "cutout.join.weight".into(),
                branch.join.weight.val().into_data(),
            )?;
            if let Some(bias) = &branch.join.bias {
                put("cutout.join.bias".into(), bias.val().into_data())?;
            }
        }
        let views: Vec<(String, TensorView)> = named
            .iter()
            .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let mut metadata = metadata;
        metadata.insert("model".into(), "photoz".into());
        let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())?;
        crate::weights::canonical_safetensors(bytes)
    }

    /// A model from weights written by [`PhotoZ::to_safetensors`]; sizes come from the file.
    pub fn from_weights(weights: &Weights, device: &B::Device) -> Result<Self, WeightsError> {
        let layers = (0..)
            .take_while(|i| weights.contains(&format!("hidden.{i}.weight")))
            .count();
        let width = weights
            .shape("hidden.0.weight")?
            .get(1)
            .copied()
            .unwrap_or(0);
        if layers == 0 || width == 0 {
            return Err(weights.error(
                "hidden.0.weight",
                "not a PhotoZ weight file (no hidden layers)",
            ));
        }
        // The sizes come from the file: check them all before anything is
        // allocated by them (a tiny `hidden.1.weight` must not make the model
        // allocate width x width).
        if width > MAX_WIDTH || layers > MAX_LAYERS {
            return Err(weights.error(
                "hidden.0.weight",
                format!(
                    "{layers} hidden layers of width {width}: PhotoZ has at most {MAX_LAYERS} layers of width {MAX_WIDTH}"
                ),
            ));
        }
        for i in 0..layers {
            let name = format!("hidden.{i}.weight");
            let expected = [if i == 0 { FEATURES } else { width }, width];
            let found = weights.shape(&name)?;
            if found != expected {
                return Err(weights.error(&name, format!("shape {found:?}, expected {expected:?}")));
            }
        }
        let mut model = PhotoZConfig::new()
            .with_width(width)
            .with_layers(layers)
            .with_dropout(0.0)
            .with_cutout(weights.contains("cutout.join.weight"))
            .with_redshift_pdf(weights.contains("pdf.weight"))
            .init::<B>(device);
        let linear = |name: &str, mut l: Linear<B>| -> Result<Linear<B>, WeightsError> {
            let dims = l.weight.shape().dims::<2>();
            l.weight =
                Param::from_tensor(weights.tensor(&format!("{name}.weight"), dims, device)?);
            l.bias = Some(Param::from_tensor(weights.tensor(
                &format!("{name}.bias"),
                [dims[1]],
                device,
            )?));
            Ok(l)
        };
        model.hidden = model
            .hidden
            .into_iter()
            .enumerate()
            .map(|(i, l)| linear(&format!("hidden.{i}"), l))
            .collect::<Result<_, _>>()?;
        model.out = linear("out", model.out)?;
        model.pdf = model.pdf.map(|p| linear("pdf", p)).transpose()?;
        if let Some(mut branch) = model.cutout.take() {
            branch.conv = branch
                .conv
                .into_iter()
                .enumerate()
                .map(|(i, c)| weights.conv2d(&format!("cutout.conv.{i}"), c))
                .collect::<Result<_, _>>()?;
            branch.join = linear("cutout.join", branch.join)?;
            model.cutout = Some(branch);
        }
        model.feature_mean =
            Param::from_tensor(weights.tensor("feature_mean", [FEATURES], device)?)
                .set_require_grad(false);
        model.feature_std =
            Param::from_tensor(weights.tensor("feature_std", [FEATURES], device)?)
                .set_require_grad(false);
        Ok(model)
    }
}

/// One [`Prediction`] per object from PhotoZ's outputs as read back from the
/// device: `[N, 3]` class probabilities, `[N]` the class heads' redshift, and,
/// with the distribution head, `[N, BINS]` p(z), whose reading replaces that redshift.
pub fn read_predictions(
    probability: &[f32],
    redshift: &[f32],
    pdf: Option<&[f32]>,
) -> Vec<Prediction> {
    // A distribution of the wrong size is not read at all (each object keeps
    // its class head's redshift), rather than read for some objects only.
    let n = redshift.len();
    let mut rows = pdf
        .filter(|p| p.len() == n * pdf::BINS)
        .map(|p| p.chunks_exact(pdf::BINS));
    probability
        .chunks_exact(3)
        .zip(redshift)
        .map(|(p, &z)| {
            let prediction = Prediction::from_probabilities([p[0], p[1], p[2]], z);
            match rows.as_mut().and_then(Iterator::next) {
                Some(row) => {
                    let r = pdf::read_as(row, prediction.class == Class::Qso);
                    if r.redshift.is_finite() && r.sigma.is_finite() {
                        prediction.with_distribution(r.redshift, r.sigma, r.outlier_probability)
                    } else {
                        prediction
                    }
                }
                None => prediction,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::Weights;
    use burn::backend::NdArray;
    use std::collections::HashMap;

    fn load_error(tensors: Vec<(&str, Vec<usize>)>) -> String {
        let tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = tensors
            .into_iter()
            .map(|(n, s)| {
                let len = s.iter().product();
                (n.to_string(), (s, vec![0.0; len]))
            })
            .collect();
        let weights = Weights::new("crafted.safetensors".into(), tensors);
        match PhotoZ::<NdArray<f32>>::from_weights(&weights, &Default::default()) {
            Ok(_) => panic!("must not load"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_distribution_head_round_trips_and_weights_without_it_still_load() {
        type B = NdArray<f32>;
        let device = Default::default();
        let mags = Tensor::<B, 2>::from_data(
            TensorData::new(
                vec![
                    19.0f32, 17.5, 16.8, 16.4, 16.2, 22.0, 21.0, 20.2, 19.9, 19.7,
                ],
                [2, 5],
            ),
            &device,
        );
        for with_pdf in [true, false] {
            let model: PhotoZ<B> = PhotoZConfig::new()
                .with_width(16)
                .with_layers(2)
                .with_dropout(0.0)
                .with_redshift_pdf(with_pdf)
                .init(&device);
            let bytes = model.to_safetensors(Default::default()).unwrap();
            let weights = Weights::from_bytes("photoz.safetensors", &bytes).unwrap();
            assert_eq!(weights.contains("pdf.weight"), with_pdf);
            let loaded = PhotoZ::<B>::from_weights(&weights, &device).unwrap();
            let (a, b) = (model.predict(mags.clone()), loaded.predict(mags.clone()));
            assert_eq!(a.pdf.is_some(), with_pdf);
            assert_eq!(b.pdf.is_some(), with_pdf);
            let read = |p: PhotoZPredicted<B>| {
                let prob: Vec<f32> = p.probability.into_data().to_vec().unwrap();
                let z: Vec<f32> = p.redshift.into_data().to_vec().unwrap();
                let pdf: Option<Vec<f32>> = p.pdf.map(|t| t.into_data().to_vec().unwrap());
                read_predictions(&prob, &z, pdf.as_deref())
            };
            let (a, b) = (read(a), read(b));
            assert_eq!(a.len(), 2);
            for (x, y) in a.iter().zip(&b) {
                assert!((x.redshift - y.redshift).abs() < 1e-6, "{x:?} {y:?}");
                assert_eq!(x.redshift_sigma.is_some(), with_pdf, "{x:?}");
                assert_eq!(x.redshift_sigma.is_some(), y.redshift_sigma.is_some());
            }
        }
    }

    #[test]
    fn sizes_the_file_cannot_back_are_refused_before_allocating() {
        // A first layer 100,000 wide (3.6 MB) and a one-value second layer:
        // without the check, init allocates 10^10 weights for hidden.1.
        let e = load_error(vec![
            ("hidden.0.weight", vec![FEATURES, 100_000]),
            ("hidden.1.weight", vec![1]),
        ]);
        assert!(
            e.contains("crafted.safetensors") && e.contains("at most 64 layers of width 4096"),
            "{e}"
        );
        let e = load_error(vec![
            ("hidden.0.weight", vec![FEATURES, 64]),
            ("hidden.1.weight", vec![1]),
        ]);
        assert!(
            e.contains("hidden.1.weight") && e.contains("expected [64, 64]"),
            "{e}"
        );
    }
}
