//! `/api/runs/{id}/events`: a run's events as server-sent events, resumable with
//! `Last-Event-ID`, for the live view.

use super::AppStateRef;
use super::runs::find_run;
use crate::server::error::{ApiResult, Error};
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cosmicai_shared::api::RunEvent;
use cosmicai_shared::run::RunStatus;
use std::sync::Arc;

/// Server-Sent Events: every event of the run (from the start, or after the
/// `Last-Event-ID` a reconnecting browser sends), then new ones live; the stream
/// ends after `finished` or `error`, or after `--stream-idle-s` without an event
/// (the browser then reconnects and resumes, so a forgotten client holds no slot
/// for long).
#[utoipa::path(get, path = "/api/runs/{id}/events", params(("id" = String, Path)),
    responses((status = 200, description = "Server-Sent Events of RunEvent JSON, each with its number as id", content_type = "text/event-stream"),
        (status = 404, body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many open streams; see Retry-After", body = cosmicai_shared::api::ApiError)))]
pub async fn run_events(
    State(state): AppStateRef,
    caller: super::Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let mut live = state.runs.get(&id);
    if live.as_ref().is_some_and(|l| l.is_over()) {
        // Events of an attempt that ended, where another process has run the
        // run again since (resumed from the CLI), are not its events now.
        let (st, run) = (state.clone(), id.clone());
        let row = tokio::task::spawn_blocking(move || find_run(&st, &run))
            .await
            .map_err(Error::internal)??;
        if live.as_ref().is_some_and(|l| l.is_stale(row.status)) {
            live = None;
        }
    }
    let live = match live {
        Some(live) => live,
        None => {
            // A run from the registry (an earlier server, or the CLI): its final
            // status. One still running elsewhere (a CLI run) has no events
            // here: the stream ends at once, with no slot held, and asks the
            // browser to come back for its status a few seconds later.
            // One that ended: its status; an interrupted one's ranks as
            // recorded first (which finished, which were cut short), since it
            // has no results to show them (at most the first RANK_REPLAY).
            let st = state.clone();
            let (run, ranks) = tokio::task::spawn_blocking(move || {
                let run = find_run(&st, &id)?;
                if run.status != RunStatus::Interrupted {
                    return Ok((run, Vec::new()));
                }
                let ranks = super::registry(&st)?
                    .rank_events(&id, RANK_REPLAY)
                    .map_err(Error::internal)?;
                Ok::<_, Error>((run, ranks))
            })
            .await
            .map_err(Error::internal)??;
            let events: Vec<Event> = if run.status == RunStatus::Running {
                vec![
                    Event::default()
                        .retry(UNFOLLOWED_RETRY)
                        .comment("running elsewhere"),
                ]
            } else {
                ranks
                    .into_iter()
                    .map(crate::server::runs::redacted)
                    .chain([RunEvent::Finished { status: run.status }])
                    .map(|e| Event::default().json_data(&e).unwrap_or_default())
                    .collect()
            };
            let stream = futures_util::stream::iter(
                events.into_iter().map(Ok::<_, std::convert::Infallible>),
            );
            return Ok(Sse::new(stream).into_response());
        }
    };
    // Ids are event numbers; anything else in the header starts from the beginning.
    // One past the events so far waits for the next: a larger id would wait for an
    // event that may never come, holding a slot.
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last.saturating_add(1).min(live.len()));
    // A client that has seen all of a finished run gets an empty stream, with
    // no slot held. Any other takes a slot, a finished run's too: its events
    // (50,000 at 10,000 ranks) go out a page at a time, and a client that reads
    // none of them holds one page and a slot, not all of them each.
    if live.is_over() && from >= live.len() {
        let none: Vec<Result<Event, std::convert::Infallible>> = Vec::new();
        return Ok(Sse::new(futures_util::stream::iter(none)).into_response());
    }
    let slot = state
        .stream_slots
        .take_for(super::client_of(caller))
        .ok_or_else(|| state.stream_slots.busy("event streams"))?;
    let idle = state.stream_idle;
    // The slot lives with the stream: it frees when the client goes, and at
    // the stream's lifetime whether or not the client reads (one that never
    // reads never polls the stream again, and would hold its slot for ever).
    // A browser's EventSource resumes from its Last-Event-ID.
    let held = Arc::new(std::sync::Mutex::new(Some(slot)));
    let expiry = Arc::downgrade(&held);
    let timer = crate::server::guard::AbortOnDrop::spawn(async move {
        tokio::time::sleep(STREAM_LIFETIME).await;
        if let Some(held) = expiry.upgrade() {
            held.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    });
    let stream = futures_util::stream::unfold(
        (live, from, false, held),
        move |(live, sent, done, held)| async move {
            let expired = held.lock().unwrap_or_else(|e| e.into_inner()).is_none();
            if done || expired {
                return None;
            }
            let mut rx = live.subscribe();
            loop {
                let (events, _) = live.events_page(sent, EVENTS_PAGE);
                if events.is_empty() && live.is_over() {
                    return None;
                }
                if !events.is_empty() {
                    let over = events
                        .iter()
                        .any(|e| matches!(e, RunEvent::Finished { .. } | RunEvent::Error { .. }));
                    let n = events.len();
                    let data = numbered(events, sent);
                    return Some((
                        futures_util::stream::iter(data),
                        (live, sent + n, over, held),
                    ));
                }
                match tokio::time::timeout(idle, rx.changed()).await {
                    Ok(Ok(())) => {}
                    // The run is gone, or idle too long: end; a browser resumes.
                    Ok(Err(_)) | Err(_) => return None,
                }
            }
        },
    );
    use futures_util::StreamExt;
    // The timer goes with the stream (ended, or its client gone).
    let stream = stream.flatten().map(move |event| {
        let _timer = &timer;
        event
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Longest an event stream holds its slot; the browser then resumes.
const STREAM_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);

/// How soon a browser asks again about a run another process runs.
const UNFOLLOWED_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Events an event stream sends at once.
const EVENTS_PAGE: usize = 512;

/// Server-Sent Events of `events`, numbered from `first` (their ids, which a
/// reconnecting browser sends back as `Last-Event-ID`).
fn numbered(events: Vec<RunEvent>, first: usize) -> Vec<Result<Event, std::convert::Infallible>> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(Event::default()
                .id((first + i).to_string())
                .json_data(&e)
                .unwrap_or_default())
        })
        .collect()
}

/// Recorded ranks an interrupted run's stream replays at most: the page shows
/// 200 rows, and a reply stays a few MB.
const RANK_REPLAY: usize = 10_000;
