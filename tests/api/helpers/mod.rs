//! Test harness: a real `nats-server` (JetStream on) per test with its own
//! store directory ([`nats`]), and the bridge on loopback port 0, in process
//! ([`app`]: [`TestApp`]) or as the binary ([`process`]: [`BridgeProcess`]);
//! both report the addresses they really got. [`raw`] speaks HTTP on a bare
//! socket and [`scrape`] reads Prometheus text. What every test shares
//! (secrets, signing, bodies, polling) is here.

mod app;
mod nats;
mod process;
mod raw;
mod scrape;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};

pub use app::*;
pub use nats::*;
pub use process::*;
pub use raw::*;
pub use scrape::*;

/// Development secret used by tests; base64 of "test-signing-secret-0123456789".
pub const SECRET: &str = "dGVzdC1zaWduaW5nLXNlY3JldC0wMTIzNDU2Nzg5";
/// A second, independent secret (rotation, second webhook).
pub const SECRET_2: &str = "c2Vjb25kLXNpZ25pbmctc2VjcmV0LWFiY2RlZg==";

/// Every event type the seed page lists, spelled as it spells them.
///
/// Kept here on purpose, as the specification, independent of
/// `fastpix::catalog`: the black-box tests check the bridge against the page,
/// not against the crate's own list, and `catalog_matches_the_seed_page`
/// fails when the two drift.
pub const SEED_TYPES: &[&str] = &[
    "video.media.created",
    "video.media.ready",
    "video.media.failed",
    "video.media.delete",
    "video.media.updated",
    "video.upload.media_created",
    "video.upload.created",
    "video.upload.ready",
    "video.upload.failed",
    "Video.media.live_stream.created",
    "video.live_stream.created",
    "video.live_stream.connected",
    "video.live_stream.recording",
    "video.live_stream.active",
    "video.live_stream.disconnected",
    "video.live_stream.idle",
    "video.asset.created",
    "video.live_stream.updated",
    "video.live_stream.enabled",
    "video.live_stream.disabled",
    "video.live_stream.deleted",
    "video.live_stream.simulcast.created",
    "video.live_stream.simulcast.deleted",
];

/// Logs are muted unless TEST_LOG is set.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        fastpix_nats_bridge::ops::telemetry::init(Default::default());
    }
}

/// FastPix's signature, computed here with hmac/sha2 directly rather than
/// through the bridge's own signing code.
pub fn sign(secret_b64: &str, body: &[u8]) -> String {
    let key = STANDARD.decode(secret_b64).expect("test secret is base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A FastPix-shaped event body.
pub fn event_body(event_type: &str, id: &str) -> String {
    serde_json::json!({
        "type": event_type,
        "id": id,
        "object": { "type": "media", "id": format!("obj-{id}") },
        "workspace": { "id": "ws-test", "name": "Test workspace" },
        "status": "ready",
        "data": { "id": format!("obj-{id}"), "playbackIds": [{ "id": "pb1", "accessPolicy": "public" }] },
        "createdAt": "2026-05-11T20:42:16.361817248Z",
        "attempts": []
    })
    .to_string()
}

/// An external program a test drives (a Python client, a browser, Prometheus),
/// named by the environment variable `var` that `scripts/test` sets once it
/// has installed it. Without it the test is skipped with a printed reason,
/// except under `CI=true`, where every test must run.
pub fn external_tool(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{var} is not set: scripts/test installs the tool and sets it, and CI=true runs every test"
            );
            eprintln!("skipping: {var} is not set (run through scripts/test to install the tool)");
            None
        }
    }
}

/// A loopback port nothing listens on right now, for what must be told its
/// port before it starts (a nats-server cluster's routes, Prometheus) and
/// for addresses where nothing should answer. Another process may take it
/// before it is used: never for the bridge, which binds port 0 and reports
/// the address it got ([`TestApp`], [`BridgeProcess`]).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
