//! The durable consumers on the events stream: their state, a pending-count
//! history of the last hour (sampled by each inspector), the dead letters
//! counted per consumer, the Prometheus gauges, and replay.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use crate::fastpix::subject::SubjectPrefix;
use crate::inspect::reader::rfc3339;
use crate::nats::dead_letters;
use crate::nats::forward_leases::{LeaseState, bucket_name};

/// How often pending counts are sampled, and how long they are kept.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(30);
const KEEP_SAMPLES: usize = 120;

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerState {
    pub name: String,
    pub durable: bool,
    pub filter_subjects: Vec<String>,
    pub num_pending: u64,
    pub num_ack_pending: usize,
    pub num_redelivered: usize,
    pub num_waiting: usize,
    pub delivered_stream_seq: u64,
    pub ack_floor_stream_seq: u64,
    pub last_active: Option<String>,
    /// `[unix seconds, pending]`, oldest first, the last hour.
    pub pending_history: Vec<(i64, u64)>,
}

/// `(unix seconds, pending)`, oldest first.
type Samples = VecDeque<(i64, u64)>;

/// One gauge: name, help, and how to read it.
type GaugeOf = (&'static str, &'static str, fn(&ConsumerState) -> u64);

/// Pending counts sampled over the last hour, per consumer.
#[derive(Clone, Default)]
pub struct History {
    samples: Arc<Mutex<HashMap<String, Samples>>>,
}

impl History {
    fn record(&self, name: &str, t: i64, pending: u64) {
        if let Ok(mut m) = self.samples.lock() {
            let q = m.entry(name.to_owned()).or_default();
            q.push_back((t, pending));
            while q.len() > KEEP_SAMPLES {
                q.pop_front();
            }
        }
    }

    fn of(&self, name: &str) -> Vec<(i64, u64)> {
        self.samples
            .lock()
            .ok()
            .and_then(|m| m.get(name).map(|q| q.iter().copied().collect()))
            .unwrap_or_default()
    }

    fn keep_only(&self, names: &[String]) {
        if let Ok(mut m) = self.samples.lock() {
            m.retain(|k, _| names.contains(k));
        }
    }
}

/// NATS did not answer a question about the consumers.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConsumersError(#[source] async_nats::Error);

/// Why a consumer could not be moved back.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no consumer named {name:?} on stream {stream}")]
    NoConsumer { name: String, stream: String },
    #[error("{0:?} is not a durable consumer")]
    NotDurable(String),
    #[error("{0}")]
    Nats(#[source] async_nats::Error),
}

