//! Accuracy of redshift predictions, with the definitions photo-z papers use.
//!
//! With dz = (z_pred - z_spec) / (1 + z_spec):
//! - `nmad` = 1.4826 · median(|dz - median(dz)|), a robust scatter;
//! - `bias` = mean(dz);
//! - `outlier_frac_T` = fraction with |dz| > T (T = 0.05, 0.15);
//! - `mae`, `mse` = mean |z_pred - z_spec| and mean (z_pred - z_spec)²;
//! - `r2` = 1 - Σ(z_pred - z_spec)² / Σ(z_spec - mean z_spec)² (none where z_spec
//!   does not vary).
//!
//! A spectroscopic redshift is a label only in [`LABELS`]: survey sentinels
//! (-9999) and z <= -1 would make dz meaningless. An object with a label whose
//! prediction is not a number is counted as `unscored`, never dropped unseen;
//! an object from the renderer as `synthetic`, and never scored.

mod medians;

use crate::partition::ObjectRow;
use crate::predict::Prediction;
use cosmicai_shared::Class;
pub use cosmicai_shared::metrics::{Calibration, Evaluation, HeldOut, RedshiftMetrics, RiskGroup};

/// Spectroscopic redshifts taken as labels: SDSS's stars reach slightly below
/// 0, its quasars about 7.
pub const LABELS: std::ops::RangeInclusive<f32> = -0.1..=12.0;

/// Objects whose own outlier chance is above this are high-risk (PhotoZ's `pdf::HIGH_RISK`).
pub const HIGH_RISK: f64 = cosmicai_model::photoz::pdf::HIGH_RISK;

/// Scores `predictions` (one per row) against the rows' spectroscopic labels.
pub fn evaluate(rows: &[ObjectRow], predictions: &[Prediction]) -> Evaluation {
    let mut scorer = Scorer::default();
    for (r, p) in rows.iter().zip(predictions) {
        scorer.add(r.redshift, r.class, p);
    }
    scorer.finish()
}

/// The [`Evaluation`] gathered one object at a time, so a run's Summarize never
/// holds its predictions: sums for the means, and each group's residuals (all,
/// and galaxy or QSO) for the two medians of NMAD, exact up to 4 million a group
/// and then rounded to 12 significant bits in 8 MiB of counts (`metrics/medians.rs`).
#[derive(Debug, Default)]
pub struct Scorer {
    objects: usize,
    unscored: usize,
    synthetic: usize,
    confusion: [[usize; 3]; 3],
    galaxy: GroupSums,
    qso: GroupSums,
    all: GroupSums,
    calibration: CalibrationCounts,
    /// The validation split's own scorer, where the model's training is known
    /// to have left it out ([`Scorer::with_held_out`]).
    held_out: Option<Box<Scorer>>,
}

/// Counts behind [`Calibration`].
#[derive(Debug, Default)]
struct CalibrationCounts {
    n: usize,
    within: [usize; 2],
    /// Low risk, then high risk: objects and outliers.
    risk: [(usize, usize); 2],
}

impl Scorer {
    /// A scorer that also scores the validation split apart (objects
    /// `cosmicai train` never trains on: [`crate::split::is_validation`]).
    pub fn with_held_out() -> Self {
        Scorer {
            held_out: Some(Box::default()),
            ..Default::default()
        }
    }

    /// [`Scorer::add`] for object `object_id`, scored in the validation split
    /// too where it is in it and this scorer keeps one.
    pub fn add_object(
        &mut self,
        object_id: i64,
        spectroscopic: f32,
        class: Class,
        predicted: &Prediction,
    ) {
        self.add(spectroscopic, class, predicted);
        if let Some(held_out) = self
            .held_out
            .as_mut()
            .filter(|_| crate::split::is_validation(object_id))
        {
            held_out.add(spectroscopic, class, predicted);
        }
    }

