//! CosmicAI's redshift models, written with burn and generic over its `Backend`,
//! so the same code runs on the CPU, on CUDA and in the browser (WebGPU).
//!
//! - [`astromae`]: a faithful port of AstroMAE, the model of the CAI pipeline
//!   (ViT encoder + Inception branch on the 32x32 centre crop, plus a magnitude
//!   MLP). Weights load from safetensors files with PyTorch `state_dict` names,
//!   so users of CAI can bring theirs.
//! - [`crop`]: the centre crop every image model applies to 64x64 cutouts.
//!
//! Model code is apart from training and inference drivers (as in burn's examples).

pub mod astromae;
pub mod crop;
pub mod weights;
