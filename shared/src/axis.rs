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

/// A tick's label, short enough for a chart's margin: `0.2`, `4`, `2e-5`.
pub fn tick_label(t: f64) -> String {
    if t != 0.0 && t.abs() < 0.01 {
        format!("{t:.0e}")
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

#[cfg(test)]
mod tests {
    use super::*;

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
