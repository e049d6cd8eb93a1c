//! Every rule of the delivery table (docs/delivery.md), driven through the
//! public router with `oneshot`: no socket, no nats-server. Events go to
//! [`MemorySink`], an in-memory [`Sink`] that keeps what it is given, answers
//! a repeated `Nats-Msg-Id` as a duplicate the way JetStream does, and can be
//! told to fail, to lower its body limit or to hold a publish. The same rules
//! against a real nats-server are the black-box suite's (tests/api/).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

use crate::bridge::routes::{AppState, admin, app};
use crate::fastpix::signature::{SIGNATURE_HEADER, SigningSecret, Verifier};
use crate::fastpix::subject::SubjectPrefix;
use crate::nats::headers;
use crate::nats::sink::{Outgoing, PublishError, Sink, Stored};
use crate::ops::metrics::{EVENTS_PUBLISHED_TOTAL, Metrics, REQUESTS_TOTAL};
use crate::settings::{HttpSettings, Secrets, WebhookConfig};

const PATH: &str = "/webhooks/fastpix";
const SECRET: &str = "dGVzdC1zaWduaW5nLXNlY3JldC0wMTIzNDU2Nzg5";
const OTHER_SECRET: &str = "c2Vjb25kLXNpZ25pbmctc2VjcmV0LWFiY2RlZg==";
const STREAM: &str = "FASTPIX";

/// How the sink answers the next publishes.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Disconnected,
    StreamNotReady,
    Refused,
    TimedOut,
}

/// An in-memory sink.
#[derive(Clone)]
struct MemorySink {
    inner: Arc<Inner>,
}

struct Inner {
    stored: Mutex<Vec<Outgoing>>,
    ids: Mutex<HashSet<String>>,
    failure: Mutex<Option<Failure>>,
    body_limit: AtomicUsize,
    ready: AtomicBool,
    /// When set, each publish waits for a permit (and says it is waiting).
    gate: Mutex<Option<Arc<Semaphore>>>,
    waiting: Notify,
}

impl MemorySink {
    fn new(body_limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                stored: Mutex::new(Vec::new()),
                ids: Mutex::new(HashSet::new()),
                failure: Mutex::new(None),
                body_limit: AtomicUsize::new(body_limit),
                ready: AtomicBool::new(true),
                gate: Mutex::new(None),
                waiting: Notify::new(),
            }),
        }
    }

    fn fail_with(&self, failure: Option<Failure>) {
        *self.inner.failure.lock().unwrap() = failure;
    }

    fn stored(&self) -> Vec<Outgoing> {
        self.inner.stored.lock().unwrap().clone()
    }

    /// Makes publishes wait until the returned semaphore gets permits.
    fn hold(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.inner.gate.lock().unwrap() = Some(gate.clone());
        gate
    }
}

impl Sink for MemorySink {
    async fn publish(&self, msg: Outgoing) -> Result<Stored, PublishError> {
        let gate = self.inner.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            self.inner.waiting.notify_one();
            let _permit = gate.acquire().await.unwrap();
        }
        let failure = *self.inner.failure.lock().unwrap();
        match failure {
            Some(Failure::Disconnected) => return Err(PublishError::Disconnected),
            Some(Failure::StreamNotReady) => return Err(PublishError::StreamNotReady),
            Some(Failure::Refused) => {
                return Err(PublishError::Refused("maximum payload exceeded".into()));
            }
            Some(Failure::TimedOut) => {
                return Err(PublishError::Timeout(Duration::from_secs(5)));
            }
            None => {}
        }
        let id = msg
            .headers
            .get(headers::MSG_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let duplicate = !self.inner.ids.lock().unwrap().insert(id);
        let subject = async_nats::Subject::from(msg.subject.as_str());
        let mut stored = self.inner.stored.lock().unwrap();
        if !duplicate {
            stored.push(msg);
        }
        Ok(Stored {
            subject,
            stream: Some(STREAM.to_owned()),
            seq: Some(stored.len() as u64),
            duplicate,
        })
    }

    fn body_limit(&self) -> usize {
        self.inner.body_limit.load(Ordering::Relaxed)
    }

