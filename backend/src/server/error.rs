//! API errors: JSON `{"error": message}` with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cosmicai_shared::api::ApiError;

#[derive(Debug)]
pub struct Error(pub StatusCode, pub String);

/// Folders whose absolute paths never leave the server (the data directory,
/// the working directory), longest first; set once at start.
static HIDDEN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Hides `folders` from every error message and run event from now on: a caller
/// learns paths inside the data directory, never where it lives on the host.
pub fn hide_paths(folders: &[&std::path::Path]) {
    let cwd = std::env::current_dir().unwrap_or_default();
    // Each folder as given (made absolute) and as resolved (symlinks, `..`).
    let mut hidden: Vec<String> = folders
        .iter()
        .flat_map(|f| [Some(cwd.join(f)), std::fs::canonicalize(f).ok()])
        .flatten()
        .map(|f| f.display().to_string())
        .filter(|f| f.len() > 1)
        .collect();
    hidden.dedup();
    hidden.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let _ = HIDDEN.set(hidden);
}

/// `text` with the hidden folders cut out of it (made relative).
pub fn redact(text: &str) -> String {
    let mut text = text.to_string();
    for folder in HIDDEN.get().map(Vec::as_slice).unwrap_or_default() {
        text = text
            .replace(&format!("{folder}/"), "")
            .replace(folder.as_str(), ".");
    }
    text
}

pub type ApiResult<T> = Result<T, Error>;

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error(StatusCode::BAD_REQUEST, message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error(StatusCode::NOT_FOUND, message.into())
    }
    pub fn internal(e: impl std::fmt::Display) -> Error {
        Error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// Seconds a refused caller (429) is told to wait.
const RETRY_AFTER_S: &str = "30";

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let error = redact(&self.1);
        let mut response = (self.0, Json(ApiError { error })).into_response();
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_S),
            );
        }
        response
    }
}

/// Turns axum's own rejections (bad JSON, too large a body) into the same JSON shape.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Which body was too large, and its limit (axum says only "length limit exceeded").
    let limit = if request.uri().path() == "/api/selections" {
        "4 MB"
    } else {
        "64 KB"
    };
    let what = format!("{} {}", request.method(), request.uri().path());
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what}: the body is larger than the {limit} this endpoint takes"),
        )
        .into_response();
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json")
                || v.as_bytes().starts_with(b"text/event-stream")
                // Pages made on purpose (the "explorer building" page).
                || v.as_bytes().starts_with(b"text/html")
        });
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        };
        return Error(status, message).into_response();
    }
    response
}
