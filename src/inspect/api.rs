//! The inspector's HTTP side: the page, the JSON API and the admin router.
//! Each handler answers a typed body that serializes to the shape
//! docs/inspector.md documents, or an [`ApiError`]: one line of JSON. What a
//! query means is [`query`](crate::inspect::query)'s; this file reads and
//! answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::fastpix::catalog::Family;
use crate::inspect::consumers::{self, ConsumerState, ReplayFrom};
use crate::inspect::error::ApiError;
use crate::inspect::query::{
    ChartPoint, EventPlan, EventQuery, Lookup, PageQuery, Window, overview_buckets, tally,
    time_param,
};
use crate::inspect::reader::{EventSummary, ReadError, StoredMessage, rfc3339};
use crate::inspect::{SendAnswer, Shared, assets, auth};
use crate::nats::dead_letters::LetterFields;
use crate::nats::headers;

type St = State<Arc<Shared>>;
type Answer<T> = Result<Json<T>, ApiError>;

/// The page and the API; everything but `/login` needs the token.
pub fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/assets/{name}", get(asset))
        .route("/api/events", get(events))
        .route("/api/events/{seq}", get(event))
        .route("/api/objects/{object_id}/events", get(object_events))
        .route("/api/live", get(live))
        .route("/api/refused", get(refused))
        .route("/api/dead_letters", get(dead_letters))
        .route("/api/consumers", get(consumer_list))
        .route("/api/overview", get(overview))
        .route("/api/catalog", get(catalog))
        .route("/api/actions/send", post(send_test))
        .route("/api/actions/replay", post(replay))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A layer, not a route layer: unknown paths answer 401 too.
        .layer(axum::middleware::from_fn_with_state(
            shared.auth.clone(),
            auth::require,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(shared)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn page() -> Response {
    assets::page()
}

async fn asset(Path(name): Path<String>) -> Response {
    assets::get(&name).unwrap_or_else(|| ApiError::NotFound("no such asset").into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(shared): St, Form(form): Form<LoginForm>) -> Response {
    if !shared.auth.token_matches(form.token.trim()) {
        let mut page = auth::login_page();
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (header::SET_COOKIE, shared.auth.cookie(false)),
        ],
    )
        .into_response()
}

async fn logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (
                header::SET_COOKIE,
                format!(
                    "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                    auth::COOKIE
                ),
            ),
        ],
    )
        .into_response()
}

/// The parameters of a query string, or the `400` for a malformed one.
fn params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|_| ApiError::bad("unknown or malformed query parameter"))
}

/// A page of events and where the next one ends.
#[derive(Debug, Serialize)]
pub struct EventsPage {
    pub events: Vec<EventSummary>,
    pub next_before_seq: Option<u64>,
}

