//! `cosmicai train`: train PhotoZ on real catalogs and write weights plus a model card.
//! With `--folds K` it cross-validates instead ([`cross_validate`]); with
//! `--real-cutouts` its image branch also learns from real labelled cutouts
//! ([`real_cutouts`]).

mod cross_validate;
mod real_cutouts;

use crate::models::Train;
use anyhow::{Context, Result, bail};
use clap::Args;
use cosmicai_engine::catalog::{Catalog, read_catalogs};
use cosmicai_engine::metrics::{Evaluation, evaluate};
use cosmicai_engine::partition::{ObjectRow, write_atomically};
use cosmicai_engine::predict::predict_photoz;
use cosmicai_engine::split::{Split, is_validation};
use cosmicai_model::photoz::train::{EpochReport, Examples, TrainConfig, train};
use cosmicai_model::photoz::{PhotoZ, PhotoZConfig};
use cosmicai_shared::Class;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Example (how the shipped weights were made):\n  \
    cosmicai train --catalog assets/catalogs/sdss17_star_classification.csv.gz assets/catalogs/skyserver_dr14.csv.gz \\\n    \
    --out assets/model --force\n\n\
    Objects whose id is divisible by 5 (a hash of RA/Dec, ~20%) form the fixed validation split:\n\
    they choose the epoch (early stopping) and give the model card's metrics, on real labels only.")]
