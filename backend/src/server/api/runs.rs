//! `/api/runs`: launch, list, read, cancel a run, and its results (metrics and
//! the predicted-against-spectroscopic scatter).

use super::{AppStateRef, registry};
use crate::server::AppState;
use crate::server::error::{ApiResult, Error};
use crate::server::launches;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cosmicai_shared::api::{Created, RunEvent, RunInfo, RunLaunch, RunResults, ScatterPoint};
use cosmicai_shared::run::{RunStatus, RunSummary};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsPage {
    /// Runs per page, newest first (1 to 500, default 100).
    limit: Option<i64>,
    /// The last run id of the previous page: runs older than it.
    before: Option<String>,
}

#[utoipa::path(get, path = "/api/runs", params(RunsPage),
    responses((status = 200, body = Vec<RunInfo>), (status = 400, body = cosmicai_shared::api::ApiError)))]
pub async fn list_runs(
    State(state): AppStateRef,
    Query(page): Query<RunsPage>,
) -> ApiResult<Json<Vec<RunInfo>>> {
    let limit = page.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::bad_request(format!("limit={limit}: use 1 to 500")));
    }
    let state = state.clone();
    let runs = tokio::task::spawn_blocking(move || {
        registry(&state)?
            .page(limit, page.before.as_deref())
            .map(|runs| {
                runs.into_iter()
                    .map(|run| served(&state, run))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| match e.downcast_ref::<crate::registry::UnknownRun>() {
                Some(unknown) => Error::bad_request(unknown.to_string()),
                None => Error::internal(e),
            })
    })
    .await
    .map_err(Error::internal)??;
    Ok(Json(runs))
}

#[utoipa::path(post, path = "/api/runs", request_body = RunLaunch,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a retry with the key (within a day) is given what the first launch started, not a second one", pattern = "^[!-~]{1,255}$")),
    security(("bearer" = [])),
    responses((status = 202, body = Created), (status = 400, body = cosmicai_shared::api::ApiError),
        (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError), (status = 413, body = cosmicai_shared::api::ApiError),
        (status = 409, description = "A launch with this Idempotency-Key is still starting", body = cosmicai_shared::api::ApiError),
        (status = 415, body = cosmicai_shared::api::ApiError), (status = 422, body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many runs and sweeps at once, or their memory budget is held; see Retry-After", body = cosmicai_shared::api::ApiError)))]
pub async fn create_run(
    State(state): AppStateRef,
    headers: HeaderMap,
    Json(launch): Json<RunLaunch>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let id = crate::coordinator::new_run_id();
    launches::launch(state, "runs", headers, launch, id, start_run).await
}

fn start_run(state: &Arc<AppState>, launch: &RunLaunch, id: &str) -> ApiResult<()> {
    let slot = state
        .run_slots
        .take()
        .ok_or_else(|| crate::server::guard::busy("runs and sweeps", state.run_slots.cap()))?;
    if let Some(prefix) = launch
        .data_prefix
        .as_ref()
        .filter(|_| launch.s3_data.is_none())
    {
        crate::server::selections::mark_used(&state.data_dir, prefix);
    }
    state.runs.start(
        &state.data_dir,
        &state.models,
        launch,
        id,
        slot,
        &state.memory,
    )
}

pub(super) fn find_run(state: &AppState, id: &str) -> ApiResult<RunInfo> {
    registry(state)?
        .info(id)
        .map_err(Error::internal)?
        .map(|run| served(state, run))
        .ok_or_else(|| Error::not_found(format!("run {id:?}: no such run")))
}

/// A run's row as the API gives it: its error without the host's paths, and
/// resumable only where this server can resume it (an AWS run needs its
/// server's AWS deployment).
fn served(state: &AppState, run: RunInfo) -> RunInfo {
    RunInfo {
        resumable: run.resumable && (!run.on_aws || state.runs.has_aws()),
        error: run.error.as_deref().map(crate::server::error::redact),
        // A checkpoint's folder on the host is not the API's to give.
        model: run.model.as_deref().map(served_name),
        ..run
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunDetail {
    pub run: RunInfo,
    /// Events from number `events_from` on, at most [`RUN_DETAIL_EVENTS`] of
    /// them (runs started by this server process).
    pub events: Vec<RunEvent>,
    /// Events so far.
    pub events_total: usize,
    /// Where the next page of events starts (`?events_from=`), while there is one.
    pub next_events_from: Option<usize>,
    /// The sweep this run is part of (while this server holds its events):
    /// only cancelling the sweep stops it.
    pub sweep: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunDetailParams {
    /// Number of the first event to list (default 0).
    events_from: Option<usize>,
}

/// Events in one `GET /api/runs/{id}` reply: a run of 10,000 ranks has tens of
/// thousands, and the live view streams them anyway.
pub const RUN_DETAIL_EVENTS: usize = 1000;

#[utoipa::path(get, path = "/api/runs/{id}", params(("id" = String, Path), RunDetailParams),
    responses((status = 200, body = RunDetail), (status = 404, body = cosmicai_shared::api::ApiError)))]
pub async fn run_detail(
    State(state): AppStateRef,
    Path(id): Path<String>,
    Query(params): Query<RunDetailParams>,
) -> ApiResult<Json<RunDetail>> {
    let st = state.clone();
    let id2 = id.clone();
    let run = tokio::task::spawn_blocking(move || find_run(&st, &id2))
        .await
        .map_err(Error::internal)??;
    let from = params.events_from.unwrap_or(0);
    // Events of an attempt that ended, while another process runs the run
    // again (resumed from the CLI), are not its events now.
    let live = state.runs.get(&id).filter(|l| !l.is_stale(run.status));
    let (events, events_total) = live
        .as_ref()
        .map(|l| l.events_page(from, RUN_DETAIL_EVENTS))
        .unwrap_or_default();
    let next = from.saturating_add(events.len());
    Ok(Json(RunDetail {
        run,
        next_events_from: (next < events_total).then_some(next),
        events,
        events_total,
        sweep: live.and_then(|l| l.sweep.clone()),
    }))
}

#[utoipa::path(post, path = "/api/runs/{id}/cancel", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 202, body = Created), (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError),
        (status = 404, body = cosmicai_shared::api::ApiError), (status = 409, body = cosmicai_shared::api::ApiError)))]
