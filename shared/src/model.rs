//! Which redshift model a run uses, as written in payloads and on the command line.
//!
//! - `photoz`: our own model with the weights every binary ships;
//! - `photoz:PATH`: PhotoZ with other weights (`cosmicai train`);
//! - `astromae:PATH`: AstroMAE, CAI's model, from a CAI checkpoint (`.pt`, as CAI
//!   ships it, or the safetensors `cosmicai model import` writes). On AWS, PATH is
//!   `s3://BUCKET/KEY` or a key in the run's bucket.

use crate::Class;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a redshift model says about one object: one type for the pipeline, the
/// server and the browser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// `Unknown` for a model that predicts no class (AstroMAE).
    pub class: Class,
    /// Probability of GALAXY, STAR, QSO (NaN for a model that predicts no class).
    pub class_probability: [f32; 3],
    pub redshift: f32,
    /// σ_z: the half-width of the narrowest interval around `redshift` holding
    /// 68.3% of the model's p(z), less the widths its representation adds (for
    /// an object taken for a quasar, at least half the one holding 95.45%), for
    /// models that give a distribution (PhotoZ with its distribution head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redshift_sigma: Option<f32>,
    /// The model's own chance that `redshift` is an outlier (|Δz|/(1+z) > 0.15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_probability: Option<f32>,
}

impl Prediction {
    /// A redshift without a class.
    pub fn redshift_only(redshift: f32) -> Self {
        Prediction {
            class: Class::Unknown,
            class_probability: [f32::NAN; 3],
            redshift,
            redshift_sigma: None,
            outlier_probability: None,
        }
    }

    /// This prediction with a redshift read from a distribution.
    pub fn with_distribution(self, redshift: f32, sigma: f32, outlier_probability: f32) -> Self {
        Prediction {
            redshift,
            redshift_sigma: Some(sigma),
            outlier_probability: Some(outlier_probability),
            ..self
        }
    }

    /// The class decision, made once for every caller: the most probable of
    /// GALAXY, STAR and QSO (the later one on a tie).
    pub fn from_probabilities(class_probability: [f32; 3], redshift: f32) -> Self {
        let best = (0..3)
            .max_by(|&a, &b| class_probability[a].total_cmp(&class_probability[b]))
            .unwrap_or(0);
        Prediction {
            class: Class::from_code(best as u8).unwrap_or(Class::Unknown),
            class_probability,
            redshift,
            redshift_sigma: None,
            outlier_probability: None,
        }
    }
}

/// A parsed model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// PhotoZ: the shipped weights (`None`) or a weight file.
    PhotoZ(Option<String>),
    /// AstroMAE from a checkpoint.
    AstroMae(String),
}

impl ModelSpec {
    /// Reads `photoz`, `photoz:PATH` or `astromae:PATH`; the error names the model.
    pub fn parse(text: &str) -> Result<ModelSpec, String> {
        let path = |p: &str| {
            if p.trim().is_empty() {
                Err(format!("model '{text}' names no weights file after ':'"))
            } else {
                Ok(p.to_string())
            }
        };
        match text.split_once(':') {
            None if text == "photoz" => Ok(ModelSpec::PhotoZ(None)),
            Some(("photoz", p)) => Ok(ModelSpec::PhotoZ(Some(path(p)?))),
            Some(("astromae", p)) => Ok(ModelSpec::AstroMae(path(p)?)),
            None if text == "astromae" => Err(
                "model 'astromae' needs its checkpoint: astromae:PATH (a CAI .pt or safetensors)"
                    .into(),
            ),
            _ => Err(format!(
                "model '{text}' is unknown (use photoz, photoz:PATH or astromae:PATH)"
            )),
        }
    }

    /// `photoz` or `astromae`.
    pub fn family(&self) -> &'static str {
        match self {
            ModelSpec::PhotoZ(_) => "photoz",
            ModelSpec::AstroMae(_) => "astromae",
        }
    }

    /// The weight file, when not the shipped one.
    pub fn weights(&self) -> Option<&str> {
        match self {
            ModelSpec::PhotoZ(p) => p.as_deref(),
            ModelSpec::AstroMae(p) => Some(p),
        }
    }

    /// Whether the model predicts a class as well as a redshift (AstroMAE does not).
    pub fn predicts_class(&self) -> bool {
        matches!(self, ModelSpec::PhotoZ(_))
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weights() {
            Some(p) => write!(f, "{}:{p}", self.family()),
            None => write!(f, "{}", self.family()),
        }
    }
}

impl std::str::FromStr for ModelSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ModelSpec::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips() {
        for text in [
            "photoz",
            "photoz:w.safetensors",
            "astromae:ckpt.pt",
            "astromae:s3://b/k.pt",
        ] {
            assert_eq!(ModelSpec::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            ModelSpec::parse("astromae:s3://b/k.pt").unwrap().weights(),
            Some("s3://b/k.pt")
        );
    }

    #[test]
    fn bad_names_are_explained() {
        assert!(
            ModelSpec::parse("gpt")
                .unwrap_err()
                .contains("'gpt' is unknown")
        );
        assert!(
            ModelSpec::parse("astromae")
                .unwrap_err()
                .contains("astromae:PATH")
        );
        assert!(
            ModelSpec::parse("photoz:")
                .unwrap_err()
                .contains("no weights")
        );
        assert!(ModelSpec::parse("photo:x").is_err());
    }
}
