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
    /// None where the spectroscopic redshifts do not vary (one object, or all
    /// equal): the fraction has no denominator.
    #[serde(default)]
    pub r2: Option<f64>,
}

/// How well predictions match the labels of a set of objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evaluation {
    /// Objects counted: every object predicted, synthetic and unlabelled ones
    /// included (the groups below count those scored).
    pub objects: usize,
    /// Objects with a known redshift whose predicted redshift is not a number
    /// (the model failed on them): left out of the redshift metrics, and
    /// counted here so that leaving them out is seen.
    #[serde(default)]
    pub unscored: usize,
    /// Objects from CosmicAI's renderer: left out of every figure here, since
    /// their labels drew their images (accuracy is claimed on real labels only).
    #[serde(default)]
    pub synthetic: usize,
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
    /// How well σ_z and the outlier chance describe the galaxies' errors; for
    /// models that give a redshift distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galaxy_calibration: Option<Calibration>,
    /// The same figures over the validation split alone (objects whose id is
    /// divisible by 5), which `cosmicai train` never trains on: for a PhotoZ
    /// model, accuracy off its training set (its epoch was picked by their
    /// loss, so a little kinder than a wholly unseen set's). Absent for other models, whose
    /// training this does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOut>,
}

/// [`Evaluation::held_out`]: the validation split's objects and figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeldOut {
    /// Real objects of the split (renderings are never scored).
    pub objects: usize,
    pub galaxy: Option<RedshiftMetrics>,
    pub qso: Option<RedshiftMetrics>,
    pub all: Option<RedshiftMetrics>,
}

/// Whether a model's uncertainties can be trusted, over galaxies with σ_z.
/// For honest Gaussian-like errors, `within_1_sigma` is about 0.68 and
/// `within_2_sigma` about 0.95.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Calibration {
    pub n: usize,
    /// Fraction with |z_pred - z_spec| <= σ_z.
    pub within_1_sigma: f64,
    /// Fraction with |z_pred - z_spec| <= 2 σ_z.
    pub within_2_sigma: f64,
    /// The model's own outlier chance above which an object is flagged high-risk.
    pub high_risk_above: f64,
    pub low_risk: RiskGroup,
    pub high_risk: RiskGroup,
}

/// Galaxies flagged low- or high-risk, and how many of them are outliers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RiskGroup {
    pub n: usize,
    /// Fraction with |dz| > 0.15 (none when the group is empty).
    pub outlier_frac_0_15: Option<f64>,
}
