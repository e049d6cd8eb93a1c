//! The inspector's index, kept in NATS: a KV bucket `<stream>_INSPECT` with
//!
//! - `id.<key>` → the stream sequence of the event with that id;
//! - `obj.<key>` → the sequences of one FastPix object's events, in order;
//! - `m.<YYYYMMDDHHMM>` (5-minute buckets), `h.<YYYYMMDDHH>`, `d.<YYYYMMDD>`
//!   → `{"last_seq": n, "counts": {type: n}, "counted": [[from, to], …]}`
//!   for the overview.
//!
//! (`<key>` is the hex of the id, or `s` + its SHA-256 when long.) So a lookup
//! by object or event id is one KV read plus one read per event, whatever
//! the stream holds.
//!
//! One durable consumer, `fastpix-inspector-index`, feeds it; every inspector
//! shares it. Batches may be applied in any order (two inspectors each hold
//! one, or a batch held by a stopped inspector comes back after the
//! consumer's ack wait, behind later ones), so each write is idempotent and
//! order-free: an object's list is kept sorted and a sequence already in it is
//! skipped, and a bucket remembers the ranges of sequences it has counted.
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

/// Ranges of counted sequences kept per bucket. A bucket's events are one run
/// of sequences, so gaps only last while batches are applied out of order:
/// two inspectors pulling at once share out messages one by one, which may
/// leave up to a batch of single gaps until the other batch is applied. Past
/// this many ranges, the lowest two are joined (a gap between them would
/// then never be counted), which takes more than four full batches in
/// flight at once.
const MAX_RANGES: usize = 4 * BATCH;

/// Counts of one time bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// The highest sequence counted.
    pub last_seq: u64,
    pub counts: BTreeMap<String, u64>,
    /// The sequences counted, as sorted, disjoint, inclusive ranges. Absent
    /// in buckets written before it existed, which counted every sequence up
    /// to `last_seq`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counted: Vec<[u64; 2]>,
}

impl Counts {
    /// Counts the events of `items` (sequence, type) not counted yet, in any
    /// order and however often each comes.
    pub fn add(&mut self, items: &[(u64, String)]) {
        if self.counted.is_empty() && self.last_seq > 0 {
            self.counted.push([1, self.last_seq]);
        }
        for (seq, t) in items {
            if !insert_seq(&mut self.counted, *seq) {
                continue;
            }
            let name = if self.counts.contains_key(t) || self.counts.len() < MAX_TYPES_PER_BUCKET {
                t.clone()
            } else {
                "other".to_owned()
            };
            *self.counts.entry(name).or_default() += 1;
            self.last_seq = self.last_seq.max(*seq);
        }
        while self.counted.len() > MAX_RANGES {
            let [_, to] = self.counted.remove(1);
            self.counted[0][1] = to;
        }
    }
}

/// Adds `seq` to sorted, disjoint, inclusive `ranges`, joining neighbours;
/// false when it was already in.
fn insert_seq(ranges: &mut Vec<[u64; 2]>, seq: u64) -> bool {
    // The first range that ends at or after `seq - 1`.
    let i = ranges.partition_point(|r| r[1].saturating_add(1) < seq);
    match ranges.get(i).copied() {
        Some([from, to]) if from <= seq && seq <= to => false,
        Some([from, _]) if from == seq + 1 => {
            ranges[i][0] = seq;
            true
        }
        Some([_, to]) if to + 1 == seq => {
            ranges[i][1] = seq;
            if ranges.get(i + 1).is_some_and(|next| next[0] == seq + 1) {
                ranges[i][1] = ranges[i + 1][1];
                ranges.remove(i + 1);
            }
            true
        }
        _ => {
            ranges.insert(i, [seq, seq]);
            true
        }
    }
}

/// An object's sequences, sorted, with `seqs` merged in and the oldest
/// dropped beyond [`MAX_PER_OBJECT`].
fn merge_seqs(mut list: Vec<u64>, seqs: &[u64]) -> Vec<u64> {
    for &q in seqs {
        if let Err(at) = list.binary_search(&q) {
            list.insert(at, q);
        }
    }
    if list.len() > MAX_PER_OBJECT {
        list.drain(..list.len() - MAX_PER_OBJECT);
    }
    list
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
    let config = |deliver_policy| consumer::pull::Config {
        durable_name: Some(INDEX_CONSUMER.to_owned()),
        description: Some("fastpix-nats-bridge inspector index".to_owned()),
        // Each event is acked by itself: an ack of one inspector's batch must
        // never cover events another inspector holds and has not applied.
        ack_policy: consumer::AckPolicy::Explicit,
        deliver_policy,
        max_ack_pending: BATCH as i64,
        ack_wait: Duration::from_secs(60),
        ..Default::default()
    };
    let mut consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(INDEX_CONSUMER, config(consumer::DeliverPolicy::All))
        .await
        .map_err(nats_err)?;
    let info = consumer.info().await.map_err(nats_err)?;
    if info.config.ack_policy != consumer::AckPolicy::Explicit {
        // Made by an earlier version, which acked a batch at once; an ack
        // policy cannot be changed in place. The index takes any event again
        // unchanged, so the new consumer starts just past the old one's floor.
        let from = info.ack_floor.stream_sequence + 1;
        stream
            .delete_consumer(INDEX_CONSUMER)
            .await
            .map_err(nats_err)?;
        consumer = stream
            .get_or_create_consumer(
                INDEX_CONSUMER,
                config(consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                }),
            )
            .await
            .map_err(nats_err)?;
        tracing::info!(from, "index consumer made again to ack each event");
    }
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