    /// One object: its spectroscopic redshift and class (NaN / Unknown when not
    /// known) and what the model predicted.
    pub fn add(&mut self, spectroscopic: f32, class: Class, predicted: &Prediction) {
        self.objects += 1;
        if let (Some(t), Some(q)) = (class_index(class), class_index(predicted.class)) {
            self.confusion[t][q] += 1;
        }
        let (p, s) = (predicted.redshift, spectroscopic);
        if !LABELS.contains(&s) {
            return;
        }
        if !p.is_finite() {
            self.unscored += 1;
            return;
        }
        self.all.add(p, s);
        match class {
            Class::Galaxy => {
                self.galaxy.add(p, s);
                if let Some(sigma) = predicted
                    .redshift_sigma
                    .filter(|s| s.is_finite() && *s > 0.0)
                {
                    let c = &mut self.calibration;
                    c.n += 1;
                    c.within[0] += usize::from((p - s).abs() <= sigma);
                    c.within[1] += usize::from((p - s).abs() <= 2.0 * sigma);
                    let high = predicted
                        .outlier_probability
                        .is_some_and(|r| f64::from(r) > HIGH_RISK);
                    let group = &mut c.risk[usize::from(high)];
                    group.0 += 1;
                    group.1 += usize::from(((p - s) / (1.0 + s)).abs() > 0.15);
                }
            }
            Class::Qso => self.qso.add(p, s),
            _ => {}
        }
    }

    /// One object from the renderer: counted, never scored.
    pub fn add_synthetic(&mut self) {
        self.objects += 1;
        self.synthetic += 1;
    }

    pub fn objects(&self) -> usize {
        self.objects
    }

    pub fn finish(self) -> Evaluation {
        let labelled: usize = self.confusion.iter().flatten().sum();
        let correct: usize = (0..3).map(|i| self.confusion[i][i]).sum();
        Evaluation {
            objects: self.objects,
            unscored: self.unscored,
            synthetic: self.synthetic,
            galaxy: self.galaxy.finish(),
            qso: self.qso.finish(),
            all: self.all.finish(),
            class_accuracy: (labelled > 0).then(|| correct as f64 / labelled as f64),
            confusion: self.confusion,
            galaxy_calibration: self.calibration.finish(),
            held_out: self.held_out.map(|h| {
                let e = h.finish();
                HeldOut {
                    objects: e.objects,
                    galaxy: e.galaxy,
                    qso: e.qso,
                    all: e.all,
                }
            }),
        }
    }
}

impl CalibrationCounts {
    fn finish(self) -> Option<Calibration> {
        let group = |(n, outliers): (usize, usize)| RiskGroup {
            n,
            outlier_frac_0_15: (n > 0).then(|| outliers as f64 / n as f64),
        };
        (self.n > 0).then(|| Calibration {
            n: self.n,
            within_1_sigma: self.within[0] as f64 / self.n as f64,
            within_2_sigma: self.within[1] as f64 / self.n as f64,
            high_risk_above: HIGH_RISK,
            low_risk: group(self.risk[0]),
            high_risk: group(self.risk[1]),
        })
    }
}

fn class_index(class: Class) -> Option<usize> {
    (class != Class::Unknown).then_some(class.code() as usize)
}

/// One group's running sums, and its dz values for the medians.
#[derive(Debug, Default)]
struct GroupSums {
    dz: medians::Residuals,
    sum_dz: f64,
    outliers_0_05: usize,
    outliers_0_15: usize,
    abs_error: f64,
    squared_error: f64,
    /// Welford's running mean and sum of squared deviations of z_spec (for r2).
    mean_spec: f64,
    m2_spec: f64,
}

impl GroupSums {
    fn add(&mut self, predicted: f32, spectroscopic: f32) {
        let (p, s) = (f64::from(predicted), f64::from(spectroscopic));
        let dz = (p - s) / (1.0 + s);
        self.dz.push(dz as f32);
        self.sum_dz += dz;
        self.outliers_0_05 += usize::from(dz.abs() > 0.05);
        self.outliers_0_15 += usize::from(dz.abs() > 0.15);
        self.abs_error += (p - s).abs();
        self.squared_error += (p - s).powi(2);
        let n = self.dz.len() as f64;
        let delta = s - self.mean_spec;
        self.mean_spec += delta / n;
        self.m2_spec += delta * (s - self.mean_spec);
    }