pub struct TrainArgs {
    /// Real catalogs (CSV, .csv.gz) with class and spectroscopic redshift.
    #[arg(long, num_args = 1.., required = true)]
    pub catalog: Vec<PathBuf>,
    /// Directory for photoz.safetensors and photoz.card.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace weights already in --out.
    #[arg(long)]
    pub force: bool,
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub epochs: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Hidden layer width and count.
    #[arg(long, default_value_t = 256)]
    pub width: usize,
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Weight of the redshift loss against the class loss.
    #[arg(long, default_value_t = 2.0)]
    pub redshift_weight: f32,
    #[arg(long, default_value_t = 2e-3)]
    pub learning_rate: f64,
    /// Also train the image branch, on synthetic 32x32 cutouts rendered for every
    /// labelled object (the renderer with the bundled calibration). Real-label metrics
    /// stay magnitudes-only; the image figures are on synthetic cutouts and say so.
    #[arg(long, conflicts_with = "real_cutouts")]
    pub synthetic_cutouts: bool,
    /// Also train the image branch on real labelled cutouts: datasets made by
    /// `cosmicai ingest --frames … --catalog …` (after `cosmicai fetch`). A catalog
    /// object with a real cutout there shows it (half the time); the others train
    /// on magnitudes. The card reports the validation objects that have one, with
    /// their cutouts and on magnitudes alone: real labels, real pixels.
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub real_cutouts: Vec<PathBuf>,
    /// Without the redshift distribution head (no σ_z; the redshift of the most
    /// probable class's head), as PhotoZ was before it.
    #[arg(long)]
    pub no_pdf: bool,
    /// Instead of training once, cross-validate: K folds (by a hash of each
    /// object's id), each held out in turn while the others train. Prints each
    /// catalog's metrics, mean and spread over the folds, writes
    /// photoz.cv.json in --out, and no weights.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(2..=20))]
    pub cross_validate: Option<u32>,
    /// Cross-validation repeats, each with other folds.
    #[arg(long, default_value_t = 1, requires = "cross_validate", value_parser = clap::value_parser!(u32).range(1..=10))]
    pub repeats: u32,
    /// The first repeat's number (its folds): repeats never looked at while a
    /// configuration was chosen give figures that choice cannot have favoured.
    /// (Up to 100: the epoch-picking tenths are seeded from 1,000 on.)
    #[arg(long, default_value_t = 0, requires = "cross_validate", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub first_repeat: u32,
    /// Print the model card (or the cross-validation report) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How the image branch was trained and what it gives, on synthetic cutouts only.
#[derive(Serialize)]
struct CutoutUse {
    source: &'static str,
    side: usize,
    train: usize,
    validation: usize,
    /// Class accuracy on the validation objects at the chosen epoch, magnitudes only.
    validation_class_accuracy_magnitudes_only: f32,
    /// The same objects with their synthetic cutouts.
    validation_class_accuracy_with_synthetic_cutouts: Option<f32>,
}

/// `[5, CROP, CROP]` synthetic cutouts of `rows`, in order; each marked synthetic in the card.
fn render_cutouts(rows: &[ObjectRow], seed: u64) -> Vec<f32> {
    use cosmicai_engine::imagery::calibrate::Calibration;
    use cosmicai_engine::imagery::synth::Renderer;
    let side = cosmicai_model::crop::CROP;
    let renderer = Renderer::new(&Calibration::bundled(), side, seed);
    let mut out = vec![0.0; rows.len() * 5 * side * side];
    crate::commands::synth::render_rows(&renderer, 0, rows, &mut out);
    out
}

#[derive(Serialize)]
struct DataUse {
    file: PathBuf,
    rows: usize,
    train: usize,
    validation: usize,
}

#[derive(Serialize)]
struct ModelCard {
    model: &'static str,
    description: &'static str,
    weights: &'static str,
    weights_bytes: usize,
    /// Ties the card to its weights: they are written one after the other, and a
    /// card read beside other weights is refused rather than shown for them.
    weights_sha256: String,
    config: TrainConfig,
    /// burn backend the weights were trained on (same seed and backend, same bytes).
    trained_on: &'static str,
    data: Vec<DataUse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cutouts: Option<CutoutUse>,
    /// The image branch on real labelled cutouts (`--real-cutouts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    real_cutouts: Option<real_cutouts::RealCutoutUse>,
    split: &'static str,
    epochs_run: usize,
    best_epoch: usize,
    /// Metrics on the validation split of each catalog: real spectroscopic labels.
    validation: HashMap<String, Evaluation>,
    history: Vec<EpochReport>,
}

/// Rows usable for training: a known class and a finite redshift.
pub(crate) fn labelled(catalog: &Catalog) -> impl Iterator<Item = &ObjectRow> {
    catalog
        .objects
        .iter()
        .filter(|o| o.class != Class::Unknown && o.redshift.is_finite())
}

/// The labelled objects of every catalog, split into training and validation by
/// object id (`split::is_validation`), with what each catalog gave.
struct Labelled {
    train: Examples,
    valid: Examples,
    train_rows: Vec<ObjectRow>,
    valid_rows: Vec<ObjectRow>,
    data: Vec<DataUse>,
}

fn split_labelled(catalogs: &[Catalog]) -> Result<Labelled> {
    let mut l = Labelled {
        train: Examples::default(),
        valid: Examples::default(),
        train_rows: Vec::new(),
        valid_rows: Vec::new(),
        data: Vec::new(),
    };
    for catalog in catalogs {
        let (mut t, mut v) = (0, 0);
        for o in labelled(catalog) {
            let (set, rows) = if is_validation(o.object_id) {
                v += 1;
                (&mut l.valid, &mut l.valid_rows)
            } else {
                t += 1;
                (&mut l.train, &mut l.train_rows)
            };
            set.push(o.magnitudes, o.class.code(), o.redshift);
            rows.push(*o);
        }
        l.data.push(DataUse {
            file: catalog.report.file.clone(),
            rows: catalog.report.rows,
            train: t,
            validation: v,
        });
    }
    if l.train.is_empty() || l.valid.is_empty() {
        bail!("the catalogs hold no labelled objects to train and validate on");
    }
    Ok(l)
}

/// Metrics of `model` on each catalog's labelled objects that `held_out` picks (real labels).
pub(crate) fn validate<B: burn::prelude::Backend>(
    catalogs: &[Catalog],
    model: &PhotoZ<B>,
    device: &B::Device,
    held_out: impl Fn(&ObjectRow) -> bool,
) -> HashMap<String, Evaluation> {
    let mut validation = HashMap::new();
    for catalog in catalogs {
        let rows: Vec<ObjectRow> = labelled(catalog).filter(|o| held_out(o)).copied().collect();
        let mags: Vec<[f32; 5]> = rows.iter().map(|r| r.magnitudes).collect();
        let predictions = predict_photoz(model, &mags, 4096, device);
        validation.insert(catalog_name(catalog), evaluate(&rows, &predictions));
    }
    validation
}

/// A catalog's file name, the key of its figures.
pub(crate) fn catalog_name(catalog: &Catalog) -> String {
    catalog
        .report
        .file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// The training configuration the flags describe.
pub(crate) fn config(args: &TrainArgs) -> TrainConfig {
    TrainConfig::new(
        PhotoZConfig::new()
            .with_width(args.width)
            .with_layers(args.layers)
            .with_cutout(args.synthetic_cutouts || !args.real_cutouts.is_empty())
            .with_redshift_pdf(!args.no_pdf),
    )
    .with_epochs(args.epochs as usize)
    .with_seed(args.seed)
    .with_batch_size(args.batch_size)
    .with_redshift_weight(args.redshift_weight)
    .with_learning_rate(args.learning_rate)
}

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(folds) = args.cross_validate {
        return cross_validate::run(&args, folds as usize);
    }
    let weights_path = args.out.join("photoz.safetensors");
    if weights_path.exists() && !args.force {
        bail!(
            "{} exists; pass --force to replace it",
            weights_path.display()
        );
    }
    let catalogs = read_catalogs(&args.catalog, |_, _| {})?;
    let Labelled {
        train: mut train_set,
        valid: mut valid_set,
        train_rows,
        valid_rows,
        data,
    } = split_labelled(&catalogs)?;
    if args.synthetic_cutouts {
        // Different seeds: validation cutouts never share noise with training ones.
        train_set.cutouts = Some(render_cutouts(&train_rows, args.seed));
        valid_set.cutouts = Some(render_cutouts(&valid_rows, args.seed ^ 0x5eed));
    }
    let real = if args.real_cutouts.is_empty() {
        None
    } else {
        let found = real_cutouts::read(&args.real_cutouts)?;
        let train_with = found.attach(&train_rows, &mut train_set);
        found.attach(&valid_rows, &mut valid_set);
        if train_with == 0 {
            bail!(
                "no training object of the catalogs has a real cutout in {} ({} real cutouts read): ingest the frames with --catalog and the same catalogs",
                real_cutouts::names(&args.real_cutouts),
                found.len()
            );
        }
        Some((found, train_with))
    };
    let config = config(&args);
    let bar = ProgressBar::new(args.epochs as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "training [{bar:30.cyan/blue}] epoch {pos}/{len} {msg} eta {eta}",
        )?
        .progress_chars("=> "),
    );
    let device = Default::default();
    let trained = train::<Train>(&config, &train_set, &valid_set, &device, |r| {
        bar.set_message(format!(
            "loss {:.4} val {:.4} acc {:.3}",
            r.train_loss, r.valid_loss, r.valid_class_accuracy
        ));
        bar.inc(1);
    });
    bar.finish_and_clear();
    let validation = validate(&catalogs, &trained.model, &device, |o| {
        Split::Validation.contains(o.object_id)
    });

