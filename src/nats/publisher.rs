//! Publishing to NATS: the connection, the JetStream stream, and one call,
//! [`Publisher::publish`], that returns only once a message is stored (or, in
//! core mode, flushed) and never waits longer than the publish timeout. The
//! publisher is the bridge's [`Sink`].
//!
//! Nothing here knows about HTTP, so the same path serves any future input.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::Client;
use async_nats::connection::State;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, stream};
use tokio::sync::Notify;

use crate::nats::acks::{AckError, AckRouter};
use crate::nats::connection::{self, ConnectError, Patience};
use crate::nats::invalid;
use crate::nats::sink::Sink;
pub use crate::nats::sink::{Outgoing, PublishError, Stored};
use crate::ops::metrics::Metrics;
use crate::settings::{JetStreamSettings, NatsSettings, WebhookConfig};

/// Room kept for NATS headers inside the server's `max_payload`.
pub const HEADER_RESERVE_BYTES: usize = crate::settings::jetstream::HEADER_ROOM_BYTES;

/// Longest startup waits for the streams to be in place before listening
/// anyway (a server refusing them is retried in the background).
const STREAM_SETUP_WAIT: Duration = Duration::from_secs(10);

/// How often the streams' size is read for the gauges and the log.
const USAGE_EVERY: Duration = Duration::from_secs(10);

/// Why the bridge could not start publishing.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot subscribe to the JetStream acknowledgements: {0}")]
    Acks(#[from] async_nats::SubscribeError),
    #[error(
        "invalid setting `http.max_body_bytes` (FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES): {limit} is above the NATS server's max_payload of {max_payload} bytes; lower it or raise max_payload on the server"
    )]
    BodyLimitAboveMaxPayload { limit: usize, max_payload: usize },
}

/// State shared between the publisher, its background task and readiness.
struct Shared {
    client: Client,
    /// The context, and every stream the webhooks publish into (one unless
    /// a webhook has its own `stream`).
    jetstream: Option<(jetstream::Context, Vec<stream::Config>)>,
    /// Where publishes wait for their JetStream ack (in JetStream mode).
    acks: Option<AckRouter>,
    /// Their names, comma-separated, for `/readyz`.
    stream_names: Option<String>,
    stream_ready: AtomicBool,
    /// The streams last seen full, so that becoming full (and having room
    /// again) is logged once.
    full: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Body limit in force: the configured one, lowered to fit the server's
    /// `max_payload` (minus room for headers) once that is known.
    body_limit: AtomicUsize,
    configured_limit: usize,
    timeout: Duration,
    metrics: Metrics,
}

