//! Chart axes: round tick values, and a scale's top that a few outliers do not
//! set (quasars up to z ≈ 7 would squeeze a run's galaxies into a corner).

/// Round values from 0 to at least `max`, about `count` steps apart, each step
/// 1, 2 or 5 × 10^k; just `[0]` when `max` is not a positive number.
pub fn ticks(max: f64, count: usize) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0];
    }
    let raw = max / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    // The step in units of `magnitude`: 1, 2, 5 or 10.
    let units = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| m * magnitude >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0);
    let steps = (max / (units * magnitude) - 1e-9).ceil().max(1.0) as usize;
    // Whole numbers scaled once, so the third tick of 0.1 reads 0.3, not
    // 0.30000000000000004.
    let per_unit = (1.0 / magnitude).round();
    (0..=steps)
        .map(|i| {
            let k = i as f64 * units;
            if magnitude < 1.0 {
                k / per_unit
            } else {
                k * magnitude
            }
        })
        .collect()
}

/// A tick's label, short enough for a chart's margin: `0.2`, `4`, `2e-5`,
/// `1.5e-4` (three significant digits at most, so no two ticks read alike).
pub fn tick_label(t: f64) -> String {
    if t != 0.0 && t.abs() < 0.01 {
        let text = format!("{t:.2e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        format!("{mantissa}e{exponent}")
    } else {
        format!("{t}")
    }
}

/// The `q` quantile (0 to 1) of the finite values, or `None` when there are none.
pub fn quantile(values: impl IntoIterator<Item = f64>, q: f64) -> Option<f64> {
    let mut finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    finite.sort_by(f64::total_cmp);
    let at = (q.clamp(0.0, 1.0) * (finite.len() - 1) as f64).round() as usize;
    Some(finite[at])
}

/// How far below z = 0 a redshift is still drawn on the axis (stars' spectra).
pub const HAIR: f64 = 0.01;

/// The axes of a predicted-against-spectroscopic redshift chart, the same both
/// ways: from `low` to `high` in round steps of `step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedshiftAxes {
    pub low: f64,
    pub high: f64,
    pub step: f64,
}

/// The axes for `values` (non-finite ones left out). The top is a round value
/// past 99.5% of them (at least 0.1). The bottom is 0, or, where more than 0.5%
/// of them lie well below 0 (an untrained or failing model's predictions), a
/// whole step below them: hidden on the axis, they would look like z = 0. The
/// step is a round fifth or so of the whole span, so the ticks stay few.
pub fn redshift_axes(values: &[f64]) -> RedshiftAxes {
    let top = quantile(values.iter().copied(), 0.995)
        .unwrap_or(1.0)
        .max(0.1);
    let bottom = quantile(values.iter().copied(), 0.005)
        .unwrap_or(0.0)
        .min(0.0);
    let bottom = if bottom < -HAIR { bottom } else { 0.0 };
    let step = *ticks(top - bottom, 5).get(1).unwrap_or(&top);
    // Whole steps, as `ticks` counts them: -0.6, not -0.6000000000000001.
    let round = |v: f64| (v * 1e9).round() / 1e9 + 0.0;
    RedshiftAxes {
        low: round(-step * (-bottom / step - 1e-9).ceil()),
        high: round(step * (top / step - 1e-9).ceil()),
        step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redshift_axes_reach_below_zero_only_for_predictions_well_below_it() {
        // Galaxies, and stars a hair below 0: the axes start at 0.
        let mut z: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        z.extend([-0.004; 3]);
        let a = redshift_axes(&z);
        assert_eq!((a.low, a.high, a.step), (0.0, 1.0, 0.2));
        // One in a hundred predicted at -0.5: the axes reach them, in round steps.
        z.extend([-0.5; 10]);
        let a = redshift_axes(&z);
        assert_eq!((a.low, a.high, a.step), (-0.5, 1.0, 0.5));
        // A failing model far below 0: few ticks still (a step from the span).
        let mut far = z.clone();
        far.extend([-50.0; 100]);
        let a = redshift_axes(&far);
        assert!((a.high - a.low) / a.step <= 12.0, "{a:?}");
        assert!(a.low <= -50.0 && a.high >= 1.0, "{a:?}");
        // Nothing, or nothing finite: 0 to 1.
        assert_eq!(
            redshift_axes(&[]),
            RedshiftAxes {
                low: 0.0,
                high: 1.0,
                step: 0.2
            }
        );
        assert_eq!(redshift_axes(&[f64::NAN]).high, 1.0);
    }

    #[test]
    fn ticks_are_round_and_reach_the_top() {
        assert_eq!(ticks(0.87, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(7.0, 5), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(ticks(1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(0.3, 3), [0.0, 0.1, 0.2, 0.3]);
        assert_eq!(ticks(0.0, 5), [0.0]);
        assert_eq!(ticks(f64::NAN, 5), [0.0]);
        let costs = ticks(0.000071, 4);
        assert_eq!(
            costs.iter().map(|&t| tick_label(t)).collect::<Vec<_>>(),
            ["0", "2e-5", "4e-5", "6e-5", "8e-5"]
        );
        assert_eq!(tick_label(0.2), "0.2");
        assert_eq!(tick_label(4.0), "4");
        // Steps of 5e-5: 1.5e-4 is not a second 1e-4 (or 2e-4).
        let costs = ticks(0.00019, 4);
        assert_eq!(
            costs.iter().map(|&t| tick_label(t)).collect::<Vec<_>>(),
            ["0", "5e-5", "1e-4", "1.5e-4", "2e-4"]
        );
    }

    #[test]
    fn the_top_quantile_ignores_a_few_outliers() {
        let mut z: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        z.extend([6.9, 7.0, f64::NAN]);
        let top = quantile(z, 0.995).unwrap();
        assert!((0.99..1.0).contains(&top), "{top}");
        assert_eq!(quantile([f64::NAN], 0.5), None);
    }
}
