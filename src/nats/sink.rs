//! The seam between the delivery rules and where events are stored: a
//! [`Sink`] publishes one message and answers with proof of storage, says
//! how large a body it can take right now, and whether it is ready. The
//! JetStream [`Publisher`](crate::nats::publisher::Publisher) is the sink the
//! bridge runs with; the delivery rules' unit tests use an in-memory one.

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::fastpix::subject::Subject;

/// One message ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: Subject,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// Proof of storage, as the JetStream ack gave it. `stream`/`seq` are absent
/// in core mode, where nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stored {
    pub subject: async_nats::Subject,
    pub stream: Option<String>,
    pub seq: Option<u64>,
    pub duplicate: bool,
}

/// Why a message was not stored. Every variant but `MessageTooLarge`
/// means "try again later".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The stream is at its `jetstream.max_bytes`, or the server has no
    /// JetStream storage left: nothing is stored until room is made.
    #[error("storage is full: {0}")]
    StorageFull(String),
    /// Larger than the stream takes (`jetstream.max_msg_size`) or the
    /// server (`max_payload`): retrying cannot store it.
    #[error("message larger than the stream takes: {0}")]
    MessageTooLarge(String),
    #[error("not connected to NATS")]
    Disconnected,
    #[error("the stream is not in place yet")]
    StreamNotReady,
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("NATS refused the publish: {0}")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where the bridge stores events. Statically dispatched: the router and
/// the delivery rules are generic over it, so the JetStream path costs no
/// indirection or boxed future per request.
pub trait Sink: Clone + Send + Sync + 'static {
    /// Publishes one message and answers once it is stored (or, in core
    /// mode, flushed), never later than the sink's own timeout.
    fn publish(&self, msg: Outgoing) -> impl Future<Output = Result<Stored, PublishError>> + Send;

    /// The largest body that can be published right now.
    fn body_limit(&self) -> usize;

    /// Connected to whatever stores the events.
    fn is_connected(&self) -> bool;

    /// Events can be stored now (connected, and the stream in place).
    fn is_ready(&self) -> bool;

    /// The stream events are stored in, when there is one.
    fn stream_name(&self) -> Option<&str>;
}