/// Handle to the NATS side of the bridge; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// Connects (waiting at most `nats.connect_timeout` for a first
    /// connection) and puts the stream in place. When NATS is not there yet
    /// the publisher is returned anyway and keeps connecting in the
    /// background, forever; readiness tells when it is usable.
    pub async fn connect(
        nats: &NatsSettings,
        js: &JetStreamSettings,
        webhooks: &[WebhookConfig],
        max_body_bytes: usize,
        metrics: Metrics,
    ) -> Result<Self, PublisherError> {
        let notify = Arc::new(Notify::new());
        let client = connection::connect_notifying(
            nats,
            "fastpix-nats-bridge",
            Patience::Forever,
            notify.clone(),
        )
        .await?;

        let jetstream = js.enabled.then(|| {
            let mut ctx = jetstream::new(client.clone());
            ctx.set_timeout(nats.publish_timeout);
            (ctx, stream_configs(js, webhooks, max_body_bytes))
        });
        // The events streams, for `/readyz` (the invalid bodies' streams follow them).
        let stream_names = jetstream.as_ref().map(|(_, configs)| {
            let names: Vec<&str> = configs
                .iter()
                .filter(|c| !c.subjects.iter().any(|s| s.ends_with("_invalid")))
                .map(|c| c.name.as_str())
                .collect();
            names.join(", ")
        });
        let acks = match jetstream {
            Some(_) => Some(AckRouter::start(client.clone()).await?),
            None => None,
        };
        let shared = Arc::new(Shared {
            client,
            jetstream,
            acks,
            stream_names,
            stream_ready: AtomicBool::new(false),
            full: std::sync::Mutex::default(),
            body_limit: AtomicUsize::new(max_body_bytes),
            configured_limit: max_body_bytes,
            timeout: nats.publish_timeout,
            metrics,
        });
        let publisher = Publisher { shared };

        // Wait briefly for the first connection, so a bridge started next to a
        // running NATS is ready at once and a too-large body limit is refused.
        let connected = tokio::time::timeout(nats.connect_timeout, notify.notified())
            .await
            .is_ok()
            || publisher.is_connected();
        if connected {
            let max_payload = publisher.shared.client.server_info().max_payload;
            if max_payload > 0 && max_body_bytes > max_payload {
                return Err(PublisherError::BodyLimitAboveMaxPayload {
                    limit: max_body_bytes,
                    max_payload,
                });
            }
            // A stream the server refuses (a bound above what it can
            // reserve) is retried in the background: the bridge still
            // listens, answers 503 and says why in its log and on /readyz.
            if tokio::time::timeout(STREAM_SETUP_WAIT, publisher.on_connected())
                .await
                .is_err()
            {
                let retrying = publisher.clone();
                tokio::spawn(async move { retrying.on_connected().await });
            }
        } else {
            tracing::warn!(
                servers = ?nats.url,
                "NATS is not reachable yet; serving /healthz and answering 503 until it is"
            );
        }
        tokio::spawn(publisher.clone().maintain(notify));
        tokio::spawn(publisher.clone().watch_usage());
        Ok(publisher)
    }

    /// Re-checks the server's limits and the stream after every (re)connect:
    /// a restarted server may have a new `max_payload` or an empty store.
    async fn maintain(self, notify: Arc<Notify>) {
        loop {
            notify.notified().await;
            self.on_connected().await;
        }
    }

    async fn on_connected(&self) {
        let info = self.shared.client.server_info();
        self.apply_max_payload(info.max_payload);
        let Some((ctx, configs)) = &self.shared.jetstream else {
            return;
        };
        let mut delay = Duration::from_millis(100);
        'retry: while self.is_connected() {
            for config in configs {
                if let Err(e) = ctx.create_or_update_stream(config.clone()).await {
                    self.shared.stream_ready.store(false, Ordering::SeqCst);
                    // JetStream reserves max_bytes when the stream is made.
                    let hint = e.to_string().contains("resources").then_some(
                        "the NATS server cannot reserve jetstream.max_bytes (FASTPIX_BRIDGE__JETSTREAM__MAX_BYTES) for this stream: lower it, or raise the server's jetstream max_file_store",
                    );
                    tracing::error!(stream = %config.name, max_bytes = config.max_bytes, error = %e, hint, "cannot create or update the stream; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue 'retry;
                }
            }
            if !self.shared.stream_ready.swap(true, Ordering::SeqCst) {
                for config in configs {
                    tracing::info!(
                        stream = %config.name,
                        subjects = ?config.subjects,
                        max_bytes = config.max_bytes,
                        max_msg_size = config.max_message_size,
                        max_age = ?config.max_age,
                        discard = "new",
                        "stream in place; when full, new events are answered 503 storage_full and nothing stored is dropped"
                    );
                }
                self.read_usage(ctx, configs).await;
            }
            return;
        }
    }

    /// Reads every stream's size into the gauges, and the count of late
    /// acks into its counter, forever.
    async fn watch_usage(self) {
        let Some((ctx, configs)) = &self.shared.jetstream else {
            return;
        };
        let mut every = tokio::time::interval(USAGE_EVERY);
        loop {
            every.tick().await;
            if let Some(acks) = &self.shared.acks {
                self.shared.metrics.late_acks(acks.late_acks());
            }
            if self.is_ready() {
                self.read_usage(ctx, configs).await;
            }
        }
    }

    /// Sets the gauges from the streams' info, and says in the log when a
    /// stream becomes full or has room again.
    async fn read_usage(&self, ctx: &jetstream::Context, configs: &[stream::Config]) {
        for config in configs {
            // One JetStream API request: the stream's info comes with it.
            let info = match ctx.get_stream(&config.name).await {
                Ok(s) => s.cached_info().clone(),
                Err(e) => {
                    tracing::debug!(stream = %config.name, error = %e, "cannot read the stream's size");
                    continue;
                }
            };
            let bytes = info.state.bytes;
            let limit = info.config.max_bytes;
            self.shared.metrics.stream_usage(&config.name, bytes, limit);
            let full = is_full(bytes, limit);
            let was_full = self.shared.full.lock().is_ok_and(|mut seen| {
                if full {
                    !seen.insert(config.name.clone())
                } else {
                    seen.remove(&config.name)
                }
            });
            if full && !was_full {
                tracing::error!(
                    stream = %config.name,
                    bytes,
                    max_bytes = limit,
                    "the stream is full: new events are answered 503 storage_full until there is room (raise jetstream.max_bytes, or remove events from the stream); nothing stored was dropped"
                );
            } else if !full && was_full {
                tracing::info!(stream = %config.name, bytes, max_bytes = limit, "the stream has room again");
            }
        }
    }

    fn apply_max_payload(&self, max_payload: usize) {
        if max_payload == 0 {
            return;
        }
        let fitted = max_payload.saturating_sub(HEADER_RESERVE_BYTES);
        let limit = self.shared.configured_limit.min(fitted);
        if limit < self.shared.configured_limit {
            tracing::info!(
                configured = self.shared.configured_limit,
                max_payload,
                effective = limit,
                "body limit lowered to leave room for headers under the server's max_payload; larger bodies get 413"
            );
        }
        self.shared.body_limit.store(limit, Ordering::Relaxed);
    }

    /// The largest body that can be published right now.
    pub fn body_limit(&self) -> usize {
        self.shared.body_limit.load(Ordering::Relaxed)
    }

    pub fn is_connected(&self) -> bool {
        self.shared.client.connection_state() == State::Connected
    }

    /// Connected, and (in JetStream mode) the stream is in place.
    pub fn is_ready(&self) -> bool {
        self.is_connected()
            && (self.shared.jetstream.is_none() || self.shared.stream_ready.load(Ordering::SeqCst))
    }

    /// The stream events are stored in (several, comma-separated, when
    /// webhooks have streams of their own).
    pub fn stream_name(&self) -> Option<&str> {
        self.shared.stream_names.as_deref()
    }

    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Publishes and waits for proof: the JetStream ack (both futures
    /// awaited), or a core publish followed by a flush. Bounded by the
    /// publish timeout; fails at once when disconnected rather than letting
    /// the client buffer a message nobody will answer for.
    pub async fn publish(&self, msg: Outgoing) -> Result<Stored, PublishError> {
        if !self.is_connected() {
            return Err(PublishError::Disconnected);
        }
        let subject = async_nats::Subject::from(msg.subject.into_string());
        let timeout = self.shared.timeout;
        let timer = self.shared.metrics.publish_started();
        let work = async {
            match &self.shared.acks {
                Some(acks) => {
                    if !self.shared.stream_ready.load(Ordering::SeqCst) {
                        return Err(PublishError::StreamNotReady);
                    }
                    let ack = acks
                        .publish(subject.clone(), msg.headers, msg.payload)
                        .await
                        .map_err(ack_error)?;
                    Ok(Stored {
                        subject,
                        stream: Some(ack.stream),
                        seq: Some(ack.seq),
                        duplicate: ack.duplicate,
                    })
                }
                None => {
                    let client = &self.shared.client;
                    client
                        .publish_with_headers(subject.clone(), msg.headers, msg.payload)
                        .await
                        .map_err(|e| PublishError::Refused(e.into()))?;
                    client
                        .flush()
                        .await
                        .map_err(|e| PublishError::Refused(e.into()))?;
                    Ok(Stored {
                        subject,
                        stream: None,
                        seq: None,
                        duplicate: false,
                    })
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(stored)) => {
                timer.acknowledged();
                Ok(stored)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PublishError::Timeout(timeout)),
        }
    }

    /// Flushes what was published and closes the connection.
    pub async fn drain(&self) {
        if let Err(e) = self.shared.client.drain().await {
            tracing::warn!(error = %e, "draining the NATS connection failed");
        }
    }
}

impl Sink for Publisher {
    fn publish(&self, msg: Outgoing) -> impl Future<Output = Result<Stored, PublishError>> + Send {
        Publisher::publish(self, msg)
    }

    fn body_limit(&self) -> usize {
        Publisher::body_limit(self)
    }

    fn is_connected(&self) -> bool {
        Publisher::is_connected(self)
    }

    fn is_ready(&self) -> bool {
        Publisher::is_ready(self)
    }

    fn stream_name(&self) -> Option<&str> {
        Publisher::stream_name(self)
    }
}

/// What a publish without an ack means for the sender, as [`classify`] reads it.
fn ack_error(e: AckError) -> PublishError {
    let refusal = match &e {
        AckError::Api {
            err_code,
            description,
        } => classify(PublishErrorKind::Other, Some((*err_code, description))),
        AckError::Publish(p)
            if p.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded =>
        {
            classify(PublishErrorKind::MaxPayloadExceeded, None)
        }
        _ => Refusal::Unavailable,
    };
    match refusal {
        Refusal::StorageFull => PublishError::StorageFull(e.to_string()),
        Refusal::TooLarge => PublishError::MessageTooLarge(e.to_string()),
        Refusal::Unavailable => PublishError::Refused(e.into()),
    }
}

/// What a refused publish means for whoever sent the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stream (or the server's JetStream storage) is full: retry once
    /// there is room; NATS itself is fine.
    StorageFull,
    /// The message can never be stored: larger than the stream or server takes.
    TooLarge,
    /// NATS did not store it for any other reason (no answer, no stream,
    /// not connected): retry later.
    Unavailable,
}

