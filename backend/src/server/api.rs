//! The handlers of `/api`: objects and images, the model, runs.

use super::AppState;
use super::error::{ApiResult, Error};
use super::objects::ObjectQuery;
use crate::registry::Registry;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cosmicai_shared::api::{
    Created, ModelEntry, ModelInfo, ObjectDetail, ObjectPage, Prediction, RunEvent, RunInfo,
    RunLaunch, RunResults, ScatterPoint, SweepInfo, SweepLaunch,
};
use cosmicai_shared::display::{Stretch, asinh_gray, lupton_rgb};
use cosmicai_shared::run::{Estimate, RunStatus, RunSummary};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

type AppStateRef = State<Arc<AppState>>;

#[utoipa::path(get, path = "/api/health", responses((status = 200, description = "Server is up", body = Health)))]
pub async fn health(State(state): AppStateRef) -> Json<Health> {
    Json(Health {
        objects: state.index.objects.len(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[utoipa::path(get, path = "/api/settings", responses((status = 200, body = cosmicai_shared::api::ServerSettings)))]
pub async fn settings(State(state): AppStateRef) -> Json<cosmicai_shared::api::ServerSettings> {
    Json(cosmicai_shared::api::ServerSettings {
        skyserver_jpeg: state.skyserver.clone(),
        archive: state.archive.is_some(),
    })
}

#[utoipa::path(get, path = "/api/sky", responses((status = 200, body = cosmicai_shared::api::SkyPoints)))]
pub async fn sky(State(state): AppStateRef) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        state.index.sky.clone(),
    )
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub objects: usize,
    pub version: String,
}

#[utoipa::path(get, path = "/api/objects",
    params(
        ("class" = Option<cosmicai_shared::Class>, Query, description = "GALAXY, STAR, QSO or UNKNOWN"),
        ("z_min" = Option<f32>, Query), ("z_max" = Option<f32>, Query),
        ("r_min" = Option<f32>, Query, description = "r-band magnitude range"), ("r_max" = Option<f32>, Query),
        ("ug_min" = Option<f32>, Query, description = "u−g colour range (magnitudes)"), ("ug_max" = Option<f32>, Query),
        ("gr_min" = Option<f32>, Query, description = "g−r colour range"), ("gr_max" = Option<f32>, Query),
        ("ri_min" = Option<f32>, Query, description = "r−i colour range"), ("ri_max" = Option<f32>, Query),
        ("provenance" = Option<cosmicai_shared::Provenance>, Query),
        ("has_image" = Option<bool>, Query),
        ("ids" = Option<String>, Query, description = "only these objects, in this order: comma-separated ids, at most 1000"),
        ("sort" = Option<String>, Query, description = "id, redshift, -redshift, r or showcase (labelled objects with images first, classes taking turns)"),
        ("offset" = Option<usize>, Query), ("limit" = Option<usize>, Query, description = "1 to 1000, default 60"),
    ),
    responses((status = 200, body = ObjectPage), (status = 400, body = cosmicai_shared::api::ApiError)))]
pub async fn list_objects(
    State(state): AppStateRef,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<ObjectPage>> {
    let query = ObjectQuery::parse(&params).map_err(Error::bad_request)?;
    // A scan of every object: off the async threads, which stay free for
    // cheap requests (health) under load.
    let st = state.clone();
    let page = tokio::task::spawn_blocking(move || {
        let (page, total, counts) = query.select(&st.index);
        ObjectPage {
            total,
            offset: query.offset,
            limit: query.limit,
            counts,
            objects: page.into_iter().cloned().collect(),
        }
    })
    .await
    .map_err(Error::internal)?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/api/selections",
    params(
        ("class" = Option<String>, Query), ("z_min" = Option<f32>, Query), ("z_max" = Option<f32>, Query),
        ("r_min" = Option<f32>, Query), ("r_max" = Option<f32>, Query),
        ("ug_min" = Option<f32>, Query), ("ug_max" = Option<f32>, Query), ("gr_min" = Option<f32>, Query),
        ("gr_max" = Option<f32>, Query), ("ri_min" = Option<f32>, Query), ("ri_max" = Option<f32>, Query),
        ("provenance" = Option<cosmicai_shared::Provenance>, Query), ("has_image" = Option<bool>, Query),
    ),
    request_body = cosmicai_shared::api::SelectionRequest,
    security(("bearer" = [])),
    responses((status = 201, description = "The selection as a dataset: launch a run with its data_prefix", body = cosmicai_shared::api::Selection),
        (status = 400, body = cosmicai_shared::api::ApiError), (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError),
        (status = 413, body = cosmicai_shared::api::ApiError), (status = 422, body = cosmicai_shared::api::ApiError)))]
