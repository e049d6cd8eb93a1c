//! Operations: [`outcome`] names what became of each delivery, [`metrics`]
//! counts it for Prometheus, and [`serve`] serves HTTP/1.1 with the
//! timeouts every listener obeys. From the `fastpix-nats` crate:
//! [`telemetry`] sets up logs and [`shutdown`] waits for Ctrl-C or SIGTERM.

pub mod metrics;
pub mod outcome;
pub mod serve;

pub use fastpix_nats::ops::{shutdown, telemetry};
