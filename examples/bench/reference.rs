//! The two reference servers the bridge is compared with, built on the same
//! stack (axum, hyper, tokio's multi-threaded runtime, async-nats):
//! - the ceiling: reads the body and answers 200;
//! - the floor: the least that does the bridge's job — read `type` and `id`,
//!   publish to JetStream with `Nats-Msg-Id`, answer 200 once acked.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;

pub const PATH: &str = "/webhooks/fastpix";

pub async fn ceiling(listen: SocketAddr) -> Result<(), String> {
    let app = Router::new()
        .route(PATH, post(|_body: Bytes| async { StatusCode::OK }))
        .route("/readyz", get(|| async { StatusCode::OK }));
    serve(listen, app).await
}

struct Floor {
    js: jetstream::Context,
    prefix: String,
}

#[derive(serde::Deserialize)]
struct Routing<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// `stream` is created (file storage, the bridge's default age and
/// duplicate window) on `<prefix>.>` before the port opens.
pub async fn floor(
    listen: SocketAddr,
    nats: &str,
    stream: &str,
    prefix: &str,
) -> Result<(), String> {
    let client = async_nats::connect(nats)
        .await
        .map_err(|e| format!("cannot connect to {nats}: {e}"))?;
    let js = jetstream::new(client);
    js.create_or_update_stream(jetstream::stream::Config {
        name: stream.to_owned(),
        subjects: vec![format!("{prefix}.>")],
        storage: jetstream::stream::StorageType::File,
        max_age: Duration::from_secs(30 * 24 * 3600),
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create stream {stream}: {e}"))?;
    let state = Arc::new(Floor {
        js,
        prefix: prefix.to_owned(),
    });
    let app = Router::new()
        .route(PATH, post(publish))
        .route("/readyz", get(|| async { StatusCode::OK }))
        .with_state(state);
    serve(listen, app).await
}

async fn publish(State(floor): State<Arc<Floor>>, body: Bytes) -> StatusCode {
    let Ok(routing) = serde_json::from_slice::<Routing>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", routing.id.as_ref());
    let subject = format!("{}.{}", floor.prefix, routing.kind);
    match floor.js.publish_with_headers(subject, headers, body).await {
        Ok(ack) => match ack.await {
            Ok(_) => StatusCode::OK,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn serve(listen: SocketAddr, app: Router) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    axum::serve(listener, app)
        .await
        .map_err(|e| format!("server failed: {e}"))
}
