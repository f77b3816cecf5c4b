//! Runs: the launcher (with an estimate first), the history, and one run's live
//! monitor (Server-Sent Events, a bar per rank) that turns into its results.

use super::ErrorMessage;
use crate::charts::{Bars, DensityScatter, Histogram};
use cosmicai_shared::api::{Created, ModelEntry, RunEvent, RunInfo, RunLaunch, RunResults, Target};
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::{Device, Estimate, RunSummary};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

#[component]
pub fn RunsPage() -> impl IntoView {
    let data_prefix = RwSignal::new("catalog".to_string());
    let file_limit = RwSignal::new(String::new());
    let world_size = RwSignal::new("2".to_string());
    let batch_size = RwSignal::new("512".to_string());
    let memory = RwSignal::new("2048".to_string());
    let device = RwSignal::new("cpu".to_string());
    let target = RwSignal::new("local".to_string());
    let model = RwSignal::new("photoz".to_string());
    let models =
        LocalResource::new(|| async { crate::api::get::<Vec<ModelEntry>>("/api/models").await });
    let message = RwSignal::new(None::<Result<String, String>>);
    let launch = move || -> Result<RunLaunch, String> {
        let number = |name: &str, v: String| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{name}: {v:?} is not a whole number"))
        };
        Ok(RunLaunch {
            target: if target.get() == "aws" {
                Target::Aws
            } else {
                Target::Local
            },
            data_prefix: Some(data_prefix.get()),
            file_limit: if file_limit.get().trim().is_empty() {
                None
            } else {
                Some(number("file limit", file_limit.get())?)
            },
            world_size: number("world size", world_size.get())?,
            batch_size: number("batch size", batch_size.get())?,
            device: if device.get() == "cuda" {
                Device::Cuda
            } else {
                Device::Cpu
            },
            memory_mb: Some(number("memory", memory.get())? as u32),
            retries: 0,
            model: Some(model.get()),
        })
    };
    let estimate = move |_| {
        let body = launch();
        leptos::task::spawn_local(async move {
            let result = match body {
                Err(e) => Err(e),
                Ok(body) => crate::api::post::<_, Estimate>("/api/estimate", &body).await.map(|e| {
                    format!(
                        "Estimate: {} objects over {} ranks, about {:.2} s and ${:.6} at AWS prices.",
                        e.objects, e.ranks, e.duration_s, e.cost_usd
                    )
                }),
            };
            message.set(Some(result));
        });
    };
    let start = move |_| {
        let body = launch();
        leptos::task::spawn_local(async move {
            match body {
                Err(e) => message.set(Some(Err(e))),
                Ok(body) => match crate::api::post::<_, Created>("/api/runs", &body).await {
                    Ok(c) => crate::navigate(&format!("/runs/{}", c.id)),
                    Err(e) => message.set(Some(Err(e))),
                },
            }
        });
    };
    let sweep_sizes = RwSignal::new("1,2,4".to_string());
    let sweep_cuda = RwSignal::new(false);
    let sweep = move |_| {
        let sizes: Result<Vec<usize>, String> = sweep_sizes
            .get()
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("world sizes: {s:?} is not a whole number"))
            })
            .collect();
        let batch = batch_size
            .get()
            .trim()
            .parse::<usize>()
            .map_err(|_| "batch size: not a whole number".to_string());
        let mut devices = vec![Device::Cpu];
        if sweep_cuda.get() {
            devices.push(Device::Cuda);
        }
        let body = sizes.and_then(|world_sizes| {
            Ok(cosmicai_shared::api::SweepLaunch {
                world_sizes,
                devices,
                batch_size: batch?,
                data_prefix: Some(data_prefix.get()),
                file_limit: file_limit.get().trim().parse().ok(),
                memory_mb: memory.get().trim().parse().ok(),
                model: Some(model.get()),
            })
        });
        leptos::task::spawn_local(async move {
            match body {
                Err(e) => message.set(Some(Err(e))),
                Ok(body) => match crate::api::post::<_, Created>("/api/sweeps", &body).await {
                    Ok(c) => crate::navigate(&format!("/sweeps/{}", c.id)),
                    Err(e) => message.set(Some(Err(e))),
                },
            }
        });
    };
    let history =
        LocalResource::new(|| async { crate::api::get::<Vec<RunInfo>>("/api/runs").await });
    let field = |label: &'static str, name: &'static str, signal: RwSignal<String>| {
        view! {
            <label>{label}" "<input name=name prop:value=move || signal.get() on:input=move |ev| signal.set(event_target_value(&ev)) /></label>
        }
    };
    view! {
        <h2>"Launch a run"</h2>
        <form class="launcher" on:submit=|ev| ev.prevent_default()>
            {field("Data folder", "data_prefix", data_prefix)}
            {field("File limit", "file_limit", file_limit)}
            {field("World size", "world_size", world_size)}
            {field("Batch size", "batch_size", batch_size)}
            {field("Memory (MB)", "memory_mb", memory)}
            <label>"Model "<select name="model" on:change=move |ev| model.set(event_target_value(&ev))>
                {move || {
                    let offered: Vec<(String, bool)> = match models.get() {
                        Some(Ok(list)) => list.into_iter().map(|m| (m.name, m.reads_images)).collect(),
                        _ => vec![("photoz".to_string(), false)],
                    };
                    offered.into_iter().map(|(name, images)| {
                        let label = format!("{name}{}", if images { " (reads cutouts: use a folder with images)" } else { "" });
                        let chosen = name == model.get_untracked();
                        view! { <option value=name selected=chosen>{label}</option> }
                    }).collect_view()
                }}
            </select></label>
            <label>"Device "<select on:change=move |ev| device.set(event_target_value(&ev))><option value="cpu">"CPU"</option><option value="cuda">"CUDA"</option></select></label>
            <label>"Target "<select on:change=move |ev| target.set(event_target_value(&ev))><option value="local">"this machine"</option><option value="aws">"AWS"</option></select></label>
            <button type="button" class="estimate" on:click=estimate>"Estimate"</button>
            <button type="button" class="launch" on:click=start>"Launch"</button>
        </form>
        <form class="launcher sweep" on:submit=|ev| ev.prevent_default()>
            <label>"Sweep world sizes "<input name="sweep_sizes" prop:value=move || sweep_sizes.get() on:input=move |ev| sweep_sizes.set(event_target_value(&ev)) /></label>
            <label><input type="checkbox" on:change=move |ev| sweep_cuda.set(event_target_checked(&ev)) />" also on CUDA"</label>
            <button type="button" class="sweep" on:click=sweep>"Run sweep"</button>
            <span class="note">"(uses the data folder, batch size, file limit and memory above)"</span>
        </form>
        {move || message.get().map(|m| match m {
            Ok(text) => view! { <p class="estimate-result">{text}</p> }.into_any(),
            Err(e) => view! { <ErrorMessage message=e /> }.into_any(),
        })}
        <h2>"History"</h2>
        {move || match history.get() {
            None => view! { <p class="loading">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok(runs)) => view! {
                <table class="history">
                    <tr><th>"run"</th><th>"status"</th><th>"world size"</th><th>"device"</th><th>"objects"</th><th>"duration"</th><th>"cost"</th></tr>
                    {runs.into_iter().map(|r| view! {
                        <tr>
                            <td><a href=format!("#/runs/{}", r.id)>{r.id.clone()}</a></td>
                            <td>{r.status.name()}</td><td>{r.world_size}</td><td>{r.device.clone()}</td>
                            <td>{r.objects.map_or("—".into(), |n| n.to_string())}</td>
                            <td>{r.duration_s.map_or("—".into(), |d| format!("{d:.2} s"))}</td>
                            <td>{r.cost_usd.map_or("—".into(), |c| format!("${c:.6}"))}</td>
                        </tr>
                    }).collect_view()}
                </table>
            }.into_any(),
        }}
    }
}

