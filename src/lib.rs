//! fastpix-nats-bridge: FastPix webhooks in, NATS (JetStream) out.
//!
//! The folders are layers; a folder imports only folders of lower layers:
//!
//! Layers, lowest first: fastpix → settings → ops → nats → bridge | consumer | inspect → forward → cli
//!
//! [`fastpix`] is what FastPix sends (envelope, signature, subject mapping,
//! the one event catalog); [`settings`] loads and validates configuration,
//! one file per section; [`ops`] names outcomes, counts them for
//! Prometheus, sets up logs, waits for shutdown and serves HTTP/1.1 with the
//! timeouts every listener obeys; [`nats`] is the NATS adapter (the one way
//! to connect, message headers, where dead letters and refusal records go,
//! the `Sink` seam publishing goes through and the JetStream publisher
//! behind it). Side by side above them, importing none of each other:
//! [`bridge`] receives webhooks (routes, admission, the delivery rules in
//! `ingest`, errors, records of refusals, secrets reload, startup);
//! [`consumer`] is what services consuming the events build on (binding,
//! the worker with retries and dead letters, dedup, the pull engine); and
//! [`inspect`] is the inspector (a page and an API reading NATS only).
//! [`forward`] delivers the stream to HTTP destinations, each a durable
//! consumer run by the consumer library's worker.
//! [`cli`] is the command line on top: `subscribe`, `send`, `consumers`,
//! `dead-letters`, `inspect` and `healthcheck`.
//!
//! [`fastpix`], [`settings`] and [`consumer`], and the shared parts of
//! [`nats`] and [`ops`], live in the `fastpix-nats` crate, which a consuming
//! service uses without the server; they are re-exported here under the
//! same names.

pub mod bridge;
pub mod cli;
pub mod forward;
pub mod inspect;
pub mod nats;
pub mod ops;

pub use fastpix_nats::{consumer, fastpix, settings};
