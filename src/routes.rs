//! HTTP routes: the webhook endpoint, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use crate::error::WebhookError;
use crate::ingest::{self, Accepted, Delivery, headers};
use crate::publisher::Publisher;
use crate::settings::WebhookConfig;
use crate::signature::SIGNATURE_HEADER;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub webhook: Arc<WebhookConfig>,
    pub publisher: Publisher,
    /// Bounds the deliveries handled at once (`http.max_in_flight`).
    pub in_flight: Arc<Semaphore>,
    /// `http.body_timeout`.
    pub body_timeout: Duration,
}

/// The bridge's router; tests can drive it without a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(&state.webhook.path.clone(), post(receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Every answer is one line of JSON, even for paths and methods that do not exist.
async fn not_found() -> Response {
    let body = serde_json::json!({ "error": "no such path", "outcome": "not_found" });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn method_not_allowed() -> Response {
    let body =
        serde_json::json!({ "error": "method not allowed", "outcome": "method_not_allowed" });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let result = handle(&state, request).await;
    match result {
        Ok(Accepted::Published(stored)) => {
            tracing::debug!(
                outcome = if stored.duplicate { "duplicate" } else { "published" },
                subject = %stored.subject,
                seq = ?stored.seq,
                "event stored"
            );
            (StatusCode::OK, Json(stored)).into_response()
        }
        Ok(Accepted::Probe) => {
            tracing::info!(outcome = "probe", "validation probe answered");
            (StatusCode::OK, Json(serde_json::json!({ "probe": true }))).into_response()
        }
        Err(e) => {
            match &e {
                WebhookError::Unavailable(cause) => {
                    tracing::warn!(outcome = e.outcome(), error = %cause, "event not stored; answered 503")
                }
                other => {
                    tracing::info!(outcome = other.outcome(), error = %other, "delivery refused")
                }
            }
            e.into_response()
        }
    }
}

async fn handle(state: &AppState, request: Request) -> Result<Accepted, WebhookError> {
    // Refuse at once when full, before reading a byte of the body.
    let _permit = state
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| WebhookError::Overloaded)?;
    let (parts, body) = request.into_parts();
    let limit = state.publisher.body_limit();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(WebhookError::TooLarge { limit });
    }
    let body = read_body(body, declared, limit, state.body_timeout).await?;

    let mut signatures = parts.headers.get_all(SIGNATURE_HEADER).iter();
    let signature = match (signatures.next(), signatures.next()) {
        (Some(one), None) => Some(one.as_bytes()),
        // Two signature headers are ambiguous: refuse rather than pick one.
        (Some(_), Some(_)) => return Err(WebhookError::BadSignature),
        (None, _) => None,
    };
    let traceparent = parts
        .headers
        .get(headers::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    ingest::ingest(
        &state.webhook,
        &state.publisher,
        Delivery {
            signature,
            traceparent,
            body,
        },
    )
    .await
}

/// Reads at most `limit` bytes (chunked or not) within `timeout`, into one
/// buffer sized from `Content-Length` when given: a body is held once, never
/// as chunks plus a copy.
async fn read_body(
    mut body: Body,
    declared: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, WebhookError> {
    let capacity = declared.map_or(0, |n| n as usize).min(limit);
    let read = async move {
        let mut buf = BytesMut::with_capacity(capacity);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| WebhookError::BodyRead)?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(WebhookError::TooLarge { limit });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(WebhookError::BodyTimeout))
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let p = &state.publisher;
    let body = serde_json::json!({
        "status": if p.is_ready() { "ready" } else { "not ready" },
        "nats": if p.is_connected() { "connected" } else { "disconnected" },
        "stream": p.stream_name(),
    });
    let status = if p.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