/// Reads a JetStream publish error: its kind, and the JetStream API error
/// (error code and description) when the server answered with one. The
/// codes are the server's (`JSStreamStoreFailedF` carries the store's own
/// "maximum bytes exceeded"); the descriptions are read too, for servers
/// that answer the same condition under another code.
pub fn classify(kind: PublishErrorKind, api: Option<(u64, &str)>) -> Refusal {
    use jetstream::ErrorCode as C;
    if kind == PublishErrorKind::MaxPayloadExceeded {
        return Refusal::TooLarge;
    }
    let Some((code, description)) = api else {
        return Refusal::Unavailable;
    };
    let d = description.to_ascii_lowercase();
    let code = C(code);
    if code == C::STREAM_MESSAGE_EXCEEDS_MAXIMUM
        || code == C::STREAM_HEADER_EXCEEDS_MAXIMUM
        || d.contains("message size exceeds")
        || d.contains("header size exceeds")
    {
        return Refusal::TooLarge;
    }
    let full_store = code == C::STREAM_STORE_FAILED
        && ["maximum bytes", "maximum messages", "resources"]
            .iter()
            .any(|s| d.contains(s));
    if full_store
        || code == C::INSUFFICIENT_RESOURCES
        || code == C::STORAGE_RESOURCES_EXCEEDED
        || code == C::MEMORY_RESOURCES_EXCEEDED
        || code == C::ACCOUNT_RESOURCES_EXCEEDED
        || d.contains("maximum bytes exceeded")
        || d.contains("insufficient resources")
    {
        return Refusal::StorageFull;
    }
    Refusal::Unavailable
}

