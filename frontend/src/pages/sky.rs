//! The sky: every object with a position on an equal-area map (Hammer–Aitoff,
//! `cosmicai_shared::sky`), coloured by class or by redshift. Drag to pan, wheel
//! or +/- to zoom, hover for an object, click to open it; shift-drag (or the
//! box and lasso tools) selects a region, whose objects go to Predict or to a run.
//!
//! Points are drawn into one RGBA buffer and put on a 2D canvas in one call, so a
//! frame costs a pass over the points, not a canvas call per point.

use super::ErrorMessage;
use super::predict::MAX_PICKED;
use crate::classes;
use crate::cuts::Cuts;
use cosmicai_shared::Class;
use cosmicai_shared::api::SkyPoints;
use cosmicai_shared::sky::{HALF_HEIGHT, HALF_WIDTH, project, unproject};
use leptos::prelude::*;

const W: usize = 960;
const H: usize = 480;

/// The map's points, projected once.
struct Sky {
    ids: Vec<i64>,
    ra: Vec<f32>,
    dec: Vec<f32>,
    /// Map coordinates (projection units).
    x: Vec<f32>,
    y: Vec<f32>,
    classes: Vec<u8>,
    redshift: Vec<Option<f32>>,
    synthetic: Vec<bool>,
    /// Points repeated for the frame-time bench (`#/sky?bench=N`): not objects.
    padded: usize,
}

impl Sky {
    fn new(p: SkyPoints, at_least: usize) -> Sky {
        let n = p.ids.len();
        let mut sky = Sky {
            ids: p.ids,
            ra: p.ra,
            dec: p.dec,
            x: Vec::with_capacity(n),
            y: Vec::with_capacity(n),
            classes: p.classes.into_bytes(),
            redshift: p.redshift,
            synthetic: p.provenance.bytes().map(|b| b == b's').collect(),
            padded: 0,
        };
        // The bench's extra points: copies shifted in RA, so they spread over the map.
        let mut copy = 1;
        while n > 0 && sky.ra.len() < at_least {
            for i in 0..n.min(at_least - sky.ra.len()) {
                sky.ra.push((sky.ra[i] + 37.0 * copy as f32) % 360.0);
                sky.dec.push(sky.dec[i]);
                sky.ids.push(sky.ids[i]);
                sky.classes.push(sky.classes[i]);
                sky.redshift.push(sky.redshift[i]);
                sky.synthetic.push(sky.synthetic[i]);
                sky.padded += 1;
            }
            copy += 1;
        }
        for (&ra, &dec) in sky.ra.iter().zip(&sky.dec) {
            let (x, y) = project(f64::from(ra), f64::from(dec));
            sky.x.push(x as f32);
            sky.y.push(y as f32);
        }
        sky
    }

