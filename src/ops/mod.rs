//! Operations: [`outcome`] names what became of each delivery, [`metrics`]
//! counts it for Prometheus, and [`telemetry`] sets up logs.

pub mod metrics;
pub mod outcome;
pub mod telemetry;
