//! PhotoZ in the browser with burn, inside the inference worker: on the GPU
//! through WebGPU (burn's wgpu backend) when the browser offers an adapter, else
//! burn's CPU backend (ndarray) compiled to wasm. The weights come from the API
//! once per worker (the browser caches them by content hash).

use crate::protocol::{Batch, Choice, Ran};
use burn::backend::NdArray;
use burn::backend::wgpu::{RuntimeOptions, Wgpu, WgpuDevice, graphics, init_setup_async};
use burn::prelude::*;
use cosmicai_model::photoz::{PhotoZ, read_predictions};
use cosmicai_model::weights::Weights;
use cosmicai_shared::model::Prediction;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Response, WorkerGlobalScope};

type Cpu = NdArray<f32>;
type Gpu = Wgpu<f32, i32>;

/// The model on WebGPU and the adapter's description.
type GpuModel = (Rc<PhotoZ<Gpu>>, String);

#[derive(Default)]
struct Loaded {
    weights: Option<Rc<Weights>>,
    cpu: Option<Rc<PhotoZ<Cpu>>>,
    cpu_batches: usize,
    /// `Err` says why WebGPU cannot be used in this browser.
    gpu: Option<Result<GpuModel, String>>,
    gpu_batches: usize,
}

thread_local! {
    static LOADED: RefCell<Loaded> = RefCell::new(Loaded::default());
}

/// Predicts redshift and class from ugriz magnitudes on the chosen backend.
pub async fn run(magnitudes: &[[f32; 5]], choice: Choice) -> Result<Batch, String> {
    let weights = weights().await?;
    let gpu = match choice {
        Choice::Cpu => None,
        Choice::Auto | Choice::WebGpu => Some(gpu_model(&weights).await),
    };
    match gpu {
        Some(Ok((model, adapter))) => {
            let device = WgpuDevice::default();
            let mut batch = timed(&model, magnitudes, &device, Ran::WebGpu).await?;
            batch.adapter = Some(adapter);
            Ok(batch)
        }
        Some(Err(why)) if choice == Choice::WebGpu => Err(format!("WebGPU: {why}")),
        other => {
            let model = cpu_model(&weights)?;
            let mut batch = timed(&model, magnitudes, &Default::default(), Ran::Cpu).await?;
            batch.fallback = other.and_then(Result::err);
            Ok(batch)
        }
    }
}

/// One forward pass on the backend `ran`, timed, counted per backend.
async fn timed<B: Backend>(
    model: &PhotoZ<B>,
    magnitudes: &[[f32; 5]],
    device: &B::Device,
    ran: Ran,
) -> Result<Batch, String> {
    fn batches(l: &mut Loaded, ran: Ran) -> &mut usize {
        match ran {
            Ran::WebGpu => &mut l.gpu_batches,
            Ran::Cpu => &mut l.cpu_batches,
        }
    }
    let first = LOADED.with(|l| *batches(&mut l.borrow_mut(), ran) == 0);
    let start = now_ms();
    let predictions = forward(model, magnitudes, device).await?;
    let ms = now_ms() - start;
    LOADED.with(|l| *batches(&mut l.borrow_mut(), ran) += 1);
    Ok(Batch {
        predictions,
        ran,
        ms,
        first_on_backend: first,
        adapter: None,
        fallback: None,
    })
}

/// The worker's global scope (this module runs in the inference worker only).
fn scope() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Milliseconds since the worker started, for timing.
fn now_ms() -> f64 {
    scope().performance().map_or(0.0, |p| p.now())
}

/// The body of a GET of `url`, or why not.
async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let response: Response = JsFuture::from(scope().fetch_with_str(url))
        .await
        .map_err(|_| {
            format!("{url}: the server cannot be reached (is cosmicai serve still running?)")
        })?
        .unchecked_into();
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

async fn weights() -> Result<Rc<Weights>, String> {
    if let Some(w) = LOADED.with(|l| l.borrow().weights.clone()) {
        return Ok(w);
    }
    let info: cosmicai_shared::api::ModelInfo =
        serde_json::from_slice(&fetch_bytes("/api/model").await?)
            .map_err(|e| format!("/api/model: {e}"))?;
    let bytes = fetch_bytes(&info.weights_url).await?;
    let weights =
        Rc::new(Weights::from_bytes("photoz.safetensors", &bytes).map_err(|e| e.to_string())?);
    LOADED.with(|l| l.borrow_mut().weights = Some(weights.clone()));
    Ok(weights)
}

