//! `cosmicai eval`: score PhotoZ on a labelled catalog.

use crate::models::{Cpu, load_photoz};
use anyhow::{Result, bail};
use clap::Args;
use cosmicai_engine::catalog::read_catalog;
use cosmicai_engine::metrics::{Evaluation, evaluate};
use cosmicai_engine::partition::ObjectRow;
use cosmicai_engine::predict::{Prediction, predict_photoz};
use cosmicai_engine::split::Split;
use cosmicai_shared::Class;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai eval --catalog assets/catalogs/skyserver_dr14.csv.gz --json\n  \
    cosmicai eval --catalog my_catalog.csv --split validation --plot inference.png\n\n\
    dz = (z_pred - z_spec)/(1 + z_spec); nmad = 1.4826 median(|dz - median(dz)|); bias = mean(dz);\n\
    outlier_frac_T = fraction with |dz| > T; mae, mse, r2 on z itself. Galaxy metrics are over\n\
    objects whose true class is GALAXY. --split validation scores only the objects training never fitted (train picks its best epoch on\n\
    them: the shipped weights' best epoch is their last).\n\
    galaxy_calibration (models with σ_z): the fraction of galaxies with |z_pred - z_spec| <= σ_z and\n\
    <= 2σ_z, and the outlier fraction among galaxies the model flags low-risk and high-risk.")]
pub struct EvalArgs {
    /// Catalog CSV (SkyServer or SDSS17 schema, .csv or .csv.gz) with class and redshift.
    #[arg(long)]
    pub catalog: PathBuf,
    /// PhotoZ weights (safetensors); the shipped ones by default.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Which objects to score: all, train or validation (the fixed split of `cosmicai train`).
    #[arg(long, value_enum, default_value_t = SplitArg::All)]
    pub split: SplitArg,
    /// Write the predicted vs spectroscopic redshift density scatter here (PNG),
    /// and, for a model with σ_z, its coverage plot beside it (NAME-coverage.png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SplitArg {
    All,
    Train,
    Validation,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::All => Split::All,
            SplitArg::Train => Split::Train,
            SplitArg::Validation => Split::Validation,
        }
    }
}

#[derive(Serialize)]
struct EvalReport {
    catalog: PathBuf,
    model: String,
    split: Split,
    #[serde(flatten)]
    evaluation: Evaluation,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let split = Split::from(args.split);
    let catalog = read_catalog(&args.catalog, &mut HashSet::new(), |_| {})?;
    let rows: Vec<ObjectRow> = catalog
        .objects
        .into_iter()
        .filter(|o| o.class != Class::Unknown && split.contains(o.object_id))
        .collect();
    if rows.is_empty() {
        bail!(
            "{}: no labelled objects in the {split:?} split",
            args.catalog.display()
        );
    }
    let model = load_photoz(args.model.as_deref())?;
    let mags: Vec<[f32; 5]> = rows.iter().map(|r| r.magnitudes).collect();
    let predictions: Vec<Prediction> =
        predict_photoz::<Cpu>(&model, &mags, args.batch_size, &Default::default());
    let evaluation = evaluate(&rows, &predictions);
    if let Some(path) = &args.plot {
        let (spec, pred): (Vec<f32>, Vec<f32>) = rows
            .iter()
            .zip(&predictions)
            .filter(|(r, _)| r.class == Class::Galaxy && r.redshift.is_finite())
            .map(|(r, p)| (r.redshift, p.redshift))
            .unzip();
        crate::plot::density_scatter(path, &spec, &pred, "PhotoZ on galaxies")?;
        let normalized: Vec<f64> = rows
            .iter()
            .zip(&predictions)
            .filter(|(r, _)| r.class == Class::Galaxy && r.redshift.is_finite())
            .filter_map(|(r, p)| {
                let sigma = p.redshift_sigma.filter(|s| s.is_finite() && *s > 0.0)?;
                Some(f64::from((p.redshift - r.redshift).abs() / sigma))
            })
            .collect();
        if !normalized.is_empty() {
            let stem = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            let coverage = path.with_file_name(format!("{stem}-coverage.png"));
            crate::plot::coverage_chart(
                &coverage,
                &normalized,
                "PhotoZ σ_z on galaxies: coverage",
            )?;
        }
    }
    let report = EvalReport {
        catalog: args.catalog.clone(),
        model: args
            .model
            .as_ref()
            .map_or("shipped photoz".into(), |p| p.display().to_string()),
        split,
        evaluation,
    };
    if args.json {
        crate::output::emit(&(serde_json::to_string(&report)? + "\n"))?;
    } else {
        let e = &report.evaluation;
        let mut out = String::new();
        crate::line!(
            out,
            "{}: {} objects ({:?} split), class accuracy {:.4}",
            report.catalog.display(),
            e.objects,
            split,
            e.class_accuracy.unwrap_or(f64::NAN)
        );
        for (name, m) in [("galaxies", &e.galaxy), ("QSOs", &e.qso), ("all", &e.all)] {
            if let Some(m) = m {
                crate::line!(
                    out,
                    "  {name:9} n {:>6}  NMAD {:.4}  bias {:+.4}  out>0.05 {:.3}  out>0.15 {:.3}  MAE {:.4}  MSE {:.4}  R2 {}",
                    m.n,
                    m.nmad,
                    m.bias,
                    m.outlier_frac_0_05,
                    m.outlier_frac_0_15,
                    m.mae,
                    m.mse,
                    m.r2.map_or_else(|| "-".into(), |r| format!("{r:.3}"))
                );
            }
        }
        if let Some(c) = &e.galaxy_calibration {
            let frac = |f: Option<f64>| f.map_or_else(|| "-".into(), |f| format!("{f:.3}"));
            crate::line!(
                out,
                "  σ_z        galaxies within 1σ {:.3} (Gaussian 0.683), within 2σ {:.3} (0.954); outliers>0.15: low-risk {} of {}, high-risk {} of {} (outlier chance > {:.2})",
                c.within_1_sigma,
                c.within_2_sigma,
                frac(c.low_risk.outlier_frac_0_15),
                c.low_risk.n,
                frac(c.high_risk.outlier_frac_0_15),
                c.high_risk.n,
                c.high_risk_above
            );
        }
        crate::output::emit(&out)?;
    }
    Ok(())
}
