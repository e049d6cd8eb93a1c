//! fastpix-nats-bridge: FastPix webhooks in, NATS (JetStream) out.
//!
//! The folders are layers, each importing only those listed before it:
//! [`fastpix`] is what FastPix sends (envelope, signature, subject mapping,
//! the one event catalog) and depends on nothing else in the crate;
//! [`settings`] loads and validates configuration (one or several webhooks,
//! their signing secrets held for reloading); [`ops`] names outcomes,
//! counts them for Prometheus, sets up logs, waits for shutdown and serves
//! HTTP/1.1 with the timeouts every listener obeys; [`nats`] is the NATS
//! adapter (the one way to connect, message headers, dead-letter and
//! refusal-record names, the `Sink` seam that publishing goes through, and
//! the JetStream publisher behind it). Above them stand the two sides:
//! [`bridge`] receives webhooks (routes, the
//! delivery rules in `ingest`, errors, records of refusals, secrets reload,
//! startup), [`consumer`] is what services consuming the events build on
//! (binding, the worker with retries and dead letters, dedup), and
//! [`inspect`] is the inspector (a page and an API reading NATS only).
//! [`cli`] is the command line on top: `subscribe`, `send`, `consumers`,
//! `dead-letters`, `inspect` and `healthcheck`.
//!
//! [`fastpix`], [`settings`], [`consumer`] and parts of [`nats`] and [`ops`]
//! live in the `fastpix-nats` crate, which a consuming service can use
//! without the server; they are re-exported here under the same names.

pub mod bridge;
pub mod cli;
pub mod inspect;
pub mod nats;
pub mod ops;

pub use fastpix_nats::{consumer, fastpix, settings};
