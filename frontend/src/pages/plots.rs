//! Plots: colour–colour (u−g against g−r, g−r against r−i) and redshift against r
//! magnitude, every object coloured by class, linked. A box drawn on a plot is a
//! cut on its two axes; every plot then shows the objects that pass all cuts in
//! colour and the rest in grey. The cuts live in the link (`crate::cuts`), so
//! "Show in Explore" lists exactly the objects that pass, "Show on the sky" maps
//! them, and Explore's "Plots" link brings its filters here.

use super::ErrorMessage;
use super::predict::MAX_PICKED;
use crate::cuts::{Axis, Cuts, Values};
use cosmicai_shared::api::SkyPoints;
use leptos::prelude::*;

/// A plot's side in pixels, and its margins for ticks and labels.
const S: usize = 300;
const LEFT: f64 = 44.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 36.0;

/// The plots: (x, y).
const PANELS: [(Axis, Axis); 3] = [
    (Axis::Gr, Axis::Ug),
    (Axis::Ri, Axis::Gr),
    (Axis::R, Axis::Z),
];

/// The objects, as the plots need them.
struct Objects {
    ids: Vec<i64>,
    classes: Vec<u8>,
    synthetic: Vec<bool>,
    values: Vec<Values>,
}

/// Pixel of value `v` on an axis of `S` pixels (y grows downwards on screen).
fn to_pixel(axis: Axis, v: f32, vertical: bool) -> f64 {
    let (lo, hi, _) = axis.range();
    let t = f64::from((v - lo) / (hi - lo)) * S as f64;
    if vertical { S as f64 - t } else { t }
}

fn from_pixel(axis: Axis, p: f64, vertical: bool) -> f32 {
    let (lo, hi, _) = axis.range();
    let t = if vertical { S as f64 - p } else { p } / S as f64;
    lo + (hi - lo) * t as f32
}

/// One plot as RGBA: failing objects grey underneath, passing ones in their
/// class's colour, and the plot's own cut as a box.
fn render(objects: &Objects, pass: &[bool], x: Axis, y: Axis, cuts: &Cuts) -> Vec<u8> {
    let mut rgba = vec![0u8; S * S * 4];
    for px in rgba.chunks_exact_mut(4) {
        px.copy_from_slice(&[12, 15, 22, 255]);
    }
    let (xi, yi) = (x.slot(), y.slot());
    let mut plot = |i: usize, c: [u8; 3]| {
        let (Some(vx), Some(vy)) = (objects.values[i][xi], objects.values[i][yi]) else {
            return;
        };
        let (px, py) = (to_pixel(x, vx, false), to_pixel(y, vy, true));
        if !(0.0..S as f64 - 1.0).contains(&px) || !(0.0..S as f64 - 1.0).contains(&py) {
            return;
        }
        let (px, py) = (px as usize, py as usize);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let k = ((py + dy) * S + px + dx) * 4;
            rgba[k..k + 3].copy_from_slice(&c);
        }
    };
    for (i, _) in pass.iter().enumerate().filter(|(_, p)| !**p) {
        plot(i, [58, 62, 74]);
    }
    for (i, _) in pass.iter().enumerate().filter(|(_, p)| **p) {
        plot(i, super::sky::class_colour(objects.classes[i]));
    }
    // The cut on this plot's axes, as lines at its bounds.
    let mut line = |horizontal: bool, at: f64| {
        if !(0.0..S as f64).contains(&at) {
            return;
        }
        for t in (0..S).step_by(2) {
            let (px, py) = if horizontal {
                (t, at as usize)
            } else {
                (at as usize, t)
            };
            let k = (py * S + px) * 4;
            rgba[k..k + 3].copy_from_slice(&[255, 255, 255]);
        }
    };
    let (x_lo, x_hi) = cuts.range(x);
    let (y_lo, y_hi) = cuts.range(y);
    for v in [x_lo, x_hi].into_iter().flatten() {
        line(false, to_pixel(x, v, false));
    }
    for v in [y_lo, y_hi].into_iter().flatten() {
        line(true, to_pixel(y, v, true));
    }
    rgba
}

/// Ticks from an axis's range: (pixel, label).
fn ticks(axis: Axis, vertical: bool) -> Vec<(f64, String)> {
    let (lo, hi, step) = axis.range();
    let n = ((hi - lo) / step).round() as i32;
    (0..=n)
        .map(|k| {
            let v = lo + step * k as f32;
            (to_pixel(axis, v, vertical), format!("{v}"))
        })
        .collect()
}

