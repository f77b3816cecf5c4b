//! A canvas plot: its points drawn in Rust as pixels, put on a canvas in one call,
//! with axes, ticks and labels in SVG around it. A drag draws a box, a click is
//! passed on in data values and pixels; the page decides what they mean. The
//! linked plots and every predicted-against-spectroscopic scatter use it.

use leptos::prelude::*;

/// A plot's side in pixels, and its margins for ticks and labels.
pub const SIDE: usize = 300;
const LEFT: f64 = 44.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 36.0;

/// One axis: its range, tick step and label.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub lo: f32,
    pub hi: f32,
    pub step: f32,
    pub label: &'static str,
}

impl Scale {
    /// Pixel of value `v` (y grows downwards on screen).
    pub fn pixel_of(self, v: f32, vertical: bool) -> f64 {
        let t = f64::from((v - self.lo) / (self.hi - self.lo)) * SIDE as f64;
        if vertical { SIDE as f64 - t } else { t }
    }

    pub fn value_at(self, p: f64, vertical: bool) -> f32 {
        let t = if vertical { SIDE as f64 - p } else { p } / SIDE as f64;
        self.lo + (self.hi - self.lo) * t as f32
    }

    /// (pixel, label) of each tick.
    fn ticks(self, vertical: bool) -> Vec<(f64, String)> {
        let n = ((self.hi - self.lo) / self.step).round() as i32;
        (0..=n)
            .map(|k| {
                let v = self.lo + self.step * k as f32;
                // Labels from the f64 of the step's multiple: 0.3, not 0.30000001.
                let exact = f64::from(self.lo) + f64::from(self.step) * f64::from(k);
                // `+ 0.0`: a tick at 0 from below is -0.0, labelled 0.
                let label = cosmicai_shared::axis::tick_label((exact * 1e6).round() / 1e6 + 0.0);
                (self.pixel_of(v, vertical), label)
            })
            .collect()
    }
}

/// A gesture on a plot, in data values.
#[derive(Clone, Copy, Debug)]
pub enum Gesture {
    /// A box was dragged over these ranges (low, high).
    Box { x: (f32, f32), y: (f32, f32) },
    /// A click at this pixel of the plot.
    Click { pixel: (f64, f64) },
}

/// A drag on a plot: where it started, in plot pixels.
#[derive(Clone, Copy)]
struct Drag {
    start: (f64, f64),
    last: (f64, f64),
}

