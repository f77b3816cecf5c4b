//! Accuracy of redshift predictions, with the definitions photo-z papers use.
//!
//! With dz = (z_pred - z_spec) / (1 + z_spec):
//! - `nmad` = 1.4826 · median(|dz - median(dz)|), a robust scatter;
//! - `bias` = mean(dz);
//! - `outlier_frac_T` = fraction with |dz| > T (T = 0.05, 0.15);
//! - `mae`, `mse` = mean |z_pred - z_spec| and mean (z_pred - z_spec)²;
//! - `r2` = 1 - Σ(z_pred - z_spec)² / Σ(z_spec - mean z_spec)².

use crate::partition::ObjectRow;
use crate::predict::Prediction;
use cosmicai_shared::Class;
pub use cosmicai_shared::metrics::{Evaluation, RedshiftMetrics};

/// Scores `predictions` (one per row) against the rows' spectroscopic labels.
pub fn evaluate(rows: &[ObjectRow], predictions: &[Prediction]) -> Evaluation {
    let pairs = || rows.iter().zip(predictions);
    let of_class = |class: Option<Class>| {
        let (p, s): (Vec<f32>, Vec<f32>) = pairs()
            .filter(|(r, _)| class.is_none_or(|c| r.class == c))
            .map(|(r, p)| (p.redshift, r.redshift))
            .unzip();
        redshift_metrics(&p, &s)
    };
    let mut confusion = [[0usize; 3]; 3];
    for (r, p) in pairs() {
        if let (Some(t), Some(q)) = (class_index(r.class), class_index(p.class)) {
            confusion[t][q] += 1;
        }
    }
    let labelled: usize = confusion.iter().flatten().sum();
    let correct: usize = (0..3).map(|i| confusion[i][i]).sum();
    Evaluation {
        objects: rows.len(),
        galaxy: of_class(Some(Class::Galaxy)),
        qso: of_class(Some(Class::Qso)),
        all: of_class(None),
        class_accuracy: (labelled > 0).then(|| correct as f64 / labelled as f64),
        confusion,
    }
}

fn class_index(class: Class) -> Option<usize> {
    (class != Class::Unknown).then_some(class.code() as usize)
}

/// Metrics over pairs with a finite spectroscopic and predicted redshift; `None` if there are none.
pub fn redshift_metrics(predicted: &[f32], spectroscopic: &[f32]) -> Option<RedshiftMetrics> {
    let pairs: Vec<(f64, f64)> = predicted
        .iter()
        .zip(spectroscopic)
        .filter(|(p, s)| p.is_finite() && s.is_finite())
        .map(|(&p, &s)| (f64::from(p), f64::from(s)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let dz: Vec<f64> = pairs.iter().map(|(p, s)| (p - s) / (1.0 + s)).collect();
    let centre = median(dz.clone());
    let nmad = 1.4826 * median(dz.iter().map(|d| (d - centre).abs()).collect());
    let outliers = |t: f64| dz.iter().filter(|d| d.abs() > t).count() as f64 / n;
    let mean_spec = pairs.iter().map(|(_, s)| s).sum::<f64>() / n;
    let ss_res: f64 = pairs.iter().map(|(p, s)| (p - s).powi(2)).sum();
    let ss_tot: f64 = pairs.iter().map(|(_, s)| (s - mean_spec).powi(2)).sum();
    Some(RedshiftMetrics {
        n: pairs.len(),
        nmad,
        bias: dz.iter().sum::<f64>() / n,
        outlier_frac_0_05: outliers(0.05),
        outlier_frac_0_15: outliers(0.15),
        mae: pairs.iter().map(|(p, s)| (p - s).abs()).sum::<f64>() / n,
        mse: ss_res / n,
        r2: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            f64::NAN
        },
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    }
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
            (4, 0.0, 0.0, 0.0, 0.0, 1.0)
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
    fn unknown_redshifts_are_left_out() {
        assert!(redshift_metrics(&[0.1], &[f32::NAN]).is_none());
        assert_eq!(
            redshift_metrics(&[0.1, 0.2], &[f32::NAN, 0.2]).unwrap().n,
            1
        );
    }
}
