//! Plots: colour–colour (u−g against g−r, g−r against r−i) and redshift against r
//! magnitude, every object coloured by class, linked. A box drawn on a plot is a
//! cut on its two axes; every plot then shows the objects that pass all cuts in
//! colour and the rest in grey. The cuts live in the link (`crate::cuts`), so
//! "Show in Explore" lists exactly the objects that pass, "Show on the sky" maps
//! them, and Explore's "Plots" link brings its filters here.

use super::ErrorMessage;
use super::predict::MAX_PICKED;
use crate::cuts::{Axis, Cuts, Values};
use crate::plot::{CanvasPlot, Gesture, SIDE, Scale};
use cosmicai_shared::api::SkyPoints;
use leptos::prelude::*;

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

/// An axis of the linked plots as the plot component draws it.
fn scale(axis: Axis) -> Scale {
    let (lo, hi, step) = axis.range();
    Scale {
        lo,
        hi,
        step,
        label: axis.label(),
    }
}

/// One plot as RGBA: failing objects grey underneath, passing ones in their
/// class's colour, and the plot's own cut as a box.
fn render(objects: &Objects, pass: &[bool], x: Axis, y: Axis, cuts: &Cuts) -> Vec<u8> {
    let mut rgba = crate::plot::blank();
    let (sx, sy) = (scale(x), scale(y));
    let (xi, yi) = (x.slot(), y.slot());
    let mut plot = |i: usize, c: [u8; 3]| {
        if let (Some(vx), Some(vy)) = (objects.values[i][xi], objects.values[i][yi]) {
            crate::plot::dot(&mut rgba, sx, sy, (vx, vy), c);
        }
    };
    for (i, _) in pass.iter().enumerate().filter(|(_, p)| !**p) {
        plot(i, [58, 62, 74]);
    }
    for (i, _) in pass.iter().enumerate().filter(|(_, p)| **p) {
        plot(i, crate::classes::colour_of_letter(objects.classes[i]));
    }
    // The cut on this plot's axes, as lines at its bounds.
    let mut line = |horizontal: bool, at: f64| {
        if !(0.0..SIDE as f64).contains(&at) {
            return;
        }
        for t in (0..SIDE).step_by(2) {
            let (px, py) = if horizontal {
                (t, at as usize)
            } else {
                (at as usize, t)
            };
            let k = (py * SIDE + px) * 4;
            rgba[k..k + 3].copy_from_slice(&[255, 255, 255]);
        }
    };
    let (x_lo, x_hi) = cuts.range(x);
    let (y_lo, y_hi) = cuts.range(y);
    for v in [x_lo, x_hi].into_iter().flatten() {
        line(false, sx.pixel_of(v, false));
    }
    for v in [y_lo, y_hi].into_iter().flatten() {
        line(true, sy.pixel_of(v, true));
    }
    rgba
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
                per[match cosmicai_shared::Class::from_letter(o.classes[i]) {
                    cosmicai_shared::Class::Galaxy => 0,
                    cosmicai_shared::Class::Star => 1,
                    cosmicai_shared::Class::Qso => 2,
                    cosmicai_shared::Class::Unknown => 3,
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
    use cosmicai_shared::Class;
    view! {
        <p class="sky-legend plots-legend">
            {[Class::Galaxy, Class::Star, Class::Qso, Class::Unknown].map(|class| {
                let c = crate::classes::colour(class);
                view! { <span style=format!("color:rgb({},{},{})", c[0], c[1], c[2])>{format!("● {} ", crate::classes::word(class))}</span> }
            }).collect_view()}
            <span class="outside"><span class="outside-dot" aria-hidden="true">"● "</span>"outside the cuts"</span>
        </p>
        <div class="plots">
            {PANELS.into_iter().map(|(x, y)| view! { <Plot objects=objects pass=pass cuts=cuts x=x y=y /> }).collect_view()}
        </div>
        <p class="plots-summary" data-pass=move || pass.get().iter().filter(|p| **p).count() data-total=move || pass.get().len()>
            {move || {
                let [g, s, q, u] = counts();
                let n = g + s + q + u;
                let c = cuts.get();
                let what = if c.is_empty() { "no cuts".to_string() } else { c.describe() };
                // Renderings repeat their source objects' magnitudes: a point drawn twice.
                let rendered = pass.with(|p| objects.with_value(|o| {
                    p.iter().zip(&o.synthetic).filter(|(p, s)| **p && **s).count()
                }));
                let rendered = if rendered > 0 {
                    format!(" {rendered} of them are synthetic renderings, which repeat their source objects' magnitudes (Data: real only leaves them out).")
                } else {
                    String::new()
                };
                format!("{n} of {} objects pass ({what}): {g} galaxies, {s} stars, {q} quasars, {u} unlabelled.{rendered} ", pass.get().len())
            }}
            <a class="plots-explore" href=move || link("")>"Show in Explore"</a>" · "
            <a class="plots-sky" href=move || link("sky")>"Show on the sky"</a>" · "
            <label>"Data "<select class="plots-provenance"
                on:change=move |ev| {
                    let chosen = event_target_value(&ev);
                    cuts.update(|c| c.provenance = (!chosen.is_empty()).then_some(chosen));
                }>
                // Chosen by `selected` on each option: the select's own value
                // would be set before its options exist.
                {[("", "all"), ("real", "real only"), ("synthetic", "synthetic only")].map(|(value, label)| view! {
                    <option value=value selected=move || cuts.get().provenance.as_deref().unwrap_or("") == value>{label}</option>
                }).collect_view()}
            </select></label>" · "
            <button class="plots-clear" on:click=move |_| cuts.set(Cuts::default())>"Clear cuts"</button>" · "
            <button class="plots-predict" on:click=predict>{move || format!("Predict {} in the browser", if passing() > MAX_PICKED { format!("the first {MAX_PICKED}") } else { "these".to_string() })}</button>" · "
            <button class="plots-run" on:click=move |_| super::runs::launch_on_selection(cuts.get_untracked().query(), None, run_status)>"Launch a run on these"</button>
        </p>
        {move || run_status.get().map(|s| view! { <p class="plots-run-status" role="status">{s}</p> })}
    }
}

#[component]
fn Plot(
    objects: StoredValue<Objects>,
    pass: Memo<Vec<bool>>,
    cuts: RwSignal<Cuts>,
    x: Axis,
    y: Axis,
) -> impl IntoView {
    let (sx, sy) = (scale(x), scale(y));
    let pixels = Signal::derive(move || {
        let (p, c) = (pass.get(), cuts.get());
        objects.with_value(|o| render(o, &p, x, y, &c))
    });
    let on_gesture = Callback::new(move |gesture| match gesture {
        Gesture::Box { x: xr, y: yr } => cuts.update(|c| {
            c.set(x, Some(xr.0), Some(xr.1));
            c.set(y, Some(yr.0), Some(yr.1));
        }),
        // A click: the nearest point within 4 pixels opens, else this plot's cut goes.
        Gesture::Click { pixel } => {
            let near = objects.with_value(|o| {
                let mut best = (16.0, None);
                for i in 0..o.ids.len() {
                    let (Some(ox), Some(oy)) = (o.values[i][x.slot()], o.values[i][y.slot()])
                    else {
                        continue;
                    };
                    let d = (sx.pixel_of(ox, false) - pixel.0).powi(2)
                        + (sy.pixel_of(oy, true) - pixel.1).powi(2);
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
        }
    });
    let name = format!("{} against {}", y.label(), x.label());
    view! { <CanvasPlot x=sx y=sy pixels=pixels on_gesture=on_gesture name=name keys=(x.key(), y.key()) /> }
}
