//! Running PhotoZ over catalog objects in batches.

use burn::prelude::*;
use cosmicai_model::photoz::PhotoZ;
use cosmicai_shared::Class;
use serde::Serialize;

/// What the model says about one object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    pub class: Class,
    /// Probability of GALAXY, STAR, QSO.
    pub class_probability: [f32; 3],
    pub redshift: f32,
}

/// Predictions for `magnitudes`, `batch_size` objects at a time.
pub fn predict_photoz<B: Backend>(
    model: &PhotoZ<B>,
    magnitudes: &[[f32; 5]],
    batch_size: usize,
    device: &B::Device,
) -> Vec<Prediction> {
    let mut out = Vec::with_capacity(magnitudes.len());
    for chunk in magnitudes.chunks(batch_size.max(1)) {
        let input = Tensor::from_data(
            TensorData::new(chunk.as_flattened().to_vec(), [chunk.len(), 5]),
            device,
        );
        let (probability, redshift) = model.predict(input);
        let probability: Vec<f32> = probability.into_data().to_vec().unwrap_or_default();
        let redshift: Vec<f32> = redshift.into_data().to_vec().unwrap_or_default();
        for (p, &z) in probability.chunks_exact(3).zip(&redshift) {
            let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
            out.push(Prediction {
                class: Class::from_code(best as u8).unwrap_or(Class::Unknown),
                class_probability: [p[0], p[1], p[2]],
                redshift: z,
            });
        }
    }
    out
}