pub async fn create_selection(
    State(state): AppStateRef,
    Query(params): Query<HashMap<String, String>>,
    Json(request): Json<cosmicai_shared::api::SelectionRequest>,
) -> ApiResult<(StatusCode, Json<cosmicai_shared::api::Selection>)> {
    use super::selections::MAX_IDS;
    let mut query = ObjectQuery::parse(&params).map_err(Error::bad_request)?;
    if let Some(ids) = request.ids {
        if query.ids.is_some() {
            return Err(Error::bad_request(
                "ids: give them in the body or in the query string, not both",
            ));
        }
        if ids.len() > MAX_IDS {
            return Err(Error::bad_request(format!(
                "ids: {} objects, at most {MAX_IDS} in one selection",
                ids.len()
            )));
        }
        query.ids = Some(ids);
    }
    let st = state.clone();
    let selection = tokio::task::spawn_blocking(move || {
        let positions = query.positions(&st.index);
        if positions.is_empty() {
            return Err(Error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the selection holds no objects: no object passes its filters (or none of its ids is served)".into(),
            ));
        }
        if positions.len() > super::selections::MAX_OBJECTS {
            return Err(Error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the selection holds {} objects, at most {} in one: narrow its filters",
                    positions.len(),
                    super::selections::MAX_OBJECTS
                ),
            ));
        }
        // Selections that a running run or sweep reads are never evicted.
        let mut in_use = registry(&st)?
            .running_data_prefixes()
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        in_use.extend(st.sweeps.running_data_prefixes());
        super::selections::create(&st.data_dir, &st.index, &positions, &in_use)
            .map_err(|e| Error::internal(format!("{e:#}")))
    })
    .await
    .map_err(Error::internal)??;
    Ok((StatusCode::CREATED, Json(selection)))
}

fn entry(state: &AppState, id: i64) -> ApiResult<&super::objects::Entry> {
    state
        .index
        .get(id)
        .ok_or_else(|| Error::not_found(format!("object {id}: no such object")))
}

#[utoipa::path(get, path = "/api/objects/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = ObjectDetail), (status = 400, body = cosmicai_shared::api::ApiError),
        (status = 404, body = cosmicai_shared::api::ApiError)))]
pub async fn object_detail(
    State(state): AppStateRef,
    Path(id): Path<i64>,
) -> ApiResult<Json<ObjectDetail>> {
    let e = entry(&state, id)?;
    let mut predictions = vec![e.prediction.clone()];
    let mut object = e.summary.clone();
    let mut source_detail = e.source_detail.clone();
    let mut image_size = state.index.image_size(e);
    // A catalog object without an image may get one from the SDSS archive.
    let archive = match &state.archive {
        Some(archive) if image_size.is_none() => archive.status(id),
        _ => None,
    };
    if archive
        .as_ref()
        .is_some_and(|a| a.state == cosmicai_shared::api::ArchiveState::Ready)
    {
        object.has_image = true;
        object.provenance = cosmicai_shared::Provenance::Real;
        object.source = "SDSS archive".into();
        source_detail = "a real cutout, cut on demand from the SDSS archive's frames".into();
        image_size = Some(64);
    }
    // Image models served here predict from the object's cutout, on demand.
    if object.has_image && state.models.all.iter().any(|m| m.entry.reads_images) {
        predictions.extend(kept_image_predictions(&state, id).await?);
    }
    Ok(Json(ObjectDetail {
        object,
        source_detail,
        image_size,
        valid_fraction: e.valid_fraction,
        predictions,
        archive,
    }))
}