fn cpu_model(weights: &Weights) -> Result<Rc<PhotoZ<Cpu>>, String> {
    if let Some(m) = LOADED.with(|l| l.borrow().cpu.clone()) {
        return Ok(m);
    }
    let model = Rc::new(
        PhotoZ::<Cpu>::from_weights(weights, &Default::default()).map_err(|e| e.to_string())?,
    );
    LOADED.with(|l| l.borrow_mut().cpu = Some(model.clone()));
    Ok(model)
}

/// The model on WebGPU, set up once; `Err` (kept) says why WebGPU is not there.
async fn gpu_model(weights: &Weights) -> Result<GpuModel, String> {
    if let Some(known) = LOADED.with(|l| l.borrow().gpu.clone()) {
        return known;
    }
    let outcome = async {
        // Asked first here because burn's own request panics when there is no adapter.
        let adapter = webgpu_adapter().await?;
        let device = WgpuDevice::default();
        init_setup_async::<graphics::WebGpu>(&device, RuntimeOptions::default()).await;
        let model = PhotoZ::<Gpu>::from_weights(weights, &device).map_err(|e| e.to_string())?;
        Ok((Rc::new(model), adapter))
    }
    .await;
    LOADED.with(|l| l.borrow_mut().gpu = Some(outcome.clone()));
    outcome
}

/// `navigator.gpu.requestAdapter()`, described as "vendor architecture (fallback)".
async fn webgpu_adapter() -> Result<String, String> {
    let get = |target: &JsValue, key: &str| js_sys::Reflect::get(target, &key.into()).ok();
    let navigator = scope().navigator().unchecked_into::<JsValue>();
    let gpu = get(&navigator, "gpu")
        .filter(|g| !g.is_undefined() && !g.is_null())
        .ok_or("this browser has no WebGPU (navigator.gpu is missing)")?;
    let request = get(&gpu, "requestAdapter")
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or("navigator.gpu.requestAdapter is missing")?;
    let promise = request
        .call0(&gpu)
        .map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    let adapter = JsFuture::from(js_sys::Promise::from(promise))
        .await
        .map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("the browser offers no WebGPU adapter".into());
    }
    let info = get(&adapter, "info").unwrap_or(JsValue::UNDEFINED);
    let text = |key: &str| {
        get(&info, key)
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    let fallback = get(&info, "isFallbackAdapter")
        .or_else(|| get(&adapter, "isFallbackAdapter"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let mut name: Vec<String> = [text("vendor"), text("architecture"), text("description")]
        .into_iter()
        .flatten()
        .collect();
    if name.is_empty() {
        name.push("unnamed adapter".into());
    }
    if fallback {
        name.push("(software fallback)".into());
    }
    Ok(name.join(" "))
}

async fn forward<B: Backend>(
    model: &PhotoZ<B>,
    magnitudes: &[[f32; 5]],
    device: &B::Device,
) -> Result<Vec<Prediction>, String> {
    if magnitudes.is_empty() {
        return Ok(Vec::new());
    }
    let input = Tensor::<B, 2>::from_data(
        TensorData::new(magnitudes.as_flattened().to_vec(), [magnitudes.len(), 5]),
        device,
    );
    let predicted = model.predict(input);
    // Async reads: a GPU result cannot be waited for synchronously in a browser.
    let read = |e| format!("reading the result: {e:?}");
    let p: Vec<f32> = predicted
        .probability
        .into_data_async()
        .await
        .map_err(read)?
        .to_vec()
        .map_err(|e| format!("{e:?}"))?;
    let z: Vec<f32> = predicted
        .redshift
        .into_data_async()
        .await
        .map_err(read)?
        .to_vec()
        .map_err(|e| format!("{e:?}"))?;
    let pdf: Option<Vec<f32>> = match predicted.pdf {
        Some(t) => Some(
            t.into_data_async()
                .await
                .map_err(read)?
                .to_vec()
                .map_err(|e| format!("{e:?}"))?,
        ),
        None => None,
    };
    Ok(read_predictions(&p, &z, pdf.as_deref()))
}
