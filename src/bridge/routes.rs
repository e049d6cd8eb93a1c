//! HTTP routes: the public router (the webhook endpoint, `/healthz`,
//! `/readyz`) and the admin router (`/metrics`, `/healthz`, `/readyz`).

use std::sync::Arc;
use std::time::{Duration, Instant};

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
use tracing::Instrument;
use tracing::field::Empty;

use crate::bridge::error::WebhookError;
use crate::bridge::ingest::{self, Accepted, Delivery};
use crate::fastpix::signature::SIGNATURE_HEADER;
use crate::nats::headers;
use crate::nats::publisher::Publisher;
use crate::nats::sink::Sink;
use crate::ops::metrics::Metrics;
use crate::ops::outcome::Outcome;
use crate::settings::WebhookConfig;

/// What every handler shares. `S` is where events are stored: the JetStream
/// publisher, or an in-memory sink in the delivery rules' tests.
#[derive(Clone)]
pub struct AppState<S = Publisher> {
    /// Every webhook served; a route knows its webhook by its index here.
    pub webhooks: Arc<[WebhookConfig]>,
    pub publisher: S,
    /// Bounds the deliveries handled at once (`http.max_in_flight`).
    pub in_flight: Arc<Semaphore>,
    /// `http.body_timeout`.
    pub body_timeout: Duration,
    pub metrics: Metrics,
}

/// The public router, the one FastPix reaches; tests can drive it without a socket.
pub fn app<S: Sink>(state: AppState<S>) -> Router {
    // One Arc, so each request clones one pointer rather than every field.
    let state = Arc::new(state);
    let mut router = Router::new();
    for (index, webhook) in state.webhooks.iter().enumerate() {
        router = router.route(
            &webhook.path,
            post(
                move |State(state): State<Arc<AppState<S>>>, request: Request| {
                    receive(state, index, request)
                },
            ),
        );
    }
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The admin router: metrics and probes, on a port that need not be public.
pub fn admin<S: Sink>(state: AppState<S>) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/metrics", get(metrics::<S>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
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

async fn receive<S: Sink>(state: Arc<AppState<S>>, index: usize, request: Request) -> Response {
    let started = Instant::now();
    let webhook = &state.webhooks[index];
    // `debug`, so that at the default level a request costs no span.
    let span = tracing::debug_span!(
        "webhook",
        webhook = webhook.name.as_str(),
        event_id = Empty,
        event_type = Empty,
        subject = Empty,
        traceparent = Empty
    );
    let result = handle(&state, webhook, request)
        .instrument(span.clone())
        .await;
    let (outcome, response) = span.in_scope(|| match result {
        Ok(Accepted::Published { stored, family }) => {
            let outcome = if stored.duplicate {
                Outcome::Duplicate
            } else {
                state.metrics.event_published(index, family);
                Outcome::Published
            };
            tracing::debug!(%outcome, seq = stored.seq, "event stored");
            (outcome, (StatusCode::OK, Json(stored)).into_response())
        }
        Ok(Accepted::Probe) => {
            tracing::info!(webhook = webhook.name.as_str(), outcome = %Outcome::Probe, "validation probe answered");
            let body = Json(serde_json::json!({ "probe": true }));
            (Outcome::Probe, (StatusCode::OK, body).into_response())
        }
        Err(e) => {
            let outcome = e.outcome();
            // A failed publish was logged by `ingest`, with the event it concerned.
            if !matches!(e, WebhookError::Unavailable(_)) {
                tracing::info!(webhook = webhook.name.as_str(), %outcome, error = %e, "delivery refused");
            }
            (outcome, e.into_response())
        }
    });
    state.metrics.request(index, outcome, started.elapsed());
    response
}

async fn handle<S: Sink>(
    state: &AppState<S>,
    webhook: &WebhookConfig,
    request: Request,
) -> Result<Accepted, WebhookError> {
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
        webhook,
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

async fn metrics<S: Sink>(State(state): State<Arc<AppState<S>>>) -> Response {
    let p = &state.publisher;
    let text = state.metrics.render(p.is_connected(), p.is_ready());
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn readyz<S: Sink>(State(state): State<Arc<AppState<S>>>) -> Response {
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