#[derive(Clone, Default, PartialEq)]
struct RankView {
    state: String,
    objects: usize,
    error: Option<String>,
}

/// Folds one event into the per-rank view.
fn apply(ranks: &mut Vec<RankView>, e: &RunEvent) {
    let rank = match e {
        RunEvent::RankStarted { rank, .. }
        | RunEvent::RankReady { rank }
        | RunEvent::RankObjects { rank, .. }
        | RunEvent::RankFailed { rank, .. } => *rank,
        RunEvent::RankFinished { measure } => measure.rank,
        _ => return,
    };
    if ranks.len() <= rank {
        ranks.resize(rank + 1, RankView::default());
    }
    let r = &mut ranks[rank];
    match e {
        RunEvent::RankStarted { attempt, .. } => r.state = format!("starting (attempt {attempt})"),
        RunEvent::RankReady { .. } => r.state = "model ready".into(),
        RunEvent::RankObjects { objects, .. } => {
            r.state = "running".into();
            r.objects = *objects;
        }
        RunEvent::RankFinished { measure } => {
            r.state = "done".into();
            r.objects = measure.objects;
        }
        RunEvent::RankFailed {
            error, retrying, ..
        } => {
            r.state = if *retrying { "retrying" } else { "failed" }.into();
            r.error = Some(error.clone());
        }
        _ => {}
    }
}

