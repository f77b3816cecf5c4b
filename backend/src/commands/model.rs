//! `cosmicai model import`: a CAI checkpoint (`.pt`) into safetensors, no Python.
//!
//! CAI ships AstroMAE as a pickled `DataParallel` module; users may also hold a
//! `state_dict`. Both are read by `cosmicai_model::pytorch`, checked by building
//! AstroMAE from them (every tensor present, every shape right), and written as
//! one safetensors file with the state_dict's names. `run --model astromae:PATH`
//! takes either file; the safetensors one loads faster and needs no zip.

use crate::models::Cpu;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cosmicai_engine::redshift_model::ASTROMAE_HEADS;
use cosmicai_model::astromae::AstroMae;
use cosmicai_model::astromae::load::config_of;
use cosmicai_model::weights::Weights;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Convert a CAI AstroMAE checkpoint (.pt: a state_dict or a pickled module) to safetensors.
    #[command(after_help = "Example:\n  \
        cosmicai model import Mixed_Inception_z_VITAE_Base_Img_Full_New_Full.pt --out astromae.safetensors\n  \
        cosmicai run --data data/parts --model astromae:astromae.safetensors --world-size 2 --batch-size 512\n\n\
        The checkpoint is read in Rust (its zip and pickle); no class in it is ever run.")]
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// The checkpoint: `torch.save(model)` (DataParallel or not) or `torch.save(model.state_dict())`.
    pub checkpoint: PathBuf,
    /// The safetensors file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out where it exists (never the checkpoint itself).
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ImportReport {
    checkpoint: PathBuf,
    out: PathBuf,
    tensors: usize,
    parameters: usize,
    depth: usize,
    embed_dim: usize,
    image: usize,
    bytes: u64,
}

pub fn run(command: ModelCommand) -> Result<()> {
    let ModelCommand::Import(args) = command;
    // Checked before the checkpoint is read: a file already kept is never replaced
    // unasked, and the checkpoint (with what else its pickle holds) never.
    if let (Ok(a), Ok(b)) = (
        std::fs::canonicalize(&args.checkpoint),
        std::fs::canonicalize(&args.out),
    ) && a == b
    {
        anyhow::bail!(
            "--out {} is the checkpoint itself: write the safetensors file beside it",
            args.out.display()
        );
    }
    // The file's name says what it holds: runs read a `.pt` as a pickle.
    if args.out.extension().is_none_or(|x| x != "safetensors") {
        anyhow::bail!(
            "--out {}: model import writes safetensors, so name it NAME.safetensors",
            args.out.display()
        );
    }
    if args.out.exists() && !args.force {
        anyhow::bail!(
            "--out {} exists; pass --force to replace it",
            args.out.display()
        );
    }
    let weights = Weights::open(&args.checkpoint)?;
    if let Some(root) = weights.root() {
        crate::say!(
            "{}: the model's tensors are under '{root}' (a checkpoint dict's key, or DataParallel's module): only those are kept, named without it",
            args.checkpoint.display()
        );
    }
    // Building the model checks every name and shape AstroMAE needs.
    let config = config_of(&weights, ASTROMAE_HEADS)?;
    AstroMae::<Cpu>::from_pytorch(&weights, ASTROMAE_HEADS, &Default::default()).with_context(
        || {
            format!(
                "{} is not an AstroMAE checkpoint",
                args.checkpoint.display()
            )
        },
    )?;
    let bytes = weights.to_safetensors().map_err(anyhow::Error::msg)?;
    cosmicai_engine::partition::write_atomically(&args.out, &bytes)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let sorted = weights.sorted();
    let report = ImportReport {
        checkpoint: args.checkpoint,
        out: args.out,
        tensors: sorted.len(),
        parameters: sorted.iter().map(|(_, _, v)| v.len()).sum(),
        depth: config.depth,
        embed_dim: config.dim,
        image: config.image,
        bytes: bytes.len() as u64,
    };
    let text = if args.json {
        serde_json::to_string(&report)? + "\n"
    } else {
        format!(
            "{} -> {}: AstroMAE (depth {}, embed {}, {}x{} crops), {} float tensors, {} values, {} bytes\n",
            report.checkpoint.display(),
            report.out.display(),
            report.depth,
            report.embed_dim,
            report.image,
            report.image,
            report.tensors,
            report.parameters,
            report.bytes
        )
    };
    crate::output::emit(&text)
}