/// A stream is full (as the log and the inspector say) once it has less
/// room than a small event takes; larger ones are refused a little earlier.
pub fn is_full(bytes: u64, max_bytes: i64) -> bool {
    u64::try_from(max_bytes).is_ok_and(|limit| limit > 0 && bytes + FULL_MARGIN_BYTES >= limit)
}

/// Room under which a stream counts as full.
const FULL_MARGIN_BYTES: u64 = 4096;

/// One stream per distinct `stream` of the webhooks, capturing the
/// prefixes of every webhook that stores into it; then, for each, the
/// stream its invalid bodies are kept in.
fn stream_configs(
    js: &JetStreamSettings,
    webhooks: &[WebhookConfig],
    max_body_bytes: usize,
) -> Vec<stream::Config> {
    let mut configs: Vec<stream::Config> = Vec::new();
    for w in webhooks {
        match configs.iter_mut().find(|c| c.name == w.stream) {
            Some(c) => c.subjects.push(w.prefix.wildcard()),
            None => configs.push(stream_config(
                js,
                &w.stream,
                w.prefix.wildcard(),
                max_body_bytes,
            )),
        }
    }
    let invalid: Vec<stream::Config> = configs
        .iter()
        .map(|events| {
            let subjects = webhooks
                .iter()
                .filter(|w| w.stream == events.name)
                .map(|w| w.prefix.invalid_subject().into_string())
                .collect();
            invalid::stream_config(events, subjects)
        })
        .collect();
    configs.extend(invalid);
    configs
}