#[component]
pub fn PlotsPage() -> impl IntoView {
    let points =
        LocalResource::new(move || async move { crate::api::get::<SkyPoints>("/api/sky").await });
    view! {
        <h2>"Plots"</h2>
        <p>"Colour–colour and redshift–magnitude diagrams of every object with a position, coloured by class (spectroscopic labels). Drag a box on a plot to cut on its two axes; every plot shows in colour the objects that pass all cuts. A click on empty space clears that plot's cut; a click on a point opens the object."</p>
        {move || match points.get() {
            None => view! { <p class="loading">"Loading the objects…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok(p)) => view! { <LinkedPlots points=p /> }.into_any(),
        }}
    }
}

#[component]
fn LinkedPlots(points: SkyPoints) -> impl IntoView {
    let objects = StoredValue::new(Objects {
        values: crate::cuts::values(&points),
        ids: points.ids,
        classes: points.classes.into_bytes(),
        synthetic: points.provenance.bytes().map(|b| b == b's').collect(),
    });
    let cuts = RwSignal::new(Cuts::from_link());
    // Which objects pass, recomputed when the cuts change.
    let pass = Memo::new(move |_| {
        let c = cuts.get();
        objects.with_value(|o| c.passing(&o.classes, &o.synthetic, &o.values))
    });
    // The cuts go into the link, so the view can be shared and reloaded.
    Effect::new(move |_| {
        crate::keep_in_link(&crate::route_with("/plots", &cuts.get().query()));
    });
    let counts = move || {
        let p = pass.get();
        let mut per = [0usize; 4];
        objects.with_value(|o| {
            for (i, _) in p.iter().enumerate().filter(|(_, p)| **p) {
                per[match o.classes[i] {
                    b'G' => 0,
                    b'S' => 1,
                    b'Q' => 2,
                    _ => 3,
                }] += 1;
            }
        });
        per
    };
    let run_status = RwSignal::new(None::<String>);
    let pick = use_context::<crate::Selection>()
        .expect("selection context")
        .0;
    let passing = move || pass.with(|p| p.iter().filter(|p| **p).count());
    let predict = move |_| {
        let ids: Vec<i64> = pass.with_untracked(|p| {
            objects.with_value(|o| {
                (0..o.ids.len())
                    .filter(|&i| p[i])
                    .map(|i| o.ids[i])
                    .take(MAX_PICKED)
                    .collect()
            })
        });
        super::predict::predict_objects(&ids, pick, run_status);
    };
    let link = move |page: &str| {
        let mut query = cuts.get().query();
        if page.is_empty() {
            // Explore lists objects without images too, so its count is the plots'.
            query.push("images=false".into());
        }
        format!("#{}", crate::route_with(&format!("/{page}"), &query))
    };
    view! {
        <div class="plots">
            {PANELS.into_iter().map(|(x, y)| view! { <Plot objects=objects pass=pass cuts=cuts x=x y=y /> }).collect_view()}
        </div>
        <p class="plots-summary" data-pass=move || pass.get().iter().filter(|p| **p).count() data-total=move || pass.get().len()>
            {move || {
                let [g, s, q, u] = counts();
                let n = g + s + q + u;
                let c = cuts.get();
                let what = if c.is_empty() { "no cuts".to_string() } else { c.describe() };
                format!("{n} of {} objects pass ({what}): {g} galaxies, {s} stars, {q} quasars, {u} unlabelled. ", pass.get().len())
            }}
            <a class="plots-explore" href=move || link("")>"Show in Explore"</a>" · "
            <a class="plots-sky" href=move || link("sky")>"Show on the sky"</a>" · "
            <button class="plots-clear" on:click=move |_| cuts.set(Cuts::default())>"Clear cuts"</button>" · "
            <button class="plots-predict" on:click=predict>{move || format!("Predict {} in the browser", if passing() > MAX_PICKED { format!("the first {MAX_PICKED}") } else { "these".to_string() })}</button>" · "
            <button class="plots-run" on:click=move |_| super::runs::launch_on_selection(cuts.get_untracked().query(), None, run_status)>"Launch a run on these"</button>
        </p>
        {move || run_status.get().map(|s| view! { <p class="plots-run-status" role="status">{s}</p> })}
    }
}

/// A drag on a plot: where it started, in plot pixels.
#[derive(Clone, Copy)]
struct Drag {
    start: (f64, f64),
    last: (f64, f64),
}

#[component]
fn Plot(
    objects: StoredValue<Objects>,
    pass: Memo<Vec<bool>>,
    cuts: RwSignal<Cuts>,
    x: Axis,
    y: Axis,
) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let drag = RwSignal::new(None::<Drag>);
    let error = RwSignal::new(None::<String>);
    let drawn = RwSignal::new(0u32);
    Effect::new(move |_| {
        let (p, c) = (pass.get(), cuts.get());
        let Some(el) = canvas.get() else { return };
        let rgba = objects.with_value(|o| render(o, &p, x, y, &c));
        match crate::canvas::put_rgba(&el, &rgba, S as u32, S as u32) {
            Ok(()) => drawn.update(|n| *n += 1),
            Err(e) => error.set(Some(e)),
        }
    });
    let at = |ev: &web_sys::MouseEvent| (f64::from(ev.offset_x()), f64::from(ev.offset_y()));
    let on_down = move |ev: web_sys::MouseEvent| {
        let p = at(&ev);
        drag.set(Some(Drag { start: p, last: p }));
    };
    let on_move = move |ev: web_sys::MouseEvent| {
        if let Some(d) = drag.get_untracked() {
            drag.set(Some(Drag { last: at(&ev), ..d }));
        }
    };
    let on_up = move |ev: web_sys::MouseEvent| {
        let Some(d) = drag.get_untracked() else {
            return;
        };
        drag.set(None);
        let p = at(&ev);
        if (p.0 - d.start.0).abs() + (p.1 - d.start.1).abs() > 4.0 {
            let (x0, x1) = (from_pixel(x, d.start.0, false), from_pixel(x, p.0, false));
            let (y0, y1) = (from_pixel(y, d.start.1, true), from_pixel(y, p.1, true));
            cuts.update(|c| {
                c.set(x, Some(x0.min(x1)), Some(x0.max(x1)));
                c.set(y, Some(y0.min(y1)), Some(y0.max(y1)));
            });
            return;
        }
        // A click: the nearest point within 4 pixels opens, else this plot's cut goes.
        let (vx, vy) = (from_pixel(x, p.0, false), from_pixel(y, p.1, true));
        let near = objects.with_value(|o| {
            let mut best = (16.0, None);
            for i in 0..o.ids.len() {
                let (Some(ox), Some(oy)) = (o.values[i][x.slot()], o.values[i][y.slot()]) else {
                    continue;
                };
                let d = (to_pixel(x, ox, false) - to_pixel(x, vx, false)).powi(2)
                    + (to_pixel(y, oy, true) - to_pixel(y, vy, true)).powi(2);
                if d <= best.0 {
                    best = (d, Some(o.ids[i]));
                }
            }
            best.1
        });
        match near {
            Some(id) => crate::navigate(&format!("/object/{id}")),
            None => cuts.update(|c| {
                c.set(x, None, None);
                c.set(y, None, None);
            }),
        }
    };
    let boxed = move || {
        drag.get().map(|d| {
            let (l, t) = (d.start.0.min(d.last.0), d.start.1.min(d.last.1));
            let (w, h) = ((d.last.0 - d.start.0).abs(), (d.last.1 - d.start.1).abs());
            format!(
                "left:{}px;top:{}px;width:{w}px;height:{h}px",
                LEFT + l,
                TOP + t
            )
        })
    };
    let (w, h) = (LEFT + S as f64 + 8.0, TOP + S as f64 + BOTTOM);
    let name = format!("{} against {}", y.label(), x.label());
    view! {
        <figure class="plot" style=format!("width:{w}px;height:{h}px")>
            <canvas node_ref=canvas class="plot" width=S height=S data-x=x.key() data-y=y.key()
                data-drawn=move || drawn.get()
                style=format!("left:{LEFT}px;top:{TOP}px;width:{S}px;height:{S}px")
                role="img" aria-label=name
                on:mousedown=on_down on:mousemove=on_move on:mouseup=on_up
                on:mouseleave=move |_| drag.set(None)></canvas>
            {move || boxed().map(|style| view! { <div class="plot-box" style=style></div> })}
            <svg class="plot-axes" width=w height=h aria-hidden="true">
                {ticks(x, false).into_iter().map(|(p, label)| view! {
                    <text x=LEFT + p y=TOP + S as f64 + 14.0 text-anchor="middle">{label}</text>
                }).collect_view()}
                {ticks(y, true).into_iter().map(|(p, label)| view! {
                    <text x=LEFT - 4.0 y=TOP + p + 4.0 text-anchor="end">{label}</text>
                }).collect_view()}
                <text x=LEFT + S as f64 / 2.0 y=TOP + S as f64 + 30.0 text-anchor="middle">{x.label()}</text>
                <text x=12 y=TOP + S as f64 / 2.0 transform=format!("rotate(-90 12 {})", TOP + S as f64 / 2.0) text-anchor="middle">{y.label()}</text>
            </svg>
            {move || error.get().map(|e| view! { <ErrorMessage message=e /> })}
        </figure>
    }
}
