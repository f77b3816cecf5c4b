//! Accuracy figures of redshift predictions (computed in `cosmicai-engine`'s
//! `metrics`; see there for the definitions).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedshiftMetrics {
    pub n: usize,
    pub nmad: f64,
    pub bias: f64,
    pub outlier_frac_0_05: f64,
    pub outlier_frac_0_15: f64,
    pub mae: f64,
    pub mse: f64,
    pub r2: f64,
}

/// How well predictions match the labels of a set of objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evaluation {
    /// Objects scored (known class, and redshift for the redshift metrics).
    pub objects: usize,
    /// Redshift metrics over objects whose true class is GALAXY.
    pub galaxy: Option<RedshiftMetrics>,
    /// Redshift metrics over QSOs.
    pub qso: Option<RedshiftMetrics>,
    /// Redshift metrics over every object with a known redshift.
    pub all: Option<RedshiftMetrics>,
    /// Fraction of objects with a known class whose predicted class is right;
    /// `None` when the model predicts no class (AstroMAE) or no object has a known one.
    #[serde(default)]
    pub class_accuracy: Option<f64>,
    /// `confusion[true][predicted]`, classes GALAXY, STAR, QSO.
    pub confusion: [[usize; 3]; 3],
}
