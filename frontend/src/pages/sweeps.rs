//! A sweep: the same run over world sizes (and devices), charted as it completes.

use super::ErrorMessage;
use crate::charts::LineChart;
use cosmicai_shared::api::{Created, SweepInfo, SweepRow};
use cosmicai_shared::run::{Device, RunStatus};
use leptos::prelude::*;

/// Failed looks in a row before the page stops asking (a server restarted
/// forgets its sweeps: 404 ends it at once).
const TRIES: u32 = 30;

#[component]
pub fn SweepPage(id: String) -> impl IntoView {
    let info = RwSignal::new(None::<Result<SweepInfo, String>>);
    // Kept here: the view below is rebuilt at each poll, and what the server
    // said to a cancel must outlive that.
    let cancel_said = RwSignal::new(None::<Result<(), String>>);
    let url = format!("/api/sweeps/{id}");
    // Whether the page is still shown: the poll stops when it goes (a later
    // visit starts its own), and never touches its signals after.
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let leaving = alive.clone();
    on_cleanup(move || leaving.store(false, std::sync::atomic::Ordering::Relaxed));
    // Poll once a second until the sweep is over; a failed look (the server
    // busy or away a moment) is tried again, and shown only if it lasts.
    leptos::task::spawn_local(async move {
        let mut failed = 0;
        while alive.load(std::sync::atomic::Ordering::Relaxed) {
            let reply = crate::api::get::<SweepInfo>(&url).await;
            if !alive.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let over = match &reply {
                Ok(s) => s.state != "running",
                Err(e) => {
                    failed += 1;
                    e.starts_with("404") || failed >= TRIES
                }
            };
            if reply.is_ok() {
                failed = 0;
            }
            let first = info.try_with_untracked(Option::is_none).unwrap_or(false);
            // Set only when something changed: the table is rebuilt on each set
            // (a link focused in it would lose focus every second).
            let changed = info
                .try_with_untracked(|now| now.as_ref() != Some(&reply))
                .unwrap_or(false);
            if (reply.is_ok() || over || first) && changed {
                info.try_set(Some(reply));
            }
            if over {
                break;
            }
            crate::api::sleep_ms(1000).await;
        }
    });
    // The cancel button stays while the sweep runs, not rebuilt at each poll
    // (a keyboard's focus on it would drop each second).
    let running =
        Memo::new(move |_| info.with(|i| matches!(i, Some(Ok(s)) if s.state == "running")));
    let sweep_id = id.clone();
    view! {
        <p><a href="#/runs">"← Runs"</a></p>
        <h2>"Sweep " {id.clone()}</h2>
        {move || running.get().then(|| view! { <CancelSweep id=sweep_id.clone() said=cancel_said /> })}
        {move || match info.get() {
            None => view! { <p class="loading">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok(s)) => {
                let running = s.state == "running";
                let mut devices: Vec<Device> = s.rows.iter().map(|r| r.device).collect();
                devices.dedup();
                // Points in world-size order, whatever order they were typed in;
                // runs that did not succeed are left out of the lines (a table
                // row says why), their time and cost being no measure of the size.
                let series = |f: fn(&SweepRow) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
                    devices.iter().map(|d| {
                        let mut points: Vec<(f64, f64)> = s.rows.iter()
                            .filter(|r| r.device == *d && r.status == RunStatus::Succeeded)
                            .map(|r| (r.world_size as f64, f(r)))
                            .collect();
                        points.sort_by(|a, b| a.0.total_cmp(&b.0));
                        (d.name().to_string(), points)
                    }).collect()
                };
                let left_out = s.rows.iter().filter(|r| r.status != RunStatus::Succeeded).count();
                view! {
                    <p class="sweep-state" role="status" data-state=s.state.clone()>{format!("{}: {} of {} runs done", s.state, s.rows.len(), s.planned)}</p>
                    {s.running.clone().map(|run| view! {
                        <p class="sweep-running">"Running now: "<a href=format!("#/runs/{run}")>{run.clone()}</a>" (its page shows its ranks live)"</p>
                    })}
                    {(!running).then(|| match cancel_said.get_untracked() {
                        Some(Ok(())) => view! { <p class="note">"cancel requested: its running run stopped, no more started"</p> }.into_any(),
                        _ => ().into_any(),
                    })}
                    {s.error.clone().map(|e| view! { <ErrorMessage message=e /> })}
                    <div class="charts">
                        <LineChart series=series(|r| r.duration_s) x_label="world size".to_string() y_label="duration (s)".to_string() />
                        <LineChart series=series(|r| r.cost_usd) x_label="world size".to_string() y_label="cost (USD)".to_string() />
                    </div>
                    {(left_out > 0).then(|| view! {
                        <p class="note">{format!("{left_out} runs that did not succeed are left out of the charts.")}</p>
                    })}
                    <table class="sweep">
                        <tr><th>"device"</th><th>"world size"</th><th>"run"</th><th>"status"</th><th>"objects"</th><th>"duration"</th><th>"cost"</th></tr>
                        {s.rows.iter().map(|r| view! {
                            <tr data-status=r.status.name()><td>{r.device.name()}</td><td>{r.world_size}</td><td><a href=format!("#/runs/{}", r.run_id)>{r.run_id.clone()}</a></td>
                            <td>{r.status.name()}</td><td>{r.objects}</td><td>{format!("{:.2} s", r.duration_s)}</td><td>{format!("${:.6}", r.cost_usd)}</td></tr>
                        }).collect_view()}
                    </table>
                }.into_any()
            }
        }}
    }
}

/// Stops the sweep: its running run is cancelled and no more start. What the
/// server answered goes to `said`.
#[component]
fn CancelSweep(id: String, said: RwSignal<Option<Result<(), String>>>) -> impl IntoView {
    let cancel = move |_| {
        let id = id.clone();
        said.set(Some(Ok(())));
        leptos::task::spawn_local(async move {
            let url = format!("/api/sweeps/{id}/cancel");
            let reply = crate::api::post::<_, Created>(&url, &serde_json::json!({})).await;
            said.set(Some(reply.map(|_| ())));
        });
    };
    view! {
        <p class="cancel">
            <button type="button" class="cancel" on:click=cancel prop:disabled=move || matches!(said.get(), Some(Ok(())))>"Cancel sweep"</button>
            {move || match said.get() {
                Some(Ok(())) => view! { <span class="note">"cancel requested: its running run stops, no more start"</span> }.into_any(),
                Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
                None => ().into_any(),
            }}
        </p>
    }
}