pub async fn cancel_run(
    State(state): AppStateRef,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let live = state
        .runs
        .get(&id)
        .ok_or_else(|| Error::not_found(format!("run {id:?}: not a run this server is running")))?;
    if live.is_over() {
        return Err(Error(
            StatusCode::CONFLICT,
            format!("run {id}: already finished"),
        ));
    }
    if let Some(sweep) = &live.sweep {
        return Err(Error(
            StatusCode::CONFLICT,
            format!(
                "run {id} is part of sweep {sweep}: cancel the sweep (POST /api/sweeps/{sweep}/cancel)"
            ),
        ));
    }
    live.cancel
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, Json(Created { id })))
}

/// How long a resume's checks may take (an AWS run's read its bucket) before
/// it is refused: short of the API's 30 s timeout, so a caller told it timed
/// out never finds it started after all.
const RESUME_CHECKS_WITHIN: std::time::Duration = std::time::Duration::from_secs(25);

#[utoipa::path(post, path = "/api/runs/{id}/resume", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 202, description = "Resuming: its ranks that left no results run again (an AWS run's on a new execution of its stack), and its stream follows them", body = Created),
        (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError),
        (status = 404, body = cosmicai_shared::api::ApiError),
        (status = 409, description = "Not a run that can be resumed (running, succeeded, never planned, its partitions changed since; on AWS: this server has no AWS deployment, or the run's stack cannot resume it)", body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many runs and sweeps at once, or their memory budget is held; see Retry-After", body = cosmicai_shared::api::ApiError),
        (status = 503, description = "An AWS run's bucket did not answer, or the checks took longer than 25 s: nothing was started", body = cosmicai_shared::api::ApiError)))]
pub async fn resume_run(
    State(state): AppStateRef,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let st = state.clone();
    let run = id.clone();
    // Within the API's 30 s timeout: checks that end after it start nothing.
    let deadline = std::time::Instant::now() + RESUME_CHECKS_WITHIN;
    tokio::task::spawn_blocking(move || {
        find_run(&st, &run)?;
        let slot = st
            .run_slots
            .take()
            .ok_or_else(|| crate::server::guard::busy("runs and sweeps", st.run_slots.cap()))?;
        st.runs
            .resume(&st.data_dir, &run, slot, &st.memory, deadline)
    })
    .await
    .map_err(Error::internal)??;
    Ok((StatusCode::ACCEPTED, Json(Created { id })))
}

