//! fastpix-nats-bridge: FastPix webhooks in, NATS (JetStream) out.
//!
//! A delivery enters through [`routes`] (HTTP only: body limits, in-flight
//! bound, status codes), goes through [`ingest`] (probe, [`signature`] check,
//! [`envelope`] reading, headers) and leaves through [`publisher`], which
//! answers only once JetStream has acknowledged it. [`subject`] maps event
//! types to subjects, [`settings`] loads and validates configuration,
//! [`connection`] holds the NATS options the bridge and its clients share,
//! [`error`] maps failures to HTTP answers, [`metrics`] counts what happens
//! for Prometheus, [`telemetry`] sets up logs and [`startup`] wires it all
//! (the public and admin listeners) and handles shutdown. On the other side,
//! [`consumer`] is what Rust services consuming the events depend on, and
//! [`cli`] holds the `subscribe` and `send` commands. [`healthcheck`] is the
//! probe a container runs to ask a bridge whether it is ready, or whether a
//! consumer's durable consumer is in place.

pub mod cli;
pub mod connection;
pub mod consumer;
pub mod envelope;
pub mod error;
pub mod healthcheck;
pub mod ingest;
pub mod metrics;
pub mod publisher;
pub mod routes;
pub mod settings;
pub mod signature;
pub mod startup;
pub mod subject;
pub mod telemetry;