    fn len(&self) -> usize {
        self.x.len()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ColourBy {
    Class,
    Redshift,
}

/// Where the map is looked at: its centre in map units and pixels per unit.
#[derive(Clone, Copy, PartialEq)]
struct View {
    cx: f64,
    cy: f64,
    scale: f64,
}

impl View {
    fn whole() -> View {
        View {
            cx: 0.0,
            cy: 0.0,
            scale: 0.98 * (W as f64 / (2.0 * HALF_WIDTH)).min(H as f64 / (2.0 * HALF_HEIGHT)),
        }
    }

    fn to_screen(self, x: f64, y: f64) -> (f64, f64) {
        (
            W as f64 / 2.0 + (x - self.cx) * self.scale,
            H as f64 / 2.0 - (y - self.cy) * self.scale,
        )
    }

    /// The map point under the screen point (px, py).
    fn to_map(self, px: f64, py: f64) -> (f64, f64) {
        (
            self.cx + (px - W as f64 / 2.0) / self.scale,
            self.cy - (py - H as f64 / 2.0) / self.scale,
        )
    }

    /// (ra, dec) under the screen point (px, py), or `None` off the map.
    fn sky_at(self, px: f64, py: f64) -> Option<(f64, f64)> {
        let (x, y) = self.to_map(px, py);
        unproject(x, y)
    }

    /// Zoomed by `factor` about the screen point (px, py), which stays put.
    fn zoomed(self, factor: f64, px: f64, py: f64) -> View {
        let scale =
            (self.scale * factor).clamp(Self::whole().scale * 0.5, Self::whole().scale * 2000.0);
        let (mx, my) = self.to_map(px, py);
        View {
            cx: mx - (px - W as f64 / 2.0) / scale,
            cy: my + (py - H as f64 / 2.0) / scale,
            scale,
        }
    }

    fn panned(self, dx: f64, dy: f64) -> View {
        View {
            cx: self.cx - dx / self.scale,
            cy: self.cy + dy / self.scale,
            ..self
        }
    }
}

/// Redshift from violet (0) through orange to yellow (1 and beyond), on a
/// square-root scale so the many galaxies below 0.3 spread over the colours.
fn redshift_colour(z: Option<f32>) -> [u8; 3] {
    match z {
        Some(z) => {
            let t = f64::from(z).max(0.0).sqrt().min(1.0);
            [
                (120.0 + t * 133.0) as u8,
                (70.0 + t * 161.0) as u8,
                (230.0 - t * 193.0) as u8,
            ]
        }
        None => [110, 110, 110],
    }
}

/// The legend's entries, in the colours the map draws with.
fn legend(by: ColourBy) -> Vec<(&'static str, [u8; 3])> {
    match by {
        ColourBy::Class => vec![
            ("galaxy", classes::colour(Class::Galaxy)),
            ("star", classes::colour(Class::Star)),
            ("quasar", classes::colour(Class::Qso)),
            ("unlabelled", classes::colour(Class::Unknown)),
        ],
        ColourBy::Redshift => vec![
            ("z = 0", redshift_colour(Some(0.0))),
            ("z = 0.25", redshift_colour(Some(0.25))),
            ("z ≥ 1", redshift_colour(Some(1.0))),
            ("unknown", redshift_colour(None)),
        ],
    }
}

/// The frame as RGBA: the map's outline and graticule, the points, the selection.
fn render(
    sky: &Sky,
    graticule: &[(f32, f32)],
    view: View,
    colour: ColourBy,
    selected: &[usize],
    outline: &[(f64, f64)],
    pass: Option<&[bool]>,
) -> Vec<u8> {
    let mut rgba = vec![0u8; W * H * 4];
    for px in rgba.chunks_exact_mut(4) {
        px.copy_from_slice(&[12, 15, 22, 255]);
    }
    let mut plot = |x: f64, y: f64, c: [u8; 3], size: usize| {
        let (sx, sy) = view.to_screen(x, y);
        if sx < 0.0 || sy < 0.0 {
            return;
        }
        let (sx, sy) = (sx as usize, sy as usize);
        for dy in 0..size {
            for dx in 0..size {
                let (x, y) = (sx + dx, sy + dy);
                if x < W && y < H {
                    let i = (y * W + x) * 4;
                    rgba[i..i + 3].copy_from_slice(&c);
                }
            }
        }
    };
    for &(x, y) in graticule {
        plot(f64::from(x), f64::from(y), [44, 52, 66], 1);
    }
    let size = if view.scale > View::whole().scale * 4.0 {
        3
    } else {
        2
    };
    let colour_of = |i: usize| match colour {
        ColourBy::Class => classes::colour_of_letter(sky.classes[i]),
        ColourBy::Redshift => redshift_colour(sky.redshift[i]),
    };
    match pass {
        // Cuts from the plots: the objects that fail them grey, underneath.
        Some(pass) if !pass.is_empty() => {
            let passes = |i: usize| pass[i % pass.len()];
            for i in (0..sky.len()).filter(|&i| !passes(i)) {
                plot(f64::from(sky.x[i]), f64::from(sky.y[i]), [50, 55, 66], size);
            }
            for i in (0..sky.len()).filter(|&i| passes(i)) {
                plot(f64::from(sky.x[i]), f64::from(sky.y[i]), colour_of(i), size);
            }
        }
        _ => {
            for i in 0..sky.len() {
                plot(f64::from(sky.x[i]), f64::from(sky.y[i]), colour_of(i), size);
            }
        }
    }
    for &i in selected {
        plot(
            f64::from(sky.x[i]),
            f64::from(sky.y[i]),
            [255, 255, 255],
            size,
        );
    }
    // The selection's outline (a box or a lasso), closed, in screen pixels.
    for (k, &(x0, y0)) in outline.iter().enumerate() {
        let (x1, y1) = outline[(k + 1) % outline.len()];
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
        for t in 0..=steps {
            let f = t as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f);
            if (0.0..W as f64).contains(&x) && (0.0..H as f64).contains(&y) {
                let i = (y as usize * W + x as usize) * 4;
                rgba[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
    }
    rgba
}

/// The outline and lines of RA and Dec every 30°, as map points.
fn graticule() -> Vec<(f32, f32)> {
    let mut points = Vec::new();
    let mut add = |ra: f64, dec: f64| {
        let (x, y) = project(ra, dec);
        points.push((x as f32, y as f32));
    };
    for step in 0..=1800 {
        let t = f64::from(step) / 10.0 - 90.0;
        for ra in (0..360).step_by(30) {
            add(f64::from(ra), t);
        }
        add(0.000_1, t);
        add(359.999_9, t);
    }
    for step in 0..3600 {
        let ra = f64::from(step) / 10.0;
        for dec in [-60.0, -30.0, 0.0, 30.0, 60.0] {
            add(ra, dec);
        }
    }
    points
}

/// Index of the point nearest the screen point (px, py), within `radius` pixels.
fn nearest(sky: &Sky, view: View, px: f64, py: f64, radius: f64) -> Option<usize> {
    let mut best = (radius * radius, None);
    for i in 0..sky.len() {
        let (sx, sy) = view.to_screen(f64::from(sky.x[i]), f64::from(sky.y[i]));
        let d = (sx - px).powi(2) + (sy - py).powi(2);
        if d <= best.0 {
            best = (d, Some(i));
        }
    }
    best.1
}

/// Whether (x, y) lies inside the closed polygon (even–odd rule).
fn inside(polygon: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut within = false;
    for (k, &(x0, y0)) in polygon.iter().enumerate() {
        let (x1, y1) = polygon[(k + 1) % polygon.len()];
        if (y0 > y) != (y1 > y) && x < x0 + (y - y0) / (y1 - y0) * (x1 - x0) {
            within = !within;
        }
    }
    within
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[component]
pub fn SkyPage() -> impl IntoView {
    let bench = crate::hash_param("bench")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(1_000_000);
    let points =
        LocalResource::new(move || async move { crate::api::get::<SkyPoints>("/api/sky").await });
    view! {
        <h2>"Sky"</h2>
        <p>"Every object with a position, on an equal-area (Hammer–Aitoff) map; RA grows to the left. Drag to pan, scroll or +/− to zoom, hover for an object and click to open it. Shift-drag (or the box and lasso tools) selects a region; its objects can be predicted in the browser or sent to a run."</p>
        {move || match points.get() {
            None => view! { <p class="loading">"Loading the sky…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok(p)) => view! { <SkyMap points=p bench=bench /> }.into_any(),
        }}
    }
}

/// What a drag on the map does.
#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Pan,
    Box,
    Lasso,
}

/// A drag in progress: where it started and last was, and what it draws.
#[derive(Clone, Copy)]
struct Drag {
    start: (f64, f64),
    last: (f64, f64),
    tool: Tool,
    moved: bool,
}

#[component]
fn SkyMap(points: SkyPoints, bench: usize) -> impl IntoView {
    // Cuts made on the plots (`#/sky?gr_min=…`): the objects that pass stand out.
    let cuts = Cuts::from_link();
    let values = (!cuts.is_empty()).then(|| crate::cuts::values(&points));
    let sky = Sky::new(points, bench);
    // The map's own columns (their first objects; the bench's copies repeat them).
    let pass = RwSignal::new(values.map(|v| {
        let n = v.len();
        cuts.passing(&sky.classes[..n], &sky.synthetic[..n], &v)
    }));
    let sky = StoredValue::new(sky);
    let lines = StoredValue::new(graticule());
    let view_at = RwSignal::new(View::whole());
    let colour = RwSignal::new(ColourBy::Class);
    let tool = RwSignal::new(Tool::Pan);
    // The selection being drawn, in screen pixels (empty: none).
    let outline = RwSignal::new(Vec::<(f64, f64)>::new());
    let selected = RwSignal::new(Vec::<usize>::new());
    let hover = RwSignal::new(None::<usize>);
    // The sky position under the pointer (None off the map).
    let pointer = RwSignal::new(None::<(f64, f64)>);
    let frames = RwSignal::new(Vec::<f64>::new());
    let drag = StoredValue::new(None::<Drag>);
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let status = RwSignal::new(None::<String>);
    let run_status = RwSignal::new(None::<String>);
    let pick = use_context::<crate::Selection>()
        .expect("selection context")
        .0;

    Effect::new(move |_| {
        let (v, c) = (view_at.get(), colour.get());
        let chosen = selected.get();
        let Some(el) = canvas.get() else { return };
        let started = crate::api::now_ms();
        let rgba = sky.with_value(|s| {
            lines.with_value(|g| {
                outline.with(|o| pass.with(|p| render(s, g, v, c, &chosen, o, p.as_deref())))
            })
        });
        let drawn = crate::canvas::put_rgba(&el, &rgba, W as u32, H as u32);
        if let Err(e) = drawn {
            status.set(Some(e));
        }
        let ms = crate::api::now_ms() - started;
        frames.update(|f| {
            f.push(ms);
            if f.len() > 120 {
                f.remove(0);
            }
        });
    });

    // Pointer events: a mouse, a pen and a finger alike (a phone's drag pans,
    // the box and lasso tools select).
    // In the canvas's own pixels: on a narrow screen it is drawn smaller than
    // its W × H (max-width), and the pointer's offset is in the smaller box.
    let scaled = move |x: i32, y: i32| {
        let scale = canvas
            .get_untracked()
            .map(|c| c.client_width())
            .filter(|&w| w > 0)
            .map_or(1.0, |w| W as f64 / f64::from(w));
        (f64::from(x) * scale, f64::from(y) * scale)
    };
    let at = move |ev: &web_sys::PointerEvent| scaled(ev.offset_x(), ev.offset_y());
    let on_down = move |ev: web_sys::PointerEvent| {
        let p = at(&ev);
        outline.set(Vec::new());
        drag.set_value(Some(Drag {
            start: p,
            last: p,
            // Shift selects a box whatever the tool.
            tool: match tool.get_untracked() {
                Tool::Pan if ev.shift_key() => Tool::Box,
                t => t,
            },
            moved: false,
        }));
    };
    let on_move = move |ev: web_sys::PointerEvent| {
        let p = at(&ev);
        match drag.get_value() {
            Some(mut d) => {
                d.moved |= (p.0 - d.start.0).abs() + (p.1 - d.start.1).abs() > 3.0;
                if d.tool == Tool::Box {
                    let (a, b) = (d.start, p);
                    outline.set(vec![a, (b.0, a.1), b, (a.0, b.1)]);
                } else if d.tool == Tool::Lasso {
                    outline.update(|o| {
                        if o.is_empty() {
                            o.push(d.start);
                        }
                        // A vertex every few pixels is enough for a hand-drawn outline.
                        if o.last()
                            .is_some_and(|q| (q.0 - p.0).abs() + (q.1 - p.1).abs() > 3.0)
                        {
                            o.push(p);
                        }
                    });
                } else if d.moved {
                    view_at.update(|v| *v = v.panned(p.0 - d.last.0, p.1 - d.last.1));
                }
                d.last = p;
                drag.set_value(Some(d));
            }
            None => {
                let v = view_at.get_untracked();
                hover.set(sky.with_value(|s| nearest(s, v, p.0, p.1, 6.0)));
                pointer.set(v.sky_at(p.0, p.1));
            }
        }
    };
    let on_up = move |ev: web_sys::PointerEvent| {
        let Some(d) = drag.get_value() else { return };
        drag.set_value(None);
        let p = at(&ev);
        pointer.set(view_at.get_untracked().sky_at(p.0, p.1));
        // Whatever the drag was, its outline goes (a selection keeps its points).
        let polygon = outline.get_untracked();
        outline.set(Vec::new());
        if d.tool != Tool::Pan && d.moved {
            let v = view_at.get_untracked();
            // The outline's bounds first: most points fail there, cheaply.
            let (mut l, mut r, mut t, mut b) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, y) in &polygon {
                (l, r, t, b) = (l.min(x), r.max(x), t.min(y), b.max(y));
            }
            let chosen = sky.with_value(|s| {
                (0..s.len() - s.padded)
                    .filter(|&i| {
                        let (x, y) = v.to_screen(f64::from(s.x[i]), f64::from(s.y[i]));
                        x >= l && x <= r && y >= t && y <= b && inside(&polygon, x, y)
                    })
                    .collect::<Vec<_>>()
            });
            selected.set(chosen);
        } else if !d.moved {
            let v = view_at.get_untracked();
            if let Some(i) = sky.with_value(|s| nearest(s, v, p.0, p.1, 6.0)) {
                crate::navigate(&format!("/object/{}", sky.with_value(|s| s.ids[i])));
            }
        }
    };
    let on_wheel = move |ev: web_sys::WheelEvent| {
        ev.prevent_default();
        let factor = if ev.delta_y() < 0.0 { 1.25 } else { 0.8 };
        let (px, py) = scaled(ev.offset_x(), ev.offset_y());
        view_at.update(|v| *v = v.zoomed(factor, px, py));
    };
    let centre = (W as f64 / 2.0, H as f64 / 2.0);
    let on_key = move |ev: web_sys::KeyboardEvent| {
        let step = 60.0;
        let change: Option<Box<dyn Fn(View) -> View>> = match ev.key().as_str() {
            "ArrowLeft" => Some(Box::new(move |v: View| v.panned(step, 0.0))),
            "ArrowRight" => Some(Box::new(move |v: View| v.panned(-step, 0.0))),
            "ArrowUp" => Some(Box::new(move |v: View| v.panned(0.0, step))),
            "ArrowDown" => Some(Box::new(move |v: View| v.panned(0.0, -step))),
            "+" | "=" => Some(Box::new(move |v: View| v.zoomed(1.25, centre.0, centre.1))),
            "-" => Some(Box::new(move |v: View| v.zoomed(0.8, centre.0, centre.1))),
            "0" => Some(Box::new(|_| View::whole())),
            _ => None,
        };
        if let Some(f) = change {
            ev.prevent_default();
            view_at.update(|v| *v = f(*v));
            // The map moved under the pointer: its position is told again at its next move.
            pointer.set(None);
        }
    };
    // Every selected object (not only the first MAX_PICKED) goes into the run.
    let launch = move |_| {
        let ids: Vec<i64> =
            sky.with_value(|s| selected.get_untracked().iter().map(|&i| s.ids[i]).collect());
        super::runs::launch_on_selection(Vec::new(), Some(ids), run_status);
    };
    let predict = move |_| {
        let ids: Vec<i64> =
            sky.with_value(|s| selected.get_untracked().iter().map(|&i| s.ids[i]).collect());
        super::predict::predict_objects(&ids, pick, run_status);
    };

    let (total, padded) = sky.with_value(|s| (s.len(), s.padded));
    view! {
        <div class="sky-tools">
            <label>"colour by "
                <select class="sky-colour" on:change=move |ev| colour.set(if event_target_value(&ev) == "redshift" { ColourBy::Redshift } else { ColourBy::Class })>
                    <option value="class">"class"</option>
                    <option value="redshift">"spectroscopic redshift"</option>
                </select>
            </label>
            <button class="zoom-in" on:click=move |_| view_at.update(|v| *v = v.zoomed(1.25, centre.0, centre.1))>"+"</button>
            <button class="zoom-out" on:click=move |_| view_at.update(|v| *v = v.zoomed(0.8, centre.0, centre.1))>"−"</button>
            <button class="zoom-reset" on:click=move |_| view_at.set(View::whole())>"whole sky"</button>
            <label>"drag to "
                <select class="sky-tool" on:change=move |ev| tool.set(match event_target_value(&ev).as_str() { "box" => Tool::Box, "lasso" => Tool::Lasso, _ => Tool::Pan })>
                    <option value="pan">"pan"</option>
                    <option value="box">"select a box"</option>
                    <option value="lasso">"select a lasso"</option>
                </select>
            </label>
        </div>
        <canvas node_ref=canvas class="sky" width=W height=H tabindex="0"
            style=format!("width:{W}px;max-width:100%;height:auto;aspect-ratio:{W}/{H}")
            role="img" aria-label="map of the objects on the sky; arrow keys pan, + and − zoom, 0 shows the whole sky"
            data-points=total
            on:pointerdown=on_down on:pointermove=on_move on:pointerup=on_up
            on:pointerleave=move |_| { drag.set_value(None); outline.set(Vec::new()); hover.set(None); pointer.set(None); }
            on:wheel=on_wheel on:keydown=on_key></canvas>
        <p class="sky-legend">
            {move || legend(colour.get()).into_iter().map(|(label, c)| view! {
                <span style=format!("color:rgb({},{},{})", c[0], c[1], c[2])>{format!("● {label} ")}</span>
            }).collect_view()}
        </p>
        <p class="sky-hover" aria-live="off"
            data-ra=move || pointer.get().map(|(ra, _)| format!("{ra:.3}"))
            data-dec=move || pointer.get().map(|(_, dec)| format!("{dec:.3}"))>
            {move || match (hover.get(), pointer.get()) {
                (Some(i), _) => Some(sky.with_value(|s| {
                    let class = classes::word(Class::from_letter(s.classes[i]));
                    let z = s.redshift[i].map_or("z unknown".to_string(), |z| format!("z = {z:.4}"));
                    let made = if s.synthetic[i] { " · synthetic rendering" } else { "" };
                    format!("{class} {} · {z} · RA {:.3}°, Dec {:.3}°{made}", s.ids[i], s.ra[i], s.dec[i])
                })),
                // Between objects: where on the sky the pointer is.
                (None, Some((ra, dec))) => Some(format!("pointer at RA {ra:.2}°, Dec {dec:.2}°")),
                (None, None) => None,
            }}
        </p>
        <p class="sky-stats" data-frame-ms=move || format!("{:.2}", median(&frames.get())) data-frames=move || frames.get().len()>
            {move || format!("{} points{}; drawing a frame: {:.1} ms (median of the last {})",
                total, if padded > 0 { format!(" ({padded} of them repeated for the frame-time bench)") } else { String::new() },
                median(&frames.get()), frames.get().len())}
        </p>
        {move || pass.with(|p| p.as_ref().map(|p| {
            let n = p.iter().filter(|x| **x).count();
            let back = format!("#{}", crate::route_with("/plots", &cuts.query()));
            view! {
                <p class="sky-cuts" data-pass=n>
                    {format!("Cuts from the plots ({}): {n} of {} objects pass, in colour. ", cuts.describe(), p.len())}
                    <a href=back>"Back to the plots"</a>" · "
                    <button class="sky-cuts-clear" on:click=move |_| { pass.set(None); crate::keep_in_link("/sky"); }>"clear"</button>
                </p>
            }
        }))}
        {move || {
            let n = selected.get().len();
            (n > 0).then(|| view! {
                <p class="sky-selection" data-selected=n>
                    {format!("{n} objects selected{}. ", if n > MAX_PICKED { format!(" (the first {MAX_PICKED} go to Predict)") } else { String::new() })}
                    <button class="sky-predict" on:click=predict>"Predict these in the browser"</button>
                    <button class="sky-run" on:click=launch>"Launch a run on these"</button>
                    <button class="sky-clear" on:click=move |_| selected.set(Vec::new())>"clear"</button>
                </p>
            })
        }}
        {move || status.get().map(|e| view! { <ErrorMessage message=e /> })}
        {move || run_status.get().map(|s| view! { <p class="sky-run-status" role="status">{s}</p> })}
    }
}
