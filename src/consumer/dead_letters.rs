//! Dead letters: events a consumer gave up on, kept in a stream of their own
//! and delivered again to that one consumer on demand (an SQS-like
//! dead-letter queue with redrive).
//!
//! Names (another tool reads them, so they are fixed here):
//! - the stream [`dead_letter_stream`]: `<events stream>_DEAD_LETTERS`
//!   (`FASTPIX_DEAD_LETTERS` by default);
//! - one subject per consumer, [`dead_letter_subject`]:
//!   `<prefix>_dead_letters.<consumer>`, outside the events stream's
//!   `<prefix>.>` so the bridge's stream never captures a dead letter;
//! - the message: the original payload byte for byte, the original headers
//!   (but `Nats-Msg-Id`, replaced so that the dead letters of two consumers
//!   for one event are both kept) and the `FastPix-Dead-Letter-*` headers.
//!
//! Redrive copies a dead letter to `<prefix>_redrive.<consumer>` in the
//! work-queue stream `<events stream>_REDRIVE`, which only that consumer's
//! worker reads, then deletes the dead letter. The copy carries the message
//! id `redrive.<consumer>.<dead-letter seq>`, so a redrive repeated before the
//! deletion is stored once; after it, the dead letter is gone and a second
//! redrive finds nothing to send.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt as _;
use time::OffsetDateTime;

use super::{BindError, get_stream, is_valid_consumer_name};
use crate::fastpix::subject::SubjectPrefix;

/// Appended to the events stream's name: `FASTPIX_DEAD_LETTERS`.
pub const DEAD_LETTER_STREAM_SUFFIX: &str = "_DEAD_LETTERS";
/// The dead-letter stream of the default events stream `FASTPIX`.
pub const DEFAULT_DEAD_LETTER_STREAM: &str = "FASTPIX_DEAD_LETTERS";
/// Appended to the subject prefix: `fastpix_dead_letters.<consumer>`.
pub const DEAD_LETTER_SUBJECT_SUFFIX: &str = "_dead_letters";
/// Appended to the events stream's name: `FASTPIX_REDRIVE`.
pub const REDRIVE_STREAM_SUFFIX: &str = "_REDRIVE";
/// Appended to the subject prefix: `fastpix_redrive.<consumer>`.
pub const REDRIVE_SUBJECT_SUFFIX: &str = "_redrive";

/// The durable consumer that gave up on the event.
pub const HEADER_CONSUMER: &str = "FastPix-Dead-Letter-Consumer";
/// Why: the handler's reason for a rejection, or that the deliveries ran out.
pub const HEADER_REASON: &str = "FastPix-Dead-Letter-Reason";
/// How many times the event was delivered to that consumer.
pub const HEADER_DELIVERIES: &str = "FastPix-Dead-Letter-Deliveries";
/// The last failure: a retry's error, a panic, a time limit.
pub const HEADER_LAST_ERROR: &str = "FastPix-Dead-Letter-Last-Error";
/// The event's sequence in the events stream.
pub const HEADER_STREAM_SEQ: &str = "FastPix-Dead-Letter-Stream-Seq";
/// The subject the event was published on.
pub const HEADER_SUBJECT: &str = "FastPix-Dead-Letter-Subject";

/// Every `FastPix-Dead-Letter-*` header.
pub const HEADERS: [&str; 6] = [
    HEADER_CONSUMER,
    HEADER_REASON,
    HEADER_DELIVERIES,
    HEADER_LAST_ERROR,
    HEADER_STREAM_SEQ,
    HEADER_SUBJECT,
];

/// Longest header value written; reasons and errors are cut there.
const MAX_HEADER_VALUE: usize = 1024;

/// `<events stream>_DEAD_LETTERS`.
pub fn dead_letter_stream(events_stream: &str) -> String {
    format!("{events_stream}{DEAD_LETTER_STREAM_SUFFIX}")
}

/// `<prefix>_dead_letters.<consumer>`.
pub fn dead_letter_subject(prefix: &SubjectPrefix, consumer: &str) -> String {
    format!("{}{DEAD_LETTER_SUBJECT_SUFFIX}.{consumer}", prefix.as_str())
}