/// Starts fetching a catalog object's real cutout from the SDSS archive (its
/// field's five frames, then the cutout); `GET /api/objects/{id}` follows it.
#[utoipa::path(post, path = "/api/objects/{id}/fetch", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 202, body = cosmicai_shared::api::ArchiveCutout),
        (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError), (status = 404, body = cosmicai_shared::api::ApiError),
        (status = 409, body = cosmicai_shared::api::ApiError), (status = 422, body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many objects waiting; see Retry-After", body = cosmicai_shared::api::ApiError)))]
pub async fn fetch_object(
    State(state): AppStateRef,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<cosmicai_shared::api::ArchiveCutout>)> {
    let e = entry(&state, id)?;
    let Some(archive) = &state.archive else {
        return Err(Error::not_found(
            "this server fetches nothing from the SDSS archive (start it with --archive)",
        ));
    };
    if state.index.image_size(e).is_some() {
        return Err(Error(
            StatusCode::CONFLICT,
            format!("object {id} already has an image"),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(archive.request(id)?)))
}

/// [`image_predictions`] for object `id`, each object once (up to
/// [`KEPT_PREDICTIONS`] objects kept), one inference per core at once as
/// cutout reads.
async fn kept_image_predictions(state: &Arc<AppState>, id: i64) -> ApiResult<Vec<Prediction>> {
    let kept = move |state: &AppState| {
        let all = state.image_predictions.lock();
        all.unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    };
    if let Some(more) = kept(state) {
        return Ok(more);
    }
    let permit = super::heavy_turn(state).await?;
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // Asked for again while this one waited its turn.
        if let Some(more) = kept(&st) {
            return more;
        }
        // Kept only when the cutout was read: a passing read error is tried
        // again on the next view.
        let Some(more) = image_predictions(&st, id) else {
            return Vec::new();
        };
        let mut all = st
            .image_predictions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Bounded: past the bound, start over (it is a cache, not a record).
        if all.len() >= KEPT_PREDICTIONS {
            all.clear();
        }
        all.insert(id, more.clone());
        more
    })
    .await
    .map_err(Error::internal)
}

/// Objects whose image models' predictions are kept (a few hundred bytes each).
pub const KEPT_PREDICTIONS: usize = 16_384;

/// The predictions of the served image models (AstroMAE) for object `id`; a model
/// that cannot run is left out (its load error was reported at start). `None`
/// when the object's cutout could not be read.
fn image_predictions(state: &AppState, id: i64) -> Option<Vec<Prediction>> {
    let e = state.index.get(id)?;
    let (pixels, size) = cutout_of(state, e, id).ok()?;
    let cutouts = cosmicai_engine::predict::Cutouts {
        pixels: &pixels,
        height: size,
        width: size,
    };
    let predictions = state
        .models
        .all
        .iter()
        .filter(|m| m.entry.reads_images)
        .filter_map(|m| {
            let model = m.model().ok()?;
            let p = model
                .predict(
                    &[e.summary.magnitudes],
                    Some(cutouts),
                    1,
                    &Default::default(),
                )
                .ok()?;
            let p = p.predictions.first()?;
            Some(Prediction::of(
                m.entry.name.clone(),
                p,
                model.predicts_class(),
            ))
        })
        .collect();
    Some(predictions)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ImageParams {
    /// `gri` (colour composite) or one band: u, g, r, i, z.
    view: Option<String>,
    /// Lupton stretch (default 0.5).
    stretch: Option<f32>,
    /// Lupton Q (default 8).
    q: Option<f32>,
}

#[utoipa::path(get, path = "/api/objects/{id}/image.png", params(("id" = i64, Path), ImageParams),
    responses((status = 200, description = "PNG image", content_type = "image/png"),
        (status = 304, description = "Not modified"),
        (status = 400, body = cosmicai_shared::api::ApiError), (status = 404, body = cosmicai_shared::api::ApiError)))]
