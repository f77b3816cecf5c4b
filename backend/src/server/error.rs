//! API errors: JSON `{"error": message}` with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cosmicai_shared::api::ApiError;

pub struct Error(pub StatusCode, pub String);

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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

/// Turns axum's own rejections (bad JSON, too large a body) into the same JSON shape.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json")
                || v.as_bytes().starts_with(b"text/event-stream")
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
