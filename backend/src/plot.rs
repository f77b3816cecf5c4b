//! Plots people would rather look at than tables, drawn with plotters.

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans, bundled so plots draw text the same on every machine.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Registration only fails on a malformed font, and this one is bundled.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws a `width`×`height` picture with `draw`, then writes it to `path` as a
/// PNG through a temporary file, fsync and rename: a command killed midway
/// leaves the previous plot or none, never a torn one.
fn save_plot(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    draw(BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area())?;
    let png =
        cosmicai_engine::imagery::png::encode(width, height, 3, &pixels).map_err(|e| anyhow!(e))?;
    cosmicai_engine::partition::write_atomically(path, &png)
        .with_context(|| format!("writing {}", path.display()))
}

/// Bins per axis of the histogram that measures local density.
const DENSITY_BINS: usize = 80;

/// Predicted vs spectroscopic redshift like CAI's inference.png: points coloured
/// by local density (log scale, colour bar), the y = x line dashed.
pub fn density_scatter(path: &Path, spec: &[f32], pred: &[f32], title: &str) -> Result<()> {
    register_font();
    let points: Vec<(f64, f64)> = spec
        .iter()
        .zip(pred)
        .filter(|(s, p)| s.is_finite() && p.is_finite())
        .map(|(&s, &p)| (f64::from(s), f64::from(p)))
        .collect();
    if points.is_empty() {
        return Err(anyhow!(
            "nothing to plot: no object has both a spectroscopic and a predicted redshift"
        ));
    }
    // Axis range: up to the 99.5th percentile of both, so a few outliers do not squash the plot.
    let all = || points.iter().flat_map(|(s, p)| [*s, *p]);
    let at = |q: f64| cosmicai_shared::axis::quantile(all(), q).unwrap_or(0.0);
    let top = (at(0.995).max(0.05) * 1.05).min(at(1.0).max(0.05));
    let bottom = at(0.0).min(0.0);
    // Past the top (the worst outliers): counted in the caption, not drawn.
    let beyond = points.iter().filter(|(s, p)| *s > top || *p > top).count();
    let caption = if beyond > 0 {
        format!(
            "{title} (n = {}; {beyond} beyond z = {top:.2}, not drawn)",
            points.len()
        )
    } else {
        format!("{title} (n = {})", points.len())
    };

    let cell = |v: f64| {
        (((v - bottom) / (top - bottom) * DENSITY_BINS as f64) as usize).min(DENSITY_BINS - 1)
    };
    let mut counts = vec![0u32; DENSITY_BINS * DENSITY_BINS];
    for &(s, p) in points.iter().filter(|(s, p)| *s <= top && *p <= top) {
        counts[cell(s) * DENSITY_BINS + cell(p)] += 1;
    }
    let max_count = f64::from(*counts.iter().max().unwrap_or(&1)).max(1.0);
    let density = |s: f64, p: f64| {
        if s > top || p > top {
            1.0
        } else {
            f64::from(counts[cell(s) * DENSITY_BINS + cell(p)])
        }
    };
    // Dense points drawn last, on top.
    let mut shaded: Vec<(f64, f64, f64)> = points
        .iter()
        .map(|&(s, p)| (s, p, (density(s, p)).ln_1p() / max_count.ln_1p()))
        .collect();
    shaded.sort_by(|a, b| a.2.total_cmp(&b.2));

    save_plot(path, (900, 760), |root| {
        root.fill(&WHITE)?;
        let (main, bar) = root.split_horizontally(790);
        let mut chart = ChartBuilder::on(&main)
            .caption(caption, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(bottom..top, bottom..top)?;
        chart
            .configure_mesh()
            .x_desc("spectroscopic redshift")
            .y_desc("predicted redshift")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        chart.draw_series(
            shaded
                .iter()
                .filter(|(s, p, _)| *s <= top && *p <= top)
                .map(|&(s, p, d)| Circle::new((s, p), 2, ViridisRGB::get_color(d).filled())),
        )?;
        chart.draw_series(DashedLineSeries::new(
            vec![(bottom, bottom), (top, top)],
            8,
            6,
            BLACK.stroke_width(2),
        ))?;

        // Colour bar: objects per density cell, log scale.
        let mut legend = ChartBuilder::on(&bar)
            .margin_top(60)
            .margin_bottom(66)
            .margin_right(10)
            .y_label_area_size(50)
            .caption("objects/cell", ("sans-serif", 13))
            .build_cartesian_2d(0.0..1.0, (1.0f64..max_count + 1.0).log_scale())?;
        legend
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .label_style(("sans-serif", 13))
            .draw()?;
        let steps = 100;
        legend.draw_series((0..steps).map(|i| {
            let (lo, hi) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
            let value = |t: f64| (max_count + 1.0).powf(t);
            Rectangle::new(
                [(0.0, value(lo)), (1.0, value(hi))],
                ViridisRGB::get_color(lo).filled(),
            )
        }))?;
        root.present()?;
        Ok(())
    })
}

/// One point of a sweep: a world size, a device, what the run measured.
pub struct SweepPoint {
    pub world_size: usize,
    pub device: String,
    pub duration_s: f64,
    pub cost_usd: f64,
}

/// Duration and cost against world size, one line per device, side by side.
pub fn sweep_chart(path: &Path, points: &[SweepPoint], title: &str) -> Result<()> {
    register_font();
    if points.is_empty() {
        return Err(anyhow!("nothing to plot: the sweep has no finished runs"));
    }
    save_plot(path, (1200, 520), |root| {
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 24))?;
        let (left, right) = root.split_horizontally(600);
        let max_world = points.iter().map(|p| p.world_size).max().unwrap_or(1) as f64;
        let mut devices: Vec<&str> = points.iter().map(|p| p.device.as_str()).collect();
        devices.sort();
        devices.dedup();
        /// Which figure a panel shows, with its axis label.
        type Measure = (&'static str, fn(&SweepPoint) -> f64);
        let measures: [Measure; 2] = [
            ("duration (s)", |p| p.duration_s),
            ("cost (USD at AWS prices)", |p| p.cost_usd),
        ];
        let panels = [&left, &right]
            .into_iter()
            .zip(measures)
            .map(|(area, (label, value))| (area, label, value));
        for (area, label, value) in panels {
            let top = points.iter().map(value).fold(0.0, f64::max) * 1.15 + 1e-12;
            let mut chart = ChartBuilder::on(area)
                .margin(20)
                .x_label_area_size(45)
                .y_label_area_size(80)
                .build_cartesian_2d(0.5..max_world + 0.5, 0.0..top)?;
            chart
                .configure_mesh()
                .x_desc("world size (workers)")
                .y_desc(label)
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()?;
            for (i, device) in devices.iter().enumerate() {
                let colour = Palette99::pick(i).to_rgba();
                let mut series: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| p.device == *device)
                    .map(|p| (p.world_size as f64, value(p)))
                    .collect();
                series.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(series.clone(), colour.stroke_width(3)))?
                    .label(device.to_string())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                    });
                chart.draw_series(
                    series
                        .into_iter()
                        .map(|(x, y)| Circle::new((x, y), 5, colour.filled())),
                )?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()?;
        }
        root.present()?;
        Ok(())
    })
}

