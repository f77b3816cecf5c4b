//! `/api/model` and `/api/models`: the shipped PhotoZ (its card and weights, for
//! the browser) and every model a run may name.

use super::AppStateRef;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use cosmicai_shared::api::{ModelEntry, ModelInfo};

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
