//! The models a server runs: the shipped PhotoZ, plus weight files given with
//! `serve --model FAMILY:PATH` or dropped into the data directory's `models/`.
//!
//! The API names a model by family and file name (`astromae:ckpt.pt`), never by
//! path, so no absolute path reaches a client; runs get the full path.

use crate::models::Cpu;
use anyhow::{Context, Result, bail};
use cosmicai_engine::redshift_model::RedshiftModel;
use cosmicai_model::weights::Weights;
use cosmicai_shared::api::ModelEntry;
use cosmicai_shared::model::ModelSpec;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The name a model is served under: `FAMILY:FILE` for weights from a file
/// (its name, never the host's path to it), else the family.
pub fn name_of(spec: &ModelSpec) -> String {
    match spec.weights() {
        Some(path) => {
            let file = Path::new(path)
                .file_name()
                .map_or_else(|| path.to_string(), |f| f.to_string_lossy().into_owned());
            format!("{}:{file}", spec.family())
        }
        None => spec.family().to_string(),
    }
}

/// One model the server offers.
pub struct Served {
    pub entry: ModelEntry,
    /// With the absolute path of its weights.
    pub spec: ModelSpec,
    /// Loaded on first use by the Object page.
    loaded: OnceLock<Result<Arc<RedshiftModel<Cpu>>, String>>,
}

impl Served {
    fn new(spec: ModelSpec, bytes: u64) -> Served {
        let name = name_of(&spec);
        Served {
            entry: ModelEntry {
                name,
                family: spec.family().into(),
                predicts_class: spec.predicts_class(),
                reads_images: matches!(spec, ModelSpec::AstroMae(_)),
                bytes,
            },
            spec,
            loaded: OnceLock::new(),
        }
    }

    /// The model on the CPU, loaded once (the error, too, is kept).
    pub fn model(&self) -> Result<Arc<RedshiftModel<Cpu>>, String> {
        self.loaded
            .get_or_init(|| {
                RedshiftModel::load(&self.spec, &Default::default(), true)
                    .map(Arc::new)
                    .map_err(|e| file_names_only(&e))
            })
            .clone()
    }
}

/// An error with every absolute path cut down to its file name: a model's folder
/// may be anywhere on the host, where `error::redact` hides only the data
/// directory and the working one.
fn file_names_only(message: &str) -> String {
    message
        .split(' ')
        .map(|word| {
            if word.starts_with('/') {
                Path::new(word.trim_end_matches(':'))
                    .file_name()
                    .map_or(word.to_string(), |f| {
                        let colon = if word.ends_with(':') { ":" } else { "" };
                        format!("{}{colon}", f.to_string_lossy())
                    })
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every model of a server, by name.
pub struct ServedModels {
    pub all: Vec<Served>,
}

impl ServedModels {
    /// The shipped PhotoZ, the `--model` arguments, then the files of `data_dir/models/`
    /// (each read once here, so a broken file stops the start with its name).
    pub fn load(arguments: &[String], data_dir: &Path) -> Result<ServedModels> {
        let mut all = vec![Served::new(
            ModelSpec::PhotoZ(None),
            crate::models::SHIPPED_PHOTOZ.len() as u64,
        )];
        let mut specs = Vec::new();
        for text in arguments {
            specs.push(ModelSpec::parse(text).map_err(anyhow::Error::msg)?);
        }
        let folder = data_dir.join("models");
        if folder.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(&folder)
                .with_context(|| format!("reading {}", folder.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "pt" || x == "pth" || x == "safetensors")
                })
                .collect();
            files.sort();
            for path in files {
                specs.push(family_of(&path)?);
            }
        }
        for spec in specs {
            let Some(path) = spec.weights() else {
                continue; // plain `photoz` is already there
            };
            let absolute = std::fs::canonicalize(path)
                .with_context(|| format!("--model {spec}: weights file {path}"))?;
            let bytes = std::fs::metadata(&absolute).map_or(0, |m| m.len());
            let absolute = absolute.display().to_string();
            let spec = match spec {
                ModelSpec::PhotoZ(_) => ModelSpec::PhotoZ(Some(absolute)),
                ModelSpec::AstroMae(_) => ModelSpec::AstroMae(absolute),
            };
            let served = Served::new(spec, bytes);
            // Loading now checks every tensor: a bad file stops the start, named.
            served
                .model()
                .map_err(|e| anyhow::anyhow!("--model {}: {e}", served.entry.name))?;
            if all.iter().any(|s| s.entry.name == served.entry.name) {
                bail!(
                    "two models are named {}: give the files different names",
                    served.entry.name
                );
            }
            all.push(served);
        }
        Ok(ServedModels { all })
    }

    pub fn entries(&self) -> Vec<ModelEntry> {
        self.all.iter().map(|s| s.entry.clone()).collect()
    }

    /// The run's `model` for an API name (default `photoz`), or what is wrong.
    pub fn resolve(&self, name: Option<&str>) -> Result<String, String> {
        let name = name.unwrap_or("photoz");
        self.all
            .iter()
            .find(|s| s.entry.name == name)
            .map(|s| s.spec.to_string())
            .ok_or_else(|| {
                format!(
                    "model '{name}' is not served here (GET /api/models lists: {})",
                    self.all
                        .iter()
                        .map(|s| s.entry.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// A file in `models/`: AstroMAE when it has AstroMAE's patch embedding, else PhotoZ.
fn family_of(path: &Path) -> Result<ModelSpec> {
    let weights = Weights::open(path)?;
    let text = path.display().to_string();
    Ok(if weights.contains("patch_embed.proj.weight") {
        ModelSpec::AstroMae(text)
    } else {
        ModelSpec::PhotoZ(Some(text))
    })
}

#[cfg(test)]
mod tests {
    use super::file_names_only;

    #[test]
    fn absolute_paths_are_cut_to_file_names() {
        assert_eq!(
            file_names_only("weights /home/u/models/a.pt: blocks.0 missing"),
            "weights a.pt: blocks.0 missing"
        );
    }
}
