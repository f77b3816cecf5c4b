//! `cosmicai train --cross-validate K [--repeats R]`: how well a PhotoZ
//! configuration does on objects it never saw, over K folds and R repeats.
//!
//! One fixed split of a few thousand objects misled us before; every object here
//! is held out once per repeat. In each round the held-out fold is scored, a
//! tenth of the rest (another hash) picks the epoch, and the remainder trains.

use super::{TrainArgs, catalog_name, config, labelled, validate};
use crate::models::Train;
use anyhow::{Context, Result, bail};
use cosmicai_engine::catalog::read_catalogs;
use cosmicai_engine::metrics::Evaluation;
use cosmicai_engine::partition::write_atomically;
use cosmicai_engine::split::fold;
use cosmicai_model::photoz::train::{Examples, TrainConfig, train};
use serde::Serialize;
use std::collections::BTreeMap;

/// The figures of one held-out fold of one catalog (galaxies for the redshift ones).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub galaxy_nmad: Option<f64>,
    pub galaxy_bias: Option<f64>,
    pub galaxy_outlier_frac_0_15: Option<f64>,
    pub class_accuracy: Option<f64>,
    /// Fraction of galaxies with |z_pred - z_spec| <= σ_z (and 2 σ_z).
    pub within_1_sigma: Option<f64>,
    pub within_2_sigma: Option<f64>,
    /// Outlier fraction among galaxies the model flags low-risk, and high-risk.
    pub low_risk_outlier_frac: Option<f64>,
    pub high_risk_outlier_frac: Option<f64>,
    /// Share of galaxies flagged high-risk.
    pub high_risk_share: Option<f64>,
}

impl Figures {
    fn of(e: &Evaluation) -> Figures {
        let g = e.galaxy.as_ref();
        let c = e.galaxy_calibration.as_ref();
        Figures {
            galaxy_nmad: g.map(|g| g.nmad),
            galaxy_bias: g.map(|g| g.bias),
            galaxy_outlier_frac_0_15: g.map(|g| g.outlier_frac_0_15),
            class_accuracy: e.class_accuracy,
            within_1_sigma: c.map(|c| c.within_1_sigma),
            within_2_sigma: c.map(|c| c.within_2_sigma),
            low_risk_outlier_frac: c.and_then(|c| c.low_risk.outlier_frac_0_15),
            high_risk_outlier_frac: c.and_then(|c| c.high_risk.outlier_frac_0_15),
            high_risk_share: c.map(|c| c.high_risk.n as f64 / c.n.max(1) as f64),
        }
    }

    fn fields(&mut self) -> [&mut Option<f64>; 9] {
        [
            &mut self.galaxy_nmad,
            &mut self.galaxy_bias,
            &mut self.galaxy_outlier_frac_0_15,
            &mut self.class_accuracy,
            &mut self.within_1_sigma,
            &mut self.within_2_sigma,
            &mut self.low_risk_outlier_frac,
            &mut self.high_risk_outlier_frac,
            &mut self.high_risk_share,
        ]
    }
}

/// Mean and sample standard deviation of each figure over the folds that have it.
fn mean_and_spread(folds: &[Figures]) -> (Figures, Figures) {
    let (mut mean, mut sd) = (Figures::default(), Figures::default());
    let mut folds = folds.to_vec();
    for k in 0..9 {
        let values: Vec<f64> = folds
            .iter_mut()
            .filter_map(|f| *f.fields()[k])
            .filter(|v| v.is_finite())
            .collect();
        if values.is_empty() {
            continue;
        }
        let n = values.len() as f64;
        let m = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        *mean.fields()[k] = Some(m);
        *sd.fields()[k] = Some(var.sqrt());
    }
    (mean, sd)
}

#[derive(Serialize)]
struct CatalogFigures {
    mean: Figures,
    /// Standard deviation over the folds.
    sd: Figures,
    folds: Vec<Figures>,
}

#[derive(Serialize)]
struct Report {
    folds: usize,
    repeats: u32,
    first_repeat: u32,
    scheme: &'static str,
    config: TrainConfig,
    catalogs: BTreeMap<String, CatalogFigures>,
}

/// The early-stopping share of the training side: another hash, a tenth.
fn picks_epoch(object_id: i64, repeat: u64) -> bool {
    fold(object_id, repeat + 1_000, 10) == 0
}

