//! Small SVG charts: density scatter of predicted vs spectroscopic z, histograms, bars.

use cosmicai_shared::axis::{quantile, tick_label, ticks};
use leptos::prelude::*;

const W: f64 = 360.0;
const H: f64 = 360.0;
const PAD: f64 = 40.0;

/// Colour for a density in 0..=1 (dark blue → yellow, like viridis' ends).
fn colour(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let (r, g, b) = (
        68.0 + t * (253.0 - 68.0),
        1.0 + t * (231.0 - 1.0),
        84.0 + t * (37.0 - 84.0),
    );
    format!("rgb({r:.0},{g:.0},{b:.0})")
}

/// Predicted (y) against spectroscopic (x) redshift, binned and coloured by how many
/// points fall in each bin (log scale), with the y = x line dashed. `outliers`
/// (spectroscopic z, predicted z, object id) are drawn on top as marks that open
/// their object.
#[component]
pub fn DensityScatter(
    points: Vec<(f32, f32)>,
    #[prop(optional)] outliers: Vec<(f32, f32, i64)>,
) -> impl IntoView {
    const BINS: usize = 60;
    // The axes end at a round value past 99.5% of the points: a few quasars at
    // z ≈ 7 would otherwise squeeze the galaxies into a corner.
    let top = quantile(
        points.iter().flat_map(|(a, b)| [*a as f64, *b as f64]),
        0.995,
    )
    .unwrap_or(1.0)
    .max(0.1);
    let ticks = ticks(top, 5);
    let max_z = ticks.last().copied().unwrap_or(top);
    let beyond = points
        .iter()
        .filter(|(x, y)| f64::from(*x) > max_z || f64::from(*y) > max_z)
        .count();
    let at = move |z: f64| z / max_z * (W - 2.0 * PAD);
    let tick_marks = ticks
        .iter()
        .map(|&t| {
            let label = tick_label(t);
            view! {
                <line class="tick" x1=PAD + at(t) y1=H - PAD x2=PAD + at(t) y2=H - PAD + 4.0 stroke="#888" />
                <text class="tick" x=PAD + at(t) y=H - PAD + 15.0 text-anchor="middle">{label.clone()}</text>
                <line class="tick" x1=PAD - 4.0 y1=H - PAD - at(t) x2=PAD y2=H - PAD - at(t) stroke="#888" />
                <text class="tick" x=PAD - 6.0 y=H - PAD - at(t) + 4.0 text-anchor="end">{label}</text>
            }
        })
        .collect_view();
    let mut counts = vec![0u32; BINS * BINS];
    for (x, y) in &points {
        let bx = ((*x as f64 / max_z) * BINS as f64).floor() as isize;
        let by = ((*y as f64 / max_z) * BINS as f64).floor() as isize;
        if (0..BINS as isize).contains(&bx) && (0..BINS as isize).contains(&by) {
            counts[by as usize * BINS + bx as usize] += 1;
        }
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let cell = (W - 2.0 * PAD) / BINS as f64;
    let cells = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| {
            let (bx, by) = ((i % BINS) as f64, (i / BINS) as f64);
            let t = (1.0 + *c as f64).ln() / (1.0 + top).ln();
            view! { <rect x=PAD + bx * cell y=H - PAD - (by + 1.0) * cell width=cell height=cell fill=colour(t) /> }
        })
        .collect_view();
    view! {
        <svg class="chart scatter" viewBox=format!("0 0 {W} {H}") width=W height=H role="img" aria-label="predicted against spectroscopic redshift">
            <rect x=PAD y=PAD width=W - 2.0 * PAD height=H - 2.0 * PAD fill="#111" />
            {cells}
            <line x1=PAD y1=H - PAD x2=W - PAD y2=PAD stroke="#ddd" stroke-dasharray="5,4" />
            <text x=W / 2.0 y=H - 8.0 text-anchor="middle">"spectroscopic z"</text>
            <text x=12 y=H / 2.0 transform=format!("rotate(-90 12 {})", H / 2.0) text-anchor="middle">"predicted z"</text>
            {tick_marks}
            {outliers.into_iter()
                .filter(|(x, y, _)| f64::from(*x) <= max_z && f64::from(*y) <= max_z)
                .map(|(x, y, id)| {
                    let open = move || crate::navigate(&format!("/object/{id}"));
                    let label = format!("object {id}: spectroscopic z {x:.3}, predicted {y:.3}; open it");
                    let title = label.clone();
                    view! {
                        <circle class="outlier" cx=PAD + at(f64::from(x)) cy=H - PAD - at(f64::from(y)) r="3.5"
                            fill="#ff6b6b" fill-opacity="0.2" stroke="#ff6b6b" stroke-width="1.5" tabindex="0" role="link" aria-label=label
                            on:click=move |_| open()
                            on:keydown=move |ev: web_sys::KeyboardEvent| if ev.key() == "Enter" { open() }>
                            <title>{title}</title>
                        </circle>
                    }
                })
                .collect_view()}
            <text x=W - PAD y=PAD - 6.0 text-anchor="end">{
                let shown = format!("{} points; colour: log count", points.len());
                if beyond > 0 { format!("{shown}; {beyond} beyond z = {max_z}") } else { shown }
            }</text>
        </svg>
    }
}

