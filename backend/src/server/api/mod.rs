//! The handlers of `/api`, one file per resource (axum's router, state and
//! handlers apart): [`objects`] and their [`images`], the [`models`], [`runs`]
//! with their live [`events`], and [`sweeps`] with the estimate. The router
//! itself is in `server/mod.rs`; the state they share is `AppState`.

mod events;
mod images;
mod models;
mod objects;
mod runs;
mod sweeps;

pub use events::*;
pub use images::*;
pub use models::*;
pub use objects::*;
pub use runs::*;
pub use sweeps::*;

use crate::registry::Registry;
use crate::server::AppState;
use crate::server::error::ApiResult;
use axum::Json;
use axum::extract::State;
use std::sync::Arc;

type AppStateRef = State<Arc<AppState>>;

/// The calling client, which the accept loop puts on every request (a test's
/// router, called without it, has none): for its share of the slots.
type Caller = Option<axum::Extension<crate::server::client::Client>>;

fn client_of(caller: Caller) -> Option<crate::server::client::Client> {
    caller.map(|axum::Extension(client)| client)
}

#[utoipa::path(get, path = "/api/health", responses((status = 200, description = "Server is up", body = cosmicai_shared::api::Health)))]
pub async fn health(State(state): AppStateRef) -> Json<cosmicai_shared::api::Health> {
    Json(cosmicai_shared::api::Health {
        objects: state.index.objects.len(),
        version: env!("CARGO_PKG_VERSION").into(),
        api: cosmicai_shared::API_FINGERPRINT.into(),
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

/// The shared registry connection; a handler that panicked while holding it
/// left no transaction open (each call is its own), so a poisoned lock is fine.
fn registry(state: &AppState) -> ApiResult<std::sync::MutexGuard<'_, Registry>> {
    Ok(state.registry.lock().unwrap_or_else(|e| e.into_inner()))
}