async fn events(
    State(shared): St,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Answer<EventsPage> {
    let q = params(query)?;
    let plan = EventPlan::new(&q, &shared.prefix, OffsetDateTime::now_utc())?;
    let (found, next) = find_events(&shared, &plan).await?;
    Ok(Json(EventsPage {
        events: found.iter().map(EventSummary::of).collect(),
        next_before_seq: next,
    }))
}

/// Runs `plan`: its time bounds as sequences, then the index or a scan.
async fn find_events(
    shared: &Shared,
    plan: &EventPlan,
) -> Result<(Vec<StoredMessage>, Option<u64>), ApiError> {
    let reader = &shared.events;
    let lo = match plan.since {
        Some(t) => reader.seq_at(t).await.map_err(ApiError::nats)?,
        None => 1,
    };
    let mut hi = plan.before_seq.unwrap_or(u64::MAX);
    if let Some(until) = plan.until {
        let bound = reader
            .seq_at(EventPlan::until_bound(until))
            .await
            .map_err(ApiError::nats)?;
        hi = hi.min(bound);
    }
    let seqs = match plan.lookup() {
        Lookup::Id(id) => index(shared)?
            .event_seq(&id)
            .await
            .map_err(ApiError::nats)?
            .into_iter()
            .collect(),
        Lookup::Object(object) => index(shared)?
            .object_seqs(&object)
            .await
            .map_err(ApiError::nats)?,
        Lookup::Scan(server) => {
            let hi = (hi != u64::MAX).then_some(hi);
            let keep = |m: &StoredMessage| plan.keeps(m);
            return reader
                .page(&server, &keep, lo, hi, plan.limit)
                .await
                .map_err(ApiError::nats);
        }
    };
    let mut found = Vec::new();
    let mut rest = EventPlan::candidates(seqs, lo, hi).into_iter();
    for seq in rest.by_ref() {
        if let Some(m) = reader.get(seq).await.map_err(ApiError::nats)?
            && plan.keeps(&m)
        {
            found.push(m);
            if found.len() == plan.limit {
                break;
            }
        }
    }
    let next = if rest.next().is_some() {
        found.last().map(|m| m.seq)
    } else {
        None
    };
    Ok((found, next))
}

fn index(shared: &Shared) -> Result<crate::inspect::index::Index, ApiError> {
    shared.index().ok_or(ApiError::IndexNotReady)
}

/// One stored event, whole.
#[derive(Debug, Serialize)]
pub struct EventDetail {
    pub seq: u64,
    pub subject: String,
    pub stored_at: String,
    pub headers: serde_json::Map<String, Value>,
    /// As stored when `payload_as_stored`; otherwise with `hidden_values`
    /// credentials replaced by `"•••• (hidden)"`.
    pub payload: String,
    pub payload_as_stored: bool,
    pub hidden_values: usize,
    /// `inspect.reveal_secrets`: when off, the page says why the payload
    /// as stored is not shown.
    pub reveal_secrets: bool,
}

async fn event(State(shared): St, Path(seq): Path<String>) -> Answer<EventDetail> {
    let seq = seq
        .parse::<u64>()
        .map_err(|_| ApiError::bad("seq must be a stream sequence number"))?;
    // Sequences start at 1: 0 is no event, not a question for NATS.
    if seq == 0 {
        return Err(ApiError::NotFound("no event with this sequence"));
    }
    let m = shared
        .events
        .get(seq)
        .await
        .map_err(ApiError::nats)?
        .ok_or(ApiError::NotFound("no event with this sequence"))?;
    let shown = shared.redactor.show(&m.payload);
    Ok(Json(EventDetail {
        seq: m.seq,
        subject: m.subject.clone(),
        stored_at: rfc3339(m.stored_at),
        headers: m.header_map(),
        payload: shown.text,
        payload_as_stored: shown.as_stored,
        hidden_values: shown.hidden,
        reveal_secrets: shared.redactor.reveals(),
    }))
}

/// An object's timeline.
#[derive(Debug, Serialize)]
pub struct ObjectEvents {
    pub events: Vec<EventSummary>,
}

async fn object_events(State(shared): St, Path(object_id): Path<String>) -> Answer<ObjectEvents> {
    let seqs = index(&shared)?
        .object_seqs(&object_id)
        .await
        .map_err(ApiError::nats)?;
    let reader = shared.events.clone();
    let fetched: Vec<_> = futures_util::stream::iter(seqs)
        .map(|seq| {
            let reader = reader.clone();
            async move { reader.get(seq).await }
        })
        .buffered(16)
        .collect()
        .await;
    let mut events = Vec::new();
    for m in fetched {
        if let Some(m) = m.map_err(ApiError::nats)?
            && m.header(headers::OBJECT_ID).as_deref() == Some(&object_id)
        {
            events.push(EventSummary::of(&m));
        }
    }
    Ok(Json(ObjectEvents { events }))
}

async fn live(State(shared): St) -> Response {
    let rx = shared.live.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        use tokio::sync::broadcast::error::RecvError;
        let event = match rx.recv().await {
            Ok(json) => Event::default().data(json.as_ref()),
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// A page of refusal records.
#[derive(Debug, Serialize)]
pub struct RefusedPage {
    pub stream: String,
    pub refused: Vec<RefusedRecord>,
    pub next_before_seq: Option<u64>,
}

/// A refusal record as the bridge wrote it, with where it is stored.
#[derive(Debug, Serialize)]
pub struct RefusedRecord {
    #[serde(flatten)]
    pub record: serde_json::Map<String, Value>,
    pub seq: u64,
    pub stored_at: String,
}

/// No stream yet: nothing was ever stored there.
fn none_yet<T>(
    read: Result<(Vec<T>, Option<u64>), ReadError>,
) -> Result<(Vec<T>, Option<u64>), ApiError> {
    match read {
        Err(ReadError::NoStream(_)) => Ok((Vec::new(), None)),
        other => other.map_err(ApiError::nats),
    }
}

async fn refused(
    State(shared): St,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Answer<RefusedPage> {
    let (limit, before_seq) = params(query)?.page()?;
    let page = shared
        .refused
        .page(&[], &|_| true, 1, before_seq, limit)
        .await;
    let (found, next) = none_yet(page)?;
    let refused = found
        .iter()
        .map(|m| {
            let mut record = serde_json::from_slice::<serde_json::Map<String, Value>>(&m.payload)
                .unwrap_or_default();
            record.remove("seq");
            record.remove("stored_at");
            RefusedRecord {
                record,
                seq: m.seq,
                stored_at: rfc3339(m.stored_at),
            }
        })
        .collect();
    Ok(Json(RefusedPage {
        stream: shared.refused.name.clone(),
        refused,
        next_before_seq: next,
    }))
}

/// Bodies kept on `<prefix>_invalid`, and the consumers' dead letters.
#[derive(Debug, Serialize)]
pub struct DeadLettersPage {
    pub invalid: Vec<KeptInvalid>,
    pub consumer: Vec<ConsumerDeadLetter>,
    /// Absent until a worker first kept a dead letter.
    pub dead_letter_stream: Option<String>,
}

/// A signed body that was not a routable event.
#[derive(Debug, Serialize)]
pub struct KeptInvalid {
    pub seq: u64,
    pub stored_at: String,
    pub reason: Option<String>,
    pub size: usize,
    pub payload: String,
}

/// An event a consumer gave up on.
#[derive(Debug, Serialize)]
pub struct ConsumerDeadLetter {
    pub seq: u64,
    pub stored_at: String,
    pub subject: String,
    pub consumer: Option<String>,
    pub reason: Option<String>,
    pub deliveries: Option<String>,
    pub last_error: Option<String>,
    pub stream_seq: Option<String>,
    pub original_subject: Option<String>,
    pub size: usize,
    pub payload: String,
}

async fn dead_letters(
    State(shared): St,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Answer<DeadLettersPage> {
    let (limit, _) = params(query)?.page()?;
    let invalid_subject = shared.prefix.invalid_subject().into_string();
    let page = shared
        .invalid
        .page(
            std::slice::from_ref(&invalid_subject),
            &|m| m.subject == invalid_subject,
            1,
            None,
            limit,
        )
        .await;
    let (invalid, _) = none_yet(page)?;
    let invalid = invalid
        .iter()
        .map(|m| KeptInvalid {
            seq: m.seq,
            stored_at: rfc3339(m.stored_at),
            reason: m.header(headers::BRIDGE_ERROR),
            size: m.payload.len(),
            payload: shared.redactor.show(&m.payload).text,
        })
        .collect();
    let (exists, letters) = match shared.dead.page(&[], &|_| true, 1, None, limit).await {
        Ok((found, _)) => (true, found),
        Err(ReadError::NoStream(_)) => (false, Vec::new()),
        Err(e) => return Err(ApiError::nats(e)),
    };
    let consumer = letters
        .iter()
        .map(|m| {
            let f = LetterFields::read(|n| m.header(n));
            ConsumerDeadLetter {
                seq: m.seq,
                stored_at: rfc3339(m.stored_at),
                subject: m.subject.clone(),
                consumer: f.consumer,
                reason: f.reason,
                deliveries: f.deliveries,
                last_error: f.last_error,
                stream_seq: f.stream_seq,
                original_subject: f.subject,
                size: m.payload.len(),
                payload: shared.redactor.show(&m.payload).text,
            }
        })
        .collect();
    Ok(Json(DeadLettersPage {
        invalid,
        consumer,
        dead_letter_stream: exists.then(|| shared.dead_letters.stream.clone()),
    }))
}

/// The durable consumers of the events stream.
#[derive(Debug, Serialize)]
pub struct Consumers {
    pub stream: String,
    pub consumers: Vec<ConsumerState>,
    /// Dead letters kept per consumer.
    pub dead_letters: BTreeMap<String, u64>,
}

async fn consumer_list(State(shared): St) -> Answer<Consumers> {
    let consumers = consumers::list(&shared.js, &shared.events.name, &shared.history)
        .await
        .map_err(ApiError::nats)?;
    let dead_letters = consumers::dead_letter_counts(&shared.js, &shared.dead_letters).await;
    Ok(Json(Consumers {
        stream: shared.events.name.clone(),
        consumers,
        dead_letters,
    }))
}

/// The overview: the stream, the index's backlog, counts and charts.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub now: String,
    pub stream: StreamState,
    pub index_pending: Option<u64>,
    pub windows: BTreeMap<&'static str, Window>,
    pub hourly: Vec<ChartPoint>,
    pub daily: Vec<ChartPoint>,
}

/// The events stream as its info tells it.
#[derive(Debug, Serialize)]
pub struct StreamState {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_stored_at: String,
    /// The stream's bound (`jetstream.max_bytes`); 0 when it has none.
    pub max_bytes: u64,
    /// `bytes / max_bytes`, 0 without a bound.
    pub fill_ratio: f64,
    /// Full: new events are answered `503 storage_full` until there is room.
    pub full: bool,
}

async fn overview(State(shared): St) -> Answer<Overview> {
    let index = index(&shared)?;
    let now = OffsetDateTime::now_utc();
    let buckets = overview_buckets(now);
    let counted: Vec<_> = futures_util::stream::iter(buckets.clone())
        .map(|(g, t)| {
            let index = index.clone();
            async move { index.counts(g, t).await }
        })
        .buffered(32)
        .collect()
        .await;
    let mut read = Vec::with_capacity(buckets.len());
    for ((g, t), counts) in buckets.into_iter().zip(counted) {
        read.push((g, t, counts.map_err(ApiError::nats)?));
    }
    let tally = tally(read);
    let info = shared.events.info().await.map_err(ApiError::nats)?;
    let stream = StreamState {
        name: shared.events.name.clone(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        first_seq: info.state.first_sequence,
        last_seq: info.state.last_sequence,
        first_stored_at: rfc3339(info.state.first_timestamp),
        max_bytes: u64::try_from(info.config.max_bytes).unwrap_or(0),
        fill_ratio: match u64::try_from(info.config.max_bytes) {
            Ok(max) if max > 0 => info.state.bytes as f64 / max as f64,
            _ => 0.0,
        },
        full: crate::nats::publisher::is_full(info.state.bytes, info.config.max_bytes),
    };
    Ok(Json(Overview {
        now: rfc3339(now),
        stream,
        index_pending: shared.index_pending().await,
        windows: tally.windows,
        hourly: tally.hourly,
        daily: tally.daily,
    }))
}

/// The families and types the page offers, and where it sends test events.
#[derive(Debug, Serialize)]
pub struct Catalog {
    pub prefix: String,
    pub stream: String,
    pub families: Vec<CatalogFamily>,
    pub bridge_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CatalogFamily {
    pub name: &'static str,
    pub patterns: &'static [&'static str],
    pub types: Vec<&'static str>,
}

async fn catalog(State(shared): St) -> Json<Catalog> {
    let families = Family::ALL
        .iter()
        .map(|f| CatalogFamily {
            name: f.name(),
            patterns: f.patterns(),
            types: f.seed_types().to_vec(),
        })
        .collect();
    Json(Catalog {
        prefix: shared.prefix.as_str().to_owned(),
        stream: shared.events.name.clone(),
        families,
        bridge_url: shared.bridge_url.clone(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    #[serde(rename = "type")]
    event_type: String,
}

async fn send_test(
    State(shared): St,
    body: Result<Json<SendBody>, JsonRejection>,
) -> Answer<SendAnswer> {
    let Ok(Json(body)) = body else {
        return Err(ApiError::bad("expected {\"type\": \"<event type>\"}"));
    };
    if !crate::fastpix::catalog::seed_types().any(|t| t == body.event_type) {
        return Err(ApiError::bad(
            "type must be one of the catalogued event types",
        ));
    }
    let sender = shared.sender.as_ref().ok_or(ApiError::NoSender)?;
    sender(body.event_type)
        .await
        .map(Json)
        .map_err(ApiError::BadGateway)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    consumer: String,
    start_seq: Option<u64>,
    start_time: Option<String>,
    /// Must repeat the consumer's name: the confirmation.
    confirm: Option<String>,
}

/// A consumer moved back.
#[derive(Debug, Serialize)]
pub struct Replayed {
    pub consumer: String,
    pub deliver_policy: async_nats::jetstream::consumer::DeliverPolicy,
}

async fn replay(
    State(shared): St,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Answer<Replayed> {
    let Ok(Json(body)) = body else {
        return Err(ApiError::bad(
            "expected {\"consumer\", \"start_seq\" or \"start_time\", \"confirm\": <the consumer's name>}",
        ));
    };
    if body.confirm.as_deref() != Some(body.consumer.as_str()) {
        return Err(ApiError::bad("confirm must repeat the consumer's name"));
    }
    if body.consumer == crate::inspect::index::INDEX_CONSUMER {
        return Err(ApiError::bad(
            "the inspector's own index consumer cannot be replayed",
        ));
    }
    let from = match (body.start_seq, body.start_time.as_deref()) {
        (Some(seq), None) if seq > 0 => ReplayFrom::Sequence(seq),
        (None, Some(t)) => {
            ReplayFrom::Time(time_param("start_time", t, OffsetDateTime::now_utc())?)
        }
        _ => {
            return Err(ApiError::bad(
                "give exactly one of start_seq (from 1) or start_time",
            ));
        }
    };
    let config = consumers::replay(&shared.js, &shared.events.name, &body.consumer, from)
        .await
        .map_err(|e| ApiError::bad(e.to_string()))?;
    tracing::warn!(consumer = %body.consumer, ?from, "consumer moved back (replay)");
    Ok(Json(Replayed {
        consumer: body.consumer,
        deliver_policy: config.deliver_policy,
    }))
}

/// `/metrics`, `/healthz`, `/readyz`: no token, on `inspect.admin_listen`.
pub fn admin(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(Status { status: "ok" }) }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(shared)
}

async fn metrics(State(shared): St) -> Response {
    let list = consumers::list(&shared.js, &shared.events.name, &shared.history)
        .await
        .unwrap_or_default();
    let dead = consumers::dead_letter_counts(&shared.js, &shared.dead_letters).await;
    let mut text = consumers::render_metrics(&shared.events.name, &list, &dead);
    text.push_str(&format!(
        "# HELP fastpix_inspector_ready 1 while the inspector can answer (NATS connected, index open).\n# TYPE fastpix_inspector_ready gauge\nfastpix_inspector_ready {}\n",
        u8::from(shared.is_ready())
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `/healthz` and `/readyz`'s body.
#[derive(Debug, Serialize)]
pub struct Status {
    pub status: &'static str,
}

async fn readyz(State(shared): St) -> (StatusCode, Json<Status>) {
    if shared.is_ready() {
        (StatusCode::OK, Json(Status { status: "ready" }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Status {
                status: "not ready",
            }),
        )
    }
}