pub async fn object_image(
    State(state): AppStateRef,
    Path(id): Path<i64>,
    Query(params): Query<ImageParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    entry(&state, id)?;
    let view = params.view.unwrap_or_else(|| "gri".into());
    let stretch = params.stretch.unwrap_or(0.5);
    let q = params.q.unwrap_or(8.0);
    if !(stretch.is_finite() && stretch > 0.0 && stretch <= 1000.0) {
        return Err(Error::bad_request(format!(
            "stretch={stretch}: use a number above 0 (up to 1000)"
        )));
    }
    if !(q.is_finite() && (0.0..=1000.0).contains(&q)) {
        return Err(Error::bad_request(format!("q={q}: use 0 to 1000")));
    }
    let band = match view.as_str() {
        "gri" => None,
        "u" => Some(0),
        "g" => Some(1),
        "r" => Some(2),
        "i" => Some(3),
        "z" => Some(4),
        other => {
            return Err(Error::bad_request(format!(
                "view={other:?}: use gri, u, g, r, i or z"
            )));
        }
    };
    let etag = format!("\"{id:x}-{view}-{stretch}-{q}-{}\"", state.data_version);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    // Reading the cutout and encoding the PNG are blocking work: off the
    // async threads.
    let permit = super::heavy_turn(&state).await?;
    let st = state.clone();
    let png = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let _permit = permit;
        let e = entry(&st, id)?;
        let (pixels, size) = cutout_of(&st, e, id)?;
        let plane = size * size;
        let clean: Vec<f32> = pixels
            .iter()
            .map(|v| if v.is_finite() { *v } else { 0.0 })
            .collect();
        let band_of = |b: usize| &clean[b * plane..(b + 1) * plane];
        let s = Stretch {
            minimum: 0.0,
            stretch,
            q,
        };
        match band {
            None => cosmicai_engine::imagery::png::encode(
                size as u32,
                size as u32,
                3,
                &lupton_rgb(band_of(3), band_of(2), band_of(1), s),
            ),
            Some(b) => cosmicai_engine::imagery::png::encode(
                size as u32,
                size as u32,
                1,
                &asinh_gray(band_of(b), s),
            ),
        }
        .map_err(Error::internal)
    })
    .await
    .map_err(Error::internal)??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (header::CACHE_CONTROL, "public, max-age=86400".to_string()),
            (header::ETAG, etag),
        ],
        png,
    )
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CutoutParams {
    /// Comma-separated object ids (at most 256).
    ids: String,
    /// Centre crop side in pixels (default: the whole cutout).
    crop: Option<usize>,
}

/// Raw f32 bands for in-browser inference. Layout (little-endian): u32 count, u32 side,
/// then per object an i64 id and count × 5 × side × side f32 (u,g,r,i,z; NaN off the frame).
#[utoipa::path(get, path = "/api/cutouts", params(CutoutParams),
    responses((status = 200, description = "Binary cutouts", content_type = "application/octet-stream"),
        (status = 400, body = cosmicai_shared::api::ApiError), (status = 404, body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many replies being sent; see Retry-After", body = cosmicai_shared::api::ApiError)))]
pub async fn cutouts(
    State(state): AppStateRef,
    Query(params): Query<CutoutParams>,
) -> ApiResult<Response> {
    let ids: Vec<i64> = params
        .ids
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| Error::bad_request(format!("ids: {s:?} is not an object id")))
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() || ids.len() > 256 {
        return Err(Error::bad_request(format!(
            "ids: give 1 to 256 object ids, not {}",
            ids.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = ids.iter().find(|id| !seen.insert(**id)) {
        return Err(Error::bad_request(format!("ids: {twice} is given twice")));
    }
    // The reply's memory lasts until a client takes it, however slowly: a
    // bounded number of them at once, each bounded.
    // Up to 256 cutouts read from disk: blocking work, off the async threads.
    let permit = super::heavy_turn(&state).await?;
    let reply = state
        .cutout_replies
        .take()
        .ok_or_else(|| super::guard::busy("cutout replies", CUTOUT_REPLIES))?;
    let st = state.clone();
    let out = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        encode_cutouts(&st, &ids, params.crop)
    })
    .await
    .map_err(Error::internal)??;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, out.len().to_string()),
        ],
        super::guard::held_body(out, reply, CUTOUT_REPLY_DEADLINE),
    )
        .into_response())
}