/// A run's model as `GET /api/models` names it (`astromae:/srv/models/a.pt`
/// gives `astromae:a.pt`); a name that is no model spec as it is.
pub(super) fn served_name(model: &str) -> String {
    cosmicai_shared::model::ModelSpec::parse(model).map_or_else(
        |_| model.to_string(),
        |spec| crate::server::models::name_of(&spec),
    )
}

/// Points of the results' scatter plot, at most.
const SCATTER_POINTS: usize = 20_000;

#[utoipa::path(get, path = "/api/runs/{id}/results", params(("id" = String, Path)),
    responses((status = 200, body = RunResults), (status = 404, body = cosmicai_shared::api::ApiError),
        (status = 409, body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many replies being sent at once; see Retry-After", body = cosmicai_shared::api::ApiError)))]
pub async fn run_results(
    State(state): AppStateRef,
    caller: super::Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let kept = |state: &AppState, id: &str| {
        let results = state.results.lock().unwrap_or_else(|e| e.into_inner());
        results
            .iter()
            .find(|(run, _)| run == id)
            .map(|(_, r)| r.clone())
    };
    // The reply is held until the client takes it: a bounded number at once
    // (the slot taken first, so a busy server reads nothing it cannot send),
    // each let go at its deadline, which grows with its size (64 KB/s at the
    // least): a client that never reads pins nothing for long.
    let client = super::client_of(caller);
    let slot = state
        .cutout_replies
        .take_for(client)
        .ok_or_else(|| state.cutout_replies.busy("replies"))?;
    let reply = |json: Arc<[u8]>, slot| -> ApiResult<Response> {
        let deadline = super::images::CUTOUT_REPLY_DEADLINE
            .max(std::time::Duration::from_secs((json.len() / 65_536) as u64));
        Ok((
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (header::CONTENT_LENGTH, json.len().to_string()),
            ],
            crate::server::guard::held_body(json, slot, deadline),
        )
            .into_response())
    };
    if let Some(json) = kept(&state, &id) {
        return reply(json, slot);
    }
    // Read in turn with the other heavy work: a large run's predictions are
    // hundreds of MB.
    let turn = crate::server::heavy_turn(&state, client).await;
    if let Some(json) = kept(&state, &id) {
        return reply(json, slot);
    }
    let st = state.clone();
    let results = tokio::task::spawn_blocking(move || {
        // Held by the read itself: a client gone (or timed out) must not free
        // the turn while every rank's predictions are still being read.
        let _turn = turn;
        let run = find_run(&st, &id)?;
        let dir = st.data_dir.join(&run.result_path);
        let text = std::fs::read_to_string(dir.join("summary.json")).map_err(|_| {
            Error(
                StatusCode::CONFLICT,
                match &run.error {
                    Some(why) => format!("run {id}: no results ({}: {why})", run.status.name()),
                    None => format!("run {id}: no results yet (status {})", run.status.name()),
                },
            )
        })?;
        let mut summary: RunSummary = serde_json::from_str(&text).map_err(Error::internal)?;
        // A run refused at Initialize (its result_path taken) has a row naming
        // that path: the results there are the other run's, never this one's.
        if summary.run_id != id {
            return Err(Error(
                StatusCode::CONFLICT,
                format!(
                    "run {id} has no results: its result_path {} holds run {}'s",
                    run.result_path, summary.run_id
                ),
            ));
        }
        // The model as GET /api/models names it (its file's name, never the
        // host's path to it), and rank errors carry worker messages: no host
        // paths in them either.
        summary.model = served_name(&summary.model);
        for m in &mut summary.per_rank {
            if let Some(error) = &mut m.error {
                *error = crate::server::error::redact(error);
            }
        }
        let mut scatter = Vec::new();
        // An even sample of the labelled objects (every k-th, in rank order),
        // not the first ranks': the partitions may be sorted by sky or redshift.
        // k from the objects the metrics scored, the same set the sample takes
        // (from all the objects where a summary has no metrics).
        let labelled = summary
            .metrics
            .as_ref()
            .and_then(|m| m.all.as_ref())
            .map_or(summary.objects, |all| all.n);
        let every = labelled.div_ceil(SCATTER_POINTS).max(1);
        let mut seen = 0usize;
        // Ranks that failed wrote no trustworthy predictions.
        let failed: std::collections::HashSet<usize> =
            summary.failed_ranks.iter().copied().collect();
        for rank in (0..run.world_size).filter(|r| !failed.contains(r)) {
            if scatter.len() >= SCATTER_POINTS {
                break;
            }
            let Ok(bytes) =
                std::fs::read(dir.join("predictions").join(format!("{rank}.safetensors")))
            else {
                continue;
            };
            let p = cosmicai_engine::pipeline::read_predictions(&bytes).map_err(Error::internal)?;
            sample_scatter(&p, every, &mut seen, &mut scatter);
        }
        let results = RunResults { summary, scatter };
        let results: Arc<[u8]> = serde_json::to_vec(&results)
            .map_err(Error::internal)?
            .into();
        // Results of a run that has ended never change (an interrupted one
        // may yet be followed to its end).
        if matches!(
            run.status,
            RunStatus::Succeeded | RunStatus::Partial | RunStatus::Failed | RunStatus::Cancelled
        ) {
            let mut kept = st.results.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() >= KEPT_RESULTS {
                kept.pop_front();
            }
            kept.push_back((id, results.clone()));
        }
        Ok::<_, Error>(results)
    })
    .await
    .map_err(Error::internal)??;
    reply(results, slot)
}

/// Adds a rank's labelled real objects to `scatter`: every `every`-th of them,
/// counting on from `seen`, up to [`SCATTER_POINTS`]. A failed prediction (not a
/// number) is left out: the metrics count it unscored, and JSON has no NaN (the
/// page could not have read the reply).
fn sample_scatter(
    p: &cosmicai_engine::pipeline::RankPredictions,
    every: usize,
    seen: &mut usize,
    scatter: &mut Vec<ScatterPoint>,
) {
    for i in 0..p.redshift.len() {
        // As the metrics: real labels only.
        if !cosmicai_engine::metrics::LABELS.contains(&p.redshift[i])
            || p.is_synthetic(i)
            || !p.predicted.get(i).is_some_and(|z| z.redshift.is_finite())
        {
            continue;
        }
        *seen += 1;
        if (*seen - 1).is_multiple_of(every) && scatter.len() < SCATTER_POINTS {
            scatter.push(ScatterPoint {
                z_spec: p.redshift[i],
                z_pred: p.predicted[i].redshift,
                class: p.class[i],
                id: p.object_id.get(i).copied(),
            });
        }
    }
}

/// Finished runs whose results are kept in memory (each at most
/// `SCATTER_POINTS` points and its summary).
pub const KEPT_RESULTS: usize = 16;

#[cfg(test)]
mod tests {
    use super::{sample_scatter, served_name};
    use cosmicai_engine::pipeline::RankPredictions;
    use cosmicai_shared::{Class, model::Prediction};

    #[test]
    fn failed_predictions_are_left_out_of_the_scatter_and_it_reads_back() {
        let z = [0.1, f32::NAN, f32::INFINITY, 0.3];
        let p = RankPredictions {
            object_id: vec![1, 2, 3, 4],
            redshift: vec![0.12, 0.2, 0.25, 0.31],
            class: vec![Class::Galaxy; 4],
            predicted: z.iter().map(|&z| Prediction::redshift_only(z)).collect(),
            ..Default::default()
        };
        let (mut seen, mut scatter) = (0, Vec::new());
        sample_scatter(&p, 1, &mut seen, &mut scatter);
        let ids: Vec<Option<i64>> = scatter.iter().map(|s| s.id).collect();
        assert_eq!((seen, ids), (2, vec![Some(1), Some(4)]));
        let json = serde_json::to_string(&scatter).unwrap();
        let back: Vec<cosmicai_shared::api::ScatterPoint> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, scatter);
    }

    #[test]
    fn a_models_host_path_is_cut_to_its_file_name() {
        assert_eq!(
            served_name("astromae:/srv/data/models/a.pt"),
            "astromae:a.pt"
        );
        assert_eq!(
            served_name("photoz:/home/u/w.safetensors"),
            "photoz:w.safetensors"
        );
        assert_eq!(served_name("photoz"), "photoz");
    }
}