pub fn run(args: &TrainArgs, folds: usize) -> Result<()> {
    if args.synthetic_cutouts || !args.real_cutouts.is_empty() {
        bail!(
            "--cross-validate scores real labels on magnitudes; it does not take --synthetic-cutouts or --real-cutouts"
        );
    }
    let catalogs = read_catalogs(&args.catalog, |_, _| {})?;
    let config = config(args);
    let rounds = folds as u64 * u64::from(args.repeats);
    let bar = crate::progress::count_bar(rounds * config.epochs as u64, "epochs");
    let device = Default::default();
    let mut per_catalog: BTreeMap<String, Vec<Figures>> = BTreeMap::new();
    let first = u64::from(args.first_repeat);
    for repeat in first..first + u64::from(args.repeats) {
        for k in 0..folds {
            let held_out = |id: i64| fold(id, repeat, folds) == k;
            let (mut train_set, mut valid_set) = (Examples::default(), Examples::default());
            for o in catalogs.iter().flat_map(labelled) {
                if held_out(o.object_id) {
                    continue;
                }
                let set = if picks_epoch(o.object_id, repeat) {
                    &mut valid_set
                } else {
                    &mut train_set
                };
                set.push(o.magnitudes, o.class.code(), o.redshift);
            }
            if train_set.is_empty() || valid_set.is_empty() {
                bail!("the catalogs hold too few labelled objects for {folds} folds");
            }
            bar.set_message(format!("repeat {} fold {}", repeat + 1, k + 1));
            let trained = train::<Train>(&config, &train_set, &valid_set, &device, |_| bar.inc(1));
            // Early stopping skips epochs: keep the bar's total honest.
            let done = ((repeat - first) * folds as u64 + k as u64 + 1) * config.epochs as u64;
            bar.set_position(done);
            let scores = validate(&catalogs, &trained.model, &device, |o| {
                held_out(o.object_id)
            });
            for catalog in &catalogs {
                let name = catalog_name(catalog);
                if let Some(e) = scores.get(&name) {
                    per_catalog.entry(name).or_default().push(Figures::of(e));
                }
            }
        }
    }
    bar.finish_and_clear();
    let report = Report {
        folds,
        repeats: args.repeats,
        first_repeat: args.first_repeat,
        scheme: "fold = SplitMix64(object_id + (repeat + 1) * 0x9e3779b97f4a7c15) mod K; each fold held out in turn; the epoch is picked on a tenth of the rest (fold(id, repeat + 1000, 10) == 0)",
        config,
        catalogs: per_catalog
            .into_iter()
            .map(|(name, folds)| {
                let (mean, sd) = mean_and_spread(&folds);
                (name, CatalogFigures { mean, sd, folds })
            })
            .collect(),
    };
    let json = serde_json::to_string_pretty(&report)?;
    cosmicai_engine::partition::create_dir_synced(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let path = args.out.join("photoz.cv.json");
    write_atomically(&path, format!("{json}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    if args.json {
        return crate::output::emit(&(json + "\n"));
    }
    let mut out = String::new();
    crate::line!(
        out,
        "{folds}-fold cross-validation x {} repeats from repeat {} ({} rounds); mean ± sd over folds; wrote {}",
        args.repeats,
        args.first_repeat,
        rounds,
        path.display()
    );
    let show = |m: Option<f64>, s: Option<f64>| match (m, s) {
        (Some(m), Some(s)) => format!("{m:.4} ± {s:.4}"),
        _ => "-".into(),
    };
    for (name, c) in &report.catalogs {
        let (m, s) = (&c.mean, &c.sd);
        crate::line!(out, "  {name}:");
        crate::line!(
            out,
            "    galaxies NMAD {}  bias {}  outliers(0.15) {}",
            show(m.galaxy_nmad, s.galaxy_nmad),
            show(m.galaxy_bias, s.galaxy_bias),
            show(m.galaxy_outlier_frac_0_15, s.galaxy_outlier_frac_0_15)
        );
        crate::line!(
            out,
            "    class accuracy {}",
            show(m.class_accuracy, s.class_accuracy)
        );
        if m.within_1_sigma.is_some() {
            crate::line!(
                out,
                "    within 1σ {}  within 2σ {}  outliers low-risk {}  high-risk {} ({} of galaxies)",
                show(m.within_1_sigma, s.within_1_sigma),
                show(m.within_2_sigma, s.within_2_sigma),
                show(m.low_risk_outlier_frac, s.low_risk_outlier_frac),
                show(m.high_risk_outlier_frac, s.high_risk_outlier_frac),
                show(m.high_risk_share, s.high_risk_share)
            );
        }
    }
    crate::output::emit(&out)
}