/// `/api/cutouts` replies being sent at once.
pub const CUTOUT_REPLIES: usize = 16;

/// How long a client may take to read an `/api/cutouts` reply before it is cut
/// and its slot let go: 8 MiB in 120 s is about 0.6 Mbit/s.
pub const CUTOUT_REPLY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// The largest `/api/cutouts` reply: 256 cutouts of 32x32, or 100 of 64x64.
pub const MAX_CUTOUT_BYTES: usize = 8 << 20;

/// The cutout of object `id`, or why there is none.
fn cutout_of(state: &AppState, e: &super::objects::Entry, id: i64) -> ApiResult<(Vec<f32>, usize)> {
    if let Some(cutout) = state
        .index
        .image(e)
        .map_err(|err| Error::internal(format!("object {id}: {err}")))?
    {
        return Ok(cutout);
    }
    // Fetched from the SDSS archive since the server started.
    match state.archive.as_ref().and_then(|a| a.cutout(id)) {
        Some(cutout) => cutout.map_err(|err| Error::internal(format!("object {id}: {err}"))),
        None => Err(Error::not_found(format!("object {id} has no image"))),
    }
}

/// The `/api/cutouts` body for `ids`, each cropped to `crop` pixels.
fn encode_cutouts(state: &AppState, ids: &[i64], crop: Option<usize>) -> ApiResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut side = None;
    for id in ids {
        let (pixels, size) = cutout_of(state, entry(state, *id)?, *id)?;
        let crop = crop.unwrap_or(size);
        if crop == 0 || crop > size {
            return Err(Error::bad_request(format!("crop={crop}: use 1 to {size}")));
        }
        if *side.get_or_insert(crop) != crop {
            return Err(Error::bad_request(
                "ids: the objects have cutouts of different sizes; give crop",
            ));
        }
        if out.is_empty() {
            let bytes = 8 + ids.len() * (8 + 5 * crop * crop * 4);
            if bytes > MAX_CUTOUT_BYTES {
                return Err(Error::bad_request(format!(
                    "ids: {} cutouts of {crop}x{crop} come to {:.1} MB, more than the {:.1} MB \
                     of one reply: ask for fewer, or give crop",
                    ids.len(),
                    bytes as f64 / 1e6,
                    MAX_CUTOUT_BYTES as f64 / 1e6
                )));
            }
            out = cosmicai_shared::cutouts::begin(ids.len(), crop);
        }
        let start = (size - crop) / 2;
        let pixels: &[f32] = &pixels;
        let cropped = (0..5).flat_map(|b| {
            (start..start + crop).flat_map(move |y| {
                (start..start + crop).map(move |x| pixels[b * size * size + y * size + x])
            })
        });
        cosmicai_shared::cutouts::push(&mut out, *id, cropped);
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/model", responses((status = 200, body = ModelInfo)))]
pub async fn model(State(state): AppStateRef) -> Json<ModelInfo> {
    Json(ModelInfo {
        name: "photoz".into(),
        bytes: crate::models::SHIPPED_PHOTOZ.len(),
        hash: state.model_hash.clone(),
        weights_url: format!("/api/model/weights?v={}", state.model_hash),
        card: state.model_card.clone(),
    })
}

#[utoipa::path(get, path = "/api/model/weights",
    responses((status = 200, description = "PhotoZ weights (safetensors)", content_type = "application/octet-stream")))]
pub async fn model_weights(State(state): AppStateRef) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".to_string(),
            ),
            (header::ETAG, format!("\"{}\"", state.model_hash)),
        ],
        crate::models::SHIPPED_PHOTOZ,
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/models", responses((status = 200, body = Vec<ModelEntry>)))]
pub async fn list_models(State(state): AppStateRef) -> Json<Vec<ModelEntry>> {
    Json(state.models.entries())
}