#[component]
pub fn RunPage(id: String) -> impl IntoView {
    let events = RwSignal::new(Vec::<RunEvent>::new());
    let url = format!("/api/runs/{id}/events");
    let source = web_sys::EventSource::new(&url).ok();
    if let Some(source) = &source {
        let on_message =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |m: web_sys::MessageEvent| {
                if let Some(Ok(e)) = m
                    .data()
                    .as_string()
                    .map(|t| serde_json::from_str::<RunEvent>(&t))
                {
                    events.update(|v| v.push(e));
                }
            });
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        let s = source.clone();
        // The stream ends after the last event; stop the browser from reconnecting.
        let on_error = Closure::<dyn FnMut()>::new(move || s.close());
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
    }
    let closer = source.clone();
    on_cleanup(move || {
        if let Some(s) = closer {
            s.close()
        }
    });
    let status = move || {
        events.with(|v| {
            v.iter().rev().find_map(|e| match e {
                RunEvent::Finished { status } => Some(Ok(*status)),
                RunEvent::Error { error } => Some(Err(error.clone())),
                _ => None,
            })
        })
    };
    let ranks = move || {
        let mut ranks: Vec<RankView> = Vec::new();
        events.with(|v| v.iter().for_each(|e| apply(&mut ranks, e)));
        ranks
    };
    let id2 = id.clone();
    let results = LocalResource::new(move || {
        let finished = status();
        let id = id2.clone();
        async move {
            match finished {
                Some(Ok(_)) => {
                    Some(crate::api::get::<RunResults>(&format!("/api/runs/{id}/results")).await)
                }
                _ => None,
            }
        }
    });
    view! {
        <p><a href="#/runs">"← Runs"</a></p>
        <h2>"Run " {id.clone()}</h2>
        <p class="run-status">{move || match status() {
            None => "running…".to_string(),
            Some(Ok(s)) => format!("finished: {}", s.name()),
            Some(Err(e)) => format!("error: {e}"),
        }}</p>
        <div class="ranks">
            {move || {
                let ranks = ranks();
                let most = ranks.iter().map(|r| r.objects).max().unwrap_or(1).max(1);
                ranks.into_iter().enumerate().map(|(i, r)| view! {
                    <div class="rank" data-state=r.state.clone()>
                        <span class="rank-name">{format!("rank {i}")}</span>
                        <progress max=most value=r.objects></progress>
                        <span>{format!("{} · {} objects", r.state, r.objects)}</span>
                        {r.error.map(|e| view! { <span class="error">{e}</span> })}
                    </div>
                }).collect_view()
            }}
        </div>
        {move || match results.get() {
            Some(Some(Ok(r))) => view! { <ResultsView results=r /> }.into_any(),
            Some(Some(Err(e))) => view! { <ErrorMessage message=e /> }.into_any(),
            _ => ().into_any(),
        }}
    }
}

/// The run's model as the API names it (file name only).
fn model_name(summary: &RunSummary) -> String {
    let model = if summary.model.is_empty() {
        "photoz"
    } else {
        &summary.model
    };
    match ModelSpec::parse(model) {
        Ok(spec) => match spec.weights() {
            Some(path) => format!(
                "{}:{}",
                spec.family(),
                path.rsplit('/').next().unwrap_or(path)
            ),
            None => spec.family().to_string(),
        },
        Err(_) => model.to_string(),
    }
}

