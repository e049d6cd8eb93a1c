//! Remembers which FastPix events a consumer handled, for longer than the
//! stream's duplicate window: FastPix may send an event again hours later,
//! and the stream then stores it a second time.
//!
//! Kept in a NATS KV bucket whose entries expire after a TTL, one key per
//! consumer and event id (`<consumer>.<sha-256 of the id>`, since ids may
//! hold characters keys cannot).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use sha2::{Digest, Sha256};

use super::BindError;

/// The handled-event memory of one or more consumers.
#[derive(Clone)]
pub struct Dedup {
    store: kv::Store,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup").finish_non_exhaustive()
    }
}

impl Dedup {
    /// Opens the bucket, creating it with `ttl` when missing (an existing
    /// bucket keeps its own TTL).
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
    ) -> Result<Self, BindError> {
        if let Ok(store) = js.get_key_value(bucket).await {
            return Ok(Dedup { store });
        }
        let store = js
            .create_key_value(kv::Config {
                bucket: bucket.to_owned(),
                description: "fastpix-nats-bridge: events consumers handled".to_owned(),
                history: 1,
                max_age: ttl,
                ..Default::default()
            })
            .await
            .map_err(|e| BindError::nats(format!("cannot set up KV bucket `{bucket}`"), e))?;
        Ok(Dedup { store })
    }

    fn key(consumer: &str, event_id: &str) -> String {
        format!(
            "{consumer}.{}",
            hex::encode(Sha256::digest(event_id.as_bytes()))
        )
    }

    /// True when `consumer` already handled the event `event_id`.
    pub async fn seen(&self, consumer: &str, event_id: &str) -> Result<bool, DedupError> {
        self.store
            .get(Self::key(consumer, event_id))
            .await
            .map(|v| v.is_some())
            .map_err(DedupError::Read)
    }

    /// Records that `consumer` handled `event_id`.
    pub async fn remember(&self, consumer: &str, event_id: &str) -> Result<(), DedupError> {
        self.store
            .put(
                Self::key(consumer, event_id),
                bytes::Bytes::from_static(b"1"),
            )
            .await
            .map(drop)
            .map_err(DedupError::Write)
    }
}

/// The bucket did not answer; the worker then handles the event anyway
/// (at-least-once), or cannot remember it was handled.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("{0}")]
    Read(#[source] kv::EntryError),
    #[error("{0}")]
    Write(#[source] kv::PutError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_whatever_the_id() {
        let k = Dedup::key("billing", "évt 1/*>");
        assert!(k.starts_with("billing."));
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        );
        assert_ne!(k, Dedup::key("other", "évt 1/*>"));
    }
}
