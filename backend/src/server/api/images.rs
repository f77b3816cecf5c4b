//! Pixels: one object's image as a PNG, and many objects' cutouts at once for
//! inference in the browser, each under a slot and a deadline.

use super::AppStateRef;
use super::objects::entry;
use crate::server::AppState;
use crate::server::error::{ApiResult, Error};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cosmicai_shared::display::{Stretch, asinh_gray, lupton_rgb};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
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
    caller: super::Caller,
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
    let permit = crate::server::heavy_turn(&state, super::client_of(caller)).await;
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
#[serde(deny_unknown_fields)]
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
    caller: super::Caller,
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
    let client = super::client_of(caller);
    let permit = crate::server::heavy_turn(&state, client).await;
    let reply = state
        .cutout_replies
        .take_for(client)
        .ok_or_else(|| state.cutout_replies.busy("cutout replies"))?;
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
        crate::server::guard::held_body(out, reply, CUTOUT_REPLY_DEADLINE),
    )
        .into_response())
}

/// `/api/cutouts` and `/api/runs/{id}/results` replies being sent at once.
pub const CUTOUT_REPLIES: usize = 16;

/// Of [`CUTOUT_REPLIES`], those one client may hold: a caller that never
/// reads its replies cannot keep the others waiting.
pub const CUTOUT_REPLIES_PER_CLIENT: usize = 4;

/// How long a client may take to read an `/api/cutouts` reply before it is cut
/// and its slot let go: 8 MiB in 120 s is about 0.6 Mbit/s.
pub const CUTOUT_REPLY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// The largest `/api/cutouts` reply: 256 cutouts of 32x32, or 100 of 64x64.
pub const MAX_CUTOUT_BYTES: usize = 8 << 20;

/// The cutout of object `id`, or why there is none.
pub(super) fn cutout_of(
    state: &AppState,
    e: &crate::server::objects::Entry,
    id: i64,
) -> ApiResult<(Vec<f32>, usize)> {
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
        let cropped = cosmicai_model::crop::centre_crop_planes(&pixels, [size, size], crop);
        cosmicai_shared::cutouts::push(&mut out, *id, cropped);
    }
    Ok(out)
}
