//! Dead letters: events a consumer gave up on, kept in a stream of their own
//! and delivered again to that one consumer on demand (an SQS-like
//! dead-letter queue with redrive). Their names and headers are
//! [`crate::nats::dead_letters`]'s, re-exported here.
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
pub use crate::nats::dead_letters::{
    DEAD_LETTER_STREAM_SUFFIX, DEAD_LETTER_SUBJECT_SUFFIX, DEFAULT_DEAD_LETTER_STREAM,
    HEADER_CONSUMER, HEADER_DELIVERIES, HEADER_LAST_ERROR, HEADER_REASON, HEADER_STREAM_SEQ,
    HEADER_SUBJECT, HEADERS, REDRIVE_STREAM_SUFFIX, REDRIVE_SUBJECT_SUFFIX, dead_letter_stream,
    dead_letter_subject, redrive_stream, redrive_subject,
};
use crate::nats::dead_letters::{
    Letter, LetterFields, all_dead_letters, all_redrives, dead_letter_headers,
};
use crate::nats::headers;

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
            subjects: vec![all_dead_letters(prefix)],
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
            subjects: vec![all_redrives(prefix)],
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

/// Stores a dead letter; returns once the stream has it.
pub(crate) async fn write(
    js: &jetstream::Context,
    prefix: &SubjectPrefix,
    original: Option<&HeaderMap>,
    payload: Bytes,
    letter: &Letter<'_>,
) -> Result<u64, WriteError> {
    let subject = dead_letter_subject(prefix, letter.consumer);
    let failed = |source: async_nats::Error| WriteError {
        subject: subject.clone(),
        source,
    };
    let headers = dead_letter_headers(original, letter);
    let ack = js
        .publish_with_headers(subject.clone(), headers, payload)
        .await
        .map_err(|e| failed(e.into()))?
        .await
        .map_err(|e| failed(e.into()))?;
    Ok(ack.sequence)
}

/// A dead letter the stream did not take (the event is retried instead).
#[derive(Debug, thiserror::Error)]
#[error("cannot store the dead letter on {subject}: {source}")]
pub struct WriteError {
    subject: String,
    #[source]
    source: async_nats::Error,
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
        let fields = LetterFields::read(|name| headers.get(name).map(|v| v.as_str().to_owned()));
        DeadLetter {
            seq,
            stored,
            consumer: fields.consumer.unwrap_or_default(),
            subject: fields.subject.unwrap_or_default(),
            stream_sequence: fields.stream_seq.and_then(|s| s.parse().ok()),
            reason: fields.reason.unwrap_or_default(),
            deliveries: fields.deliveries.and_then(|s| s.parse().ok()),
            last_error: fields.last_error.unwrap_or_default(),
            headers,
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
        None => all_dead_letters(prefix),
    };
    let failed = |e: async_nats::Error| BindError::nats(format!("cannot read stream `{name}`"), e);
    let mut reader = dead
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.into()))?;
    let waiting = reader
        .info()
        .await
        .map_err(|e| failed(e.into()))?
        .num_pending;
    let mut letters = Vec::new();
    if waiting == 0 {
        return Ok(letters);
    }
    let mut messages = reader.messages().await.map_err(|e| failed(e.into()))?;
    while let Some(next) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .map_err(|_| failed("no answer within 10s".into()))?
    {
        let msg = next.map_err(|e| failed(e.into()))?;
        let info = msg.info().map_err(&failed)?;
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
        headers.insert(headers::MSG_ID, msg_id.as_str());
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
