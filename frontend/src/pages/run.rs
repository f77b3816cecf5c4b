//! One run: its live monitor (Server-Sent Events, a bar per rank) that turns into
//! its results (density scatter, residuals, metrics, per-rank bars, cost).

use super::ErrorMessage;
use crate::charts::{Bars, DensityScatter, Histogram};
use cosmicai_shared::api::{RunEvent, RunResults};
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::RunSummary;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

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
        // The stream ends after the last event: then stop the browser from
        // reconnecting. Before that (the server closes idle streams) let it
        // reconnect: it sends Last-Event-ID and the server resumes after it.
        let on_error = Closure::<dyn FnMut()>::new(move || {
            let over = events.with_untracked(|v| {
                v.iter()
                    .any(|e| matches!(e, RunEvent::Finished { .. } | RunEvent::Error { .. }))
            });
            if over || s.ready_state() == web_sys::EventSource::CLOSED {
                s.close()
            }
        });
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
                ranks.into_iter().enumerate().map(|(i, r)| {
                    // A rank that is done is full, whatever its share of the objects.
                    let value = if r.state == "done" { most } else { r.objects };
                    view! {
                    <div class="rank" data-state=r.state.clone()>
                        <span class="rank-name">{format!("rank {i}")}</span>
                        <progress max=most value=value></progress>
                        <span>{format!("{} · {} objects", r.state, r.objects)}</span>
                        {r.error.map(|e| view! { <span class="error">{e}</span> })}
                    </div>
                    }
                }).collect_view()
            }}
        </div>
        {move || match results.get() {
            Some(Some(Ok(r))) => view! { <ResultsView results=r /> }.into_any(),
            Some(Some(Err(e))) => view! { <ErrorMessage message=e /> }.into_any(),
            // Finished, its results on their way.
            _ if matches!(status(), Some(Ok(_))) => view! { <p class="loading">"Loading the results…"</p> }.into_any(),
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

/// Outliers marked on the results scatter, at most (the rest stay in the density).
const MAX_OUTLIER_MARKS: usize = 300;

#[component]
fn ResultsView(results: RunResults) -> impl IntoView {
    let s = results.summary;
    let points: Vec<(f32, f32)> = results
        .scatter
        .iter()
        .map(|p| (p.z_spec, p.z_pred))
        .collect();
    // Outliers (|Δz| / (1 + z) > 0.15) open their object when clicked.
    let outliers: Vec<(f32, f32, i64)> = results
        .scatter
        .iter()
        .filter(|p| ((p.z_pred - p.z_spec) / (1.0 + p.z_spec)).abs() > 0.15)
        .filter_map(|p| Some((p.z_spec, p.z_pred, p.id?)))
        .take(MAX_OUTLIER_MARKS)
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
    let calibration = s
        .metrics
        .as_ref()
        .and_then(|m| m.galaxy_calibration.clone())
        .map(|c| {
            let frac = |f: Option<f64>| f.map_or_else(|| "—".into(), |f| format!("{:.1}%", 100.0 * f));
            view! {
                <p class="calibration" data-within-1=c.within_1_sigma data-within-2=c.within_2_sigma>
                    {format!(
                        "σ_z on {} galaxies: {:.1}% within 1σ (68.3% for Gaussian errors), {:.1}% within 2σ (95.4%). Outliers (|Δz|/(1+z) > 0.15): {} of the {} the model calls low-risk, {} of the {} it flags high-risk.",
                        c.n,
                        100.0 * c.within_1_sigma,
                        100.0 * c.within_2_sigma,
                        frac(c.low_risk.outlier_frac_0_15),
                        c.low_risk.n,
                        frac(c.high_risk.outlier_frac_0_15),
                        c.high_risk.n
                    )}
                </p>
            }
        });
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
    let kernels = if s.kernels.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.kernels)
    };
    let line = format!(
        "{} objects in {:.2} s ({:.0} objects/s) with {} on {} in {}{kernels}, {}",
        s.objects,
        s.duration_s,
        s.samples_per_s,
        model_name(&s),
        s.device.name(),
        s.precision.name(),
        class_line(&s)
    );
    let cost = s.cost;
    view! {
        <section class="results">
            <h3>"Results"</h3>
            <p class="results-line">{line}</p>
            <div class="charts">
                <DensityScatter points=points outliers=outliers />
                <Histogram values=residuals lo=-0.3 hi=0.3 label="(z_pred − z_spec) / (1 + z_spec)".to_string() />
            </div>
            <p class="note">"Metrics cover every labelled object in the run's data. The shipped PhotoZ was trained on 80% of the bundled catalogs, so these include training objects; held-out figures come from "<code>"cosmicai eval --split validation"</code>" (see the model card)."</p>
            <table class="metrics">
                <tr><th>"objects"</th><th>"n"</th><th>"MAE"</th><th>"MSE"</th><th>"bias"</th><th>"NMAD"</th><th>"R²"</th><th>"outliers >0.05"</th><th>"outliers >0.15"</th></tr>
                {metric_rows}
            </table>
            {calibration}
            <h4>"Per rank"</h4>
            <div class="charts"><Bars items=durations unit="s".to_string() /><Bars items=memory unit="MB".to_string() /></div>
            <h4>"Cost at AWS prices"</h4>
            <table class="cost">
                <tr><td>"Lambda compute"</td><td>{format!("{:.3} GB-s", cost.lambda_gb_s)}</td><td>{format!("${:.6}", cost.lambda_compute_usd)}</td></tr>
                <tr><td>"Lambda requests"</td><td>{cost.lambda_requests}</td><td>{format!("${:.6}", cost.lambda_requests_usd)}</td></tr>
                <tr><td>"Step Functions"</td><td>{format!("{} transitions, {} Express children", cost.state_transitions, cost.express_executions)}</td><td>{format!("${:.6}", cost.step_functions_usd)}</td></tr>
                {(cost.gpu_instance_s > 0.0).then(|| view! {
                    <tr><td>"GPU instances (Batch)"</td><td>{format!("{:.1} s of g5.xlarge", cost.gpu_instance_s)}</td><td>{format!("${:.6}", cost.gpu_instance_usd)}</td></tr>
                })}
                <tr><td>"S3 requests"</td><td>{format!("{} put/list, {} get", cost.s3_put_list, cost.s3_get)}</td><td>{format!("${:.6}", cost.s3_usd)}</td></tr>
                <tr class="total"><td>"Total"</td><td></td><td>{format!("${:.6}", cost.total_usd)}</td></tr>
            </table>
        </section>
    }
}