    let metadata = HashMap::from([("seed".to_string(), args.seed.to_string())]);
    let bytes = trained
        .model
        .to_safetensors(metadata)
        .map_err(anyhow::Error::msg)?;
    cosmicai_engine::partition::create_dir_synced(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let chosen = trained
        .epochs
        .iter()
        .find(|e| e.epoch == trained.best_epoch);
    let real_cutouts = real
        .map(|(found, train_with)| {
            found.score(
                &args.real_cutouts,
                &valid_rows,
                &trained.model,
                &device,
                train_with,
            )
        })
        .transpose()?;
    let cutouts = args.synthetic_cutouts.then(|| CutoutUse {
        source: "synthetic: rendered by cosmicai's renderer from each object's catalog magnitudes, class and redshift, bundled calibration",
        side: cosmicai_model::crop::CROP,
        train: train_rows.len(),
        validation: valid_rows.len(),
        validation_class_accuracy_magnitudes_only: chosen.map_or(f32::NAN, |e| e.valid_class_accuracy),
        validation_class_accuracy_with_synthetic_cutouts: chosen
            .and_then(|e| e.valid_class_accuracy_with_cutouts),
    });
    let card = ModelCard {
        model: "photoz",
        description: "PhotoZ: class (GALAXY/STAR/QSO), redshift and sigma_z from SDSS ugriz magnitudes; an MLP over magnitudes and colours with a class head, a ln(1+z) head per class and, unless trained with --no-pdf, p(z) over 256 bins of ln(1+z) from which the redshift and sigma_z are read.",
        weights: "photoz.safetensors",
        weights_bytes: bytes.len(),
        weights_sha256: crate::models::sha256_hex(&bytes),
        config,
        trained_on: crate::models::TRAIN_BACKEND,
        data,
        cutouts,
        real_cutouts,
        split: "validation = objects whose id (hash of RA/Dec rounded to 1e-6 deg) is divisible by 5",
        epochs_run: trained.epochs.len(),
        best_epoch: trained.best_epoch,
        validation,
        history: trained.epochs,
    };
    let card_json = serde_json::to_string_pretty(&card)?;
    // A power cut leaves the old weights and card, or the new ones, never half a file.
    write_atomically(&weights_path, &bytes)
        .with_context(|| format!("writing {}", weights_path.display()))?;
    let card_path = args.out.join("photoz.card.json");
    write_atomically(&card_path, format!("{card_json}\n").as_bytes())
        .with_context(|| format!("writing {}", card_path.display()))?;
    if args.json {
        crate::output::emit(&(card_json + "\n"))
    } else {
        crate::output::emit(&report_text(&card, &weights_path, bytes.len()))
    }
}

fn report_text(card: &ModelCard, weights_path: &std::path::Path, bytes: usize) -> String {
    let mut out = String::new();
    crate::line!(
        out,
        "wrote {} ({bytes} bytes) and photoz.card.json; best epoch {} of {}",
        weights_path.display(),
        card.best_epoch,
        card.epochs_run
    );
    let mut names: Vec<_> = card.validation.keys().collect();
    names.sort();
    for name in names {
        let e = &card.validation[name];
        let g = e.galaxy.as_ref();
        crate::line!(
            out,
            "  {name} validation: {} objects, class accuracy {:.4}, galaxy NMAD {:.4}, outliers(0.15) {:.4}",
            e.objects,
            e.class_accuracy.unwrap_or(f64::NAN),
            g.map_or(f64::NAN, |g| g.nmad),
            g.map_or(f64::NAN, |g| g.outlier_frac_0_15)
        );
    }
    if let Some(r) = &card.real_cutouts {
        out.push_str(&r.report());
    }
    if let Some(c) = &card.cutouts {
        crate::line!(
            out,
            "  image branch, validation class accuracy on SYNTHETIC cutouts: {:.4} with the cutouts, {:.4} magnitudes only\n  (not an accuracy: the renderer drew each cutout from the object's class and redshift, so the gap measures the renderer, not what images add)",
            c.validation_class_accuracy_with_synthetic_cutouts
                .unwrap_or(f32::NAN),
            c.validation_class_accuracy_magnitudes_only
        );
    }
    out
}
