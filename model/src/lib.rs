//! CosmicAI's redshift models, written with burn and generic over its `Backend`,
//! so the same code runs on the CPU, on CUDA and in the browser (WebGPU).
//!
//! - [`astromae`]: a faithful port of AstroMAE, the model of the CAI pipeline
//!   (ViT encoder + Inception branch on the 32x32 centre crop, plus a magnitude
//!   MLP). Weights load from CAI's own checkpoints: `.pt` files read by
//!   [`pytorch`] (no Python), or safetensors with the same `state_dict` names.
//!   `astromae::fused` (feature `fused`) runs a loaded AstroMAE on the CPU as a
//!   few large matrix products with fused steps, three times burn-ndarray's speed.
//! - [`photoz`]: PhotoZ, our own multi-task model: class and redshift from the
//!   five magnitudes, small enough for the browser; and its training loop.
//! - [`crop`]: the centre crop every image model applies to 64x64 cutouts;
//!   [`conv`]: convolution as one matrix product, much faster on the CPU backends.
//!
//! Model code is apart from training and inference drivers (as in burn's examples).

pub mod astromae;
pub mod conv;
pub mod crop;
pub mod photoz;
pub mod pytorch;
pub mod weights;
