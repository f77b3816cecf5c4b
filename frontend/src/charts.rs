//! Small charts: density scatter of predicted vs spectroscopic z (on the plots'
//! canvas component), and SVG histograms and bars.

use crate::plot::{CanvasPlot, Gesture, SIDE, Scale};
use cosmicai_shared::axis::{HAIR, RedshiftAxes, redshift_axes, tick_label, ticks};
use leptos::prelude::*;

const W: f64 = 360.0;
const H: f64 = 360.0;
const PAD: f64 = 40.0;

/// Outliers ringed on a scatter at most: the farthest off.
pub const MAX_OUTLIER_MARKS: usize = 300;

/// How far off a prediction is: |Δz| / (1 + z), the outliers' measure.
fn off(p: &(f32, f32, i64)) -> f32 {
    ((p.1 - p.0) / (1.0 + p.0)).abs()
}

/// Colour for a density in 0..=1 (dark blue → yellow, like viridis' ends).
fn colour(t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    [
        (68.0 + t * (253.0 - 68.0)) as u8,
        (1.0 + t * (231.0 - 1.0)) as u8,
        (84.0 + t * (37.0 - 84.0)) as u8,
    ]
}

/// Predicted (y) against spectroscopic (x) redshift on the plots' canvas component:
/// binned and coloured by how many points fall in each bin (log scale), with the
/// y = x line dashed. `outliers` (spectroscopic z, predicted z, object id: all
/// of them among the points) are counted; the farthest off within the axes,
/// [`MAX_OUTLIER_MARKS`] at most, are ringed in red on top: a click near one
/// opens its object, and the farthest are also links under the plot (for
/// keyboards and screen readers).
#[component]
pub fn DensityScatter(
    points: Vec<(f32, f32)>,
    #[prop(optional)] outliers: Vec<(f32, f32, i64)>,
) -> impl IntoView {
    const BIN: usize = 5; // pixels a side: 60 x 60 bins
    const LISTED: usize = 12;
    // A failed prediction (not a number) is counted, never drawn.
    let failed = points
        .iter()
        .filter(|(x, y)| !(x.is_finite() && y.is_finite()))
        .count();
    let points: Vec<(f32, f32)> = points
        .into_iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    // The axes end at a round value past 99.5% of the points (a few quasars at
    // z ≈ 7 would otherwise squeeze the galaxies into a corner), and reach below
    // 0 only for predictions well below it.
    let values: Vec<f64> = points
        .iter()
        .flat_map(|(a, b)| [*a as f64, *b as f64])
        .collect();
    let RedshiftAxes {
        low: min_z,
        high: max_z,
        step,
    } = redshift_axes(&values);
    let scale = |label| Scale {
        lo: min_z as f32,
        hi: max_z as f32,
        step: step as f32,
        label,
    };
    let (sx, sy) = (scale("spectroscopic z"), scale("predicted z"));
    let fits = |v: f32| f64::from(v) <= max_z && f64::from(v) >= min_z - HAIR;
    let inside = |x: f32, y: f32| fits(x) && fits(y);
    let above = points
        .iter()
        .filter(|(x, y)| f64::from(*x) > max_z || f64::from(*y) > max_z)
        .count();
    let below = points
        .iter()
        .filter(|(x, y)| !inside(*x, *y))
        .count()
        .saturating_sub(above);
    // A hair below the bottom is drawn on it; farther, not at all (counted).
    let low = min_z as f32;
    let onto = |v: f32| {
        if f64::from(v) >= min_z - HAIR {
            v.max(low)
        } else {
            v
        }
    };
    let points: Vec<(f32, f32)> = points.iter().map(|&(x, y)| (onto(x), onto(y))).collect();
    let outliers_total = outliers.len();
    // The farthest off first, as |Δz| / (1 + z) has it; those past the axes are
    // counted, not drawn.
    let mut outliers: Vec<(f32, f32, i64)> = outliers
        .into_iter()
        .filter(|(x, y, _)| inside(*x, *y))
        .collect();
    let outliers_beyond = outliers_total - outliers.len();
    outliers.sort_by(|a, b| off(b).total_cmp(&off(a)));
    let outliers_drawn = outliers.len();
    outliers.truncate(MAX_OUTLIER_MARKS);
    let outliers: Vec<(f32, f32, i64)> = outliers
        .into_iter()
        .map(|(x, y, id)| (onto(x), onto(y), id))
        .collect();
    // Pixels: log count per bin, the y = x line, then the outliers.
    let bins = SIDE / BIN;
    let mut counts = vec![0u32; bins * bins];
    let edge = SIDE as f64;
    for &(x, y) in &points {
        let (px, py) = (sx.pixel_of(x, false), sy.pixel_of(y, true));
        // The bottom is the edge itself (pixel SIDE): its bin is the last row.
        if (0.0..=edge).contains(&px) && (0.0..=edge).contains(&py) {
            let (bx, by) = (px as usize / BIN, py as usize / BIN);
            counts[by.min(bins - 1) * bins + bx.min(bins - 1)] += 1;
        }
    }
    let most = f64::from(counts.iter().copied().max().unwrap_or(1).max(1));
    let mut rgba = crate::plot::blank();
    for (i, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let rgb = colour((1.0 + f64::from(c)).ln() / (1.0 + most).ln());
        let (bx, by) = (i % bins * BIN, i / bins * BIN);
        for row in by..by + BIN {
            for col in bx..bx + BIN {
                let k = (row * SIDE + col) * 4;
                rgba[k..k + 3].copy_from_slice(&rgb);
            }
        }
    }
    for t in (0..SIDE).filter(|t| t % 8 < 5) {
        let k = ((SIDE - 1 - t) * SIDE + t) * 4;
        rgba[k..k + 3].copy_from_slice(&[221, 221, 221]);
    }
    for &(x, y, _) in &outliers {
        crate::plot::ring(&mut rgba, sx, sy, (x, y), [255, 107, 107]);
    }
    let marks = StoredValue::new(outliers.clone());
    // Every marked outlier's id, for tests and tools that read the page.
    let marked = outliers
        .iter()
        .map(|o| o.2.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let on_gesture = Callback::new(move |gesture| {
        if let Gesture::Click { pixel } = gesture {
            let near = marks.with_value(|m| {
                m.iter()
                    .map(|&(x, y, id)| {
                        let d = (sx.pixel_of(x, false) - pixel.0).powi(2)
                            + (sy.pixel_of(y, true) - pixel.1).powi(2);
                        (d, id)
                    })
                    .filter(|(d, _)| *d <= 36.0)
                    .min_by(|a, b| a.0.total_cmp(&b.0))
            });
            if let Some((_, id)) = near {
                crate::navigate(&format!("/object/{id}"));
            }
        }
    });
    let mut note = format!("{} points", points.len());
    if above > 0 {
        note += &format!("; {above} beyond z = {max_z}");
    }
    if below > 0 {
        note += &format!("; {below} below z = {}", tick_label(min_z));
    }
    if failed > 0 {
        note += &format!("; {failed} not a number (failed predictions)");
    }
    // The farthest off as links too (a keyboard cannot click a canvas).
    let mut worst = outliers.clone();
    let more = worst.len().saturating_sub(LISTED);
    worst.truncate(LISTED);
    let ringed = if outliers.len() < outliers_drawn {
        format!(
            "the {} farthest off on the plot are ringed in red",
            outliers.len()
        )
    } else {
        "those on the plot are ringed in red".to_string()
    };
    let beyond = if outliers_beyond > 0 {
        format!(" ({outliers_beyond} of them beyond the axes)")
    } else {
        String::new()
    };
    let said = format!(
        "{outliers_total} of the {} points are outliers (|Δz| / (1 + z) > 0.15){beyond}; {ringed}: click one to open it. The farthest off: ",
        points.len() + failed
    );
    // The colour scale, from a bin of one point to the fullest bin.
    let (dark, bright) = (colour(2f64.ln() / (1.0 + most).ln()), colour(1.0));
    let colour_bar = format!(
        "background:linear-gradient(to right,rgb({},{},{}),rgb({},{},{}))",
        dark[0], dark[1], dark[2], bright[0], bright[1], bright[2]
    );
    let links = (!worst.is_empty()).then(|| {
        view! {
            <p class="outliers">{said}
                {worst.into_iter().map(|(x, y, id)| view! {
                    <a class="outlier" href=format!("#/object/{id}") title=format!("spectroscopic z {x:.3}, predicted {y:.3}")>{id.to_string()}</a>" "
                }).collect_view()}
                {(more > 0).then(|| format!("and {more} more on the plot."))}
            </p>
        }
    });
    view! {
        <div class="scatter" data-points=points.len() data-beyond=above + below + failed data-outliers=marked>
            <CanvasPlot x=sx y=sy pixels=Signal::derive(move || rgba.clone()) on_gesture=on_gesture
                name="predicted against spectroscopic redshift" keys=("z_spec", "z_pred") clicks_only=true />
            {(most > 1.0).then(|| view! {
                <p class="note colour-scale">"points a bin: 1 "<span class="colour-bar" style=colour_bar aria-hidden="true"></span>{format!(" {most} (log scale)")}</p>
            })}
            <p class="note">{note}</p>
            {links}
        </div>
    }
}

/// A histogram of `values` over `[lo, hi]`.
#[component]
pub fn Histogram(values: Vec<f64>, lo: f64, hi: f64, label: String) -> impl IntoView {
    const BINS: usize = 50;
    let mut counts = [0u32; BINS];
    let mut outside = 0usize;
    for v in &values {
        let b = ((v - lo) / (hi - lo) * BINS as f64).floor();
        if b >= 0.0 && (b as usize) < BINS {
            counts[b as usize] += 1;
        } else {
            outside += 1;
        }
    }
    let fullest = counts.iter().copied().max().unwrap_or(0);
    let top = f64::from(fullest.max(1));
    let bw = (W - 2.0 * PAD) / BINS as f64;
    let aria = label.clone();
    view! {
        <svg class="chart histogram" viewBox=format!("0 0 {W} 220") width=W height=220 role="img" aria-label=aria>
            {counts.iter().enumerate().map(|(i, c)| {
                let h = (f64::from(*c) / top) * 150.0;
                view! { <rect x=PAD + i as f64 * bw y=180.0 - h width=bw - 1.0 height=h fill="#4a90d9" /> }
            }).collect_view()}
            // The y axis: from none to the fullest bin's count, said at its top.
            <line x1=PAD - 2.0 y1=30 x2=PAD - 2.0 y2=180 stroke="#888" />
            <line class="tick" x1=PAD - 6.0 y1=30 x2=PAD - 2.0 y2=30 stroke="#888" />
            <text class="tick" x=PAD - 8.0 y=184 text-anchor="end">"0"</text>
            <text class="tick" x=PAD + 2.0 y=27>{format!("{} in the fullest bin", cosmicai_shared::counted(fullest as usize, "object"))}</text>
            <text x=PAD y=196>{format!("{lo}")}</text>
            <text x=W - PAD y=196 text-anchor="end">{format!("{hi}")}</text>
            <text x=W / 2.0 y=214 text-anchor="middle">{label}</text>
            // Said, not dropped: the tails are where the outliers are.
            {(outside > 0).then(|| view! {
                <text class="outside" x=W - PAD y=12 text-anchor="end">{format!("{outside} of {} outside {lo} to {hi}", values.len())}</text>
            })}
        </svg>
    }
}

/// One horizontal bar per item: `(label, value)`, scaled to the largest,
/// under its `title` (what the bars measure).
#[component]
pub fn Bars(items: Vec<(String, f64)>, unit: String, title: String) -> impl IntoView {
    let top = items.iter().map(|(_, v)| *v).fold(1e-9, f64::max);
    let h = 22.0 * items.len() as f64 + 10.0;
    let caption = format!("{title} ({unit})");
    // Named once, by the caption it shows.
    let id = format!("bars-{}", title.replace(' ', "-"));
    view! {
        <figure class="bars-figure">
        <figcaption id=id.clone()>{caption}</figcaption>
        <svg class="chart bars" viewBox=format!("0 0 {W} {h}") width=W height=h role="img" aria-labelledby=id>
            {items.into_iter().enumerate().map(|(i, (name, v))| {
                let y = 5.0 + 22.0 * i as f64;
                view! {
                    <text x=0 y=y + 14.0>{name}</text>
                    <rect x=70 y=y width=(v / top) * (W - 170.0) height=16 fill="#e5a33d" />
                    <text x=75.0 + (v / top) * (W - 170.0) y=y + 13.0>{format!("{v:.2} {unit}")}</text>
                }
            }).collect_view()}
        </svg>
        </figure>
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
    // Room left of the y axis for ticks like 1.5e-4 beside the axis's title.
    const LEFT: f64 = 64.0;
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
    let sx = move |x: f64| LEFT + x / x_max * (W - LEFT - PAD);
    let sy = move |y: f64| H - PAD - y / y_max * (H - 2.0 * PAD);
    let aria = format!("{y_label} against {x_label}");
    view! {
        <svg class="chart lines" viewBox=format!("0 0 {W} {H}") width=W height=H role="img" aria-label=aria>
            <line x1=LEFT y1=H - PAD x2=W - PAD y2=H - PAD stroke="#888" />
            <line x1=LEFT y1=PAD x2=LEFT y2=H - PAD stroke="#888" />
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
                <line class="tick" x1=LEFT - 4.0 y1=sy(t) x2=LEFT y2=sy(t) stroke="#888" />
                <text class="tick" x=LEFT - 6.0 y=sy(t) + 4.0 text-anchor="end">{tick_label(t)}</text>
            }).collect_view()}
            {x_ticks.into_iter().map(|t| view! {
                <line class="tick" x1=sx(t) y1=H - PAD x2=sx(t) y2=H - PAD + 4.0 stroke="#888" />
                <text class="tick" x=sx(t) y=H - PAD + 15.0 text-anchor="middle">{tick_label(t)}</text>
            }).collect_view()}
        </svg>
    }
}
