//! The load generator: C keep-alive HTTP/1.1 connections, each posting one
//! signed, FastPix-shaped event of about 1 KB after another (closed loop, as
//! wrk does) until the time is up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Every event type the seed lists (the consumer families' list); the
/// generator cycles through them.
static TYPES: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| fastpix_nats_bridge::fastpix::catalog::seed_types().collect());

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub path: String,
    /// Base64 signing secret, as the FastPix dashboard shows it.
    pub secret_b64: String,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Makes event ids unique across runs.
    pub tag: u32,
}

/// What one run measured. Latencies cover requests started after the warm-up.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Every 2xx of the run, warm-up included: what the stream must hold.
    pub acknowledged: u64,
    /// Answers other than 2xx, warm-up included.
    pub non_2xx: u64,
    /// 2xx answers per second to requests started after the warm-up: the
    /// events stored per second.
    pub stored_rps: f64,
    /// Requests that got no answer (connection refused, reset, …).
    pub errors: u64,
}

#[derive(Default)]
struct ConnStats {
    latencies_us: Vec<u32>,
    acknowledged: u64,
    acknowledged_measured: u64,
    non_2xx: u64,
    errors: u64,
    last_done: Option<Instant>,
}

/// A FastPix-shaped event of about 1 KB with a unique id.
pub fn event(tag: u32, conn: usize, n: u64) -> String {
    let event_type = TYPES[(n as usize + conn) % TYPES.len()];
    let id = format!("{tag:08x}-{conn:04x}-4000-8000-{n:012x}");
    let media = format!("{tag:08x}{conn:08x}{n:016x}");
    format!(
        concat!(
            r#"{{"type":"{t}","id":"{id}","object":{{"type":"media","id":"{m}"}},"#,
            r#""workspace":{{"id":"5d3a1bd7-4e2c-4c33-9f7a-0c1d2e3f4a5b","name":"Benchmark workspace"}},"#,
            r#""status":"ready","data":{{"id":"{m}","workspaceId":"5d3a1bd7-4e2c-4c33-9f7a-0c1d2e3f4a5b","#,
            r#""metadata":{{"title":"Quarterly product walkthrough","uploader":"bench@example.com"}},"#,
            r#""playbackIds":[{{"id":"pb-{m}","accessPolicy":"public","accessRestrictions":{{"domains":{{"defaultPolicy":"allow","allow":[],"deny":[]}},"userAgents":{{"defaultPolicy":"allow","allow":[],"deny":[]}}}}}}],"#,
            r#""tracks":[{{"id":"v-{m}","type":"video","width":1920,"height":1080,"frameRate":"30/1"}},"#,
            r#"{{"id":"a-{m}","type":"audio","languageCode":"en","languageName":"English"}}],"#,
            r#""duration":"00:02:16.233333","aspectRatio":"16:9","maxResolution":"1080p","sourceResolution":"1080p","#,
            r#""sourceAccess":false,"mp4Support":"capped_4k","createdAt":"2026-05-11T20:41:02.104432718Z","#,
            r#""updatedAt":"2026-05-11T20:42:16.361817248Z"}},"createdAt":"2026-05-11T20:42:16.361817248Z","attempts":[]}}"#
        ),
        t = event_type,
        id = id,
        m = media,
    )
}

/// base64(HMAC-SHA256(base64-decoded secret, body)), as FastPix signs.
pub struct Signer(hmac::Hmac<sha2::Sha256>);