/// The plot. `pixels` is SIDE x SIDE RGBA, drawn again when the signals it reads
/// change; `keys` go into `data-x` / `data-y` for links and tests.
#[component]
pub fn CanvasPlot(
    x: Scale,
    y: Scale,
    #[prop(into)] pixels: Signal<Vec<u8>>,
    on_gesture: Callback<Gesture>,
    #[prop(into)] name: String,
    #[prop(optional)] keys: (&'static str, &'static str),
    /// No box: a drag does nothing (plots that make no cuts).
    #[prop(optional)]
    clicks_only: bool,
) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let drag = RwSignal::new(None::<Drag>);
    let error = RwSignal::new(None::<String>);
    let drawn = RwSignal::new(0u32);
    Effect::new(move |_| {
        let rgba = pixels.get();
        let Some(el) = canvas.get() else { return };
        match crate::canvas::put_rgba(&el, &rgba, SIDE as u32, SIDE as u32) {
            Ok(()) => drawn.update(|n| *n += 1),
            Err(e) => error.set(Some(e)),
        }
    });
    // Pointer events: a mouse, a pen and a finger alike (on a phone a drag
    // draws the box).
    let at = |ev: &web_sys::PointerEvent| (f64::from(ev.offset_x()), f64::from(ev.offset_y()));
    let on_down = move |ev: web_sys::PointerEvent| {
        let p = at(&ev);
        drag.set(Some(Drag { start: p, last: p }));
    };
    let on_move = move |ev: web_sys::PointerEvent| {
        if let Some(d) = drag.get_untracked() {
            drag.set(Some(Drag { last: at(&ev), ..d }));
        }
    };
    let on_up = move |ev: web_sys::PointerEvent| {
        let Some(d) = drag.get_untracked() else {
            return;
        };
        drag.set(None);
        let p = at(&ev);
        if (p.0 - d.start.0).abs() + (p.1 - d.start.1).abs() > 4.0 {
            if !clicks_only {
                let (x0, x1) = (x.value_at(d.start.0, false), x.value_at(p.0, false));
                let (y0, y1) = (y.value_at(d.start.1, true), y.value_at(p.1, true));
                on_gesture.run(Gesture::Box {
                    x: (x0.min(x1), x0.max(x1)),
                    y: (y0.min(y1), y0.max(y1)),
                });
            }
            return;
        }
        on_gesture.run(Gesture::Click { pixel: p });
    };
    let boxed = move || {
        drag.get().filter(|_| !clicks_only).map(|d| {
            let (l, t) = (d.start.0.min(d.last.0), d.start.1.min(d.last.1));
            let (w, h) = ((d.last.0 - d.start.0).abs(), (d.last.1 - d.start.1).abs());
            format!(
                "left:{}px;top:{}px;width:{w}px;height:{h}px",
                LEFT + l,
                TOP + t
            )
        })
    };
    let (w, h) = (LEFT + SIDE as f64 + 8.0, TOP + SIDE as f64 + BOTTOM);
    view! {
        <figure class="plot" style=format!("width:{w}px;height:{h}px")>
            <canvas node_ref=canvas class="plot" width=SIDE height=SIDE data-x=keys.0 data-y=keys.1
                data-drawn=move || drawn.get()
                style=format!("left:{LEFT}px;top:{TOP}px;width:{SIDE}px;height:{SIDE}px")
                role="img" aria-label=name
                on:pointerdown=on_down on:pointermove=on_move on:pointerup=on_up
                on:pointerleave=move |_| drag.set(None)></canvas>
            {move || boxed().map(|style| view! { <div class="plot-box" style=style></div> })}
            <svg class="plot-axes" width=w height=h aria-hidden="true">
                {x.ticks(false).into_iter().map(|(p, label)| view! {
                    <text class="tick" x=LEFT + p y=TOP + SIDE as f64 + 14.0 text-anchor="middle">{label}</text>
                }).collect_view()}
                {y.ticks(true).into_iter().map(|(p, label)| view! {
                    <text class="tick" x=LEFT - 4.0 y=TOP + p + 4.0 text-anchor="end">{label}</text>
                }).collect_view()}
                <text x=LEFT + SIDE as f64 / 2.0 y=TOP + SIDE as f64 + 30.0 text-anchor="middle">{x.label}</text>
                <text x=12 y=TOP + SIDE as f64 / 2.0 transform=format!("rotate(-90 12 {})", TOP + SIDE as f64 / 2.0) text-anchor="middle">{y.label}</text>
            </svg>
            {move || error.get().map(|e| view! { <crate::pages::ErrorMessage message=e /> })}
        </figure>
    }
}

/// The pixel of data point (`vx`, `vy`), or `None` outside the plot; points on
/// its edges (z = 0 on a z axis) are kept, moved in by `margin` pixels so a
/// mark of that half-width fits.
fn pixel(x: Scale, y: Scale, (vx, vy): (f32, f32), margin: f64) -> Option<(usize, usize)> {
    let (px, py) = (x.pixel_of(vx, false), y.pixel_of(vy, true));
    let edge = SIDE as f64;
    if !(0.0..=edge).contains(&px) || !(0.0..=edge).contains(&py) {
        return None;
    }
    let inside = |p: f64| p.clamp(margin, edge - 1.0 - margin) as usize;
    Some((inside(px), inside(py)))
}

/// Paints a 2x2 dot of `colour` at data point (`vx`, `vy`), when inside the plot.
pub fn dot(rgba: &mut [u8], x: Scale, y: Scale, v: (f32, f32), colour: [u8; 3]) {
    let Some((px, py)) = pixel(x, y, v, 0.0) else {
        return;
    };
    let (px, py) = (px.min(SIDE - 2), py.min(SIDE - 2));
    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let k = ((py + dy) * SIDE + px + dx) * 4;
        rgba[k..k + 3].copy_from_slice(&colour);
    }
}

/// Paints a 7x7 ring of `colour` around data point (`vx`, `vy`): a mark that
/// stands out from a dense background.
pub fn ring(rgba: &mut [u8], x: Scale, y: Scale, v: (f32, f32), colour: [u8; 3]) {
    let Some((px, py)) = pixel(x, y, v, 3.0) else {
        return;
    };
    for d in 0..7 {
        for (cx, cy) in [(d, 0), (d, 6), (0, d), (6, d)] {
            let k = ((py + cy - 3) * SIDE + px + cx - 3) * 4;
            rgba[k..k + 3].copy_from_slice(&colour);
        }
    }
}

/// A plot's background.
pub fn blank() -> Vec<u8> {
    let mut rgba = vec![0u8; SIDE * SIDE * 4];
    for px in rgba.chunks_exact_mut(4) {
        px.copy_from_slice(&[12, 15, 22, 255]);
    }
    rgba
}