    fn is_connected(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    fn stream_name(&self) -> Option<&str> {
        Some(STREAM)
    }
}

/// A router over a fresh memory sink, with what the tests look at.
struct Bridge {
    router: Router,
    admin: Router,
    sink: MemorySink,
    metrics: Metrics,
}

fn bridge_with(sink: MemorySink, max_in_flight: usize, allow_unsigned: bool) -> Bridge {
    let metrics = Metrics::new();
    let secrets = vec![SigningSecret::from_base64(SECRET).unwrap()];
    let webhooks = Arc::new([WebhookConfig {
        name: crate::settings::DEFAULT_WEBHOOK_NAME.to_owned(),
        path: PATH.to_owned(),
        secrets: Secrets::new(Verifier::new(secrets), None, allow_unsigned),
        allow_unsigned,
        prefix: SubjectPrefix::default(),
        stream: STREAM.to_owned(),
        cloudevents: None,
    }]);
    let http = HttpSettings {
        max_in_flight,
        // Refuse at once when full, so a rule's refusal needs no waiting.
        queue_timeout: Duration::ZERO,
        max_queued: 0,
        body_timeout: Duration::from_secs(10),
        ..HttpSettings::default()
    };
    let refusals = crate::bridge::refused::Refusals::disabled(metrics.clone());
    let state = AppState::new(webhooks, sink.clone(), &http, metrics.clone(), refusals);
    Bridge {
        router: app(state.clone()),
        admin: admin(state),
        sink,
        metrics,
    }
}

fn bridge() -> Bridge {
    bridge_with(MemorySink::new(1024 * 1024), 64, false)
}

fn sign(secret: &str, body: &[u8]) -> String {
    SigningSecret::from_base64(secret).unwrap().sign(body)
}

fn event(event_type: &str, id: &str) -> String {
    serde_json::json!({
        "type": event_type,
        "id": id,
        "object": { "type": "media", "id": "m-1" },
        "workspace": { "id": "w-1" },
        "data": { "title": "café" },
    })
    .to_string()
}

fn post(body: impl Into<Bytes>, signature: Option<&str>) -> Request<Body> {
    let mut request = Request::post(PATH);
    if let Some(sig) = signature {
        request = request.header(SIGNATURE_HEADER, sig);
    }
    request.body(Body::from(body.into())).unwrap()
}

fn signed(body: &str) -> Request<Body> {
    post(body.to_owned(), Some(&sign(SECRET, body.as_bytes())))
}

/// The status, the `Retry-After` header and the JSON body of an answer.
async fn answer(response: Response<Body>) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, retry_after, json)
}

impl Bridge {
    async fn send(&self, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
        answer(self.router.clone().oneshot(request).await.unwrap()).await
    }

    fn count(&self, series: &str) -> f64 {
        let text = self.metrics.render(true, true);
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    }

    fn requests(&self, outcome: &str) -> f64 {
        self.count(&format!(
            "{REQUESTS_TOTAL}{{webhook=\"default\",outcome=\"{outcome}\"}}"
        ))
    }

    fn events(&self, family: &str) -> f64 {
        self.count(&format!(
            "{EVENTS_PUBLISHED_TOTAL}{{webhook=\"default\",family=\"{family}\"}}"
        ))
    }
}