impl Signer {
    pub fn new(secret_b64: &str) -> Result<Self, String> {
        let key = STANDARD
            .decode(secret_b64.trim())
            .map_err(|e| format!("the signing secret is not base64: {e}"))?;
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
            .map(Signer)
            .map_err(|e| e.to_string())
    }

    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

pub async fn run(config: LoadConfig) -> Result<LoadResult, String> {
    let signer = Arc::new(Signer::new(&config.secret_b64)?);
    let config = Arc::new(config);
    let start = Instant::now();
    let measured_from = start + config.warmup;
    let end = measured_from + config.duration;
    let tasks: Vec<_> = (0..config.connections)
        .map(|conn| {
            let (config, signer) = (config.clone(), signer.clone());
            tokio::spawn(connection(config, signer, conn, measured_from, end))
        })
        .collect();
    let mut all = Vec::new();
    let mut result = LoadResult::default();
    let mut last_done = measured_from;
    let mut acknowledged_measured = 0;
    for task in tasks {
        let stats = task
            .await
            .map_err(|e| format!("a connection task failed: {e}"))?;
        all.extend_from_slice(&stats.latencies_us);
        result.acknowledged += stats.acknowledged;
        result.non_2xx += stats.non_2xx;
        result.errors += stats.errors;
        acknowledged_measured += stats.acknowledged_measured;
        if let Some(t) = stats.last_done {
            last_done = last_done.max(t);
        }
    }
    all.sort_unstable();
    let pct = |q: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1;
        f64::from(all[i]) / 1000.0
    };
    result.requests = all.len() as u64;
    result.seconds = last_done.duration_since(measured_from).as_secs_f64();
    result.rps = if result.seconds > 0.0 {
        result.requests as f64 / result.seconds
    } else {
        0.0
    };
    result.stored_rps = if result.seconds > 0.0 {
        acknowledged_measured as f64 / result.seconds
    } else {
        0.0
    };
    result.p50_ms = pct(0.50);
    result.p99_ms = pct(0.99);
    result.p999_ms = pct(0.999);
    result.max_ms = all.last().map_or(0.0, |v| f64::from(*v) / 1000.0);
    Ok(result)
}

async fn connection(
    config: Arc<LoadConfig>,
    signer: Arc<Signer>,
    conn: usize,
    measured_from: Instant,
    end: Instant,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let host = config.addr.to_string();
    let mut n: u64 = 0;
    while Instant::now() < end {
        let Ok(stream) = TcpStream::connect(config.addr).await else {
            stats.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, driver)) = http1::handshake(TokioIo::new(stream)).await else {
            stats.errors += 1;
            continue;
        };
        let driver = tokio::spawn(driver);
        loop {
            let started = Instant::now();
            if started >= end {
                break;
            }
            let body = event(config.tag, conn, n);
            n += 1;
            let signature = signer.sign(body.as_bytes());
            let request = Request::post(config.path.as_str())
                .header(hyper::header::HOST, host.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header("FastPix-Signature", signature)
                .body(Full::new(Bytes::from(body)));
            let Ok(request) = request else {
                stats.errors += 1;
                break;
            };
            if sender.ready().await.is_err() {
                stats.errors += 1;
                break;
            }
            let response = match sender.send_request(request).await {
                Ok(r) => r,
                Err(_) => {
                    stats.errors += 1;
                    break;
                }
            };
            let ok = response.status().is_success();
            if response.into_body().collect().await.is_err() {
                stats.errors += 1;
                break;
            }
            let done = Instant::now();
            if ok {
                stats.acknowledged += 1;
            } else {
                stats.non_2xx += 1;
            }
            if started >= measured_from {
                let us = done.duration_since(started).as_micros();
                stats
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
                stats.last_done = Some(done);
                if ok {
                    stats.acknowledged_measured += 1;
                }
            }
        }
        driver.abort();
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_about_a_kilobyte_valid_json_and_unique() {
        let a = event(7, 3, 41);
        let b = event(7, 3, 42);
        let c = event(7, 4, 41);
        assert!((900..=1200).contains(&a.len()), "{}", a.len());
        let parsed: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert!(parsed["type"].as_str().is_some());
        let ids: std::collections::HashSet<_> = [&a, &b, &c]
            .iter()
            .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap()["id"].clone())
            .collect();
        assert_eq!(ids.len(), 3);
    }
}
