//! Object: the five bands and the gri composite (drawn here, in the browser, with
//! the same Lupton code as the server), magnitudes, colours, labels, predictions.

use super::ErrorMessage;
use cosmicai_shared::api::{ArchiveCutout, ArchiveState, ObjectDetail};
use cosmicai_shared::display::{Stretch, lupton_rgb};
use leptos::prelude::*;

/// `/api/cutouts` for one object: its `[5, side, side]` pixels.
async fn cutout(id: i64) -> Result<(Vec<f32>, usize), String> {
    let raw = crate::api::bytes(&format!("/api/cutouts?ids={id}")).await?;
    let cutout = cosmicai_shared::cutouts::decode(&raw)?
        .into_iter()
        .next()
        .ok_or("no cutout in the reply")?;
    let pixels = cutout
        .pixels
        .into_iter()
        .map(|v| if v.is_finite() { v } else { 0.0 })
        .collect();
    Ok((pixels, cutout.side))
}

fn draw(
    canvas: &web_sys::HtmlCanvasElement,
    pixels: &[f32],
    side: usize,
    s: Stretch,
) -> Result<(), String> {
    let plane = side * side;
    let rgb = lupton_rgb(
        &pixels[3 * plane..4 * plane],
        &pixels[2 * plane..3 * plane],
        &pixels[plane..2 * plane],
        s,
    );
    let mut rgba = Vec::with_capacity(plane * 4);
    for p in rgb.chunks_exact(3) {
        rgba.extend_from_slice(&[p[0], p[1], p[2], 255]);
    }
    canvas.set_width(side as u32);
    canvas.set_height(side as u32);
    crate::canvas::put_rgba(canvas, &rgba, side as u32, side as u32)
}

#[component]
pub fn ObjectPage(id: i64) -> impl IntoView {
    let detail = LocalResource::new(move || async move {
        crate::api::get::<ObjectDetail>(&format!("/api/objects/{id}")).await
    });
    view! {
        // Back to the objects as they were filtered, not a fresh page.
        <p><a class="back-to-explore" href=format!("#{}", crate::last_explore())>"← Explore"</a></p>
        {move || match detail.get() {
            None => view! { <p class="loading">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok(d)) => {
                let fetching = d.archive.clone().filter(|a| a.state != ArchiveState::Ready);
                view! {
                    {fetching.map(|status| view! { <ArchiveFetch id=id status=status reload=detail /> })}
                    <Detail detail=d />
                }.into_any()
            }
        }}
    }
}

/// Failed looks in a row at an archive fetch before the page shows the error.
const ARCHIVE_LOOKS: u32 = 10;