/// Every consumer of `stream` with its state.
pub async fn list(
    js: &jetstream::Context,
    stream: &str,
    history: &History,
) -> Result<Vec<ConsumerState>, ConsumersError> {
    let s = js
        .get_stream(stream)
        .await
        .map_err(|e| ConsumersError(e.into()))?;
    let mut infos = s.consumers();
    let mut out = Vec::new();
    while let Some(info) = infos.next().await {
        let info = info.map_err(|e| ConsumersError(e.into()))?;
        let mut filters = info.config.filter_subjects.clone();
        if !info.config.filter_subject.is_empty() {
            filters.insert(0, info.config.filter_subject.clone());
        }
        out.push(ConsumerState {
            durable: info.config.durable_name.is_some(),
            filter_subjects: filters,
            num_pending: info.num_pending,
            num_ack_pending: info.num_ack_pending,
            num_redelivered: info.num_redelivered,
            num_waiting: info.num_waiting,
            delivered_stream_seq: info.delivered.stream_sequence,
            ack_floor_stream_seq: info.ack_floor.stream_sequence,
            last_active: info.delivered.last_active.map(rfc3339),
            pending_history: history.of(&info.name),
            name: info.name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Where the consumer workers of one events stream keep their dead letters
/// (the workers' own naming, [`crate::nats::dead_letters`]).
#[derive(Debug, Clone)]
pub struct DeadLetters {
    /// `<events stream>_DEAD_LETTERS`.
    pub stream: String,
    /// `<prefix>_dead_letters.`, followed by the consumer's name.
    pub subject_prefix: String,
}

impl DeadLetters {
    pub fn of(events_stream: &str, prefix: &SubjectPrefix) -> Self {
        DeadLetters {
            stream: dead_letters::dead_letter_stream(events_stream),
            subject_prefix: dead_letters::dead_letter_subject(prefix, ""),
        }
    }
}

/// Dead letters kept per consumer (empty when the stream does not exist).
pub async fn dead_letter_counts(
    js: &jetstream::Context,
    dead: &DeadLetters,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(s) = js.get_stream(&dead.stream).await else {
        return out;
    };
    let filter = format!("{}>", dead.subject_prefix);
    let Ok(mut info) = s.info_with_subjects(filter).await else {
        return out;
    };
    while let Some(Ok((subject, count))) = info.next().await {
        if let Some(name) = subject.strip_prefix(dead.subject_prefix.as_str()) {
            *out.entry(name.to_owned()).or_default() += count as u64;
        }
    }
    out
}

/// A forward destination as the Consumers page shows it: its consumer's
/// backlog and what its forwarder last recorded in the leases bucket.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationState {
    pub consumer: String,
    pub destination: String,
    /// `delivering`, `paused`, or `no forwarder` (no live lease).
    pub state: &'static str,
    pub last_status: String,
    /// Events not yet delivered, or delivered and not yet acknowledged.
    pub pending: u64,
    pub updated: Option<String>,
}

/// Every forward destination of `stream`: each `forward-<name>` consumer,
/// and each consumer a forwarder holds a lease for (`forward --to
/// --durable`).
pub async fn destinations(
    js: &jetstream::Context,
    stream: &str,
    consumers: &[ConsumerState],
) -> Vec<DestinationState> {
    let mut leases: BTreeMap<String, LeaseState> = BTreeMap::new();
    if let Ok(store) = js.get_key_value(bucket_name(stream)).await
        && let Ok(mut keys) = store.keys().await
    {
        while let Some(Ok(key)) = keys.next().await {
            if let Ok(Some(value)) = store.get(&key).await
                && let Ok(state) = serde_json::from_slice::<LeaseState>(&value)
            {
                leases.insert(key, state);
            }
        }
    }
    consumers
        .iter()
        .filter(|c| c.durable && (c.name.starts_with("forward-") || leases.contains_key(&c.name)))
        .map(|c| {
            let lease = leases.get(&c.name);
            DestinationState {
                consumer: c.name.clone(),
                destination: lease.map_or_else(
                    || c.name.trim_start_matches("forward-").to_owned(),
                    |l| l.destination.clone(),
                ),
                state: match lease {
                    None => "no forwarder",
                    Some(l) if l.paused => "paused",
                    Some(_) => "delivering",
                },
                last_status: lease.map(|l| l.last_status.clone()).unwrap_or_default(),
                pending: c.num_pending + c.num_ack_pending as u64,
                updated: lease.map(|l| l.updated.clone()),
            }
        })
        .collect()
}

/// Where one event stands for one durable consumer.
#[derive(Debug, Clone, Serialize)]
pub struct EventStatus {
    pub consumer: String,
    /// `delivered` (acknowledged), `pending`, or `dead-lettered`.
    pub status: &'static str,
}

/// True when the NATS subject filter `filter` matches `subject`.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// For each durable consumer whose filters take the event at `seq` on
/// `subject`: dead-lettered when its dead letter is kept (`dead_lettered`
/// lists the consumers that have one), delivered when the consumer's
/// acknowledgement floor is past it, else pending.
pub fn event_statuses(
    consumers: &[ConsumerState],
    subject: &str,
    seq: u64,
    dead_lettered: &[String],
) -> Vec<EventStatus> {
    consumers
        .iter()
        .filter(|c| c.durable && c.name != crate::inspect::index::INDEX_CONSUMER)
        .filter(|c| {
            c.filter_subjects.is_empty()
                || c.filter_subjects
                    .iter()
                    .any(|f| subject_matches(f, subject))
        })
        .map(|c| EventStatus {
            consumer: c.name.clone(),
            status: if dead_lettered.contains(&c.name) {
                "dead-lettered"
            } else if c.ack_floor_stream_seq >= seq {
                "delivered"
            } else {
                "pending"
            },
        })
        .collect()
}

/// Samples the durable consumers' pending counts until the task is dropped.
pub async fn sample(js: jetstream::Context, stream: String, history: History) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    loop {
        every.tick().await;
        let Ok(list) = list(&js, &stream, &history).await else {
            continue;
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for c in list.iter().filter(|c| c.durable) {
            history.record(&c.name, now, c.num_pending);
        }
        let names: Vec<String> = list.into_iter().map(|c| c.name).collect();
        history.keep_only(&names);
    }
}

/// Prometheus text of the consumer gauges.
pub fn render_metrics(
    stream: &str,
    consumers: &[ConsumerState],
    dead: &BTreeMap<String, u64>,
) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut out = String::new();
    let gauges: [GaugeOf; 3] = [
        (
            "fastpix_consumer_pending",
            "Messages of the stream not yet delivered to the consumer.",
            |c| c.num_pending,
        ),
        (
            "fastpix_consumer_ack_pending",
            "Messages delivered to the consumer and not yet acknowledged.",
            |c| c.num_ack_pending as u64,
        ),
        (
            "fastpix_consumer_redelivered",
            "Messages delivered to the consumer more than once.",
            |c| c.num_redelivered as u64,
        ),
    ];
    for (name, help, value) in gauges {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for c in consumers.iter().filter(|c| c.durable) {
            out.push_str(&format!(
                "{name}{{stream=\"{}\",consumer=\"{}\"}} {}\n",
                esc(stream),
                esc(&c.name),
                value(c)
            ));
        }
    }
    out.push_str("# HELP fastpix_dead_letters Messages kept in the dead-letter stream, per consumer.\n# TYPE fastpix_dead_letters gauge\n");
    for (consumer, n) in dead {
        out.push_str(&format!(
            "fastpix_dead_letters{{consumer=\"{}\"}} {n}\n",
            esc(consumer)
        ));
    }
    out
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum ReplayFrom {
    Sequence(u64),
    Time(OffsetDateTime),
}

/// Moves a durable consumer back: JetStream cannot change where an existing
/// consumer starts, so it is deleted and created again with the same
/// configuration and the new start. Messages it had not acknowledged are
/// delivered again, as are all after the start.
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    from: ReplayFrom,
) -> Result<consumer::Config, ReplayError> {
    let nats = |e: async_nats::Error| ReplayError::Nats(e);
    let s = js.get_stream(stream).await.map_err(|e| nats(e.into()))?;
    let mut c: consumer::Consumer<consumer::Config> =
        s.get_consumer(name)
            .await
            .map_err(|_| ReplayError::NoConsumer {
                name: name.to_owned(),
                stream: stream.to_owned(),
            })?;
    let mut config = c.info().await.map_err(|e| nats(e.into()))?.config.clone();
    if config.durable_name.is_none() {
        return Err(ReplayError::NotDurable(name.to_owned()));
    }
    config.deliver_policy = match from {
        ReplayFrom::Sequence(seq) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: seq,
        },
        ReplayFrom::Time(t) => consumer::DeliverPolicy::ByStartTime { start_time: t },
    };
    s.delete_consumer(name).await.map_err(|e| nats(e.into()))?;
    s.create_consumer(config.clone())
        .await
        .map_err(|e| nats(e.into()))?;
    Ok(config)
}

#[cfg(test)]
mod forward_tests {
    use super::*;

    #[test]
    fn subject_filters_match_as_nats_does() {
        assert!(subject_matches("fastpix.>", "fastpix.video.media.ready"));
        assert!(subject_matches(
            "fastpix.video.*.ready",
            "fastpix.video.media.ready"
        ));
        assert!(!subject_matches(
            "fastpix.video.*",
            "fastpix.video.media.ready"
        ));
        assert!(!subject_matches(
            "fastpix.video.media.ready.>",
            "fastpix.video.media.ready"
        ));
        assert!(subject_matches("a.b", "a.b"));
    }
}
