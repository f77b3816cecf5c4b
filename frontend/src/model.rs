//! PhotoZ in the browser: burn's CPU backend compiled to wasm, weights from the API.

use burn::backend::NdArray;
use burn::prelude::*;
use cosmicai_model::photoz::PhotoZ;
use cosmicai_model::weights::Weights;
use cosmicai_shared::Class;
use std::cell::RefCell;

type Cpu = NdArray<f32>;

/// The backend the page ran, as shown to the user.
pub const BACKEND: &str = "burn ndarray (CPU, wasm)";

thread_local! {
    static MODEL: RefCell<Option<PhotoZ<Cpu>>> = const { RefCell::new(None) };
}

#[derive(Clone, Debug, PartialEq)]
pub struct BrowserPrediction {
    pub redshift: f32,
    pub class: Class,
}

/// Fetches the shipped weights once (the browser caches them by content hash).
pub async fn ensure_loaded() -> Result<(), String> {
    if MODEL.with(|m| m.borrow().is_some()) {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct Info {
        weights_url: String,
    }
    let info: Info = crate::api::get("/api/model").await?;
    let bytes = crate::api::bytes(&info.weights_url).await?;
    let weights = Weights::from_bytes("photoz.safetensors", &bytes).map_err(|e| e.to_string())?;
    let model =
        PhotoZ::<Cpu>::from_weights(&weights, &Default::default()).map_err(|e| e.to_string())?;
    MODEL.with(|m| *m.borrow_mut() = Some(model));
    Ok(())
}

/// Predicts redshift and class from ugriz magnitudes (call [`ensure_loaded`] first).
pub fn predict(magnitudes: &[[f32; 5]]) -> Result<Vec<BrowserPrediction>, String> {
    MODEL.with(|m| {
        let model = m.borrow();
        let model = model.as_ref().ok_or("the model is not loaded")?;
        if magnitudes.is_empty() {
            return Ok(Vec::new());
        }
        let device = Default::default();
        let input = Tensor::<Cpu, 2>::from_data(
            TensorData::new(magnitudes.as_flattened().to_vec(), [magnitudes.len(), 5]),
            &device,
        );
        let (probability, redshift) = model.predict(input);
        let p: Vec<f32> = probability
            .into_data()
            .to_vec()
            .map_err(|e| format!("{e:?}"))?;
        let z: Vec<f32> = redshift
            .into_data()
            .to_vec()
            .map_err(|e| format!("{e:?}"))?;
        Ok(p.chunks_exact(3)
            .zip(z)
            .map(|(p, z)| {
                let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
                BrowserPrediction {
                    redshift: z,
                    class: Class::from_code(best as u8).unwrap_or(Class::Unknown),
                }
            })
            .collect())
    })
}
