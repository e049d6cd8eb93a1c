//! fastpix-nats-bridge: FastPix webhooks in, NATS (JetStream) out.
//!
//! A delivery enters through [`routes`] (HTTP only: body limits, in-flight
//! bound, status codes), goes through [`ingest`] (probe, [`signature`] check,
//! [`envelope`] reading, headers) and leaves through [`publisher`], which
//! answers only once JetStream has acknowledged it. [`subject`] maps event
//! types to subjects, [`settings`] loads and validates configuration,
//! [`error`] maps failures to HTTP answers, [`metrics`] counts what happens
//! for Prometheus, [`telemetry`] sets up logs and [`startup`] wires it all
//! (the public and admin listeners) and handles shutdown.

pub mod envelope;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod publisher;
pub mod routes;
pub mod settings;
pub mod signature;
pub mod startup;
pub mod subject;
pub mod telemetry;
