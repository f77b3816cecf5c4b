//! A sweep: the same run over world sizes (and devices), charted as it completes.

use super::ErrorMessage;
use crate::charts::LineChart;
use cosmicai_shared::api::SweepInfo;
use cosmicai_shared::run::Device;
use leptos::prelude::*;

#[component]
pub fn SweepPage(id: String) -> impl IntoView {
    let info = RwSignal::new(None::<Result<SweepInfo, String>>);
    let url = format!("/api/sweeps/{id}");
    // Poll once a second until the sweep is over.
    leptos::task::spawn_local(async move {
        loop {
            let reply = crate::api::get::<SweepInfo>(&url).await;
            let over = !matches!(&reply, Ok(s) if s.state == "running");
            info.set(Some(reply));
            if over {
                break;
            }
            crate::api::sleep_ms(1000).await;
        }
    });
    view! {
        <p><a href="#/runs">"← Runs"</a></p>
        <h2>"Sweep " {id.clone()}</h2>
        {move || match info.get() {
            None => view! { <p class="loading">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok(s)) => {
                let mut devices: Vec<Device> = s.rows.iter().map(|r| r.device).collect();
                devices.dedup();
                let series = |f: fn(&cosmicai_shared::api::SweepRow) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
                    devices.iter().map(|d| (d.name().to_string(), s.rows.iter().filter(|r| r.device == *d).map(|r| (r.world_size as f64, f(r))).collect())).collect()
                };
                view! {
                    <p class="sweep-state" data-state=s.state.clone()>{format!("{}: {} of {} runs done", s.state, s.rows.len(), s.planned)}</p>
                    {s.error.clone().map(|e| view! { <ErrorMessage message=e /> })}
                    <div class="charts">
                        <LineChart series=series(|r| r.duration_s) x_label="world size".to_string() y_label="duration (s)".to_string() />
                        <LineChart series=series(|r| r.cost_usd) x_label="world size".to_string() y_label="cost (USD)".to_string() />
                    </div>
                    <table class="sweep">
                        <tr><th>"device"</th><th>"world size"</th><th>"run"</th><th>"status"</th><th>"objects"</th><th>"duration"</th><th>"cost"</th></tr>
                        {s.rows.iter().map(|r| view! {
                            <tr><td>{r.device.name()}</td><td>{r.world_size}</td><td><a href=format!("#/runs/{}", r.run_id)>{r.run_id.clone()}</a></td>
                            <td>{r.status.name()}</td><td>{r.objects}</td><td>{format!("{:.2} s", r.duration_s)}</td><td>{format!("${:.6}", r.cost_usd)}</td></tr>
                        }).collect_view()}
                    </table>
                }.into_any()
            }
        }}
    }
}
