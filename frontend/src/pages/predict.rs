//! Predict in the browser: PhotoZ on the selected objects, in wasm, timed.

use super::ErrorMessage;
use crate::Selection;
use crate::charts::DensityScatter;
use crate::inference::Ran;
use cosmicai_frontend::protocol::Choice;
use cosmicai_shared::Provenance;
use cosmicai_shared::api::{ObjectPage, ObjectSummary};
use leptos::prelude::*;

/// `#/predict?backend=webgpu|cpu|auto` picks the backend from a link (the benchmark uses it).
fn initial_choice() -> Choice {
    crate::hash_param("backend")
        .and_then(|v| Choice::from_key(&v))
        .unwrap_or(Choice::Auto)
}

/// Most objects one selection sends to Predict (one API page).
pub const MAX_PICKED: usize = 1000;

/// Opens Predict on the objects `ids` (the first [`MAX_PICKED`]), fetched by id and
/// put in `pick` (the app's [`Selection`]); a failure goes to `status`. The sky
/// map's and the plots' selections use it.
pub fn predict_objects(
    ids: &[i64],
    pick: RwSignal<Vec<ObjectSummary>>,
    status: RwSignal<Option<String>>,
) {
    // Nothing picked would open Predict on its default galaxies instead.
    if ids.is_empty() {
        status.set(Some("no objects are picked: nothing to predict".into()));
        return;
    }
    const FETCHING: &str = "Fetching the picked objects…";
    // A second click while the first is fetched sends nothing more.
    if status.get_untracked().as_deref() == Some(FETCHING) {
        return;
    }
    status.set(Some(FETCHING.into()));
    let ids: Vec<String> = ids.iter().take(MAX_PICKED).map(i64::to_string).collect();
    let url = format!("/api/objects?limit={MAX_PICKED}&ids={}", ids.join(","));
    leptos::task::spawn_local(async move {
        let reply = crate::api::get::<ObjectPage>(&url).await;
        // The page it was asked on is gone (the user went on): pick, but do
        // not pull them back to Predict.
        let here = status.try_set(None).is_none();
        match reply {
            Ok(page) => {
                pick.set(page.objects);
                if here {
                    crate::navigate("/predict");
                }
            }
            Err(e) => {
                status.try_set(Some(e));
            }
        }
    });
}

#[component]
pub fn PredictPage() -> impl IntoView {
    let selection = use_context::<Selection>().expect("selection context").0;
    let choice = RwSignal::new(initial_choice());
    // Bumped by "run again": the same selection, timed again (warm).
    let again = RwSignal::new(0u32);
    let history = RwSignal::new(Vec::<(Ran, usize, f64, bool)>::new());
    let outcome = LocalResource::new(move || {
        let chosen = selection.get();
        let choice = choice.get();
        again.track();
        async move {
            let objects: Vec<ObjectSummary> = if chosen.is_empty() {
                // Nothing picked on Explore: these 32 labelled galaxies.
                crate::api::get::<ObjectPage>(
                    "/api/objects?class=GALAXY&z_min=0&limit=32&provenance=real",
                )
                .await?
                .objects
            } else {
                chosen
            };
            let magnitudes: Vec<[f32; 5]> = objects.iter().map(|o| o.magnitudes).collect();
            let batch = crate::inference::run(&magnitudes, choice).await?;
            history
                .update(|h| h.push((batch.ran, objects.len(), batch.ms, batch.first_on_backend)));
            Ok::<_, String>((objects, batch))
        }
    });
    view! {
        <h2>"Predict in the browser"</h2>
        <p>"PhotoZ (the shipped weights) runs here with burn, on the GPU through WebGPU when the browser offers it, else on the CPU in WebAssembly, on the objects picked on Explore (or 32 real galaxies)."</p>
        <div class="backend-choice">
            <label>"backend "
                <select class="backend" on:change=move |ev| {
                    if let Some(c) = Choice::from_key(&event_target_value(&ev)) { choice.set(c) }
                }>
                    {Choice::ALL.into_iter().map(|c| view! {
                        <option value=c.key() selected=move || choice.get() == c>{c.label()}</option>
                    }).collect_view()}
                </select>
            </label>
            <button class="again" on:click=move |_| again.update(|n| *n += 1)>"run again"</button>
        </div>
        // Picks live in this tab only: a reload or a shared link starts without them.
        {move || selection.with(Vec::is_empty).then(|| view! {
            <p class="note default-set">"No objects are picked (picks made on Explore, the sky or the plots last until the page is reloaded): these are 32 real galaxies."</p>
        })}
        {move || match outcome.get() {
            None => view! { <p class="loading">"Loading the model and predicting…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok((objects, batch))) => {
                let predictions = &batch.predictions;
                let points: Vec<(f32, f32)> = objects.iter().zip(predictions).filter_map(|(o, p)| o.redshift.map(|z| (z, p.redshift))).collect();
                let where_ = match &batch.adapter {
                    Some(a) => format!("{} on {a}", batch.ran.label()),
                    None => batch.ran.label().to_string(),
                };
                let first = if batch.first_on_backend { " (first batch on this backend: includes its set-up)" } else { "" };
                view! {
                    <p class="timing" data-objects=objects.len() data-backend=batch.ran.key() data-ms=batch.ms data-first=batch.first_on_backend.to_string()>
                        {format!("{} objects in one batch on {where_}: {:.1} ms{first}", objects.len(), batch.ms)}
                    </p>
                    {batch.fallback.clone().map(|why| view! { <p class="fallback">"Ran on the CPU: WebGPU is not available (" {why} ")."</p> })}
                    <DensityScatter points=points />
                    <table class="predictions">
                        <tr><th>"object"</th><th>"data"</th><th>"class"</th><th>"predicted class"</th><th>"spectroscopic z"</th><th>"predicted z"</th><th>"σ_z"</th></tr>
                        {objects.iter().zip(predictions).map(|(o, p)| view! {
                            <tr>
                                <td><a href=format!("#/object/{}", o.id)>{o.id}</a></td>
                                <td class="provenance">{if o.provenance == Provenance::Synthetic { "synthetic image" } else { "real" }}</td>
                                <td>{o.class.name()}</td>
                                <td>{p.class.name()}</td>
                                <td>{o.redshift.map_or("—".into(), |z| format!("{z:.4}"))}</td>
                                <td class="zpred">{format!("{:.4}", p.redshift)}</td>
                                <td class="zsigma">{p.redshift_sigma.map_or("—".into(), |s| format!("{s:.4}"))}</td>
                            </tr>
                        }).collect_view()}
                    </table>
                }.into_any()
            }
        }}
        <h3>"Batches on this page"</h3>
        <table class="batches">
            <tr><th>"#"</th><th>"backend"</th><th>"objects"</th><th>"latency"</th><th>"note"</th></tr>
            {move || history.get().into_iter().enumerate().map(|(i, (ran, n, ms, first))| view! {
                <tr><td>{i + 1}</td><td>{ran.label()}</td><td>{n}</td><td>{format!("{ms:.1} ms")}</td><td>{if first { "first on this backend" } else { "" }}</td></tr>
            }).collect_view()}
        </table>
    }
}
