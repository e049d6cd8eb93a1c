//! The inspector's index, kept in NATS: a KV bucket `<stream>_INSPECT` with
//!
//! - `id.<key>` → the stream sequence of the event with that id;
//! - `obj.<key>` → the sequences of one FastPix object's events, in order;
//! - `m.<YYYYMMDDHHMM>` (5-minute buckets), `h.<YYYYMMDDHH>`, `d.<YYYYMMDD>`
//!   → `{"last_seq": n, "counts": {type: n}}` for the overview.
//!
//! (`<key>` is the hex of the id, or `s` + its SHA-256 when long.) So a lookup
//! by object or event id is one KV read plus one read per event, whatever
//! the stream holds.
//!
//! One durable consumer, `fastpix-inspector-index`, feeds it; every inspector
//! shares it. Its `max_ack_pending` is one batch, so batches are applied one
//! at a time and in order, which makes each write idempotent (a sequence
//! already listed or counted is skipped) and redelivery after a crash safe.
//! When the bucket is missing it is created and the consumer is started
//! again from the first event: the index is rebuilt from the stream.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::nats::headers;

/// The durable consumer feeding the index.
pub const INDEX_CONSUMER: &str = "fastpix-inspector-index";
/// Events applied per batch (and the consumer's `max_ack_pending`).
const BATCH: usize = 1000;
/// Sequences kept per object; older ones are dropped from the list.
const MAX_PER_OBJECT: usize = 10_000;
/// Distinct types counted per bucket; beyond, they count as `other`.
const MAX_TYPES_PER_BUCKET: usize = 200;
/// KV writes in flight while applying a batch.
const CONCURRENCY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index: {0}")]
    Nats(String),
}

fn nats_err(e: impl std::fmt::Display) -> IndexError {
    IndexError::Nats(e.to_string())
}

/// The index bucket name for an events stream.
pub fn bucket_name(stream: &str) -> String {
    format!("{stream}_INSPECT")
}

/// A KV-safe key part for an untrusted id.
pub fn key_part(id: &str) -> String {
    if id.len() <= 100 {
        hex::encode(id)
    } else {
        format!("s{}", hex::encode(Sha256::digest(id.as_bytes())))
    }
}

/// Counts of one time bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub last_seq: u64,
    pub counts: BTreeMap<String, u64>,
}

/// Bucket granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    FiveMinutes,
    Hour,
    Day,
}

impl Granularity {
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::FiveMinutes => 300,
            Granularity::Hour => 3600,
            Granularity::Day => 86400,
        }
    }

    /// The key of the bucket holding `t`.
    pub fn key(self, t: OffsetDateTime) -> String {
        let (y, m, d, h, min) = (t.year(), t.month() as u8, t.day(), t.hour(), t.minute());
        match self {
            Granularity::FiveMinutes => format!("m.{y:04}{m:02}{d:02}{h:02}{:02}", min / 5 * 5),
            Granularity::Hour => format!("h.{y:04}{m:02}{d:02}{h:02}"),
            Granularity::Day => format!("d.{y:04}{m:02}{d:02}"),
        }
    }

    /// Start of the bucket holding `t`.
    pub fn floor(self, t: OffsetDateTime) -> OffsetDateTime {
        let s = self.seconds();
        let ts = t.unix_timestamp();
        OffsetDateTime::from_unix_timestamp(ts - ts.rem_euclid(s)).unwrap_or(t)
    }
}

/// Read side of the index; cheap to clone.
#[derive(Clone)]
pub struct Index {
    kv: kv::Store,
}

