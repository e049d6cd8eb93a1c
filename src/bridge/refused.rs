//! Records of refused deliveries, for the inspector: built only when a token
//! bucket allows, handed to a bounded queue without waiting, and published by
//! a background task (fire-and-forget) to the capped stream of
//! [`crate::nats::refused`]. A flood of forged requests therefore neither
//! slows the webhook path nor fills storage; what is left out is counted in
//! `fastpix_bridge_refusal_records_dropped_total`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::mpsc;

use crate::bridge::error::WebhookError;
use crate::nats::refused::{self, RefusalRecord};
use crate::ops::metrics::Metrics;
use crate::settings::RefusalsSettings;

/// Records per second kept on average.
pub const RATE_PER_SEC: f64 = 20.0;
/// Records allowed in one burst.
pub const BURST: f64 = 100.0;
/// Records waiting for the publishing task.
const QUEUE: usize = 256;

/// Cheap to clone; shared by every request.
#[derive(Clone)]
pub struct Refusals {
    tx: Option<mpsc::Sender<RefusalRecord>>,
    bucket: Arc<Mutex<Bucket>>,
    metrics: Metrics,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Refusals {
    /// Puts the records' stream in place (at startup, so that the first
    /// refusal does not wait for it); a failure is retried with the first record.
    pub async fn prepare(client: &async_nats::Client, settings: &RefusalsSettings) {
        if !settings.jetstream.enabled {
            return;
        }
        let config = refused::stream_config(&settings.jetstream, &settings.prefix);
        let js = jetstream::new(client.clone());
        let put = tokio::time::timeout(settings.setup_timeout, js.create_or_update_stream(config));
        if !matches!(put.await, Ok(Ok(_))) {
            tracing::info!("the refused-deliveries stream is not in place yet");
        }
    }

    /// Starts the publishing task on `client` (the bridge's own connection).
    /// In core mode (no JetStream) nothing would keep the records: none are made.
    pub fn start(
        client: async_nats::Client,
        settings: &RefusalsSettings,
        metrics: Metrics,
    ) -> Self {
        let tx = settings.jetstream.enabled.then(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let config = refused::stream_config(&settings.jetstream, &settings.prefix);
            tokio::spawn(publish_records(client, config, rx));
            tx
        });
        Refusals {
            tx,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: BURST,
                at: Instant::now(),
            })),
            metrics,
        }
    }

    /// Records nothing (for routers tested without NATS).
    pub fn disabled(metrics: Metrics) -> Self {
        Refusals {
            tx: None,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: 0.0,
                at: Instant::now(),
            })),
            metrics,
        }
    }

    /// True when a record may be made now (it takes a token); false, and
    /// counted as dropped, when over the rate. Ask before hashing the body.
    pub fn admit(&self) -> bool {
        if self.tx.is_none() {
            return false;
        }
        let allowed = match self.bucket.lock() {
            Ok(mut b) => {
                let now = Instant::now();
                let refill = now.duration_since(b.at).as_secs_f64() * RATE_PER_SEC;
                b.tokens = (b.tokens + refill).min(BURST);
                b.at = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    true
                } else {
                    false
                }
            }
            Err(_) => false,
        };
        if !allowed {
            self.metrics.refusal_record_dropped();
        }
        allowed
    }

    /// Queues a record without waiting; a full queue drops it (counted).
    pub fn record(&self, record: RefusalRecord) {
        if let Some(tx) = &self.tx
            && tx.try_send(record).is_err()
        {
            self.metrics.refusal_record_dropped();
        }
    }
}

/// What the request showed before it was consumed; cheap to take (header
/// values are reference-counted), so it is taken for every request.
pub struct Seen {
    pub remote: Option<std::net::SocketAddr>,
    pub user_agent: Option<axum::http::HeaderValue>,
    pub content_length: Option<axum::http::HeaderValue>,
    /// The body, once read (a reference, not a copy).
    pub body: Option<bytes::Bytes>,
}

impl Seen {
    /// What a refused delivery's request showed; built only once refused,
    /// so an accepted delivery copies nothing.
    pub fn of(parts: &axum::http::request::Parts, body: Option<bytes::Bytes>) -> Self {
        let headers = &parts.headers;
        Seen {
            remote: parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
            user_agent: headers.get(axum::http::header::USER_AGENT).cloned(),
            content_length: headers.get(axum::http::header::CONTENT_LENGTH).cloned(),
            body,
        }
    }
}

impl Refusals {
    /// Records one refused delivery, when the rate allows.
    pub fn refused(&self, path: &str, error: &WebhookError, seen: Seen) {
        if !self.admit() {
            return;
        }
        let text = |v: Option<axum::http::HeaderValue>| {
            v.and_then(|v| {
                v.to_str()
                    .ok()
                    .map(|s| s.chars().take(256).collect::<String>())
            })
        };
        let body_size = match &seen.body {
            Some(b) => Some(b.len() as u64),
            None => text(seen.content_length).and_then(|v| v.parse().ok()),
        };
        self.record(RefusalRecord {
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            path: path.to_owned(),
            status: error.status().as_u16(),
            outcome: error.outcome().as_str().to_owned(),
            reason: error.to_string(),
            remote_addr: seen.remote.map(|a| a.to_string()),
            user_agent: text(seen.user_agent),
            body_size,
            body_sha256: seen.body.map(|b| crate::bridge::ingest::body_hash(&b)),
        });
    }
}

async fn publish_records(
    client: async_nats::Client,
    config: jetstream::stream::Config,
    mut rx: mpsc::Receiver<RefusalRecord>,
) {
    let js = jetstream::new(client.clone());
    let subject = config.subjects.first().cloned().unwrap_or_default();
    // `prepare` put it in place at startup, in the usual case.
    let mut stream_checked: Option<Instant> = js
        .get_stream_no_info(&config.name)
        .await
        .is_ok()
        .then(Instant::now);
    while let Some(record) = rx.recv().await {
        // Re-checked now and then: a restarted server may have lost it.
        if stream_checked.is_none_or(|t| t.elapsed() > Duration::from_secs(600)) {
            match js.create_or_update_stream(config.clone()).await {
                Ok(_) => stream_checked = Some(Instant::now()),
                Err(e) => {
                    tracing::warn!(stream = %config.name, error = %e, "cannot put the refused-deliveries stream in place")
                }
            }
        }
        let Ok(body) = serde_json::to_vec(&record) else {
            continue;
        };
        if let Err(e) = client.publish(subject.clone(), body.into()).await {
            tracing::debug!(error = %e, "refusal record not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let settings = crate::settings::Settings::from_pairs(crate::settings::Purpose::Client, &[])
            .unwrap()
            .refusals();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect("nats://127.0.0.1:1")
                .await
                .unwrap();
            let r = Refusals::start(client, &settings, Metrics::new());
            let admitted = (0..1000).filter(|_| r.admit()).count();
            assert!((100..=110).contains(&admitted), "{admitted}");
        });
    }
}