/// Whether σ_z can be trusted: the fraction of objects with |z_pred - z_spec| <= k σ_z
/// against k, beside what Gaussian errors of that σ would give (dashed).
/// `normalized` holds |z_pred - z_spec| / σ_z per object.
pub fn coverage_chart(path: &Path, normalized: &[f64], title: &str) -> Result<()> {
    register_font();
    let mut sorted: Vec<f64> = normalized
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if sorted.is_empty() {
        return Err(anyhow!("nothing to plot: no object has a σ_z"));
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let steps = 300;
    let k_max = 3.0;
    let covered = |k: f64| sorted.partition_point(|&v| v <= k) as f64 / n;
    save_plot(path, (800, 600), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..k_max, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("k (in units of the predicted σ_z)")
            .y_desc("fraction with |z_pred - z_spec| <= k σ_z")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        let ks = (0..=steps).map(|i| k_max * i as f64 / steps as f64);
        chart
            .draw_series(LineSeries::new(
                ks.clone().map(|k| (k, covered(k))),
                BLUE.stroke_width(3),
            ))?
            .label(format!("model ({} objects)", sorted.len()))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
        chart
            .draw_series(DashedLineSeries::new(
                ks.map(|k| (k, erf(k / std::f64::consts::SQRT_2))),
                8,
                6,
                BLACK.stroke_width(2),
            ))?
            .label("Gaussian errors of that σ")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        for (k, target) in [(1.0, 0.68), (2.0, 0.95)] {
            chart.draw_series(std::iter::once(Circle::new(
                (k, covered(k)),
                6,
                BLUE.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{:.3} at {k}σ (target {target})", covered(k)),
                (k + 0.05, covered(k) - 0.06),
                ("sans-serif", 15),
            )))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
        Ok(())
    })
}

/// The error function (Abramowitz and Stegun 7.1.26; absolute error under 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
        ] {
            assert!((super::erf(x) - want).abs() < 1e-6, "erf({x})");
            assert!((super::erf(-x) + want).abs() < 1e-6, "erf(-{x})");
        }
        // 1σ and 2σ of a Gaussian.
        assert!((super::erf(1.0 / std::f64::consts::SQRT_2) - 0.6827).abs() < 1e-4);
    }
}
