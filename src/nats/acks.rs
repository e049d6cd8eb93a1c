//! The JetStream publish path: a message published on the core client with
//! a reply subject of its own, and its ack routed back to the one request
//! that waits for it.
//!
//! async-nats's JetStream publish does the same job with more per message:
//! a new inbox string, a request command that the connection task keeps in
//! a map keyed by `String`, a semaphore permit, a boxed ack future, and a
//! parse of the ack through an untagged enum. Here:
//!
//! - one wildcard subscription, `<inbox prefix>.<random>.*`, made once, takes
//!   every ack;
//! - each request gets the next number of a counter as its token, so its reply
//!   subject is `<inbox prefix>.<random>.<token>`;
//! - the waiting request is found by its token in a map keyed by `u64`;
//! - the ack is read by [`parse`], into exactly the fields a publish answers
//!   with (`stream`, `seq`, `duplicate`, or `error`).
//!
//! **An ack can only reach its own request.** The random part differs per
//! router (and so per process), and a token is never reused while the
//! process runs. An ack that comes after its request gave up finds no one
//! and is counted and dropped. The message is still stored, and a retry of
//! the same `Nats-Msg-Id` is answered as a duplicate.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::{Client, HeaderMap, StatusCode, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::oneshot;

/// What JetStream answered: where the message is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub stream: String,
    pub seq: u64,
    pub duplicate: bool,
}

/// Why a publish has no ack.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// No stream captures the subject: the server answered "no responders".
    #[error("no stream captures the subject (no responders)")]
    NoStream,
    /// JetStream refused the message, with its API error.
    #[error("{description} (error code {err_code})")]
    Api { err_code: u64, description: String },
    /// The answer was not a JetStream publish ack.
    #[error("the acknowledgement could not be read: {0}")]
    Malformed(String),
    /// The client could not send the message.
    #[error(transparent)]
    Publish(#[from] async_nats::PublishError),
    /// The router stopped (the connection was closed).
    #[error("the acknowledgement subscription is closed")]
    Closed,
}

/// The acks' subscription and the requests that wait; cheap to clone.
#[derive(Clone)]
pub struct AckRouter {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// `<inbox prefix>.<random>.`: every reply subject starts with it.
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Reply>, BuildHasherDefault<TokenHasher>>>,
    late: AtomicU64,
}

/// What the router hands a waiting request: the ack's status and body,
/// read by the request itself, on its own task.
struct Reply {
    status: Option<StatusCode>,
    payload: Bytes,
}

impl AckRouter {
    /// Subscribes to every reply subject of this router and starts routing.
    /// The subscription outlives reconnects (the client subscribes again).
    pub async fn start(client: Client) -> Result<Self, async_nats::SubscribeError> {
        let prefix = format!("{}.", client.new_inbox());
        let subscriber = client.subscribe(format!("{prefix}*")).await?;
        let inner = Arc::new(Inner {
            client,
            prefix,
            next: AtomicU64::new(1),
            waiting: Mutex::default(),
            late: AtomicU64::new(0),
        });
        tokio::spawn(route(Arc::downgrade(&inner), subscriber));
        Ok(AckRouter { inner })
    }

    /// Publishes with a reply subject of its own and waits for the ack,
    /// without a bound: the caller bounds it (and dropping the future
    /// forgets the request).
    pub async fn publish(
        &self,
        subject: Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Ack, AckError> {
        let token = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(token, tx);
        let waiting = Waiting {
            inner: &self.inner,
            token,
        };
        let mut reply = String::with_capacity(self.inner.prefix.len() + 20);
        reply.push_str(&self.inner.prefix);
        reply.push_str(itoa::Buffer::new().format(token));
        self.inner
            .client
            .publish_with_reply_and_headers(subject, Subject::from(reply), headers, payload)
            .await?;
        let answer = rx.await.map_err(|_| AckError::Closed)?;
        // Answered: the router has taken the entry already.
        std::mem::forget(waiting);
        if answer.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(AckError::NoStream);
        }
        parse(&answer.payload)
    }

    /// Acks that came after their request had given up (timed out, or its
    /// sender went away), since the start.
    pub fn late_acks(&self) -> u64 {
        self.inner.late.load(Ordering::Relaxed)
    }

    /// Requests waiting for their ack right now.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        HashMap<u64, oneshot::Sender<Reply>, BuildHasherDefault<TokenHasher>>,
    > {
        lock(&self.inner)
    }
}

fn lock(
    inner: &Inner,
) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>, BuildHasherDefault<TokenHasher>>>
{
    // A panic while the map is held cannot leave it half-changed.
    inner.waiting.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets a request that stops waiting before its ack came (a timeout,
/// a failed send, a dropped future), so its late ack finds no one.
struct Waiting<'a> {
    inner: &'a Inner,
    token: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(self.inner).remove(&self.token);
    }
}