/// The shared registry connection; a handler that panicked while holding it
/// left no transaction open (each call is its own), so a poisoned lock is fine.
fn registry(state: &AppState) -> ApiResult<std::sync::MutexGuard<'_, Registry>> {
    Ok(state.registry.lock().unwrap_or_else(|e| e.into_inner()))
}

#[derive(Deserialize, utoipa::IntoParams)]
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
    security(("bearer" = [])),
    responses((status = 202, body = Created), (status = 400, body = cosmicai_shared::api::ApiError),
        (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError), (status = 413, body = cosmicai_shared::api::ApiError),
        (status = 415, body = cosmicai_shared::api::ApiError), (status = 422, body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many runs and sweeps at once, or their memory budget is held; see Retry-After", body = cosmicai_shared::api::ApiError)))]
pub async fn create_run(
    State(state): AppStateRef,
    Json(launch): Json<RunLaunch>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let slot = state
        .run_slots
        .take()
        .ok_or_else(|| super::guard::busy("runs and sweeps", state.run_slots.cap()))?;
    // Checking the request reads the disk (and may probe the CUDA driver).
    let st = state.clone();
    let id = tokio::task::spawn_blocking(move || {
        if let Some(prefix) = launch
            .data_prefix
            .as_ref()
            .filter(|_| launch.s3_data.is_none())
        {
            super::selections::mark_used(&st.data_dir, prefix);
        }
        st.runs
            .start(&st.data_dir, &st.models, &launch, slot, &st.memory)
    })
    .await
    .map_err(Error::internal)??;
    Ok((StatusCode::ACCEPTED, Json(Created { id })))
}

fn find_run(state: &AppState, id: &str) -> ApiResult<RunInfo> {
    registry(state)?
        .info(id)
        .map_err(Error::internal)?
        .ok_or_else(|| Error::not_found(format!("run {id:?}: no such run")))
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
    let live = state.runs.get(&id);
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
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let live = match state.runs.get(&id) {
        Some(live) => live,
        None => {
            // A run from the registry (an earlier server, or the CLI): its final
            // status. One still running elsewhere (a CLI run) has no events
            // here: the stream ends at once, with no slot held, and asks the
            // browser to come back for its status a few seconds later.
            let st = state.clone();
            let run = tokio::task::spawn_blocking(move || find_run(&st, &id))
                .await
                .map_err(Error::internal)??;
            let event = if run.status == RunStatus::Running {
                Event::default()
                    .retry(UNFOLLOWED_RETRY)
                    .comment("running elsewhere")
            } else {
                let finished = RunEvent::Finished { status: run.status };
                Event::default().json_data(&finished).unwrap_or_default()
            };
            let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(event)]);
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
        .take()
        .ok_or_else(|| super::guard::busy("event streams", state.stream_slots.cap()))?;
    let idle = state.stream_idle;
    // The slot lives in the stream's state: it frees when the client goes.
    let stream = futures_util::stream::unfold(
        (live, from, false, slot),
        move |(live, sent, done, slot)| async move {
            if done {
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
                        (live, sent + n, over, slot),
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
    Ok(Sse::new(stream.flatten())
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A run's model as `GET /api/models` names it (`astromae:/srv/models/a.pt`
/// gives `astromae:a.pt`); a name that is no model spec as it is.
fn served_name(model: &str) -> String {
    cosmicai_shared::model::ModelSpec::parse(model)
        .map_or_else(|_| model.to_string(), |spec| super::models::name_of(&spec))
}

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

/// Points of the results' scatter plot, at most.
const SCATTER_POINTS: usize = 20_000;

#[utoipa::path(get, path = "/api/runs/{id}/results", params(("id" = String, Path)),
    responses((status = 200, body = RunResults), (status = 404, body = cosmicai_shared::api::ApiError),
        (status = 409, body = cosmicai_shared::api::ApiError)))]
pub async fn run_results(
    State(state): AppStateRef,
    Path(id): Path<String>,
) -> ApiResult<Json<RunResults>> {
    let kept = |state: &AppState, id: &str| {
        let results = state.results.lock().unwrap_or_else(|e| e.into_inner());
        results
            .iter()
            .find(|(run, _)| run == id)
            .map(|(_, r)| r.clone())
    };
    if let Some(results) = kept(&state, &id) {
        return Ok(Json(RunResults::clone(&results)));
    }
    // Read in turn with the other heavy work: a large run's predictions are
    // hundreds of MB.
    let turn = super::heavy_turn(&state).await?;
    if let Some(results) = kept(&state, &id) {
        return Ok(Json(RunResults::clone(&results)));
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
                format!("run {id}: no results yet (status {})", run.status.name()),
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
                *error = super::error::redact(error);
            }
        }
        let mut scatter = Vec::new();
        // An even sample of the labelled objects (every k-th, in rank order,
        // k from all the objects: never more than the labelled need), not the
        // first ranks': the partitions may be sorted by sky or redshift.
        let every = summary.objects.div_ceil(SCATTER_POINTS).max(1);
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
            for i in 0..p.redshift.len() {
                // As the metrics: real labels only.
                if !cosmicai_engine::metrics::LABELS.contains(&p.redshift[i]) || p.is_synthetic(i) {
                    continue;
                }
                seen += 1;
                if (seen - 1).is_multiple_of(every) && scatter.len() < SCATTER_POINTS {
                    scatter.push(ScatterPoint {
                        z_spec: p.redshift[i],
                        z_pred: p.predicted[i].redshift,
                        class: p.class[i],
                        id: p.object_id.get(i).copied(),
                    });
                }
            }
        }
        let results = Arc::new(RunResults { summary, scatter });
        // Results of a run that has ended never change (an interrupted one
        // may yet be followed to its end).
        if matches!(
            run.status,
            RunStatus::Succeeded | RunStatus::Partial | RunStatus::Failed
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
    Ok(Json(RunResults::clone(&results)))
}

/// Finished runs whose results are kept in memory (each at most
/// `SCATTER_POINTS` points and its summary).
pub const KEPT_RESULTS: usize = 16;

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
        let request = super::runs::request_of(&st.data_dir, &st.models, &launch, "estimate")
            .map_err(|e| Error(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        let e = crate::coordinator::estimate(&st.data_dir, &request, None, &st.calibration)
            .map_err(
                |e| match e.downcast_ref::<cosmicai_engine::pipeline::PipelineError>() {
                    Some(bad) => Error(StatusCode::UNPROCESSABLE_ENTITY, bad.to_string()),
                    None => Error::internal(e),
                },
            )?;
        Ok(Json(e))
    })
    .await
    .map_err(Error::internal)?
}

#[utoipa::path(post, path = "/api/sweeps", request_body = SweepLaunch,
    security(("bearer" = [])),
    responses((status = 202, body = Created), (status = 400, body = cosmicai_shared::api::ApiError),
        (status = 401, body = cosmicai_shared::api::ApiError),
        (status = 403, description = "From a page of another site, to a server with no token", body = cosmicai_shared::api::ApiError), (status = 413, body = cosmicai_shared::api::ApiError),
        (status = 415, body = cosmicai_shared::api::ApiError), (status = 422, body = cosmicai_shared::api::ApiError),
        (status = 429, description = "Too many runs and sweeps at once, or their memory budget is held; see Retry-After", body = cosmicai_shared::api::ApiError)))]
pub async fn create_sweep(
    State(state): AppStateRef,
    Json(launch): Json<SweepLaunch>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let slot = state
        .run_slots
        .take()
        .ok_or_else(|| super::guard::busy("runs and sweeps", state.run_slots.cap()))?;
    let st = state.clone();
    let id = tokio::task::spawn_blocking(move || {
        // As for a run: the selection it reads is the last to go.
        if let Some(prefix) = &launch.data_prefix {
            super::selections::mark_used(&st.data_dir, prefix);
        }
        st.sweeps.start(
            &st.data_dir,
            &st.models,
            &st.runs,
            &launch,
            slot,
            &st.memory,
        )
    })
    .await
    .map_err(Error::internal)??;
    Ok((StatusCode::ACCEPTED, Json(Created { id })))
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
    use super::sweeps::CancelError;
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

#[cfg(test)]
mod tests {
    use super::served_name;

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
