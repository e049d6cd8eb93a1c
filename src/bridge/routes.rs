//! HTTP routes: the public router (the webhook endpoint, `/healthz`,
//! `/readyz`) and the admin router (`/metrics`, `/healthz`, `/readyz`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use tracing::field::Empty;

use crate::bridge::error::WebhookError;
use crate::bridge::ingest::{self, Accepted, Delivery};
use crate::bridge::refused::{Refusals, Seen};
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
    /// Deliveries waiting for a slot now, bounded by `max_queued`.
    pub queued: Arc<AtomicUsize>,
    /// `http.queue_timeout`.
    pub queue_timeout: Duration,
    /// `http.max_queued`.
    pub max_queued: usize,
    /// `http.body_timeout`.
    pub body_timeout: Duration,
    /// Bounds the connections lingering after an early answer at once.
    pub lingering: Arc<Semaphore>,
    pub metrics: Metrics,
    /// Records refused deliveries for the inspector.
    pub refusals: Refusals,
}

/// The largest unsigned body read (when `webhook.allow_unsigned` is false).
/// An unsigned request can only be FastPix's validation probe, an empty body
/// or `{}`: with a line ending and some indentation that is under a dozen
/// bytes, and 64 is where the probe check itself stops looking. Anything
/// larger is refused (`401`) without being buffered.
pub const UNSIGNED_MAX_BYTES: usize = 64;

/// After an early answer (`413`, `401`, `503`, `408`) the rest of the body is
/// read and thrown away for at most this long and this much before the
/// connection is closed, as nginx's lingering close does. Closing at once
/// with unread bytes makes the kernel send a reset, and a client that writes
/// its whole body before reading (Python's urllib, many others) then sees a
/// broken pipe instead of the answer. Discarded bytes go through one small
/// buffer, and no slot is held; at most 64 connections linger at once.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 16 * 1024 * 1024;

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
        if let Ok(permit) = state.lingering.clone().try_acquire_owned() {
            let time = LINGER_TIME.min(state.body_timeout);
            tokio::spawn(async move {
                linger(unread, time).await;
                drop(permit);
            });
        }
    }
    state.metrics.request(index, outcome, started.elapsed());
    response
}

/// Reads and discards what is left of a body, within `time` and [`LINGER_BYTES`].
async fn linger(mut body: Body, time: Duration) {
    let drain = async {
        let mut discarded = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                discarded += data.len() as u64;
                if discarded > LINGER_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(time, drain).await;
}

/// Takes `body` when it reads it to the end; an early answer leaves it for
/// [`linger`]. `read` gets the body once read, for the refusal record.
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
    let _permit = acquire_slot(state).await?;
    let read_limit = if unsigned { UNSIGNED_MAX_BYTES } else { limit };
    let bytes = match read_body(body, declared, read_limit, state.body_timeout).await {
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
        Delivery {
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

/// Counts a waiting request in [`AppState::queued`] while it lives.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A slot of `http.max_in_flight`: at once when one is free, else after
/// waiting in line (tokio's semaphore serves waiters first come, first
/// served, and a newcomer never takes a slot ahead of them) for at most
/// `http.queue_timeout`, behind at most `http.max_queued` others.
async fn acquire_slot<S>(state: &AppState<S>) -> Result<OwnedSemaphorePermit, WebhookError> {
    if let Ok(permit) = state.in_flight.clone().try_acquire_owned() {
        return Ok(permit);
    }
    let ahead = state.queued.fetch_add(1, Ordering::Relaxed);
    let _queued = Queued(&state.queued);
    if ahead >= state.max_queued || state.queue_timeout.is_zero() {
        return Err(WebhookError::Overloaded);
    }
    let _wait = state.metrics.waiting_for_slot();
    match tokio::time::timeout(state.queue_timeout, state.in_flight.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        // Timed out, or the semaphore closed (never: it is not closed).
        _ => Err(WebhookError::Overloaded),
    }
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