    fn finish(self) -> Option<RedshiftMetrics> {
        let count = self.dz.len();
        let n = count as f64;
        let (_, spread) = self.dz.medians()?;
        Some(RedshiftMetrics {
            n: count,
            nmad: 1.4826 * spread,
            bias: self.sum_dz / n,
            outlier_frac_0_05: self.outliers_0_05 as f64 / n,
            outlier_frac_0_15: self.outliers_0_15 as f64 / n,
            mae: self.abs_error / n,
            mse: self.squared_error / n,
            r2: (self.m2_spec > 0.0).then(|| 1.0 - self.squared_error / self.m2_spec),
        })
    }
}

/// Metrics over pairs with a spectroscopic label (in [`LABELS`]) and a finite
/// prediction; `None` if there are none. (Runs stream objects into a
/// [`Scorer`]; this is the tests' way to the same sums.)
#[cfg(test)]
fn redshift_metrics(predicted: &[f32], spectroscopic: &[f32]) -> Option<RedshiftMetrics> {
    let mut residuals = GroupSums::default();
    for (&p, &s) in predicted.iter().zip(spectroscopic) {
        if p.is_finite() && LABELS.contains(&s) {
            residuals.add(p, s);
        }
    }
    residuals.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_predictions_have_zero_error_and_r2_one() {
        let z = [0.1, 0.5, 1.0, 2.0];
        let m = redshift_metrics(&z, &z).unwrap();
        assert_eq!(
            (m.n, m.nmad, m.bias, m.mae, m.mse, m.r2),
            (4, 0.0, 0.0, 0.0, 0.0, Some(1.0))
        );
    }

    #[test]
    fn definitions_match_hand_computed_values() {
        // dz = [0.1, -0.1, 0.0, 0.2] / (1 + z)
        let spec = [0.0f32, 0.0, 1.0, 1.0];
        let pred = [0.1f32, -0.1, 1.0, 1.4];
        let m = redshift_metrics(&pred, &spec).unwrap();
        // dz = [0.1, -0.1, 0.0, 0.2]; median 0.05; |dz - 0.05| = [0.05, 0.15, 0.05, 0.15] -> median 0.1
        assert!((m.nmad - 0.14826).abs() < 1e-6, "{}", m.nmad);
        assert!((m.bias - 0.05).abs() < 1e-6);
        assert_eq!(m.outlier_frac_0_05, 0.75);
        assert_eq!(m.outlier_frac_0_15, 0.25);
        assert!((m.mae - 0.15).abs() < 1e-6);
        assert!((m.mse - (0.01 + 0.01 + 0.0 + 0.16) / 4.0).abs() < 1e-6);
    }

    #[test]
    fn streamed_scores_equal_the_sorted_definitions() {
        // Many objects in a scrambled order, classes mixed, some unlabelled: the
        // scorer's medians and sums equal the textbook computation over sorted copies.
        let n = 10_001;
        let spec: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 400.0).collect();
        let pred: Vec<f32> = (0..n)
            .map(|i| spec[i] + (((i * 104_729) % 201) as f32 - 100.0) / 2000.0)
            .collect();
        let classes = [Class::Galaxy, Class::Star, Class::Qso, Class::Unknown];
        let mut scorer = Scorer::default();
        for i in 0..n {
            let p = Prediction::redshift_only(pred[i]);
            scorer.add(spec[i], classes[i % 4], &p);
        }
        let evaluation = scorer.finish();
        let dz: Vec<f64> = (0..n)
            .map(|i| (f64::from(pred[i]) - f64::from(spec[i])) / (1.0 + f64::from(spec[i])))
            .collect();
        let sorted_median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let m = v.len() / 2;
            if v.len() % 2 == 1 {
                v[m]
            } else {
                (v[m - 1] + v[m]) / 2.0
            }
        };
        let centre = sorted_median(dz.clone());
        let nmad = 1.4826 * sorted_median(dz.iter().map(|d| (d - centre).abs()).collect());
        let all = evaluation.all.unwrap();
        assert_eq!(all.n, n);
        assert!((all.nmad - nmad).abs() < 1e-6, "{} vs {nmad}", all.nmad);
        let bias = dz.iter().sum::<f64>() / n as f64;
        assert!((all.bias - bias).abs() < 1e-9);
        let mean: f64 = spec.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
        let ss_tot: f64 = spec.iter().map(|&s| (f64::from(s) - mean).powi(2)).sum();
        assert!((all.r2.unwrap() - (1.0 - all.mse * n as f64 / ss_tot)).abs() < 1e-9);
        // Every fourth object is a galaxy, and an even count exercises the
        // two-middle median.
        assert_eq!(evaluation.galaxy.unwrap().n, 2501);
        assert_eq!(evaluation.qso.unwrap().n, 2500);
        assert_eq!(evaluation.objects, n);
        assert_eq!(evaluation.class_accuracy, None);
    }

    #[test]
    fn the_validation_split_is_scored_apart_where_asked() {
        let mut scorer = Scorer::with_held_out();
        // Ids 0, 5, 10 are in the validation split; 1..4 are not. The held-out
        // galaxies are predicted exactly, the rest 0.5 off.
        for id in 0..11i64 {
            let held = crate::split::is_validation(id);
            let p = Prediction::redshift_only(if held { 0.2 } else { 0.7 });
            scorer.add_object(id, 0.2, Class::Galaxy, &p);
        }
        let e = scorer.finish();
        let held = e.held_out.unwrap();
        assert_eq!((held.objects, held.galaxy.as_ref().unwrap().n), (3, 3));
        assert_eq!(held.galaxy.unwrap().mae, 0.0);
        assert_eq!(e.galaxy.as_ref().unwrap().n, 11);
        assert!(e.galaxy.unwrap().mae > 0.3);
        // A scorer not asked keeps none.
        let mut plain = Scorer::default();
        plain.add_object(5, 0.2, Class::Galaxy, &Prediction::redshift_only(0.2));
        assert!(plain.finish().held_out.is_none());
    }

    #[test]
    fn unknown_redshifts_are_left_out() {
        assert!(redshift_metrics(&[0.1], &[f32::NAN]).is_none());
        assert_eq!(
            redshift_metrics(&[0.1, 0.2], &[f32::NAN, 0.2]).unwrap().n,
            1
        );
    }

    #[test]
    fn sentinel_labels_are_not_labels_and_failed_predictions_are_counted() {
        let mut scorer = Scorer::default();
        for (spec, pred) in [
            (0.1, 0.1),
            (-9999.0, 0.2),
            (-1.0, 0.2),
            (0.3, f32::NAN),
            (0.5, 0.5),
        ] {
            scorer.add(spec, Class::Galaxy, &Prediction::redshift_only(pred));
        }
        let e = scorer.finish();
        assert_eq!(e.galaxy.as_ref().unwrap().n, 2);
        assert!(e.galaxy.unwrap().bias.is_finite());
        assert_eq!(e.unscored, 1);
        assert_eq!(e.objects, 5);
    }

    #[test]
    fn one_object_or_one_redshift_has_no_r2_and_its_json_reads_back() {
        let m = redshift_metrics(&[0.2], &[0.1]).unwrap();
        assert_eq!(m.r2, None);
        assert_eq!(redshift_metrics(&[0.2, 0.3], &[0.1, 0.1]).unwrap().r2, None);
        // NaN was written as null, which the f64 field could not read back:
        // a run's summary.json was then unreadable.
        let text = serde_json::to_string(&m).unwrap();
        let read = serde_json::from_str::<RedshiftMetrics>(&text).unwrap();
        assert_eq!((read.n, read.r2), (1, None));
        // Summaries written before keep reading.
        let old = text.replace("\"r2\":null", "\"r2\":0.5");
        assert_eq!(
            serde_json::from_str::<RedshiftMetrics>(&old).unwrap().r2,
            Some(0.5)
        );
    }
}