/// `<events stream>_REDRIVE`.
pub fn redrive_stream(events_stream: &str) -> String {
    format!("{events_stream}{REDRIVE_STREAM_SUFFIX}")
}

/// `<prefix>_redrive.<consumer>`: read by that consumer's worker only.
pub fn redrive_subject(prefix: &SubjectPrefix, consumer: &str) -> String {
    format!("{}{REDRIVE_SUBJECT_SUFFIX}.{consumer}", prefix.as_str())
}

/// A header value NATS accepts: one line, no control characters, bounded.
pub(crate) fn header_value(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_HEADER_VALUE {
        let mut cut = MAX_HEADER_VALUE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        "-".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Creates the dead-letter and redrive streams when missing, with the
/// events stream's storage and replicas. Dead letters are kept until
/// redriven or deleted: nothing ages them out.
pub async fn ensure_streams(
    js: &jetstream::Context,
    events_stream: &str,
    prefix: &SubjectPrefix,
) -> Result<(stream::Stream, stream::Stream), BindError> {
    let mut events = get_stream(js, events_stream).await?;
    let events_config = events
        .info()
        .await
        .map(|i| i.config.clone())
        .map_err(|e| BindError::nats(format!("cannot read stream `{events_stream}`"), e))?;
    let dead = get_or_create(
        js,
        stream::Config {
            name: dead_letter_stream(events_stream),
            description: Some("fastpix-nats-bridge: events consumers gave up on".to_owned()),
            subjects: vec![format!("{}{DEAD_LETTER_SUBJECT_SUFFIX}.>", prefix.as_str())],
            storage: events_config.storage,
            num_replicas: events_config.num_replicas,
            allow_direct: true,
            ..Default::default()
        },
    )
    .await?;
    let redrive = get_or_create(
        js,
        stream::Config {
            name: redrive_stream(events_stream),
            description: Some(
                "fastpix-nats-bridge: dead letters delivered again, one subject per consumer"
                    .to_owned(),
            ),
            subjects: vec![format!("{}{REDRIVE_SUBJECT_SUFFIX}.>", prefix.as_str())],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: events_config.storage,
            num_replicas: events_config.num_replicas,
            duplicate_window: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await?;
    Ok((dead, redrive))
}

async fn get_or_create(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, BindError> {
    let name = config.name.clone();
    js.get_or_create_stream(config)
        .await
        .map_err(|e| BindError::nats(format!("cannot set up stream `{name}`"), e))
}

/// The headers of a dead letter: the original ones (but `Nats-Msg-Id` and
/// any earlier dead-letter headers) plus this failure's.
pub(crate) fn dead_letter_headers(original: Option<&HeaderMap>, letter: &Letter<'_>) -> HeaderMap {
    let mut headers: HeaderMap = original
        .map(|h| {
            h.iter()
                .filter(|(name, _)| {
                    let name: &str = name.as_ref();
                    !name.eq_ignore_ascii_case(crate::nats::headers::MSG_ID)
                        && !HEADERS.iter().any(|d| name.eq_ignore_ascii_case(d))
                })
                .flat_map(|(name, values)| values.iter().map(|v| (name.clone(), v.clone())))
                .collect()
        })
        .unwrap_or_default();
    headers.insert(crate::nats::headers::MSG_ID, letter.msg_id.as_str());
    headers.insert(HEADER_CONSUMER, letter.consumer);
    headers.insert(HEADER_REASON, header_value(letter.reason).as_str());
    headers.insert(HEADER_DELIVERIES, letter.deliveries.to_string().as_str());
    headers.insert(HEADER_LAST_ERROR, header_value(letter.last_error).as_str());
    headers.insert(
        HEADER_STREAM_SEQ,
        letter.stream_sequence.to_string().as_str(),
    );
    headers.insert(HEADER_SUBJECT, letter.subject);
    headers
}

/// One failure to record.
pub(crate) struct Letter<'a> {
    pub consumer: &'a str,
    pub subject: &'a str,
    pub stream_sequence: u64,
    pub deliveries: u64,
    pub reason: &'a str,
    pub last_error: &'a str,
    /// Deduplicates a dead letter written twice (a crash between writing it
    /// and terminating the event).
    pub msg_id: String,
}

/// Stores a dead letter; returns once the stream has it.
pub(crate) async fn write(
    js: &jetstream::Context,
    prefix: &SubjectPrefix,
    original: Option<&HeaderMap>,
    payload: Bytes,
    letter: &Letter<'_>,
) -> Result<u64, String> {
    let headers = dead_letter_headers(original, letter);
    let ack = js
        .publish_with_headers(
            dead_letter_subject(prefix, letter.consumer),
            headers,
            payload,
        )
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(ack.sequence)
}

/// A dead letter as stored.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream: what `redrive` takes.
    pub seq: u64,
    pub stored: OffsetDateTime,
    pub consumer: String,
    /// The subject the event was published on.
    pub subject: String,
    /// The event's sequence in the events stream.
    pub stream_sequence: Option<u64>,
    pub reason: String,
    pub deliveries: Option<u64>,
    pub last_error: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl DeadLetter {
    fn from_parts(seq: u64, stored: OffsetDateTime, headers: HeaderMap, payload: Bytes) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        DeadLetter {
            seq,
            stored,
            consumer: get(HEADER_CONSUMER),
            subject: get(HEADER_SUBJECT),
            stream_sequence: get(HEADER_STREAM_SEQ).parse().ok(),
            reason: get(HEADER_REASON),
            deliveries: get(HEADER_DELIVERIES).parse().ok(),
            last_error: get(HEADER_LAST_ERROR),
            headers: headers.clone(),
            payload,
        }
    }

    /// A header of the original event.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }
}

/// Every dead letter, or those of one consumer, oldest first. No stream yet
/// means none.
pub async fn list(
    js: &jetstream::Context,
    events_stream: &str,
    prefix: &SubjectPrefix,
    consumer: Option<&str>,
) -> Result<Vec<DeadLetter>, BindError> {
    if let Some(name) = consumer
        && !is_valid_consumer_name(name)
    {
        return Err(BindError::InvalidName(name.to_owned()));
    }
    let name = dead_letter_stream(events_stream);
    let dead = match get_stream(js, &name).await {
        Ok(s) => s,
        Err(BindError::StreamNotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let filter = match consumer {
        Some(c) => dead_letter_subject(prefix, c),
        None => format!("{}{DEAD_LETTER_SUBJECT_SUFFIX}.>", prefix.as_str()),
    };
    let failed = |e: String| BindError::nats(format!("cannot read stream `{name}`"), e);
    let mut reader = dead
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
    let waiting = reader
        .info()
        .await
        .map_err(|e| failed(e.to_string()))?
        .num_pending;
    let mut letters = Vec::new();
    if waiting == 0 {
        return Ok(letters);
    }
    let mut messages = reader.messages().await.map_err(|e| failed(e.to_string()))?;
    while let Some(next) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .map_err(|_| failed("no answer within 10s".to_owned()))?
    {
        let msg = next.map_err(|e| failed(e.to_string()))?;
        let info = msg.info().map_err(|e| failed(e.to_string()))?;
        let (seq, stored, pending) = (info.stream_sequence, info.published, info.pending);
        letters.push(DeadLetter::from_parts(
            seq,
            stored,
            msg.headers.clone().unwrap_or_default(),
            msg.payload.clone(),
        ));
        if pending == 0 {
            break;
        }
    }
    Ok(letters)
}

/// Which dead letters to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    All,
    Seqs(Vec<u64>),
}

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Redriven {
    /// Dead-letter sequences delivered again (and removed from the dead letters).
    pub redriven: Vec<u64>,
    /// Sequences that are not (or no longer) dead letters of the consumer.
    pub missing: Vec<u64>,
}

/// Delivers dead letters of `consumer` again to that consumer only.
pub async fn redrive(
    js: &jetstream::Context,
    events_stream: &str,
    prefix: &SubjectPrefix,
    consumer: &str,
    which: Which,
) -> Result<Redriven, BindError> {
    if !is_valid_consumer_name(consumer) {
        return Err(BindError::InvalidName(consumer.to_owned()));
    }
    let (dead, _) = ensure_streams(js, events_stream, prefix).await?;
    let wanted_subject = dead_letter_subject(prefix, consumer);
    let seqs = match which {
        Which::All => list(js, events_stream, prefix, Some(consumer))
            .await?
            .into_iter()
            .map(|l| l.seq)
            .collect(),
        Which::Seqs(seqs) => seqs,
    };
    let to = redrive_subject(prefix, consumer);
    let dead_name = dead_letter_stream(events_stream);
    let mut report = Redriven::default();
    for seq in seqs {
        let msg = match dead.get_raw_message(seq).await {
            Ok(m) if m.subject.as_str() == wanted_subject => m,
            Ok(_) => {
                report.missing.push(seq);
                continue;
            }
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                report.missing.push(seq);
                continue;
            }
            Err(e) => {
                return Err(BindError::nats(
                    format!("cannot read dead letter {seq} of `{dead_name}`"),
                    e,
                ));
            }
        };
        let mut headers = msg.headers.clone();
        let msg_id = format!("redrive.{consumer}.{seq}");
        headers.insert(crate::nats::headers::MSG_ID, msg_id.as_str());
        js.publish_with_headers(to.clone(), headers, msg.payload.clone())
            .await
            .map_err(|e| BindError::nats(format!("cannot redrive {seq}"), e))?
            .await
            .map_err(|e| BindError::nats(format!("cannot redrive {seq}"), e))?;
        dead.delete_message(seq)
            .await
            .map_err(|e| BindError::nats(format!("redriven {seq} but cannot delete it"), e))?;
        report.redriven.push(seq);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_outside_the_events_capture() {
        let prefix = SubjectPrefix::default();
        assert_eq!(dead_letter_stream("FASTPIX"), DEFAULT_DEAD_LETTER_STREAM);
        assert_eq!(
            dead_letter_subject(&prefix, "billing"),
            "fastpix_dead_letters.billing"
        );
        assert_eq!(
            redrive_subject(&prefix, "billing"),
            "fastpix_redrive.billing"
        );
        let all = prefix.all();
        assert!(!all.matches(&dead_letter_subject(&prefix, "billing")));
        assert!(!all.matches(&redrive_subject(&prefix, "billing")));
        let acme = SubjectPrefix::new("acme.fastpix").unwrap();
        assert_eq!(
            dead_letter_subject(&acme, "x"),
            "acme.fastpix_dead_letters.x"
        );
        assert!(!acme.all().matches(&dead_letter_subject(&acme, "x")));
    }

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_value("a\r\nb"), "a  b");
        assert_eq!(header_value("  "), "-");
        let long = "é".repeat(2000);
        let v = header_value(&long);
        assert!(v.len() <= MAX_HEADER_VALUE + '…'.len_utf8());
        assert!(v.ends_with('…'));
    }

    #[test]
    fn dead_letter_headers_keep_the_original_and_replace_the_message_id() {
        let mut original = HeaderMap::new();
        original.insert("Nats-Msg-Id", "evt-1");
        original.insert("FastPix-Event-Id", "evt-1");
        original.insert(HEADER_REASON, "older reason");
        let h = dead_letter_headers(
            Some(&original),
            &Letter {
                consumer: "billing",
                subject: "fastpix.video.media.ready",
                stream_sequence: 42,
                deliveries: 6,
                reason: "retries exhausted",
                last_error: "db down\nagain",
                msg_id: "billing.events.42".into(),
            },
        );
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(get("FastPix-Event-Id").as_deref(), Some("evt-1"));
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("billing.events.42"));
        assert_eq!(get(HEADER_REASON).as_deref(), Some("retries exhausted"));
        assert_eq!(get(HEADER_LAST_ERROR).as_deref(), Some("db down again"));
        assert_eq!(get(HEADER_STREAM_SEQ).as_deref(), Some("42"));
        assert_eq!(get(HEADER_DELIVERIES).as_deref(), Some("6"));
        assert_eq!(
            get(HEADER_SUBJECT).as_deref(),
            Some("fastpix.video.media.ready")
        );
    }
}