/// Applies batches until the consumer or the connection fails, or until
/// `stop` turns true. A stop is seen between batches: the batch in hand (at
/// most one pull's `expires`) is applied and acked first, so no event is left
/// delivered-but-unacked to wait out the consumer's `ack_wait` before the
/// next inspector may index it.
pub async fn run(
    index: Index,
    consumer: consumer::PullConsumer,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), IndexError> {
    while !*stop.borrow_and_update() {
        let mut batch = consumer
            .batch()
            .max_messages(BATCH)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(nats_err)?;
        let mut seen = Vec::new();
        let mut ackers = Vec::new();
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
            ackers.push(message.split().1);
        }
        if ackers.is_empty() {
            continue;
        }
        index.apply(&seen).await?;
        for acker in ackers {
            acker.ack().await.map_err(nats_err)?;
        }
    }
    Ok(())
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
                let list = merge_seqs(old.map(parse_seqs).unwrap_or_default(), &seqs);
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
                c.add(&items);
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

    fn items(seqs: impl IntoIterator<Item = u64>) -> Vec<(u64, String)> {
        seqs.into_iter()
            .map(|q| (q, format!("video.t{}", q % 3)))
            .collect()
    }

    #[test]
    fn a_bucket_counts_each_sequence_once_whatever_the_order_of_its_batches() {
        let mut in_order = Counts::default();
        in_order.add(&items(1..=40));
        assert_eq!(in_order.counts.values().sum::<u64>(), 40);
        assert_eq!(in_order.counted, vec![[1, 40]]);
        assert_eq!(in_order.last_seq, 40);

        // Later batches first, one delivered twice, a batch held back behind
        // them and then applied, single sequences filling gaps last.
        let mut c = Counts::default();
        for batch in [
            items(21..=30),
            items(31..=40),
            items(21..=30),
            items(2..=9),
            items(12..=20),
            items([11, 1, 10, 11, 40]),
        ] {
            c.add(&batch);
        }
        assert_eq!(c.counts, in_order.counts);
        assert_eq!(c.counted, vec![[1, 40]]);
        assert_eq!(c.last_seq, 40);
    }

    #[test]
    fn ranges_join_their_neighbours_and_stay_bounded() {
        let mut r = Vec::new();
        for q in [5, 9, 7, 6, 8, 1, 3, 2] {
            assert!(insert_seq(&mut r, q), "{q}");
        }
        assert_eq!(r, vec![[1, 3], [5, 9]]);
        assert!(!insert_seq(&mut r, 7));
        assert!(insert_seq(&mut r, 4));
        assert_eq!(r, vec![[1, 9]]);

        // Every other sequence of more than MAX_RANGES: the lowest are joined.
        let n = MAX_RANGES as u64 + 10;
        let mut c = Counts::default();
        c.add(&items((0..n).map(|i| 1 + 2 * i)));
        assert_eq!(c.counted.len(), MAX_RANGES);
        assert_eq!(c.counted[0], [1, 21]);
        assert_eq!(c.counts.values().sum::<u64>(), n);
    }

    #[test]
    fn a_bucket_written_before_ranges_counted_everything_up_to_its_last_sequence() {
        let mut c: Counts =
            serde_json::from_str(r#"{"last_seq":10,"counts":{"video.t1":10}}"#).unwrap();
        c.add(&items([3, 10, 11]));
        assert_eq!(c.counts["video.t1"], 10);
        assert_eq!(c.counts.values().sum::<u64>(), 11);
        assert_eq!(c.counted, vec![[1, 11]]);
    }

    #[test]
    fn an_objects_list_stays_sorted_and_whole_whatever_the_order() {
        let list = merge_seqs(Vec::new(), &[7, 8, 9]);
        let list = merge_seqs(list, &[2, 3]);
        let list = merge_seqs(list, &[8, 5, 10]);
        assert_eq!(list, [2, 3, 5, 7, 8, 9, 10]);
        let long = merge_seqs((1..=MAX_PER_OBJECT as u64).collect(), &[0, 20_000]);
        assert_eq!(long.len(), MAX_PER_OBJECT);
        assert_eq!((long[0], long[MAX_PER_OBJECT - 1]), (2, 20_000));
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
