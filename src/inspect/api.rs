//! The inspector's HTTP side: the page, the JSON API (shapes in
//! docs/inspector.md) and the admin router. Every error is one line of JSON.

// Helpers return the finished error `Response`, which handlers pass on as is.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::fastpix::catalog::Family;
use crate::fastpix::subject::SubjectFilter;
use crate::inspect::auth;
use crate::inspect::consumers::{self, ReplayFrom};
use crate::inspect::index::Granularity;
use crate::inspect::query::{EventSummary, Stored, filter_matches, rfc3339};
use crate::inspect::{Shared, assets};
use crate::nats::dead_letters::LetterFields;
use crate::nats::headers;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

type St = State<Arc<Shared>>;

/// One line of JSON: `{"error": "..."}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "inspector request failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "NATS did not answer; retry later",
    )
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, &message.into())
}

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

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such path")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
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
    assets::get(&name).unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no such asset"))
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

/// A limit as asked, defaulted and bounded.
fn limit_of(asked: Option<usize>) -> Result<usize, Response> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(bad("limit must be from 1 to 500")),
        Some(n) if n > MAX_LIMIT => Err(bad("limit must be from 1 to 500")),
        Some(n) => Ok(n),
    }
}

/// RFC 3339, or a duration meaning that long ago (`2h`).
fn time_param(name: &str, value: &str) -> Result<OffsetDateTime, Response> {
    if let Ok(t) = OffsetDateTime::parse(value.trim(), &Rfc3339) {
        return Ok(t);
    }
    match humantime::parse_duration(value.trim()) {
        Ok(d) => Ok(OffsetDateTime::now_utc() - d),
        Err(_) => Err(bad(format!(
            "{name} must be an RFC 3339 time or a duration such as 2h"
        ))),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    family: Option<String>,
    subject: Option<String>,
    object: Option<String>,
    id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before_seq: Option<u64>,
    limit: Option<usize>,
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

async fn events(
    State(shared): St,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return bad("unknown or malformed query parameter");
    };
    match find_events(&shared, &q).await {
        Ok((found, next)) => {
            let events: Vec<EventSummary> = found.iter().map(EventSummary::of).collect();
            Json(json!({ "events": events, "next_before_seq": next })).into_response()
        }
        Err(r) => r,
    }
}

async fn find_events(
    shared: &Shared,
    q: &EventQuery,
) -> Result<(Vec<Stored>, Option<u64>), Response> {
    let limit = limit_of(q.limit)?;
    let prefix = &shared.prefix;
    let mut checks: Vec<Vec<SubjectFilter>> = Vec::new();
    for (name, value) in [
        ("type", blank(&q.event_type)),
        ("subject", blank(&q.subject)),
    ] {
        if let Some(v) = value {
            let f = prefix.filter(v).map_err(|e| bad(format!("{name}: {e}")))?;
            checks.push(vec![f]);
        }
    }
    if let Some(name) = blank(&q.family) {
        let family = Family::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
            bad(format!("family must be one of {}", names.join(", ")))
        })?;
        checks.push(family.filters(prefix));
    }
    let object = blank(&q.object).map(str::to_owned);
    let id = blank(&q.id).map(str::to_owned);
    let keep = |m: &Stored| {
        checks.iter().all(|fs| filter_matches(fs, &m.subject))
            && object
                .as_ref()
                .is_none_or(|o| m.header(headers::OBJECT_ID).as_ref() == Some(o))
            && id
                .as_ref()
                .is_none_or(|i| m.header(headers::EVENT_ID).as_ref() == Some(i))
    };
    let reader = &shared.events;
    let lo = match blank(&q.since) {
        Some(s) => {
            let t = time_param("since", s)?;
            reader.seq_at(t).await.map_err(internal)?
        }
        None => 1,
    };
    let mut hi = q.before_seq.unwrap_or(u64::MAX);
    if let Some(u) = blank(&q.until) {
        let t = time_param("until", u)?;
        let bound = reader
            .seq_at(t + Duration::from_nanos(1))
            .await
            .map_err(internal)?;
        hi = hi.min(bound);
    }
    let in_range = |seq: u64| seq >= lo && seq < hi;
    // By id or object: through the index, never a scan.
    let indexed: Option<Vec<u64>> = if let Some(i) = &id {
        let index = shared.index().ok_or_else(index_not_ready)?;
        Some(
            index
                .event_seq(i)
                .await
                .map_err(internal)?
                .into_iter()
                .collect(),
        )
    } else if let Some(o) = &object {
        let index = shared.index().ok_or_else(index_not_ready)?;
        Some(index.object_seqs(o).await.map_err(internal)?)
    } else {
        None
    };
    if let Some(seqs) = indexed {
        let mut candidates: Vec<u64> = seqs.into_iter().filter(|&s| in_range(s)).collect();
        candidates.reverse();
        let mut found = Vec::new();
        let mut rest = candidates.into_iter();
        for seq in rest.by_ref() {
            if let Some(m) = reader.get(seq).await.map_err(internal)?
                && keep(&m)
            {
                found.push(m);
                if found.len() == limit {
                    break;
                }
            }
        }
        let next = if rest.next().is_some() {
            found.last().map(|m| m.seq)
        } else {
            None
        };
        return Ok((found, next));
    }
    let server: Vec<String> = checks
        .first()
        .map(|fs| fs.iter().map(|f| f.as_str().to_owned()).collect())
        .unwrap_or_default();
    let hi = (hi != u64::MAX).then_some(hi);
    reader
        .page(&server, &keep, lo, hi, limit)
        .await
        .map_err(internal)
}

