//! One run: its live monitor (Server-Sent Events, a bar per rank) that turns into
//! its results (density scatter, residuals, metrics, per-rank bars, cost).

use super::ErrorMessage;
use crate::charts::{Bars, DensityScatter, Histogram};
use cosmicai_shared::api::{Created, RunEvent, RunInfo, RunResults};
use cosmicai_shared::model::ModelSpec;
use cosmicai_shared::run::{RunStatus, RunSummary};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

#[derive(Clone, Default, PartialEq)]
struct RankView {
    state: String,
    objects: usize,
    error: Option<String>,
}

/// Whether a rank has ended, done or failed for good.
fn ended(rank: &RankView) -> bool {
    rank.state == "done" || rank.state == "failed"
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
    // Ranks come from the server: a rank number past any world size is not
    // worth a vector that long.
    if rank >= cosmicai_shared::run::MAX_WORLD_SIZE {
        return;
    }
    if ranks.len() <= rank {
        ranks.resize(rank + 1, RankView::default());
    }
    let r = &mut ranks[rank];
    match e {
        RunEvent::RankStarted { attempt, .. } => {
            r.state = format!("starting (attempt {attempt})");
            // A retry starts afresh: the last attempt's error is not this one's.
            r.error = None;
        }
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

/// `GET /api/runs/{id}`: the run as the registry has it (the rest of the reply,
/// its events, comes through the stream).
#[derive(Clone, serde::Deserialize)]
struct Detail {
    run: RunInfo,
    /// The sweep running it, whose cancel alone stops it.
    #[serde(default)]
    sweep: Option<String>,
    /// Its events from the one asked for (a page of them), while this server
    /// holds them: what the page follows when its stream is gone.
    #[serde(default)]
    events: Vec<RunEvent>,
    #[serde(default)]
    next_events_from: Option<usize>,
}

/// Folds a run's events into the page, in one update of its ranks (each
/// update redraws their rows): the ranks' progress, then the run's end.
fn fold(events: &[RunEvent], ranks: RwSignal<Vec<RankView>>, ending: RwSignal<Ending>) {
    if events.is_empty() {
        return;
    }
    ranks.try_update(|r| {
        for e in events {
            apply(r, e);
        }
    });
    for e in events {
        match e {
            RunEvent::Finished { status } => ending.try_set(Some(Ok(*status))),
            RunEvent::Error { error } => ending.try_set(Some(Err(error.clone()))),
            _ => None,
        };
    }
}

/// How often at most streamed events are drawn: a run of 10,000 ranks sends
/// 50,000 (all at once when a finished run's page is opened).
const DRAW_EVERY_MS: u64 = 150;

/// How the run ended, as far as this page knows: `Ok` its status, `Err` its error.
type Ending = Option<Result<RunStatus, String>>;

/// Rank rows shown at most; the counts above them cover every rank.
const RANK_ROWS: usize = 200;

#[component]
pub fn RunPage(id: String) -> impl IntoView {
    // Events are folded as they come, a batch per draw (never all again per
    // event: a run of 10,000 ranks sends 50,000).
    let ranks = RwSignal::new(Vec::<RankView>::new());
    let ending = RwSignal::new(Ending::None);
    let detail = RwSignal::new(None::<Result<RunInfo, String>>);
    let sweep = RwSignal::new(None::<String>);
    // The number of the next event (the stream's ids are event numbers): where
    // polling takes up should the stream be gone.
    let next_event = StoredValue::new(0usize);
    // The stream is gone and the page polls instead (said on the page).
    let polling = RwSignal::new(false);
    // The server cannot be reached just now: the stream, or polling, tries again.
    let lost = RwSignal::new(false);
    // Times the stream has opened: a reconnection still pending some seconds
    // after an error is a lost server (the server also ends idle streams on
    // purpose, and the browser is back within 3 s).
    let opens = StoredValue::new(0u32);
    // Streamed events not drawn yet, and whether a draw is due.
    let pending = StoredValue::new(Vec::<RunEvent>::new());
    let draw_due = StoredValue::new(false);
    let draw = move || {
        draw_due.try_set_value(false);
        let events = pending.try_update_value(std::mem::take).unwrap_or_default();
        fold(&events, ranks, ending);
    };
    // Whether the page is still shown: a poll started for it stops when it goes.
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
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
                    if let Ok(n) = m.last_event_id().parse::<usize>() {
                        next_event.try_set_value(n + 1);
                    }
                    if lost.try_get_untracked() == Some(true) {
                        lost.try_set(false);
                    }
                    let end = matches!(e, RunEvent::Finished { .. } | RunEvent::Error { .. });
                    pending.try_update_value(|p| p.push(e));
                    if end {
                        draw();
                    } else if draw_due.try_get_value() == Some(false) {
                        draw_due.try_set_value(true);
                        set_timeout(draw, std::time::Duration::from_millis(DRAW_EVERY_MS));
                    }
                }
            });
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        let s = source.clone();
        // The stream ends after the last event: then stop the browser from
        // reconnecting. Before that (the server closes idle streams, or asks
        // back later about a run another process runs) let it reconnect: it
        // sends Last-Event-ID and the server resumes after it. A browser that
        // gave up (404, 429, a server gone) leaves the run to be asked after.
        let id = id.clone();
        let alive = alive.clone();
        let on_error = Closure::<dyn FnMut()>::new(move || {
            let over = ending.with_untracked(Option::is_some);
            if over {
                s.close();
            } else if s.ready_state() == web_sys::EventSource::CONNECTING {
                // The browser reconnects by itself: said if it is not back soon.
                let seen = opens.try_get_value();
                set_timeout(
                    move || {
                        let over = ending.try_with_untracked(Option::is_some).unwrap_or(true);
                        if !over && opens.try_get_value() == seen {
                            lost.try_set(true);
                        }
                    },
                    std::time::Duration::from_secs(8),
                );
            } else if s.ready_state() == web_sys::EventSource::CLOSED {
                s.close();
                // What the stream brought is drawn first: polling takes up after it.
                draw();
                polling.set(true);
                leptos::task::spawn_local(poll_until_over(
                    id.clone(),
                    Followed {
                        ranks,
                        ending,
                        detail,
                        next_event,
                        lost,
                    },
                    alive.clone(),
                ));
            }
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            opens.try_update_value(|n| *n += 1);
            lost.try_set(false);
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        on_open.forget();
    }
    let closer = source.clone();
    let leaving = alive.clone();
    on_cleanup(move || {
        leaving.store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = closer {
            s.close()
        }
    });
    {
        let id = id.clone();
        leptos::task::spawn_local(async move {
            let reply = crate::api::get::<Detail>(&format!("/api/runs/{id}")).await;
            if let Ok(d) = &reply {
                sweep.set(d.sweep.clone());
            }
            detail.set(Some(reply.map(|d| d.run)));
        });
    }
    let status = move || ending.get();
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
    let world_size = move || match detail.get() {
        Some(Ok(run)) => Some(run.world_size),
        _ => None,
    };
    view! {
        <p><a href="#/runs">"← Runs"</a></p>
        <h2>"Run " {id.clone()}</h2>
        {move || match detail.get() {
            Some(Ok(run)) => view! {
                <p class="run-settings">{format!(
                    "{} · batch {} · {} · data {}",
                    cosmicai_shared::counted(run.world_size, "rank"), run.batch_size, run.device, run.data_prefix
                )}</p>
            }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            None => ().into_any(),
        }}
        <p class="run-status" role="status">{move || match status() {
            None => "running…".to_string(),
            Some(Ok(s)) => format!("finished: {}", s.name()),
            // Said once: the run's own error above says it already.
            Some(Err(e)) if matches!(detail.get(), Some(Err(d)) if d == e) => String::new(),
            Some(Err(e)) => format!("error: {e}"),
        }}</p>
        {move || (lost.get() && status().is_none()).then(|| view! {
            <p class="note lost" role="alert">"The server cannot be reached: trying again. What is shown is as it was last heard."</p>
        })}
        {move || (polling.get() && status().is_none()).then(|| view! {
            <p class="note polling">"The live stream closed: the run is followed by asking the server every 2 s."</p>
        })}
        {
            let id = id.clone();
            move || match sweep.get() {
                // Cancelling one run of a sweep alone is refused: its sweep is named.
                Some(sweep) => view! {
                    <p class="note part-of-sweep">"Part of "
                        <a href=format!("#/sweeps/{sweep}")>{format!("sweep {sweep}")}</a>
                        {move || status().is_none().then_some(": cancel the sweep to stop it")}
                    </p>
                }.into_any(),
                None => view! {
                    <CancelButton id=id.clone() over=Signal::derive(move || status().is_some()) />
                }.into_any(),
            }
        }
        {
            // A sweep's runs are the sweep's: not resumed one by one.
            let id = id.clone();
            move || sweep.get().is_none().then(|| view! {
                <ResumeButton id=id.clone() over=Signal::derive(move || status().is_some()) />
            })
        }
        {move || {
            // Counted in place: a clone of 10,000 ranks at each event would undo
            // folding them as they come.
            let (seen, done, failed, objects, unended) = ranks.with(|ranks| {
                (
                    ranks.len(),
                    ranks.iter().filter(|r| r.state == "done").count(),
                    ranks.iter().filter(|r| r.state == "failed").count(),
                    ranks.iter().map(|r| r.objects).sum::<usize>(),
                    ranks.iter().filter(|r| !r.state.is_empty() && !ended(r)).count(),
                )
            });
            let cut = match status() {
                Some(Ok(RunStatus::Interrupted)) if unended > 0 => format!(", {unended} interrupted"),
                _ => String::new(),
            };
            // A run reopened after its end has no events here (an interrupted
            // one has its recorded ranks): its results say it all.
            let over_unseen = seen == 0 && status().is_some();
            world_size().filter(|_| !over_unseen).map(|n| view! {
                <div class="overall">
                    <progress aria-label="ranks ended" max=n.max(1) value=done + failed></progress>
                    <span>{format!("{done} of {} done, {failed} failed{cut} · {objects} objects{}", cosmicai_shared::counted(n, "rank"), if over_unseen || status().is_some() { "" } else { " so far" })}</span>
                </div>
            })
        }}
        <div class="ranks">
            {move || {
                let (shown, hidden, most) = ranks.with(|ranks| {
                    let most = ranks.iter().map(|r| r.objects).max().unwrap_or(1).max(1);
                    let shown: Vec<RankView> = ranks.iter().take(RANK_ROWS).cloned().collect();
                    (shown, ranks.len().saturating_sub(RANK_ROWS), most)
                });
                // A run cut short (its coordinator gone) took its unfinished ranks with it.
                let cut = matches!(status(), Some(Ok(RunStatus::Interrupted)));
                let rows = shown.into_iter().enumerate().map(|(i, mut r)| {
                    // (A rank never heard of, between two that were, stays blank.)
                    if cut && !r.state.is_empty() && !ended(&r) {
                        r.state = "interrupted".into();
                    }
                    // A rank that is done is full, whatever its share of the objects.
                    let value = if r.state == "done" { most } else { r.objects };
                    view! {
                    <div class="rank" data-state=r.state.clone()>
                        <span class="rank-name">{format!("rank {i}")}</span>
                        <progress aria-label=format!("rank {i}") max=most value=value></progress>
                        <span>{format!("{} · {} objects", r.state, r.objects)}</span>
                        {r.error.map(|e| view! { <span class="error">{e}</span> })}
                    </div>
                    }
                }).collect_view();
                view! {
                    {rows}
                    {(hidden > 0).then(|| view! { <p class="note">{format!("… and {hidden} more ranks (counted above)")}</p> })}
                }
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

/// What the page shows of a run that polling keeps up to date.
struct Followed {
    ranks: RwSignal<Vec<RankView>>,
    ending: RwSignal<Ending>,
    detail: RwSignal<Option<Result<RunInfo, String>>>,
    next_event: StoredValue<usize>,
    lost: RwSignal<bool>,
}

/// The stream is gone before the run's end (the browser gave up on it): the
/// run is asked after every 2 s, with its events since the last one seen (a
/// page of them at a time), until it is over or unknown.
async fn poll_until_over(
    id: String,
    page: Followed,
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let Followed {
        ranks,
        ending,
        detail,
        next_event,
        lost,
    } = page;
    while alive.load(std::sync::atomic::Ordering::Relaxed) {
        let from = next_event.try_get_value().unwrap_or(0);
        let reply = crate::api::get::<Detail>(&format!("/api/runs/{id}?events_from={from}")).await;
        if !alive.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        lost.try_set(reply.as_ref().is_err_and(|e| e == crate::api::UNREACHABLE));
        if let Ok(d) = &reply {
            fold(&d.events, ranks, ending);
            next_event.try_set_value(from + d.events.len());
            // More pages already there: read them before waiting.
            if d.next_events_from.is_some() {
                continue;
            }
        }
        match reply {
            Ok(d) if d.run.status != RunStatus::Running => {
                ending.set(Some(Ok(d.run.status)));
                detail.set(Some(Ok(d.run)));
                return;
            }
            Ok(_) => {}
            Err(e) if e.starts_with("404") => {
                ending.set(Some(Err(e)));
                return;
            }
            // The server away for a while: keep asking.
            Err(_) => {}
        }
        crate::api::sleep_ms(2000).await;
    }
}

/// Stops the run (its running ranks are killed, queued ones never start); what
/// the server says back is shown, also once the run is `over`.
#[component]
fn CancelButton(id: String, over: Signal<bool>) -> impl IntoView {
    let said = RwSignal::new(None::<Result<String, String>>);
    let cancel = move |_| {
        let id = id.clone();
        said.set(Some(Ok("cancelling…".into())));
        leptos::task::spawn_local(async move {
            let url = format!("/api/runs/{id}/cancel");
            let reply = crate::api::post::<_, Created>(&url, &serde_json::json!({})).await;
            said.set(Some(reply.map(|_| {
                "cancel requested: running ranks stop, queued ones never start".into()
            })));
        });
    };
    view! {
        <p class="cancel">
            {move || (!over.get()).then(|| view! {
                <button type="button" class="cancel" on:click=cancel.clone() prop:disabled=move || said.get().is_some_and(|s| s.is_ok())>"Cancel run"</button>
            })}
            {move || match said.get() {
                Some(Ok(m)) => view! { <span class="note">{m}</span> }.into_any(),
                Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
                None => ().into_any(),
            }}
        </p>
    }
}

/// Runs again the ranks of a run that ended without all their results
/// (interrupted, cancelled, failed ranks), where the server says it can; then
/// the page is made again, following the resumed run under the same id.
#[component]
fn ResumeButton(id: String, over: Signal<bool>) -> impl IntoView {
    let said = RwSignal::new(None::<Result<String, String>>);
    // Asked once the run is over (the row read at the page's start may be
    // from before its end).
    let asked = id.clone();
    // Some(on AWS) where it can be resumed.
    let resumable = LocalResource::new(move || {
        let (over, id) = (over.get(), asked.clone());
        async move {
            if !over {
                return None;
            }
            crate::api::get::<Detail>(&format!("/api/runs/{id}"))
                .await
                .ok()
                .filter(|d| d.run.resumable)
                .map(|d| d.run.on_aws)
        }
    });
    let remake = use_context::<crate::Remake>();
    let resume = move |_| {
        let id = id.clone();
        said.set(Some(Ok("resuming…".into())));
        leptos::task::spawn_local(async move {
            let url = format!("/api/runs/{id}/resume");
            match crate::api::post::<_, Created>(&url, &serde_json::json!({})).await {
                Ok(_) => {
                    if let Some(remake) = remake {
                        remake.page();
                    }
                }
                Err(e) => said.set(Some(Err(e))),
            }
        });
    };
    move || {
        resumable.get().flatten().map(|on_aws| {
            let resume = resume.clone();
            let how = if on_aws {
                "a new execution on its AWS stack runs again its ranks that left no results; the others' are kept"
            } else {
                "runs again its ranks that left no results; the others' are kept"
            };
            view! {
                <p class="resume">
                    <button type="button" class="resume" on:click=resume prop:disabled=move || said.get().is_some_and(|s| s.is_ok())>"Resume run"</button>
                    " "
                    <span class="note">{how}</span>
                    {move || match said.get() {
                        Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
                        _ => ().into_any(),
                    }}
                </p>
            }
        })
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

/// Failed ranks listed with their errors, at most.
const FAILURES_LISTED: usize = 100;

/// Ranks drawn in the per-rank bars, at most.
const BAR_RANKS: usize = 32;

#[component]
fn ResultsView(results: RunResults) -> impl IntoView {
    let s = results.summary;
    let points: Vec<(f32, f32)> = results
        .scatter
        .iter()
        .map(|p| (p.z_spec, p.z_pred))
        .collect();
    // Outliers (|Δz| / (1 + z) > 0.15): all counted, the farthest off marked
    // (the scatter chooses), each opening its object when clicked.
    let outliers: Vec<(f32, f32, i64)> = results
        .scatter
        .iter()
        .filter(|p| ((p.z_pred - p.z_spec) / (1.0 + p.z_spec)).abs() > 0.15)
        .filter_map(|p| Some((p.z_spec, p.z_pred, p.id?)))
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
            let held = m.held_out.as_ref();
            [
                ("galaxy", m.galaxy.clone()),
                ("qso", m.qso.clone()),
                ("all classes (stars included)", m.all.clone()),
                // The validation split: objects PhotoZ's training left out.
                ("galaxy, held out", held.and_then(|h| h.galaxy.clone())),
                ("qso, held out", held.and_then(|h| h.qso.clone())),
            ]
        })
        .map(Vec::from)
        .unwrap_or_default();
    let metric_rows = groups
        .into_iter()
        .filter_map(|(group, m)| {
            let m = m?;
            Some(view! {
                <tr><td>{group}</td><td>{m.n}</td>
                <td>{format!("{:.4}", m.mae)}</td><td>{format!("{:.4}", m.mse)}</td><td>{format!("{:+.4}", m.bias)}</td>
                <td>{format!("{:.4}", m.nmad)}</td><td>{m.r2.map_or_else(|| "—".into(), |r| format!("{r:.3}"))}</td>
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
    // The slowest ranks, at most BAR_RANKS of them: a bar per rank of 10,000
    // would be a chart 200,000 pixels tall, and the slow ones set the wall.
    let mut slowest: Vec<&cosmicai_shared::run::RankMeasure> = s.per_rank.iter().collect();
    slowest.sort_by(|a, b| b.duration_s.total_cmp(&a.duration_s));
    slowest.truncate(BAR_RANKS);
    let bars_note = (s.per_rank.len() > BAR_RANKS)
        .then(|| format!("The {BAR_RANKS} slowest of {} ranks.", s.per_rank.len()));
    let durations: Vec<(String, f64)> = slowest
        .iter()
        .map(|r| (format!("rank {}", r.rank), r.duration_s))
        .collect();
    let memory: Vec<(String, f64)> = slowest
        .iter()
        .map(|r| (format!("rank {}", r.rank), r.peak_rss_mb))
        .collect();
    // Ranks that failed for good, and why: a reopened run has no events left.
    let failures: Vec<(usize, String)> = s
        .per_rank
        .iter()
        .filter(|r| s.failed_ranks.contains(&r.rank))
        .take(FAILURES_LISTED)
        .map(|r| {
            (
                r.rank,
                r.error
                    .clone()
                    .unwrap_or_else(|| "no error recorded".into()),
            )
        })
        .collect();
    let failures_hidden = s.failed_ranks.len().saturating_sub(failures.len());
    let labelled = s.metrics.as_ref().and_then(|m| m.all.as_ref()).map(|m| m.n);
    let sample_note = match labelled {
        Some(n) if n > points.len() => format!(
            "The plots show an even sample of {} of the {n} labelled objects; the metrics cover all of them.",
            points.len()
        ),
        _ => format!("The plots show all {} labelled objects.", points.len()),
    };
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
    let unscored = s.metrics.as_ref().map_or(0, |m| m.unscored);
    let synthetic = s.metrics.as_ref().map_or(0, |m| m.synthetic);
    let shipped = model_name(&s) == "photoz";
    let cost = s.cost;
    view! {
        <section class="results">
            <h3>"Results"</h3>
            <p class="results-line">{line}</p>
            {(s.resumed_ranks > 0).then(|| view! {
                <p class="note resumed">{format!(
                    "Resumed: {} kept from an earlier attempt, not run again. The time is the last attempt's; the cost is every rank's.",
                    cosmicai_shared::counted(s.resumed_ranks, "rank")
                )}</p>
            })}
            <div class="charts">
                <DensityScatter points=points outliers=outliers />
                <Histogram values=residuals lo=-0.3 hi=0.3 label="(z_pred − z_spec) / (1 + z_spec)".to_string() />
            </div>
            <p class="note scatter-sample">{sample_note}</p>
            {shipped.then(|| view! {
                <p class="note">"Metrics cover every labelled object in the run's data. The shipped PhotoZ was trained on 80% of the bundled catalogs, so these include training objects; the rows \"held out\" cover the validation split alone (objects whose id is divisible by 5), which it never trained on (its epoch was picked by their loss; see the model card)."</p>
            })}
            <table class="metrics">
                <tr><th>"objects"</th><th>"n"</th><th>"MAE"</th><th>"MSE"</th><th>"bias"</th><th>"NMAD"</th><th>"R²"</th><th>"outliers >0.05"</th><th>"outliers >0.15"</th></tr>
                {metric_rows}
            </table>
            {(synthetic > 0).then(|| view! {
                <p class="note synthetic-left-out"><span class="badge synthetic">"synthetic"</span>{format!(" {synthetic} objects came from the renderer, which drew their images from their labels: they are left out of the metrics and the plots, which are on real labels only.")}</p>
            })}
            {(unscored > 0).then(|| view! {
                <p class="note unscored">{format!("{unscored} objects with a spectroscopic redshift got no finite prediction: they are left out of the metrics.")}</p>
            })}
            {calibration}
            {(!failures.is_empty()).then(|| view! {
                <h4>"Failed ranks"</h4>
                <ul class="failed-ranks">
                    {failures.into_iter().map(|(rank, error)| view! {
                        <li><span class="rank-name">{format!("rank {rank}")}</span>": "<span class="error">{error}</span></li>
                    }).collect_view()}
                </ul>
                {(failures_hidden > 0).then(|| view! { <p class="note">{format!("… and {failures_hidden} more (all are in summary.json)")}</p> })}
            })}
            <h4>"Per rank"</h4>
            {bars_note.map(|n| view! { <p class="note">{n}</p> })}
            <div class="charts"><Bars items=durations unit="s".to_string() title="duration".to_string() /><Bars items=memory unit="MB".to_string() title="peak memory".to_string() /></div>
            <h4>"Cost at AWS prices"</h4>
            <p class="note cost-basis">"The measured durations at us-east-1 list prices: on AWS, what the functions were billed (a cold call's start included); on this machine, the time a Lambda of its memory would take (for a finished CPU rank, the longer of its time here and its CPU time over the vCPUs Lambda gives that memory: one at 1,769 MB). Not included: the data's upload, attempts that failed without a measure, GPU instances' start and idle time"{if cost.data_bytes > 0 { "; keeping the data in S3 is a monthly bill of its own, below the total." } else { ", and keeping the data in S3." }}</p>
            <table class="cost">
                <tr><td>{match &cost.lambda_architecture { Some(a) => format!("Lambda compute ({a})"), None => "Lambda compute".to_string() }}</td><td>{format!("{:.3} GB-s", cost.lambda_gb_s)}</td><td>{format!("${:.6}", cost.lambda_compute_usd)}</td></tr>
                <tr><td>"Lambda requests"</td><td>{cost.lambda_requests}</td><td>{format!("${:.6}", cost.lambda_requests_usd)}</td></tr>
                <tr><td>"Step Functions"</td><td>{format!("{} transitions, {} Express children", cost.state_transitions, cost.express_executions)}</td><td>{format!("${:.6}", cost.step_functions_usd)}</td></tr>
                {(cost.gpu_instance_s > 0.0).then(|| view! {
                    <tr><td>"GPU instances (Batch)"</td><td>{format!("{:.1} s of g5.xlarge (ranks' own time: a lower bound)", cost.gpu_instance_s)}</td><td>{format!("${:.6}", cost.gpu_instance_usd)}</td></tr>
                })}
                <tr><td>"S3 requests"</td><td>{format!("{} put/list, {} get", cost.s3_put_list, cost.s3_get)}</td><td>{format!("${:.6}", cost.s3_usd)}</td></tr>
                <tr class="total"><td>"Total"</td><td></td><td>{format!("${:.6}", cost.total_usd)}</td></tr>
                {(cost.data_bytes > 0).then(|| view! {
                    <tr class="storage"><td>"S3 storage of the data"</td><td>{format!("{} in S3 Standard, a month (not in the total)", cosmicai_shared::size::format_size(cost.data_bytes))}</td><td>{format!("${:.6}", cost.storage_usd_month)}</td></tr>
                })}
            </table>
        </section>
    }
}
