//! Reading the streams: summaries of stored messages, one message by
//! sequence, and pages newest first by stream sequence (a window of the
//! stream read forward through a short-lived consumer filtered by subject,
//! moving back until the page is full).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::fastpix::subject::SubjectFilter;
use crate::nats::headers;

/// One stored message, from wherever it was read.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: u64,
    pub subject: String,
    pub stored_at: OffsetDateTime,
    pub headers: Option<HeaderMap>,
    pub payload: Bytes,
}

impl StoredMessage {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| decoded(v.as_str()))
    }

    fn from_message(m: &jetstream::Message) -> Option<Self> {
        let info = m.info().ok()?;
        Some(StoredMessage {
            seq: info.stream_sequence,
            subject: m.subject.to_string(),
            stored_at: info.published,
            headers: m.headers.clone(),
            payload: m.payload.clone(),
        })
    }

    fn from_stream_message(m: jetstream::message::StreamMessage) -> Option<Self> {
        Some(StoredMessage {
            seq: m.sequence,
            subject: m.subject.to_string(),
            stored_at: m.time,
            headers: Some(m.headers),
            payload: m.payload,
        })
    }

    /// Every header, several values of one name joined with `, `.
    pub fn header_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        if let Some(h) = &self.headers {
            for (name, values) in h.iter() {
                let joined: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
                out.insert(name.to_string(), joined.join(", ").into());
            }
        }
        out
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `EventSummary` of the API; a field absent from the event is `null`.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub seq: u64,
    pub subject: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub id: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub workspace_id: Option<String>,
    pub created_at: Option<String>,
    pub stored_at: String,
    pub size: usize,
}

#[derive(serde::Deserialize)]
struct Created<'a> {
    #[serde(rename = "createdAt", borrow)]
    created_at: Option<std::borrow::Cow<'a, str>>,
}

