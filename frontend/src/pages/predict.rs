//! Predict in the browser: PhotoZ on the selected objects, in wasm, timed.

use super::ErrorMessage;
use crate::Selection;
use crate::charts::DensityScatter;
use cosmicai_shared::api::{ObjectPage, ObjectSummary};
use leptos::prelude::*;

#[component]
pub fn PredictPage() -> impl IntoView {
    let selection = use_context::<Selection>().expect("selection context").0;
    let outcome = LocalResource::new(move || {
        let chosen = selection.get();
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
            crate::model::ensure_loaded().await?;
            let magnitudes: Vec<[f32; 5]> = objects.iter().map(|o| o.magnitudes).collect();
            let start = crate::api::now_ms();
            let predictions = crate::model::predict(&magnitudes)?;
            let ms = crate::api::now_ms() - start;
            Ok::<_, String>((objects, predictions, ms))
        }
    });
    view! {
        <h2>"Predict in the browser"</h2>
        <p>"PhotoZ (the shipped weights) runs here, in WebAssembly, on the objects picked on Explore (or 32 real galaxies)."</p>
        {move || match outcome.get() {
            None => view! { <p class="loading">"Loading the model and predicting…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok((objects, predictions, ms))) => {
                let points: Vec<(f32, f32)> = objects.iter().zip(&predictions).filter_map(|(o, p)| o.redshift.map(|z| (z, p.redshift))).collect();
                view! {
                    <p class="timing" data-objects=objects.len()>
                        {format!("{} objects in one batch on {}: {ms:.1} ms", objects.len(), crate::model::BACKEND)}
                    </p>
                    <DensityScatter points=points />
                    <table class="predictions">
                        <tr><th>"object"</th><th>"class"</th><th>"predicted class"</th><th>"spectroscopic z"</th><th>"predicted z"</th></tr>
                        {objects.iter().zip(&predictions).map(|(o, p)| view! {
                            <tr>
                                <td><a href=format!("#/object/{}", o.id)>{o.id}</a></td>
                                <td>{o.class.name()}</td>
                                <td>{p.class.name()}</td>
                                <td>{o.redshift.map_or("—".into(), |z| format!("{z:.4}"))}</td>
                                <td class="zpred">{format!("{:.4}", p.redshift)}</td>
                            </tr>
                        }).collect_view()}
                    </table>
                }.into_any()
            }
        }}
    }
}
