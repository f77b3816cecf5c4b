//! `Idempotency-Key` on `POST /api/runs` and `/api/sweeps`: a client that lost
//! the answer to a launch (a proxy's 504, a dropped connection) sends it again
//! with the same key and is given the run it started, not a second run billed
//! twice. Keys live in the registry, so a restart keeps them, for a day.

use super::AppState;
use super::error::{ApiResult, Error};
use crate::registry::{LaunchClaim, Registry};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use cosmicai_shared::api::Created;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A launch handler's work: `start` it as run or sweep `id` on a blocking
/// thread (checking it reads the disk, and may probe the CUDA driver) unless
/// its key says it was started. The id is chosen before the key is claimed, so
/// a key whose server died mid-start still finds the run it started.
pub async fn launch<L: Serialize + Send + 'static>(
    state: Arc<AppState>,
    route: &'static str,
    headers: HeaderMap,
    launch: L,
    id: String,
    start: fn(&Arc<AppState>, &L, &str) -> ApiResult<()>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let planned = id.clone();
    let starting = tokio::task::spawn_blocking(move || {
        let claimed = match claim_key(&state, route, &headers, &launch, &id)? {
            KeyClaim::Started(id) => return Ok(id),
            KeyClaim::Start(claimed) => claimed,
        };
        let started = start(&state, &launch, &id);
        if let Some(claimed) = claimed {
            claimed.settle(started.is_ok());
        }
        started.map(|()| id)
    });
    // The start goes on past a timeout: the caller is told which run it is,
    // where the router's bare 504 (at 30 s) would leave it guessing.
    let id = match tokio::time::timeout(LAUNCH_ANSWER, starting).await {
        Ok(joined) => joined.map_err(Error::internal)??,
        Err(_) => {
            let kind = route.trim_end_matches('s');
            return Err(Error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{kind} {planned} is still starting after {} s and may yet start or fail: look for it at GET /api/{route}/{planned} (sent again with the same Idempotency-Key, this launch answers with it once it has started; without one, it starts another)",
                    LAUNCH_ANSWER.as_secs()
                ),
            ));
        }
    };
    Ok((StatusCode::ACCEPTED, Json(Created { id })))
}

/// How long a launch waits for its start to answer: under the router's 30 s.
const LAUNCH_ANSWER: std::time::Duration = std::time::Duration::from_secs(25);

/// The request header (the IETF's draft name, as Stripe and others use it).
const HEADER: &str = "idempotency-key";

/// A launch with a key, claimed in the registry until it is settled; one
/// dropped unsettled (its start panicked) lets its key go.
struct Claimed {
    key: String,
    /// The run or sweep it is claimed for.
    id: String,
    data_dir: PathBuf,
    settled: bool,
}

/// What a launch's key says before anything starts.
enum KeyClaim {
    /// No key, or a new one: start it (then settle it).
    Start(Option<Claimed>),
    /// A retry of a launch that started this run or sweep: answer it again.
    Started(String),
}

/// The registry, on a connection of its own: a claim commits (and syncs), which
/// must not hold up the readers of the server's shared connection.
fn own_registry(data_dir: &Path) -> Result<Registry, Error> {
    Registry::in_folder(data_dir).map_err(Error::internal)
}

/// Reads `route`'s `Idempotency-Key` and claims it for `launch`, to start as
/// `id`. A key already held by a launch still starting is 409, one sent with
/// another body 422.
fn claim_key(
    state: &AppState,
    route: &str,
    headers: &HeaderMap,
    launch: &impl Serialize,
    id: &str,
) -> Result<KeyClaim, Error> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(KeyClaim::Start(None));
    };
    let text = value
        .to_str()
        .ok()
        .filter(|t| (1..=255).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Error::bad_request(
                "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)",
            )
        })?;
    let key = format!("{route} {text}");
    // The request as parsed: the same launch written with other spacing is the same.
    let body = serde_json::to_vec(launch).map_err(Error::internal)?;
    let claim = own_registry(&state.data_dir)?
        .claim_launch(&key, &crate::models::sha256_hex(&body), id)
        .map_err(Error::internal)?;
    match claim {
        LaunchClaim::New => Ok(KeyClaim::Start(Some(Claimed {
            key,
            id: id.to_string(),
            data_dir: state.data_dir.clone(),
            settled: false,
        }))),
        LaunchClaim::Started(id) => Ok(KeyClaim::Started(id)),
        LaunchClaim::Starting => Err(Error(
            StatusCode::CONFLICT,
            format!(
                "the launch with Idempotency-Key '{text}' is still starting; send it again in a few seconds"
            ),
        )),
        LaunchClaim::OtherBody => Err(Error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Idempotency-Key '{text}' was sent with another launch: give each launch its own key"
            ),
        )),
    }
}

impl Claimed {
    /// Records what the launch came to: `started`, its id is what a retry is
    /// given; refused, nothing, so a retry tries again.
    fn settle(mut self, started: bool) {
        self.settled = true;
        let written = own_registry(&self.data_dir)
            .map_err(|e| e.1)
            .and_then(|registry| {
                if started {
                    registry.launched(&self.key, &self.id)
                } else {
                    registry.release_launch(&self.key, &self.id)
                }
                .map_err(|e| format!("{e:#}"))
            });
        if let Err(e) = written {
            // The launch itself stands; only a retry's answer is at stake.
            crate::say!(
                "warning: recording launch {}: {}",
                self.key,
                super::error::redact(&e)
            );
        }
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if !self.settled
            && let Ok(registry) = own_registry(&self.data_dir)
        {
            let _ = registry.release_launch(&self.key, &self.id);
        }
    }
}