#[tokio::test]
async fn a_probe_is_answered_200_and_never_published() {
    let b = bridge();
    for body in ["", " \n", "{}", " { } "] {
        let (status, _, json) = b.send(post(body, None)).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        assert_eq!(json, serde_json::json!({ "probe": true }), "{body:?}");
    }
    // Signed, or with an empty signature header, it is still a probe; so is
    // a signed object without `type`.
    for body in ["{}", r#"{"id":"no-type","data":{}}"#] {
        let (status, _, json) = b.send(signed(body)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(json["probe"], true, "{body}");
    }
    let (status, _, _) = b.send(post("{}", Some(""))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(b.sink.stored().is_empty());
    assert_eq!(b.requests("probe"), 7.0);
}

#[tokio::test]
async fn an_unsigned_event_is_refused_401() {
    let b = bridge();
    let body = event("video.media.ready", "e-1");
    for signature in [None, Some("")] {
        let (status, _, json) = b.send(post(body.clone(), signature)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json["outcome"], "unsigned");
        assert_eq!(json["error"], "missing FastPix-Signature");
    }
    assert!(b.sink.stored().is_empty());
    assert_eq!(b.requests("unsigned"), 2.0);
}

#[tokio::test]
async fn with_unsigned_allowed_an_unsigned_event_is_published() {
    let b = bridge_with(MemorySink::new(4096), 4, true);
    let (status, _, json) = b.send(post(event("video.media.ready", "u-1"), None)).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(b.sink.stored().len(), 1);
}

#[tokio::test]
async fn a_bad_signature_is_refused_401() {
    let b = bridge();
    let body = event("video.media.ready", "e-1");
    let other = sign(OTHER_SECRET, body.as_bytes());
    let of_other_body = sign(SECRET, b"{}");
    for signature in ["forged", "!!!", other.as_str(), of_other_body.as_str()] {
        let (status, _, json) = b.send(post(body.clone(), Some(signature))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{signature}");
        assert_eq!(json["outcome"], "bad_signature");
    }
    // Two signature headers, even with a good one among them, are ambiguous.
    let good = sign(SECRET, body.as_bytes());
    let request = Request::post(PATH)
        .header(SIGNATURE_HEADER, good.as_str())
        .header(SIGNATURE_HEADER, good.as_str())
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, _, json) = b.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["outcome"], "bad_signature");
    assert!(b.sink.stored().is_empty());
    assert_eq!(b.requests("bad_signature"), 5.0);
}

#[tokio::test]
async fn a_body_over_the_sinks_current_limit_is_refused_413() {
    let b = bridge_with(MemorySink::new(200), 4, false);
    let big = event("video.media.ready", &"x".repeat(300));

    // Declared too large: refused before a byte is read.
    let mut request = signed(&big);
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, big.len().into());
    let (status, _, json) = b.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["outcome"], "too_large");
    assert_eq!(json["error"], "body larger than 200 bytes");

    // Not declared (chunked): refused once it grows past the limit.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(64)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let request = Request::post(PATH)
        .header(SIGNATURE_HEADER, sign(SECRET, big.as_bytes()))
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let (status, _, _) = b.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // The limit is the sink's as of now: raised, the same body goes through.
    b.sink.inner.body_limit.store(big.len(), Ordering::Relaxed);
    let (status, _, json) = b.send(signed(&big)).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(b.sink.stored().len(), 1);
    assert_eq!(b.requests("too_large"), 2.0);
}

