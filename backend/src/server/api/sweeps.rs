//! `/api/estimate` and `/api/sweeps`: what a run would cost and take, and runs
//! over several world sizes (and devices), one after another.

use super::{AppStateRef, registry};
use crate::server::AppState;
use crate::server::error::{ApiResult, Error};
use crate::server::launches;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use cosmicai_shared::api::{Created, RunLaunch, SweepInfo, SweepLaunch};
use cosmicai_shared::run::Estimate;
use std::sync::Arc;

#[utoipa::path(post, path = "/api/estimate", request_body = RunLaunch,
    security(("bearer" = [])),
    responses((status = 200, description = "Duration and cost estimate", body = Estimate),
        (status = 400, body = cosmicai_shared::api::ApiError), (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError),
        (status = 413, body = cosmicai_shared::api::ApiError),
        (status = 415, body = cosmicai_shared::api::ApiError), (status = 422, body = cosmicai_shared::api::ApiError)))]
pub async fn estimate(
    State(state): AppStateRef,
    Json(launch): Json<RunLaunch>,
) -> ApiResult<Json<Estimate>> {
    if launch.s3_data.is_some() {
        return Err(Error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "s3_data: an estimate is made from the partitions here, not from the bucket's; launch the run, or estimate on a copy of the data here".into(),
        ));
    }
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let request =
            crate::server::runs::request_of(&st.data_dir, &st.models, &launch, "estimate")
                .map_err(|e| Error(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        let e =
            crate::coordinator::estimate(&st.data_dir, &request, None, &st.rates).map_err(|e| {
                match e.downcast_ref::<cosmicai_engine::pipeline::PipelineError>() {
                    Some(bad) => Error(StatusCode::UNPROCESSABLE_ENTITY, bad.to_string()),
                    None => Error::internal(e),
                }
            })?;
        Ok(Json(e))
    })
    .await
    .map_err(Error::internal)?
}

#[utoipa::path(post, path = "/api/sweeps", request_body = SweepLaunch,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a retry with the key (within a day) is given what the first launch started, not a second one", pattern = "^[!-~]{1,255}$")),
    security(("bearer" = [])),
    responses((status = 202, body = Created), (status = 400, body = cosmicai_shared::api::ApiError),
        (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError), (status = 413, body = cosmicai_shared::api::ApiError),
        (status = 409, description = "A launch with this Idempotency-Key is still starting", body = cosmicai_shared::api::ApiError),
        (status = 415, body = cosmicai_shared::api::ApiError), (status = 422, body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many runs and sweeps at once, or their memory budget is held; see Retry-After", body = cosmicai_shared::api::ApiError)))]
pub async fn create_sweep(
    State(state): AppStateRef,
    headers: HeaderMap,
    Json(launch): Json<SweepLaunch>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let id = crate::coordinator::new_sweep_id();
    launches::launch(state, "sweeps", headers, launch, id, start_sweep).await
}

fn start_sweep(state: &Arc<AppState>, launch: &SweepLaunch, id: &str) -> ApiResult<()> {
    let slot = state
        .run_slots
        .take()
        .ok_or_else(|| crate::server::guard::busy("runs and sweeps", state.run_slots.cap()))?;
    // As for a run: the selection it reads is the last to go.
    if let Some(prefix) = &launch.data_prefix {
        crate::server::selections::mark_used(&state.data_dir, prefix);
    }
    crate::server::sweeps::Sweeps::start(state, launch, id, slot)
}

#[utoipa::path(post, path = "/api/sweeps/{id}/cancel", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 202, body = Created), (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError),
        (status = 404, body = cosmicai_shared::api::ApiError), (status = 409, body = cosmicai_shared::api::ApiError)))]
pub async fn cancel_sweep(
    State(state): AppStateRef,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    use crate::server::sweeps::CancelError;
    match state.sweeps.cancel(&id) {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(Created { id }))),
        Err(CancelError::Unknown) => {
            // One kept from before a restart: over here, whatever it says.
            Err(match stored_sweep(&state, &id).await? {
                Some(sweep) => Error(
                    StatusCode::CONFLICT,
                    format!(
                        "sweep {id}: not running on this server (it is {})",
                        sweep.state
                    ),
                ),
                None => Error::not_found(format!("sweep {id:?}: no such sweep")),
            })
        }
        Err(CancelError::Over) => Err(Error(
            StatusCode::CONFLICT,
            format!("sweep {id}: already over"),
        )),
    }
}

/// Sweep `id` as the registry keeps it (one from before a restart).
async fn stored_sweep(state: &Arc<AppState>, id: &str) -> ApiResult<Option<SweepInfo>> {
    let (st, id) = (state.clone(), id.to_string());
    tokio::task::spawn_blocking(move || registry(&st)?.sweep(&id).map_err(Error::internal))
        .await
        .map_err(Error::internal)?
}

#[utoipa::path(get, path = "/api/sweeps",
    responses((status = 200, description = "The sweeps this server started, kept past restarts (the last 64, and any running), newest first; one running when its server stopped is `interrupted`", body = Vec<SweepInfo>),
        (status = 500, body = cosmicai_shared::api::ApiError)))]
pub async fn list_sweeps(State(state): AppStateRef) -> ApiResult<Json<Vec<SweepInfo>>> {
    let st = state.clone();
    let stored =
        tokio::task::spawn_blocking(move || registry(&st)?.sweeps(64).map_err(Error::internal))
            .await
            .map_err(Error::internal)??;
    Ok(Json(state.sweeps.list(stored)))
}

#[utoipa::path(get, path = "/api/sweeps/{id}", params(("id" = String, Path)),
    responses((status = 200, body = SweepInfo), (status = 404, body = cosmicai_shared::api::ApiError),
        (status = 500, body = cosmicai_shared::api::ApiError)))]
pub async fn sweep_detail(
    State(state): AppStateRef,
    Path(id): Path<String>,
) -> ApiResult<Json<SweepInfo>> {
    if let Some(info) = state.sweeps.get(&id) {
        return Ok(Json(info));
    }
    stored_sweep(&state, &id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("sweep {id:?}: no such sweep")))
}
