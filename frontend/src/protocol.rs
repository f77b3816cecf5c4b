//! What the explorer and its inference worker say to each other, as JSON
//! strings over `postMessage`: a [`Job`] of magnitudes in, a [`Done`] with a
//! [`Batch`] of predictions out. The worker says [`READY`] once it listens.

use cosmicai_shared::model::Prediction;
use serde::{Deserialize, Serialize};

/// The worker's first message: it listens from then on (a message sent to a
/// worker before it has a handler is lost).
pub const READY: &str = "ready";

/// Predict these magnitudes on this backend.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    pub id: u32,
    pub magnitudes: Vec<[f32; 5]>,
    pub choice: Choice,
}

/// The answer to job `id`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Done {
    pub id: u32,
    pub batch: Result<Batch, String>,
}

/// Which backend the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
