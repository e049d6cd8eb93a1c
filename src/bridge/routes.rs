//! HTTP routes: the public router (the webhook endpoint, `/healthz`,
//! `/readyz`) and the admin router (`/metrics`, `/healthz`, `/readyz`).
//! Which deliveries are handled now is [`admission`](crate::bridge::admission)'s
//! call; what happens to one is [`ingest`](crate::bridge::ingest)'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tracing::Instrument;
use tracing::field::Empty;

use crate::bridge::admission::Admission;
use crate::bridge::error::WebhookError;
use crate::bridge::ingest::{self, Accepted, WebhookDelivery};
use crate::bridge::refused::{Refusals, Seen};
use crate::fastpix::signature::SIGNATURE_HEADER;
use crate::nats::headers;
use crate::nats::publisher::Publisher;
use crate::nats::sink::Sink;
use crate::ops::metrics::Metrics;
use crate::ops::outcome::DeliveryOutcome;
use crate::settings::{HttpSettings, WebhookConfig};

/// What every handler shares. `S` is where events are stored: the JetStream
/// publisher, or an in-memory sink in the delivery rules' tests.
#[derive(Clone)]
pub struct AppState<S = Publisher> {
    /// Every webhook served; a route knows its webhook by its index here.
    pub webhooks: Arc<[WebhookConfig]>,
    pub publisher: S,
    /// Slots, the line for them, and lingering after early answers.
    pub admission: Admission,
    pub metrics: Metrics,
    /// Records refused deliveries for the inspector.
    pub refusals: Refusals,
}

impl<S> AppState<S> {
    /// The state of a bridge serving `webhooks` into `publisher`, admitting
    /// deliveries as `http` says.
    pub fn new(
        webhooks: Arc<[WebhookConfig]>,
        publisher: S,
        http: &HttpSettings,
        metrics: Metrics,
        refusals: Refusals,
    ) -> Self {
        AppState {
            webhooks,
            publisher,
            admission: Admission::new(http, metrics.clone()),
            metrics,
            refusals,
        }
    }
}

/// The largest unsigned body read (when `webhook.allow_unsigned` is false).
/// An unsigned request can only be FastPix's validation probe, an empty body
/// or `{}`: with a line ending and some indentation that is under a dozen
/// bytes, and 64 is where the probe check itself stops looking. Anything
/// larger is refused (`401`) without being buffered.
pub const UNSIGNED_MAX_BYTES: usize = 64;

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
    let (parts, body) = request.into_parts();
    let mut body = Some(body);
    let mut read = None;
    let result = handle(&state, webhook, &parts, &mut body, &mut read)
        .instrument(span.clone())
        .await;
    let (outcome, mut response) = span.in_scope(|| match result {
        Ok(Accepted::Published { stored, family }) => {
            let outcome = if stored.duplicate {
                DeliveryOutcome::Duplicate
            } else {
                state.metrics.event_published(index, family);
                DeliveryOutcome::Published
            };
            tracing::debug!(%outcome, seq = stored.seq, "event stored");
            (outcome, (StatusCode::OK, Json(stored)).into_response())
        }
        Ok(Accepted::Probe) => {
            tracing::info!(webhook = webhook.name.as_str(), outcome = %DeliveryOutcome::Probe, "validation probe answered");
            let body = Json(serde_json::json!({ "probe": true }));
            (DeliveryOutcome::Probe, (StatusCode::OK, body).into_response())
        }
        Err(e) => {
            let outcome = e.outcome();
            // A failed publish was logged by `ingest`, with the event it concerned.
            if !matches!(e, WebhookError::Unavailable(_)) {
                tracing::info!(webhook = webhook.name.as_str(), %outcome, error = %e, "delivery refused");
            }
            state
                .refusals
                .refused(&webhook.path, &e, Seen::of(&parts, read));
            (outcome, e.into_response())
        }
    });
    if let Some(unread) = body {
        // Answered before the body was read to its end: the connection
        // cannot be reused, and the rest of the body is drained in the
        // background while hyper writes the answer (when too many already
        // linger, the body is dropped and hyper closes at once).
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        state.admission.linger(unread);
    }
    state.metrics.request(index, outcome, started.elapsed());
    response
}

/// Takes `body` when it reads it to the end; an early answer leaves it for
/// [`Admission::linger`]. `read` gets the body once read, for the refusal record.
async fn handle<S: Sink>(
    state: &AppState<S>,
    webhook: &WebhookConfig,
    parts: &Parts,
    body: &mut Option<Body>,
    read: &mut Option<Bytes>,
) -> Result<Accepted, WebhookError> {
    let mut signatures = parts.headers.get_all(SIGNATURE_HEADER).iter();
    let signature = match (signatures.next(), signatures.next()) {
        (Some(one), None) => Some(one.as_bytes()),
        // Two signature headers are ambiguous: refuse rather than pick one.
        (Some(_), Some(_)) => return Err(WebhookError::BadSignature),
        (None, _) => None,
    };
    let limit = state.publisher.body_limit();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(WebhookError::TooLarge { limit });
    }
    // Without a signature only the probe can succeed: never read more of
    // an unsigned body than a probe can be.
    let unsigned = signature.is_none_or(<[u8]>::is_empty) && !webhook.allow_unsigned;
    if unsigned && declared.is_some_and(|n| n > UNSIGNED_MAX_BYTES as u64) {
        return Err(WebhookError::Unsigned);
    }

    // A slot before a byte of the body is read: waiting requests hold none.
    let _permit = state
        .admission
        .slot()
        .await
        .map_err(|_| WebhookError::Overloaded)?;
    let read_limit = if unsigned { UNSIGNED_MAX_BYTES } else { limit };
    let timeout = state.admission.body_timeout();
    let bytes = match read_body(body, declared, read_limit, timeout).await {
        Err(WebhookError::TooLarge { .. }) if unsigned => return Err(WebhookError::Unsigned),
        other => other?,
    };
    let traceparent = parts
        .headers
        .get(headers::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    let result = ingest::ingest(
        webhook,
        &state.publisher,
        WebhookDelivery {
            signature,
            traceparent,
            body: &bytes,
        },
    )
    .await;
    if result.is_err() {
        *read = Some(bytes);
    }
    result
}

/// Reads at most `limit` bytes (chunked or not) within `timeout`, into one
/// buffer sized from `Content-Length` when given: a body is held once, never
/// as chunks plus a copy. Leaves `body` in place unless it was read to its
/// end, or the connection broke.
async fn read_body(
    body: &mut Option<Body>,
    declared: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, WebhookError> {
    let Some(stream) = body.as_mut() else {
        return Err(WebhookError::BodyRead);
    };
    let capacity = declared.map_or(0, |n| n as usize).min(limit);
    let read = async move {
        let mut buf = BytesMut::with_capacity(capacity);
        while let Some(frame) = stream.frame().await {
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
    let result = tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(WebhookError::BodyTimeout));
    if matches!(result, Ok(_) | Err(WebhookError::BodyRead)) {
        *body = None;
    }
    result
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
