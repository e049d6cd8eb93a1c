//! Operations: [`outcome`] names what became of each delivery, [`metrics`]
//! counts it for Prometheus, [`telemetry`] sets up logs, and [`serve`]
//! serves HTTP/1.1 with the timeouts every listener obeys.

pub mod metrics;
pub mod outcome;
pub mod serve;
pub mod telemetry;