/// A catalog object without an image, on a server with `--archive`: asks for its
/// real cutout at once (the field's five SDSS frames, then the cut), shows a
/// spinner while the server works, then has the page reloaded with the image.
#[component]
fn ArchiveFetch(
    id: i64,
    status: ArchiveCutout,
    /// The page's object, fetched again once the cutout is ready.
    reload: LocalResource<Result<ObjectDetail, String>>,
) -> impl IntoView {
    let state = RwSignal::new(Ok::<ArchiveCutout, String>(status.clone()));
    // Whether the page is still shown: its poll stops when it goes.
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let leaving = alive.clone();
    on_cleanup(move || leaving.store(false, std::sync::atomic::Ordering::Relaxed));
    let shown = move || alive.load(std::sync::atomic::Ordering::Relaxed);
    let ask = Callback::new(move |()| {
        let shown = shown.clone();
        leptos::task::spawn_local(async move {
            let url = format!("/api/objects/{id}/fetch");
            let mut reply = crate::api::post::<_, ArchiveCutout>(&url, &()).await;
            // The ask itself refused (busy, off): said at once, not after the looks.
            if let Err(e) = &reply {
                state.try_set(Err(e.clone()));
                return;
            }
            // Looks that failed in a row (the network a moment away): the
            // fetch goes on at the server, so the page keeps asking a while.
            let mut failed = 0;
            while shown() {
                let waiting = matches!(&reply, Ok(a) if matches!(a.state, ArchiveState::Queued | ArchiveState::Fetching));
                let ready = matches!(&reply, Ok(a) if a.state == ArchiveState::Ready);
                if reply.is_ok() || failed >= ARCHIVE_LOOKS {
                    state.set(reply);
                    if ready {
                        reload.refetch();
                    }
                    if !waiting {
                        break;
                    }
                }
                crate::api::sleep_ms(700).await;
                reply = crate::api::get::<ObjectDetail>(&format!("/api/objects/{id}"))
                    .await
                    .and_then(|d| {
                        d.archive.ok_or_else(|| {
                            "the server no longer fetches from the archive".to_string()
                        })
                    });
                failed = if reply.is_ok() { 0 } else { failed + 1 };
            }
        });
    });
    // The page asked for the object: fetch it straight away, unless it failed before.
    if status.state != ArchiveState::Failed {
        ask.run(());
    }
    view! {
        <section class="archive-fetch">
            {move || match state.get() {
                Err(e) => view! {
                    <ErrorMessage message=e />
                    <p><button type="button" on:click=move |_| ask.run(())>"Try again"</button></p>
                }.into_any(),
                Ok(a) if a.state == ArchiveState::Failed => view! {
                    <p class="error" data-state="failed">{format!("Fetching field {} from the SDSS archive failed: {}", a.field, a.error.unwrap_or_default())}
                        " " <button type="button" on:click=move |_| ask.run(())>"Try again"</button></p>
                }.into_any(),
                Ok(a) => view! {
                    <p class="fetching" data-state=format!("{:?}", a.state).to_lowercase()>
                        <span class="spinner" aria-hidden="true"></span>
                        {format!("Fetching the real SDSS frames of field {} (five bands, about 17 MB) and cutting this object…", a.field)}
                    </p>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn Detail(detail: ObjectDetail) -> impl IntoView {
    let o = detail.object.clone();
    let id = o.id;
    let m = o.magnitudes;
    let colours = format!(
        "u−g {:.2} · g−r {:.2} · r−i {:.2} · i−z {:.2}",
        m[0] - m[1],
        m[1] - m[2],
        m[2] - m[3],
        m[3] - m[4]
    );
    let stretch = RwSignal::new(0.5f32);
    let q = RwSignal::new(8.0f32);
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let pixels = LocalResource::new(move || async move {
        if o.has_image {
            Some(cutout(id).await)
        } else {
            None
        }
    });
    Effect::new(move |_| {
        let s = Stretch {
            minimum: 0.0,
            stretch: stretch.get(),
            q: q.get(),
        };
        if let (Some(Some(Ok((p, side)))), Some(c)) = (pixels.get(), canvas.get()) {
            let _ = draw(&c, &p, side, s);
        }
    });
    let browser = LocalResource::new(move || async move {
        // One object: the CPU path (setting up WebGPU would cost more than it saves).
        let batch = crate::inference::run(&[m], cosmicai_frontend::protocol::Choice::Cpu).await?;
        let p = batch.predictions.first().cloned().ok_or("no prediction")?;
        Ok::<_, String>((p, batch.ran, batch.ms))
    });
    let server = detail.predictions.clone();
    let o = detail.object.clone();
    let images = o.has_image.then(|| {
        view! {
            <section class="images">
                <figure>
                    <canvas node_ref=canvas class="composite" width="64" height="64"></canvas>
                    <figcaption>"gri composite (drawn in the browser)"</figcaption>
                </figure>
                {move || match pixels.get() {
                    Some(Some(Err(e))) => view! {
                        <p class="error image-error">{format!("The cutout could not be loaded: {e}")}" "
                            <button type="button" on:click=move |_| pixels.refetch()>"Try again"</button></p>
                    }.into_any(),
                    _ => ().into_any(),
                }}
                {["u", "g", "r", "i", "z"].into_iter().map(|b| view! {
                    <figure><img width="96" height="96" alt=format!("{b} band") src=format!("/api/objects/{id}/image.png?view={b}") /><figcaption>{b}</figcaption></figure>
                }).collect_view()}
                <div class="sliders">
                    <label>"stretch " <input type="range" min="0.05" max="3" step="0.05" prop:value=move || stretch.get().to_string() on:input=move |ev| stretch.set(event_target_value(&ev).parse().unwrap_or(0.5)) /> {move || format!("{:.2}", stretch.get())}</label>
                    <label>"Q " <input type="range" min="0" max="20" step="0.5" prop:value=move || q.get().to_string() on:input=move |ev| q.set(event_target_value(&ev).parse().unwrap_or(8.0)) /> {move || format!("{:.1}", q.get())}</label>
                </div>
            </section>
        }
    });
    view! {
        <h2>{format!("{} {}", o.class.name(), o.id)}
            {(o.provenance == cosmicai_shared::Provenance::Synthetic).then(|| view! { <span class="synthetic">"synthetic"</span> })}
        </h2>
        {images}
        <table class="facts">
            <tr><th>"Magnitudes (u g r i z)"</th><td>{m.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join("  ")}</td></tr>
            <tr><th>"Colours"</th><td>{colours}</td></tr>
            <tr><th>"Spectroscopic z"</th><td>{o.redshift.map_or("unknown".into(), |z| format!("{z:.4}"))}</td></tr>
            <tr><th>"Class"</th><td>{o.class.name()}</td></tr>
            <tr><th>"Position"</th><td>{match (o.ra, o.dec) { (Some(r), Some(d)) => format!("RA {r:.5}°, Dec {d:.5}°"), _ => "unknown".into() }}</td></tr>
            <tr><th>"Provenance"</th><td>{format!("{} — {}: {}", o.provenance.name(), o.source, detail.source_detail)}</td></tr>
            {detail.valid_fraction.map(|v| view! { <tr><th>"Inside the frame"</th><td>{format!("{:.0}%", v * 100.0)}</td></tr> })}
        </table>
        <h3>"Predictions"</h3>
        <table class="predictions">
            <tr><th>"source"</th><th>"redshift"</th><th>"class"</th></tr>
            {server.into_iter().map(|p| {
                let name = p.model.clone();
                view! {
                <tr class="server" data-model=name><td>{format!("server: {}", p.model)}</td><td>{redshift_text(p.redshift, p.redshift_sigma)}</td>
                <td>{p.class.map_or_else(|| "no class prediction".to_string(), |c| c.name().to_string())}</td></tr>
                }
            }).collect_view()}
            {move || match browser.get() {
                None => view! { <tr><td>"browser"</td><td colspan="2">"running…"</td></tr> }.into_any(),
                Some(Err(e)) => view! { <tr><td>"browser"</td><td colspan="2" class="error">{e}</td></tr> }.into_any(),
                Some(Ok((p, ran, ms))) => view! {
                    <tr class="browser"><td>{format!("browser ({}, {ms:.1} ms)", ran.label())}</td><td>{redshift_text(p.redshift, p.redshift_sigma)}</td><td>{p.class.name()}</td></tr>
                }.into_any(),
            }}
        </table>
    }
}

/// "0.4123 ± 0.0210" for a model with σ_z, "0.4123" for one without.
fn redshift_text(z: f32, sigma: Option<f32>) -> String {
    // A prediction a hair below 0 reads 0.0000, not -0.0000.
    let z = if z.abs() < 5e-5 { 0.0 } else { z };
    match sigma {
        Some(s) => format!("{z:.4} ± {s:.4}"),
        None => format!("{z:.4}"),
    }
}