#[tokio::test]
async fn a_signed_body_that_is_no_event_is_kept_on_invalid_and_refused_400() {
    let b = bridge();
    let bodies = [
        "[1]",
        "not json",
        r#"{"type":null,"id":"null"}"#,
        r#"{"type":5,"id":"t"}"#,
        r#"{"type":"","id":"empty"}"#,
        r#"{"type":"video.media.ready","id":"twice","type":"x"}"#,
    ];
    for body in bodies {
        let (status, _, json) = b.send(signed(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(json["outcome"], "invalid", "{body}");
    }
    let kept = b.sink.stored();
    assert_eq!(kept.len(), bodies.len());
    for (msg, body) in kept.iter().zip(bodies) {
        assert_eq!(msg.subject.as_str(), "fastpix_invalid");
        assert_eq!(msg.payload, body.as_bytes(), "kept byte for byte");
        let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(
            header(headers::MSG_ID),
            Some(crate::bridge::ingest::body_hash(body.as_bytes()))
        );
        assert!(header(headers::BRIDGE_ERROR).is_some_and(|e| !e.is_empty()));
    }
    // FastPix's retry of the same body is stored once.
    let (status, _, _) = b.send(signed(bodies[0])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(b.sink.stored().len(), bodies.len());
    assert_eq!(b.requests("invalid"), bodies.len() as f64 + 1.0);
}

#[tokio::test]
async fn an_invalid_body_that_cannot_be_kept_is_answered_503_not_400() {
    let b = bridge();
    b.sink.fail_with(Some(Failure::Disconnected));
    let (status, retry_after, json) = b.send(signed("[1]")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert_eq!(json["outcome"], "nats_unavailable");
}

#[tokio::test]
async fn a_signed_event_is_published_on_its_subject_with_its_headers() {
    let b = bridge();
    let body = event("video.live_stream.active", "e-42");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut request = signed(&body);
    request
        .headers_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let (status, _, json) = b.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        serde_json::json!({
            "subject": "fastpix.video.live_stream.active",
            "stream": STREAM,
            "seq": 1,
            "duplicate": false,
        })
    );
    let stored = b.sink.stored();
    assert_eq!(stored.len(), 1);
    let msg = &stored[0];
    assert_eq!(msg.subject.as_str(), "fastpix.video.live_stream.active");
    assert_eq!(msg.payload, body.as_bytes(), "the body, byte for byte");
    let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(headers::MSG_ID).as_deref(), Some("e-42"));
    assert_eq!(header(headers::EVENT_ID).as_deref(), Some("e-42"));
    assert_eq!(
        header(headers::EVENT_TYPE).as_deref(),
        Some("video.live_stream.active")
    );
    assert_eq!(header(headers::OBJECT_TYPE).as_deref(), Some("media"));
    assert_eq!(header(headers::OBJECT_ID).as_deref(), Some("m-1"));
    assert_eq!(header(headers::WORKSPACE_ID).as_deref(), Some("w-1"));
    assert_eq!(header(headers::TRACEPARENT).as_deref(), Some(traceparent));
    assert_eq!(b.requests("published"), 1.0);
    assert_eq!(b.events("live_stream"), 1.0);
}

#[tokio::test]
async fn published_events_are_counted_in_the_catalogs_family() {
    let b = bridge();
    let cases = [
        ("video.live_stream.simulcast_target.created", "simulcast"),
        ("video.asset.created", "live_stream"),
        ("Video.media.live_stream.created", "upload"),
        ("video.media.track.ready", "media"),
        ("video.mediaAI.summary.ready", "other"),
        ("video.>", "other"),
    ];
    for (i, (t, _)) in cases.iter().enumerate() {
        let (status, _, _) = b.send(signed(&event(t, &format!("f-{i}")))).await;
        assert_eq!(status, StatusCode::OK, "{t}");
    }
    for family in ["simulcast", "live_stream", "upload", "media"] {
        assert_eq!(b.events(family), 1.0, "{family}");
    }
    assert_eq!(b.events("other"), 2.0);
}

#[tokio::test]
async fn a_repeated_id_is_a_duplicate_answered_200_and_counted_once() {
    let b = bridge();
    let body = event("video.media.ready", "same");
    let (status, _, first) = b.send(signed(&body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["duplicate"], false);
    // A retry may differ in its bytes; the id decides.
    let retry = event("video.media.ready", "same").replace("café", "cafe");
    let (status, _, second) = b.send(signed(&retry)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["duplicate"], true);
    assert_eq!(b.sink.stored().len(), 1);
    assert_eq!(b.requests("published"), 1.0);
    assert_eq!(b.requests("duplicate"), 1.0);
    assert_eq!(b.events("media"), 1.0, "a duplicate is not a new event");
}

#[tokio::test]
async fn a_sink_that_fails_or_times_out_gets_503_with_retry_after() {
    let b = bridge();
    let body = event("video.media.ready", "e-1");
    let failures = [
        Failure::Disconnected,
        Failure::StreamNotReady,
        Failure::Refused,
        Failure::TimedOut,
    ];
    for failure in failures {
        b.sink.fail_with(Some(failure));
        let (status, retry_after, json) = b.send(signed(&body)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{failure:?}");
        assert_eq!(retry_after.as_deref(), Some("2"), "{failure:?}");
        assert_eq!(json["outcome"], "nats_unavailable");
        // The cause stays in the log; the sender gets a fixed text.
        assert_eq!(json["error"], "event not stored, retry later");
    }
    assert!(b.sink.stored().is_empty());
    assert_eq!(b.requests("nats_unavailable"), failures.len() as f64);

    // Once the sink is back, FastPix's retry is stored.
    b.sink.fail_with(None);
    let (status, _, json) = b.send(signed(&body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["duplicate"], false);
}

#[tokio::test]
async fn over_max_in_flight_a_delivery_is_refused_503_at_once() {
    let b = bridge_with(MemorySink::new(4096), 1, false);
    let gate = b.sink.hold();
    let first = tokio::spawn(
        b.router
            .clone()
            .oneshot(signed(&event("video.media.ready", "slow"))),
    );
    // The first delivery now holds the only slot, waiting in the sink.
    b.sink.inner.waiting.notified().await;
    let (status, retry_after, json) = b.send(signed(&event("video.media.ready", "next"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert_eq!(json["outcome"], "overloaded");

    gate.add_permits(1);
    let (status, _, _) = answer(first.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b.requests("overloaded"), 1.0);
    // The slot is free again (and the gate keeps its permit open).
    let (status, _, _) = b.send(signed(&event("video.media.ready", "after"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn readiness_is_the_sinks() {
    let b = bridge();
    let get = |router: &Router, path: &str| {
        router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
    };
    let (status, _, json) = answer(get(&b.router, "/readyz").await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["stream"], STREAM);
    b.sink.inner.ready.store(false, Ordering::Relaxed);
    for router in [&b.router, &b.admin] {
        let (status, _, json) = answer(get(router, "/readyz").await.unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["status"], "not ready");
        let (status, _, _) = answer(get(router, "/healthz").await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "alive while not ready");
    }
    let metrics = get(&b.admin, "/metrics").await.unwrap();
    let text = axum::body::to_bytes(metrics.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("fastpix_bridge_ready 0"), "{text}");
}
