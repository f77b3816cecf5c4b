//! `/api/objects` and `/api/selections`: the catalog's objects, one object's
//! page with the shipped model's predictions, an object's real image fetched on
//! demand, and a sky selection made a dataset.

use super::images::cutout_of;
use super::{AppStateRef, registry};
use crate::server::AppState;
use crate::server::error::{ApiResult, Error};
use crate::server::objects::ObjectQuery;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cosmicai_shared::api::{ObjectDetail, ObjectPage, Prediction};
use std::collections::HashMap;
use std::sync::Arc;

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
        (status = 413, body = cosmicai_shared::api::ApiError), (status = 415, body = cosmicai_shared::api::ApiError),
        (status = 422, body = cosmicai_shared::api::ApiError)))]
pub async fn create_selection(
    State(state): AppStateRef,
    Query(params): Query<HashMap<String, String>>,
    Json(request): Json<cosmicai_shared::api::SelectionRequest>,
) -> ApiResult<(StatusCode, Json<cosmicai_shared::api::Selection>)> {
    use crate::server::selections::MAX_IDS;
    // A selection holds every object its filters pass: a page's keys would be
    // ignored, so they are refused.
    if let Some(key) = ["sort", "offset", "limit"]
        .into_iter()
        .find(|k| params.contains_key(*k))
    {
        return Err(Error::bad_request(format!(
            "{key}: a selection holds every object its filters pass and has no pages (leave {key} out)"
        )));
    }
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
        if positions.len() > crate::server::selections::MAX_OBJECTS {
            return Err(Error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the selection holds {} objects, at most {} in one: narrow its filters",
                    positions.len(),
                    crate::server::selections::MAX_OBJECTS
                ),
            ));
        }
        // Selections that a running run or sweep reads are never evicted.
        let mut in_use = registry(&st)?
            .running_data_prefixes()
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        in_use.extend(st.sweeps.running_data_prefixes());
        crate::server::selections::create(&st.data_dir, &st.index, &positions, &in_use)
            .map_err(|e| Error::internal(format!("{e:#}")))
    })
    .await
    .map_err(Error::internal)??;
    Ok((StatusCode::CREATED, Json(selection)))
}

pub(super) fn entry(state: &AppState, id: i64) -> ApiResult<&crate::server::objects::Entry> {
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
    caller: super::Caller,
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
        predictions.extend(kept_image_predictions(&state, id, super::client_of(caller)).await?);
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
        (status = 400, body = cosmicai_shared::api::ApiError), (status = 401, body = cosmicai_shared::api::ApiError),
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
async fn kept_image_predictions(
    state: &Arc<AppState>,
    id: i64,
    client: Option<crate::server::client::Client>,
) -> ApiResult<Vec<Prediction>> {
    let kept = move |state: &AppState| {
        let all = state.image_predictions.lock();
        all.unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    };
    if let Some(more) = kept(state) {
        return Ok(more);
    }
    let permit = crate::server::heavy_turn(state, client).await;
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