/// Class accuracy, or why there is none.
fn class_line(summary: &RunSummary) -> String {
    if !summary.predicts_class {
        return "no class prediction (redshift only)".into();
    }
    match summary.metrics.as_ref().and_then(|m| m.class_accuracy) {
        Some(a) => format!("class accuracy {a:.3}"),
        None => "class accuracy: no labelled objects".into(),
    }
}

#[component]
fn ResultsView(results: RunResults) -> impl IntoView {
    let s = results.summary;
    let points: Vec<(f32, f32)> = results
        .scatter
        .iter()
        .map(|p| (p.z_spec, p.z_pred))
        .collect();
    let residuals: Vec<f64> = results
        .scatter
        .iter()
        .map(|p| ((p.z_pred - p.z_spec) / (1.0 + p.z_spec)) as f64)
        .collect();
    let groups = s
        .metrics
        .as_ref()
        .map(|m| {
            [
                ("galaxy", m.galaxy.clone()),
                ("qso", m.qso.clone()),
                ("all", m.all.clone()),
            ]
        })
        .unwrap_or_default();
    let metric_rows = groups
        .into_iter()
        .filter_map(|(group, m)| {
            let m = m?;
            Some(view! {
                <tr><td>{group}</td><td>{m.n}</td>
                <td>{format!("{:.4}", m.mae)}</td><td>{format!("{:.4}", m.mse)}</td><td>{format!("{:+.4}", m.bias)}</td>
                <td>{format!("{:.4}", m.nmad)}</td><td>{format!("{:.3}", m.r2)}</td>
                <td>{format!("{:.3}", m.outlier_frac_0_05)}</td><td>{format!("{:.3}", m.outlier_frac_0_15)}</td></tr>
            })
        })
        .collect_view();
    let durations: Vec<(String, f64)> = s
        .per_rank
        .iter()
        .map(|r| (format!("rank {}", r.rank), r.duration_s))
        .collect();
    let memory: Vec<(String, f64)> = s
        .per_rank
        .iter()
        .map(|r| (format!("rank {}", r.rank), r.peak_rss_mb))
        .collect();
    let line = format!(
        "{} objects in {:.2} s ({:.0} objects/s) with {}, {}",
        s.objects,
        s.duration_s,
        s.samples_per_s,
        model_name(&s),
        class_line(&s)
    );
    let cost = s.cost;
    view! {
        <section class="results">
            <h3>"Results"</h3>
            <p class="results-line">{line}</p>
            <div class="charts">
                <DensityScatter points=points />
                <Histogram values=residuals lo=-0.3 hi=0.3 label="(z_pred − z_spec) / (1 + z_spec)".to_string() />
            </div>
            <p class="note">"Metrics cover every labelled object in the run's data. The shipped PhotoZ was trained on 80% of the bundled catalogs, so these include training objects; held-out figures come from "<code>"cosmicai eval --split validation"</code>" (see the model card)."</p>
            <table class="metrics">
                <tr><th>"objects"</th><th>"n"</th><th>"MAE"</th><th>"MSE"</th><th>"bias"</th><th>"NMAD"</th><th>"R²"</th><th>"outliers >0.05"</th><th>"outliers >0.15"</th></tr>
                {metric_rows}
            </table>
            <h4>"Per rank"</h4>
            <div class="charts"><Bars items=durations unit="s".to_string() /><Bars items=memory unit="MB".to_string() /></div>
            <h4>"Cost at AWS prices"</h4>
            <table class="cost">
                <tr><td>"Lambda compute"</td><td>{format!("{:.3} GB-s", cost.lambda_gb_s)}</td><td>{format!("${:.6}", cost.lambda_compute_usd)}</td></tr>
                <tr><td>"Lambda requests"</td><td>{cost.lambda_requests}</td><td>{format!("${:.6}", cost.lambda_requests_usd)}</td></tr>
                <tr><td>"Step Functions"</td><td>{format!("{} transitions, {} Express children", cost.state_transitions, cost.express_executions)}</td><td>{format!("${:.6}", cost.step_functions_usd)}</td></tr>
                <tr><td>"S3 requests"</td><td>{format!("{} put/list, {} get", cost.s3_put_list, cost.s3_get)}</td><td>{format!("${:.6}", cost.s3_usd)}</td></tr>
                <tr class="total"><td>"Total"</td><td></td><td>{format!("${:.6}", cost.total_usd)}</td></tr>
            </table>
        </section>
    }
}
