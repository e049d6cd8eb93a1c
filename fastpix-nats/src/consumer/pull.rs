//! [`Puller`]: reads a durable consumer one event at a time, for a reader
//! that writes each event somewhere and acknowledges it itself (`subscribe
//! --durable`). Where [`super::Worker`] runs handlers concurrently and
//! settles each event, a puller hands out messages in order and leaves the
//! acknowledgement to its caller.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt as _;

/// Most events asked of the server at once.
const BATCH: u64 = 100;
/// How long the server holds a pull request open when there is nothing to send.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// Pause after a failed pull before the next one.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Pulls from a durable consumer in explicit batches, never asking for more
/// than `limit` still allows: events a reader leaves behind are then never
/// held for it, and the next reader resumes exactly after the last
/// acknowledged one.
pub struct Puller {
    client: async_nats::Client,
    consumer: consumer::PullConsumer,
    name: String,
    batch: Option<consumer::pull::Batch>,
    /// Events still to be handed out under the limit.
    remaining: Option<u64>,
}

/// A pull that failed: [`PullError::Deleted`] ends reading, the others are
/// worth another pull (NATS restarting, a leader election).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("durable consumer `{0}` was deleted")]
    Deleted(String),
    #[error("durable consumer `{name}`: {source}; pulling again")]
    Failed {
        name: String,
        #[source]
        source: async_nats::Error,
    },
}

impl PullError {
    /// True when pulling again cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(self, PullError::Deleted(_))
    }
}

impl Puller {
    /// Reads `consumer` (the durable consumer `name`) on `client`, handing
    /// out at most `limit` events.
    pub fn new(
        client: async_nats::Client,
        consumer: consumer::PullConsumer,
        name: impl Into<String>,
        limit: Option<u64>,
    ) -> Self {
        Puller {
            client,
            consumer,
            name: name.into(),
            batch: None,
            remaining: limit,
        }
    }

    /// The next event; `None` once the limit is reached.
    pub async fn next(&mut self) -> Option<Result<jetstream::Message, PullError>> {
        loop {
            if self.remaining == Some(0) {
                return None;
            }
            let Some(batch) = &mut self.batch else {
                let want = self.remaining.map_or(BATCH, |r| r.min(BATCH));
                match self
                    .consumer
                    .batch()
                    .max_messages(want as usize)
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await
                {
                    Ok(b) => self.batch = Some(b),
                    Err(e) => return Some(Err(self.failure(e.into()).await)),
                }
                continue;
            };
            match batch.next().await {
                Some(Ok(msg)) => {
                    if let Some(r) = &mut self.remaining {
                        *r -= 1;
                    }
                    return Some(Ok(msg));
                }
                Some(Err(e)) => {
                    self.batch = None;
                    return Some(Err(self.failure(e).await));
                }
                // The pull expired or was filled: ask again.
                None => self.batch = None,
            }
        }
    }

    /// A pull failed: fatal when the consumer is gone, else worth retrying
    /// after a pause.
    async fn failure(&mut self, source: async_nats::Error) -> PullError {
        let gone = matches!(
            self.consumer.get_info().await,
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound
        );
        if gone {
            return PullError::Deleted(self.name.clone());
        }
        tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
        PullError::Failed {
            name: self.name.clone(),
            source,
        }
    }

    /// Hands back events received but not yet handed out, so that the next
    /// reader gets them at once instead of after the acknowledgement wait.
    pub async fn release(&mut self) {
        let Some(mut batch) = self.batch.take() else {
            return;
        };
        let mut unwritten = Vec::new();
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_millis(100), batch.next()).await
        {
            unwritten.push(msg);
        }
        // Withdraw the pull request first, so that the events handed back
        // cannot be delivered to it again on their way to the next reader.
        drop(batch);
        let _ = self.client.flush().await;
        for msg in unwritten {
            let _ = msg.double_ack_with(AckKind::Nak(None)).await;
        }
    }
}