impl Index {
    /// The sequence of the event with this id.
    pub async fn event_seq(&self, id: &str) -> Result<Option<u64>, IndexError> {
        let key = format!("id.{}", key_part(id));
        let value = self.kv.get(key).await.map_err(nats_err)?;
        Ok(value.and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok()))
    }

    /// The sequences of one object's events, oldest first.
    pub async fn object_seqs(&self, object_id: &str) -> Result<Vec<u64>, IndexError> {
        let key = format!("obj.{}", key_part(object_id));
        let value = self.kv.get(key).await.map_err(nats_err)?;
        Ok(value.map(|v| parse_seqs(&v)).unwrap_or_default())
    }

    /// Counts of the bucket holding `t`, if any event fell in it.
    pub async fn counts(
        &self,
        granularity: Granularity,
        t: OffsetDateTime,
    ) -> Result<Counts, IndexError> {
        let value = self.kv.get(granularity.key(t)).await.map_err(nats_err)?;
        Ok(value
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }
}

fn parse_seqs(v: &[u8]) -> Vec<u64> {
    std::str::from_utf8(v)
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Opens the index, creating (and so rebuilding) it when missing, and
/// returns it with the durable consumer that keeps it current.
pub async fn open(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    stream_name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<(Index, consumer::PullConsumer), IndexError> {
    let bucket = bucket_name(stream_name);
    let (kv, fresh) = match js.get_key_value(&bucket).await {
        Ok(kv) => (kv, false),
        Err(_) => {
            let kv = js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "fastpix-nats-bridge inspector index".to_owned(),
                    history: 1,
                    // A day past the events' own age, so counts outlive nothing they describe.
                    max_age: if max_age.is_zero() {
                        max_age
                    } else {
                        max_age + Duration::from_secs(86400)
                    },
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(nats_err)?;
            (kv, true)
        }
    };
    if fresh {
        // A consumer left from an index that was deleted would skip what it
        // already applied: start over from the first event.
        let _ = stream.delete_consumer(INDEX_CONSUMER).await;
        tracing::info!(bucket, "index created; building it from the stream");
    }
    let consumer = stream
        .get_or_create_consumer(
            INDEX_CONSUMER,
            consumer::pull::Config {
                durable_name: Some(INDEX_CONSUMER.to_owned()),
                description: Some("fastpix-nats-bridge inspector index".to_owned()),
                ack_policy: consumer::AckPolicy::All,
                deliver_policy: consumer::DeliverPolicy::All,
                max_ack_pending: BATCH as i64,
                ack_wait: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await
        .map_err(nats_err)?;
    Ok((Index { kv }, consumer))
}

/// One stored event, as far as the index cares.
struct Seen {
    seq: u64,
    time: OffsetDateTime,
    event_type: Option<String>,
    event_id: Option<String>,
    object_id: Option<String>,
}

/// Applies batches until the consumer or the connection fails.
pub async fn run(index: Index, consumer: consumer::PullConsumer) -> Result<(), IndexError> {
    loop {
        let mut batch = consumer
            .batch()
            .max_messages(BATCH)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(nats_err)?;
        let mut seen = Vec::new();
        let mut last = None;
        while let Some(message) = batch.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "index batch ended");
                    break;
                }
            };
            let Ok(info) = message.info() else { continue };
            let h = message.headers.as_ref();
            let get = |name: &str| {
                h.and_then(|h| h.get(name))
                    .map(|v| super::reader::decoded(v.as_str()))
                    .filter(|v| !v.is_empty())
            };
            seen.push(Seen {
                seq: info.stream_sequence,
                time: info.published,
                event_type: get(headers::EVENT_TYPE),
                event_id: get(headers::EVENT_ID),
                object_id: get(headers::OBJECT_ID),
            });
            last = Some(message);
        }
        let Some(last) = last else { continue };
        index.apply(&seen).await?;
        // Ack-all: one ack covers the batch.
        last.ack().await.map_err(nats_err)?;
    }
}