/// A histogram of `values` over `[lo, hi]`.
#[component]
pub fn Histogram(values: Vec<f64>, lo: f64, hi: f64, label: String) -> impl IntoView {
    const BINS: usize = 50;
    let mut counts = [0u32; BINS];
    for v in &values {
        let b = ((v - lo) / (hi - lo) * BINS as f64).floor();
        if b >= 0.0 && (b as usize) < BINS {
            counts[b as usize] += 1;
        }
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bw = (W - 2.0 * PAD) / BINS as f64;
    let aria = label.clone();
    view! {
        <svg class="chart histogram" viewBox=format!("0 0 {W} 220") width=W height=220 role="img" aria-label=aria>
            {counts.iter().enumerate().map(|(i, c)| {
                let h = (*c as f64 / top) * 150.0;
                view! { <rect x=PAD + i as f64 * bw y=180.0 - h width=bw - 1.0 height=h fill="#4a90d9" /> }
            }).collect_view()}
            <text x=PAD y=196>{format!("{lo}")}</text>
            <text x=W - PAD y=196 text-anchor="end">{format!("{hi}")}</text>
            <text x=W / 2.0 y=214 text-anchor="middle">{label}</text>
        </svg>
    }
}

/// One horizontal bar per item: `(label, value)`, scaled to the largest.
#[component]
pub fn Bars(items: Vec<(String, f64)>, unit: String) -> impl IntoView {
    let top = items.iter().map(|(_, v)| *v).fold(1e-9, f64::max);
    let h = 22.0 * items.len() as f64 + 10.0;
    let aria = unit.clone();
    view! {
        <svg class="chart bars" viewBox=format!("0 0 {W} {h}") width=W height=h role="img" aria-label=aria>
            {items.into_iter().enumerate().map(|(i, (name, v))| {
                let y = 5.0 + 22.0 * i as f64;
                view! {
                    <text x=0 y=y + 14.0>{name}</text>
                    <rect x=70 y=y width=(v / top) * (W - 170.0) height=16 fill="#e5a33d" />
                    <text x=75.0 + (v / top) * (W - 170.0) y=y + 13.0>{format!("{v:.2} {unit}")}</text>
                }
            }).collect_view()}
        </svg>
    }
}

/// Lines of `(x, y)` points, one per named series (e.g. duration against world size per device).
#[component]
pub fn LineChart(
    series: Vec<(String, Vec<(f64, f64)>)>,
    x_label: String,
    y_label: String,
) -> impl IntoView {
    const COLOURS: [&str; 4] = ["#e5534b", "#57ab5a", "#4a90d9", "#e5a33d"];
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let x_max = xs.clone().fold(1.0, f64::max);
    let y_ticks = ticks(
        series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
            .fold(1e-12, f64::max),
        4,
    );
    let y_max = y_ticks.last().copied().unwrap_or(1.0);
    // The x ticks are the x values themselves (world sizes).
    let mut x_ticks: Vec<f64> = xs.clone().collect();
    x_ticks.sort_by(f64::total_cmp);
    x_ticks.dedup();
    let sx = move |x: f64| PAD + x / x_max * (W - 2.0 * PAD);
    let sy = move |y: f64| H - PAD - y / y_max * (H - 2.0 * PAD);
    let aria = format!("{y_label} against {x_label}");
    view! {
        <svg class="chart lines" viewBox=format!("0 0 {W} {H}") width=W height=H role="img" aria-label=aria>
            <line x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD stroke="#888" />
            <line x1=PAD y1=PAD x2=PAD y2=H - PAD stroke="#888" />
            {series.into_iter().enumerate().map(|(i, (name, points))| {
                let colour = COLOURS[i % COLOURS.len()];
                let path = points.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect::<Vec<_>>().join(" ");
                view! {
                    <polyline points=path fill="none" stroke=colour stroke-width="2" />
                    {points.iter().map(|(x, y)| view! { <circle cx=sx(*x) cy=sy(*y) r="4" fill=colour /> }).collect_view()}
                    <text x=W - PAD y=PAD + 14.0 * i as f64 text-anchor="end" fill=colour>{name}</text>
                }
            }).collect_view()}
            <text x=W / 2.0 y=H - 8.0 text-anchor="middle">{x_label}</text>
            <text x=12 y=H / 2.0 transform=format!("rotate(-90 12 {})", H / 2.0) text-anchor="middle">{y_label}</text>
            {y_ticks.into_iter().map(|t| view! {
                <line class="tick" x1=PAD - 4.0 y1=sy(t) x2=PAD y2=sy(t) stroke="#888" />
                <text class="tick" x=PAD - 6.0 y=sy(t) + 4.0 text-anchor="end">{tick_label(t)}</text>
            }).collect_view()}
            {x_ticks.into_iter().map(|t| view! {
                <line class="tick" x1=sx(t) y1=H - PAD x2=sx(t) y2=H - PAD + 4.0 stroke="#888" />
                <text class="tick" x=sx(t) y=H - PAD + 15.0 text-anchor="middle">{tick_label(t)}</text>
            }).collect_view()}
        </svg>
    }
}