fn stream_config(
    js: &JetStreamSettings,
    name: &str,
    subjects: String,
    max_body_bytes: usize,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects],
        // Bounded, and when full it refuses new events rather than
        // dropping stored ones nobody may have read yet.
        max_bytes: i64::try_from(js.max_bytes).unwrap_or(i64::MAX),
        max_message_size: i32::try_from(js.message_size_limit(max_body_bytes)).unwrap_or(i32::MAX),
        discard: stream::DiscardPolicy::New,
        max_age: js.max_age,
        duplicate_window: js.duplicate_window,
        num_replicas: js.replicas,
        storage: super::storage_type(&js.storage),
        // Reads by sequence (the inspector, consumers looking one event
        // up) are answered by the stream, from any replica.
        allow_direct: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_stream_is_told_apart_from_nats_being_unavailable() {
        use PublishErrorKind as K;
        // As nats-server 2.15 answers a stream at max_bytes with discard=new.
        let full = Some((10077, "maximum bytes exceeded (code 503, error code 10077)"));
        assert_eq!(classify(K::Other, full), Refusal::StorageFull);
        for (code, description) in [
            (10023, "insufficient resources"),
            (10047, "insufficient storage resources available"),
            (10028, "insufficient memory resources available"),
            (10002, "resource limits exceeded for account"),
            (10077, "maximum messages exceeded"),
            (1, "maximum bytes exceeded"),
        ] {
            assert_eq!(
                classify(K::Other, Some((code, description))),
                Refusal::StorageFull,
                "{code} {description}"
            );
        }
        for (code, description) in [
            (10054, "message size exceeds maximum allowed"),
            (10097, "header size exceeds maximum allowed of 64k"),
        ] {
            assert_eq!(
                classify(K::Other, Some((code, description))),
                Refusal::TooLarge
            );
        }
        assert_eq!(classify(K::MaxPayloadExceeded, None), Refusal::TooLarge);
        for kind in [
            K::TimedOut,
            K::StreamNotFound,
            K::BrokenPipe,
            K::MaxAckPending,
            K::Other,
        ] {
            assert_eq!(classify(kind, None), Refusal::Unavailable, "{kind:?}");
        }
        // A store failure that is not about room (a disk error) is not "full".
        assert_eq!(
            classify(K::Other, Some((10077, "input/output error"))),
            Refusal::Unavailable
        );
        assert_eq!(
            classify(K::Other, Some((10060, "expected stream does not match"))),
            Refusal::Unavailable
        );
    }

    #[test]
    fn full_means_less_room_than_a_small_event() {
        assert!(!is_full(0, 1 << 20));
        assert!(!is_full((1 << 20) - 10_000, 1 << 20));
        assert!(is_full((1 << 20) - 100, 1 << 20));
        assert!(is_full(1 << 20, 1 << 20));
        assert!(!is_full(1 << 40, -1), "no bound: never full");
        assert!(!is_full(1 << 40, 0));
    }
}