impl Index {
    async fn apply(&self, seen: &[Seen]) -> Result<(), IndexError> {
        let mut writes: Vec<futures_util::future::BoxFuture<'_, Result<(), IndexError>>> =
            Vec::new();
        for s in seen {
            if let Some(id) = &s.event_id {
                let key = format!("id.{}", key_part(id));
                let value = s.seq.to_string();
                let kv = self.kv.clone();
                writes.push(Box::pin(async move {
                    kv.put(key, value.into()).await.map(drop).map_err(nats_err)
                }));
            }
        }
        let mut objects: HashMap<&str, Vec<u64>> = HashMap::new();
        for s in seen {
            if let Some(o) = &s.object_id {
                objects.entry(o.as_str()).or_default().push(s.seq);
            }
        }
        for (object, seqs) in objects {
            let key = format!("obj.{}", key_part(object));
            writes.push(Box::pin(self.update(key, move |old| {
                let mut list = old.map(parse_seqs).unwrap_or_default();
                let top = list.last().copied().unwrap_or(0);
                list.extend(seqs.iter().copied().filter(|&q| q > top));
                if list.len() > MAX_PER_OBJECT {
                    list.drain(..list.len() - MAX_PER_OBJECT);
                }
                let text: Vec<String> = list.iter().map(u64::to_string).collect();
                text.join(",").into_bytes()
            })));
        }
        let mut buckets: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for s in seen {
            let t = s.event_type.clone().unwrap_or_else(|| "(none)".to_owned());
            for g in [
                Granularity::FiveMinutes,
                Granularity::Hour,
                Granularity::Day,
            ] {
                buckets
                    .entry(g.key(s.time))
                    .or_default()
                    .push((s.seq, t.clone()));
            }
        }
        for (key, items) in buckets {
            writes.push(Box::pin(self.update(key, move |old| {
                let mut c: Counts = old
                    .and_then(|v| serde_json::from_slice(v).ok())
                    .unwrap_or_default();
                let floor = c.last_seq;
                for (seq, t) in items.iter().filter(|(q, _)| *q > floor) {
                    let name = if c.counts.contains_key(t) || c.counts.len() < MAX_TYPES_PER_BUCKET
                    {
                        t.clone()
                    } else {
                        "other".to_owned()
                    };
                    *c.counts.entry(name).or_default() += 1;
                    c.last_seq = c.last_seq.max(*seq);
                }
                serde_json::to_vec(&c).unwrap_or_default()
            })));
        }
        let mut results = futures_util::stream::iter(writes).buffer_unordered(CONCURRENCY);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    /// Read-modify-write of one key with compare-and-set, retried on conflict.
    async fn update<F>(&self, key: String, f: F) -> Result<(), IndexError>
    where
        F: Fn(Option<&[u8]>) -> Vec<u8> + Send,
    {
        for _ in 0..20 {
            let entry = self.kv.entry(key.clone()).await.map_err(nats_err)?;
            let written = match entry.filter(|e| e.operation == kv::Operation::Put) {
                Some(e) => {
                    let value = f(Some(&e.value));
                    self.kv
                        .update(key.clone(), value.into(), e.revision)
                        .await
                        .is_ok()
                }
                None => {
                    let value = f(None);
                    self.kv.create(key.clone(), value.into()).await.is_ok()
                }
            };
            if written {
                return Ok(());
            }
        }
        Err(IndexError::Nats(format!("key {key} kept changing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kv_safe_for_any_id() {
        assert_eq!(key_part("m1"), "6d31");
        let long = "x".repeat(500);
        assert!(key_part(&long).starts_with('s') && key_part(&long).len() == 65);
        let evil = key_part("a.b>*\n ");
        assert!(evil.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn buckets_are_clock_aligned() {
        let t = time::macros::datetime!(2026-05-11 20:42:16 UTC);
        assert_eq!(Granularity::FiveMinutes.key(t), "m.202605112040");
        assert_eq!(Granularity::Hour.key(t), "h.2026051120");
        assert_eq!(Granularity::Day.key(t), "d.20260511");
        assert_eq!(
            Granularity::Hour.floor(t),
            time::macros::datetime!(2026-05-11 20:00 UTC)
        );
    }
}
