//! PhotoZ in the browser with burn: on the GPU through WebGPU (burn's wgpu
//! backend) when the browser offers an adapter, else burn's CPU backend
//! (ndarray) compiled to wasm. The weights come from the API once per page load
//! (the browser caches them by content hash).

use burn::backend::NdArray;
use burn::backend::wgpu::{RuntimeOptions, Wgpu, WgpuDevice, graphics, init_setup_async};
use burn::prelude::*;
use cosmicai_model::photoz::{PhotoZ, read_predictions};
use cosmicai_model::weights::Weights;
use cosmicai_shared::model::Prediction;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};

type Cpu = NdArray<f32>;
type Gpu = Wgpu<f32, i32>;

/// Which backend the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// WebGPU when there is an adapter, else the CPU.
    Auto,
    WebGpu,
    Cpu,
}

impl Choice {
    pub const ALL: [Choice; 3] = [Choice::Auto, Choice::WebGpu, Choice::Cpu];

    pub fn key(self) -> &'static str {
        match self {
            Choice::Auto => "auto",
            Choice::WebGpu => "webgpu",
            Choice::Cpu => "cpu",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Choice::Auto => "auto (WebGPU if available)",
            Choice::WebGpu => "WebGPU",
            Choice::Cpu => "CPU (wasm)",
        }
    }

    pub fn from_key(key: &str) -> Option<Choice> {
        Choice::ALL.into_iter().find(|c| c.key() == key)
    }
}

/// The backend a batch ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ran {
    WebGpu,
    Cpu,
}

impl Ran {
    pub fn label(self) -> &'static str {
        match self {
            Ran::WebGpu => "burn wgpu (WebGPU)",
            Ran::Cpu => "burn ndarray (CPU, wasm)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Ran::WebGpu => "webgpu",
            Ran::Cpu => "cpu",
        }
    }
}

/// One batch: what ran, where, how long (input upload to results read back).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub predictions: Vec<Prediction>,
    pub ran: Ran,
    pub ms: f64,
    /// The first batch on a backend includes its set-up (WebGPU compiles its shaders then).
    pub first_on_backend: bool,
    /// The WebGPU adapter, when the batch ran there.
    pub adapter: Option<String>,
    /// Why WebGPU was not used, when it was wanted (auto) but not there.
    pub fallback: Option<String>,
}

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
    let start = crate::api::now_ms();
    let predictions = forward(model, magnitudes, device).await?;
    let ms = crate::api::now_ms() - start;
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

async fn weights() -> Result<Rc<Weights>, String> {
    if let Some(w) = LOADED.with(|l| l.borrow().weights.clone()) {
        return Ok(w);
    }
    let info: cosmicai_shared::api::ModelInfo = crate::api::get("/api/model").await?;
    let bytes = crate::api::bytes(&info.weights_url).await?;
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
    let navigator = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .unchecked_into::<JsValue>();
    let gpu = get(&navigator, "gpu")
        .filter(|g| !g.is_undefined() && !g.is_null())
        .ok_or("this browser has no WebGPU (navigator.gpu is missing)")?;
    let request = get(&gpu, "requestAdapter")
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or("navigator.gpu.requestAdapter is missing")?;
    let promise = request
        .call0(&gpu)
        .map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    let adapter = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise))
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
