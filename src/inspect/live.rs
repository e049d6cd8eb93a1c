//! Live events: one ordered consumer per inspector, from the newest stored
//! event on, fanned out to every `/api/live` client through a broadcast
//! channel. A client too slow for the rate skips ahead (told by a `lagged`
//! event) instead of holding the others back.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::inspect::reader::{EventSummary, StoredMessage};

/// Summaries buffered per client before it lags.
pub const BUFFER: usize = 4096;

/// Follows `stream` and sends every new event's summary as JSON, forever.
pub async fn follow(js: jetstream::Context, stream: String, tx: broadcast::Sender<Arc<str>>) {
    let mut from = consumer::DeliverPolicy::New;
    loop {
        match follow_once(&js, &stream, from, &tx).await {
            Ok(last) | Err((last, _)) if last > 0 => {
                from = consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: last + 1,
                };
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(
    js: &jetstream::Context,
    stream: &str,
    from: consumer::DeliverPolicy,
    tx: &broadcast::Sender<Arc<str>>,
) -> Result<u64, (u64, String)> {
    let mut last = 0;
    let s = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| (0, e.to_string()))?;
    let consumer = s
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: from,
            ..Default::default()
        })
        .await
        .map_err(|e| (0, e.to_string()))?;
    let mut messages = consumer.messages().await.map_err(|e| (0, e.to_string()))?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| (last, e.to_string()))?;
        let Ok(info) = m.info() else { continue };
        let stored = StoredMessage {
            seq: info.stream_sequence,
            subject: m.subject.to_string(),
            stored_at: info.published,
            headers: m.headers.clone(),
            payload: m.payload.clone(),
        };
        last = stored.seq;
        if tx.receiver_count() > 0
            && let Ok(json) = serde_json::to_string(&EventSummary::of(&stored))
        {
            let _ = tx.send(json.into());
        }
    }
    Ok(last)
}