fn index_not_ready() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the index is not open yet; retry later",
    )
}

async fn event(State(shared): St, Path(seq): Path<String>) -> Response {
    let Ok(seq) = seq.parse::<u64>() else {
        return bad("seq must be a stream sequence number");
    };
    match shared.events.get(seq).await {
        Ok(Some(m)) => Json(json!({
            "seq": m.seq,
            "subject": m.subject,
            "stored_at": rfc3339(m.stored_at),
            "headers": m.header_map(),
            "payload": String::from_utf8_lossy(&m.payload),
        }))
        .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no event with this sequence"),
        Err(e) => internal(e),
    }
}

async fn object_events(State(shared): St, Path(object_id): Path<String>) -> Response {
    let Some(index) = shared.index() else {
        return index_not_ready();
    };
    let seqs = match index.object_seqs(&object_id).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
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
        match m {
            Ok(Some(m)) if m.header(headers::OBJECT_ID).as_deref() == Some(&object_id) => {
                events.push(EventSummary::of(&m));
            }
            Ok(_) => {}
            Err(e) => return internal(e),
        }
    }
    Json(json!({ "events": events })).into_response()
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<usize>,
    before_seq: Option<u64>,
}

/// A page's size and where it ends, or the `400` to answer.
fn page_of(
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(usize, Option<u64>), Response> {
    let Ok(Query(q)) = query else {
        return Err(bad("unknown or malformed query parameter"));
    };
    Ok((limit_of(q.limit)?, q.before_seq))
}

async fn refused(
    State(shared): St,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (limit, before_seq) = match page_of(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let page = shared
        .refused
        .page(&[], &|_| true, 1, before_seq, limit)
        .await;
    let (found, next) = match page {
        Ok(p) => p,
        Err(crate::inspect::query::QueryError::NoStream(_)) => (Vec::new(), None),
        Err(e) => return internal(e),
    };
    let records: Vec<Value> = found
        .iter()
        .map(|m| {
            let mut record = serde_json::from_slice::<serde_json::Map<String, Value>>(&m.payload)
                .unwrap_or_default();
            record.insert("seq".to_owned(), m.seq.into());
            record.insert("stored_at".to_owned(), rfc3339(m.stored_at).into());
            Value::Object(record)
        })
        .collect();
    Json(json!({ "stream": shared.refused.name, "refused": records, "next_before_seq": next }))
        .into_response()
}

async fn dead_letters(
    State(shared): St,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (limit, _) = match page_of(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let invalid_subject = shared.prefix.invalid_subject().into_string();
    let invalid = match shared
        .events
        .page(
            std::slice::from_ref(&invalid_subject),
            &|m| m.subject == invalid_subject,
            1,
            None,
            limit,
        )
        .await
    {
        Ok((found, _)) => found,
        Err(e) => return internal(e),
    };
    let invalid: Vec<Value> = invalid
        .iter()
        .map(|m| {
            json!({
                "seq": m.seq,
                "stored_at": rfc3339(m.stored_at),
                "reason": m.header(headers::BRIDGE_ERROR),
                "size": m.payload.len(),
                "payload": String::from_utf8_lossy(&m.payload),
            })
        })
        .collect();
    let (exists, consumer) = match shared.dead.page(&[], &|_| true, 1, None, limit).await {
        Ok((found, _)) => (true, found),
        Err(crate::inspect::query::QueryError::NoStream(_)) => (false, Vec::new()),
        Err(e) => return internal(e),
    };
    let consumer: Vec<Value> = consumer
        .iter()
        .map(|m| {
            let f = LetterFields::read(|n| m.header(n));
            json!({
                "seq": m.seq,
                "stored_at": rfc3339(m.stored_at),
                "subject": m.subject,
                "consumer": f.consumer,
                "reason": f.reason,
                "deliveries": f.deliveries,
                "last_error": f.last_error,
                "stream_seq": f.stream_seq,
                "original_subject": f.subject,
                "size": m.payload.len(),
                "payload": String::from_utf8_lossy(&m.payload),
            })
        })
        .collect();
    Json(json!({
        "invalid": invalid,
        "consumer": consumer,
        "dead_letter_stream": exists.then_some(&shared.dead_letters.stream),
    }))
    .into_response()
}

async fn consumer_list(State(shared): St) -> Response {
    let list = match consumers::list(&shared.js, &shared.events.name, &shared.history).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    let dead = consumers::dead_letter_counts(&shared.js, &shared.dead_letters).await;
    Json(json!({ "stream": shared.events.name, "consumers": list, "dead_letters": dead }))
        .into_response()
}

fn family_name(event_type: &str) -> &'static str {
    Family::of_type(event_type).map_or("other", |f| f.name())
}

/// Per type, per family, and the total.
type Window = (BTreeMap<String, u64>, BTreeMap<&'static str, u64>, u64);

async fn overview(State(shared): St) -> Response {
    let Some(index) = shared.index() else {
        return index_not_ready();
    };
    let now = OffsetDateTime::now_utc();
    let mut keys: Vec<(Granularity, OffsetDateTime)> = Vec::new();
    for (g, n) in [
        (Granularity::FiveMinutes, 12),
        (Granularity::Hour, 24),
        (Granularity::Day, 30),
    ] {
        let top = g.floor(now);
        for i in (0..n).rev() {
            keys.push((g, top - Duration::from_secs((g.seconds() * i) as u64)));
        }
    }
    let counted: Vec<_> = futures_util::stream::iter(keys.clone())
        .map(|(g, t)| {
            let index = index.clone();
            async move { index.counts(g, t).await }
        })
        .buffered(32)
        .collect()
        .await;
    let mut windows: BTreeMap<&str, Window> = BTreeMap::new();
    let mut hourly = Vec::new();
    let mut daily = Vec::new();
    for ((g, t), counts) in keys.into_iter().zip(counted) {
        let counts = match counts {
            Ok(c) => c,
            Err(e) => return internal(e),
        };
        let window = match g {
            Granularity::FiveMinutes => "hour",
            Granularity::Hour => "day",
            Granularity::Day => "month",
        };
        let mut families: BTreeMap<&str, u64> = BTreeMap::new();
        let w = windows.entry(window).or_default();
        for (t, n) in &counts.counts {
            *w.0.entry(t.clone()).or_default() += n;
            *w.1.entry(family_name(t)).or_default() += n;
            *families.entry(family_name(t)).or_default() += n;
            w.2 += n;
        }
        let point = json!({ "start": rfc3339(t), "families": families });
        match g {
            Granularity::Hour => hourly.push(point),
            Granularity::Day => daily.push(point),
            Granularity::FiveMinutes => {}
        }
    }
    let windows: BTreeMap<&str, Value> = windows
        .into_iter()
        .map(|(k, (types, families, total))| {
            (
                k,
                json!({ "total": total, "types": types, "families": families }),
            )
        })
        .collect();
    let stream = match shared.events.info().await {
        Ok(info) => json!({
            "name": shared.events.name,
            "messages": info.state.messages,
            "bytes": info.state.bytes,
            "first_seq": info.state.first_sequence,
            "last_seq": info.state.last_sequence,
            "first_stored_at": rfc3339(info.state.first_timestamp),
        }),
        Err(e) => return internal(e),
    };
    let index_pending = shared.index_pending().await;
    Json(json!({
        "now": rfc3339(now),
        "stream": stream,
        "index_pending": index_pending,
        "windows": windows,
        "hourly": hourly,
        "daily": daily,
    }))
    .into_response()
}

async fn catalog(State(shared): St) -> Response {
    let families: Vec<Value> = Family::ALL
        .iter()
        .map(|f| json!({ "name": f.name(), "patterns": f.patterns(), "types": f.seed_types() }))
        .collect();
    Json(json!({
        "prefix": shared.prefix.as_str(),
        "stream": shared.events.name,
        "families": families,
        "bridge_url": shared.bridge_url,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    #[serde(rename = "type")]
    event_type: String,
}

async fn send_test(
    State(shared): St,
    body: Result<Json<SendBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return bad("expected {\"type\": \"<event type>\"}");
    };
    if !crate::fastpix::catalog::seed_types().any(|t| t == body.event_type) {
        return bad("type must be one of the catalogued event types");
    }
    let Some(sender) = &shared.sender else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "sending test events is not set up",
        );
    };
    match sender(body.event_type).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, &e),
    }
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

async fn replay(
    State(shared): St,
    body: Result<Json<ReplayBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return bad(
            "expected {\"consumer\", \"start_seq\" or \"start_time\", \"confirm\": <the consumer's name>}",
        );
    };
    if body.confirm.as_deref() != Some(body.consumer.as_str()) {
        return bad("confirm must repeat the consumer's name");
    }
    if body.consumer == crate::inspect::index::INDEX_CONSUMER {
        return bad("the inspector's own index consumer cannot be replayed");
    }
    let from = match (body.start_seq, body.start_time.as_deref()) {
        (Some(seq), None) if seq > 0 => ReplayFrom::Sequence(seq),
        (None, Some(t)) => match time_param("start_time", t) {
            Ok(t) => ReplayFrom::Time(t),
            Err(r) => return r,
        },
        _ => return bad("give exactly one of start_seq (from 1) or start_time"),
    };
    match consumers::replay(&shared.js, &shared.events.name, &body.consumer, from).await {
        Ok(config) => {
            tracing::warn!(consumer = %body.consumer, ?from, "consumer moved back (replay)");
            Json(json!({ "consumer": body.consumer, "deliver_policy": config.deliver_policy }))
                .into_response()
        }
        Err(e) => bad(e),
    }
}

/// `/metrics`, `/healthz`, `/readyz`: no token, on `inspect.admin_listen`.
pub fn admin(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
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

async fn readyz(State(shared): St) -> Response {
    let ready = shared.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if ready { "ready" } else { "not ready" } })),
    )
        .into_response()
}