/// Hands each ack to the request whose token ends its subject; runs until
/// the subscription ends or the router is dropped.
async fn route(inner: std::sync::Weak<Inner>, mut acks: async_nats::Subscriber) {
    while let Some(msg) = acks.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let token = msg
            .subject
            .as_str()
            .strip_prefix(inner.prefix.as_str())
            .and_then(|t| t.parse::<u64>().ok());
        let waiter = token.and_then(|t| lock(&inner).remove(&t));
        let reply = Reply {
            status: msg.status,
            payload: msg.payload,
        };
        if waiter.is_none_or(|w| w.send(reply).is_err()) {
            inner.late.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(subject = %msg.subject, "an acknowledgement came after its request had given up");
        }
    }
    // The connection is closed for good: the requests still waiting end
    // now (`Closed`) rather than at their timeout.
    if let Some(inner) = inner.upgrade() {
        lock(&inner).clear();
    }
}

/// A JetStream publish ack, as the server writes it:
/// `{"stream":"S","seq":7}`, `{"stream":"S","seq":7,"duplicate":true}`
/// (with `"domain"` when the account has one), or
/// `{"error":{"code":503,"err_code":10077,"description":"…"}}`.
#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    error: Option<RawError>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: Option<String>,
}

/// Reads an ack: the stream and sequence that stored the message, or the
/// error JetStream gave. Anything else is [`AckError::Malformed`].
pub fn parse(payload: &[u8]) -> Result<Ack, AckError> {
    let raw: Raw =
        serde_json::from_slice(payload).map_err(|e| AckError::Malformed(e.to_string()))?;
    if let Some(e) = raw.error {
        return Err(AckError::Api {
            err_code: e.err_code,
            description: e.description.unwrap_or_default(),
        });
    }
    match (raw.stream, raw.seq) {
        (Some(stream), Some(seq)) if !stream.is_empty() && seq > 0 => Ok(Ack {
            stream,
            seq,
            duplicate: raw.duplicate,
        }),
        _ => Err(AckError::Malformed(
            "neither a stream and sequence nor an error".to_owned(),
        )),
    }
}

/// Tokens are consecutive numbers: one multiplication spreads them over
/// the map's buckets (SipHash would cost more than the rest of a lookup).
#[derive(Default)]
struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_gives_its_stream_sequence_and_duplicate_flag() {
        let ack = parse(br#"{"stream":"FASTPIX","seq":42}"#).unwrap();
        assert_eq!(
            ack,
            Ack {
                stream: "FASTPIX".into(),
                seq: 42,
                duplicate: false
            }
        );
        let dup =
            parse(br#"{"stream":"FASTPIX","domain":"hub","seq":7,"duplicate":true}"#).unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.seq, 7);
        // Escapes in a stream name are read, not copied raw.
        let escaped = parse(br#"{"stream":"A\u0042","seq":1}"#).unwrap();
        assert_eq!(escaped.stream, "AB");
    }

    #[test]
    fn an_error_gives_its_code_and_description() {
        let e = parse(
            br#"{"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}}"#,
        )
        .unwrap_err();
        match e {
            AckError::Api {
                err_code,
                description,
            } => {
                assert_eq!(err_code, 10077);
                assert_eq!(description, "maximum bytes exceeded");
            }
            other => panic!("{other:?}"),
        }
        // An error wins over any other field.
        assert!(matches!(
            parse(br#"{"stream":"S","seq":3,"error":{"code":400,"err_code":10060,"description":"x"}}"#),
            Err(AckError::Api { err_code: 10060, .. })
        ));
    }

    #[test]
    fn anything_else_is_malformed_never_an_ack() {
        for body in [
            &b""[..],
            b"{}",
            b"null",
            b"[]",
            b"not json",
            br#"{"stream":"S"}"#,
            br#"{"seq":1}"#,
            br#"{"stream":"","seq":1}"#,
            br#"{"stream":"S","seq":0}"#,
            br#"{"stream":"S","seq":-1}"#,
            br#"{"stream":"S","seq":"1"}"#,
            br#"{"stream":7,"seq":1}"#,
            br#"{"stream":"S","seq":1,"duplicate":"yes"}"#,
            br#"{"stream":"S","seq":1"#,
        ] {
            assert!(
                matches!(parse(body), Err(AckError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn consecutive_tokens_hash_apart() {
        let hash = |n: u64| {
            let mut h = TokenHasher::default();
            h.write_u64(n);
            h.finish()
        };
        let tops: std::collections::BTreeSet<u64> = (1..=128).map(|n| hash(n) >> 57).collect();
        assert!(tops.len() > 64, "the top bits differ: {}", tops.len());
    }
}