impl EventSummary {
    /// From the headers the bridge wrote; `created_at` from the payload.
    pub fn of(m: &StoredMessage) -> Self {
        let created_at = serde_json::from_slice::<Created>(&m.payload)
            .ok()
            .and_then(|c| c.created_at.map(|s| s.into_owned()));
        EventSummary {
            seq: m.seq,
            subject: m.subject.clone(),
            event_type: m.header(headers::EVENT_TYPE),
            id: m.header(headers::EVENT_ID),
            object_type: m.header(headers::OBJECT_TYPE),
            object_id: m.header(headers::OBJECT_ID),
            workspace_id: m.header(headers::WORKSPACE_ID),
            created_at,
            stored_at: rfc3339(m.stored_at),
            size: m.payload.len(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("stream {0} not found")]
    NoStream(String),
    #[error("NATS: {0}")]
    Nats(String),
}

fn nats_err(e: impl std::fmt::Display) -> ReadError {
    ReadError::Nats(e.to_string())
}

/// A stream the inspector reads.
#[derive(Clone)]
pub struct Reader {
    js: jetstream::Context,
    pub name: String,
    /// Whether the stream answers direct gets (`allow_direct`, which the
    /// bridge sets on its streams); cleared at the first refusal, and
    /// reads then go through the JetStream API.
    direct: Arc<AtomicBool>,
}

impl Reader {
    pub fn new(js: jetstream::Context, name: String) -> Self {
        Reader {
            js,
            name,
            direct: Arc::new(AtomicBool::new(true)),
        }
    }

    async fn stream(&self) -> Result<stream::Stream<()>, ReadError> {
        self.js
            .get_stream_no_info(&self.name)
            .await
            .map_err(|_| ReadError::NoStream(self.name.clone()))
    }

    pub async fn info(&self) -> Result<stream::Info, ReadError> {
        let mut s = self
            .js
            .get_stream(&self.name)
            .await
            .map_err(|_| ReadError::NoStream(self.name.clone()))?;
        s.info().await.cloned().map_err(nats_err)
    }

    /// One message by sequence; `None` when there is none (never was, or gone).
    pub async fn get(&self, seq: u64) -> Result<Option<StoredMessage>, ReadError> {
        let stream = self.stream().await?;
        if self.direct.load(Ordering::Relaxed) {
            // Served by the stream itself rather than queued behind every
            // other JetStream API request, and by any replica.
            match stream.direct_get(seq).await {
                Ok(m) => return Ok(StoredMessage::from_stream_message(m)),
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    tracing::debug!(stream = %self.name, error = %e, "direct get refused; reading through the JetStream API");
                    self.direct.store(false, Ordering::Relaxed);
                }
            }
        }
        match stream.get_raw_message(seq).await {
            Ok(m) => Ok(StoredMessage::from_stream_message(m)),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(nats_err(e)),
        }
    }

    /// The first sequence stored at or after `t` (`last_seq + 1` when none).
    pub async fn seq_at(&self, t: OffsetDateTime) -> Result<u64, ReadError> {
        let info = self.info().await?;
        if info.state.messages == 0 || t > OffsetDateTime::now_utc() {
            return Ok(info.state.last_sequence + 1);
        }
        // Also keeps times the server cannot represent (before 1678) away from it.
        if t <= info.state.first_timestamp {
            return Ok(info.state.first_sequence);
        }
        let first = self
            .scan(
                consumer::DeliverPolicy::ByStartTime { start_time: t },
                &[],
                u64::MAX,
                1,
            )
            .await?;
        Ok(first
            .first()
            .map_or(info.state.last_sequence + 1, |m| m.seq))
    }

    /// Messages from `deliver` on, matching `filters` (none: all), with
    /// sequence below `before`, at most `max`, oldest first.
    async fn scan(
        &self,
        deliver: consumer::DeliverPolicy,
        filters: &[String],
        before: u64,
        max: usize,
    ) -> Result<Vec<StoredMessage>, ReadError> {
        let stream = self.stream().await?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: deliver,
                ack_policy: consumer::AckPolicy::None,
                filter_subjects: filters.to_vec(),
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(nats_err)?;
        let mut out = Vec::new();
        'fetch: while out.len() < max {
            let want = (max - out.len()).min(500);
            let mut batch = consumer
                .fetch()
                .max_messages(want)
                .messages()
                .await
                .map_err(nats_err)?;
            let mut got = 0;
            while let Some(m) = batch.next().await {
                let Ok(m) = m else { break };
                got += 1;
                let Some(s) = StoredMessage::from_message(&m) else {
                    continue;
                };
                if s.seq >= before {
                    break 'fetch;
                }
                out.push(s);
            }
            if got < want {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        Ok(out)
    }

    /// A page newest first: messages with `lo <= seq < hi` matching the
    /// server-side `filters` and `keep`, at most `limit`, and the sequence
    /// to ask for next (`None`: nothing older).
    pub async fn page(
        &self,
        filters: &[String],
        keep: &(dyn Fn(&StoredMessage) -> bool + Sync),
        lo: u64,
        hi: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, Option<u64>), ReadError> {
        let info = self.info().await?;
        let first = info.state.first_sequence.max(lo).max(1);
        let mut hi = hi
            .unwrap_or(u64::MAX)
            .min(info.state.last_sequence.saturating_add(1));
        let mut found: Vec<StoredMessage> = Vec::new();
        // Without filters a window of `limit` is a page; with them, the
        // window grows until enough match.
        let mut window = if filters.is_empty() {
            limit as u64
        } else {
            (limit as u64 * 4).max(256)
        };
        while found.len() < limit && hi > first {
            let start = hi.saturating_sub(window).max(first);
            let mut got = self
                .scan(
                    consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    filters,
                    hi,
                    usize::MAX,
                )
                .await?;
            got.retain(|m| keep(m));
            // Newest first; keep only what the page still needs.
            let need = limit - found.len();
            let take = got.len().min(need);
            found.extend(got.drain(got.len() - take..).rev());
            hi = start;
            if found.len() < limit {
                window = window.saturating_mul(4);
            }
            if found.len() == limit {
                // The next page starts below the oldest one returned.
                let oldest = found.last().map_or(hi, |m| m.seq);
                return Ok((found, (oldest > first).then_some(oldest)));
            }
        }
        Ok((found, None))
    }
}

/// A NATS subject filter as a plain matcher, for filters the server is not
/// asked to apply.
pub fn filter_matches(filters: &[SubjectFilter], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.matches(subject))
}

/// A header value as the event had it: the bridge percent-encodes every
/// value (docs/delivery.md); one that does not decode is shown as stored.
pub(crate) fn decoded(value: &str) -> String {
    crate::nats::headers::decode_value(value)
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_else(|| value.to_owned())
}
