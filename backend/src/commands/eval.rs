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
    objects whose true class is GALAXY. --split validation scores only the objects training never saw.")]
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
    /// Write the predicted vs spectroscopic redshift density scatter here (PNG).
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
                    "  {name:9} n {:>6}  NMAD {:.4}  bias {:+.4}  out>0.05 {:.3}  out>0.15 {:.3}  MAE {:.4}  MSE {:.4}  R2 {:.3}",
                    m.n,
                    m.nmad,
                    m.bias,
                    m.outlier_frac_0_05,
                    m.outlier_frac_0_15,
                    m.mae,
                    m.mse,
                    m.r2
                );
            }
        }
        crate::output::emit(&out)?;
    }
    Ok(())
}
