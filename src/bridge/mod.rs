//! The receiving side: [`routes`] speaks HTTP (body limits, the in-flight
//! bound, status codes), [`ingest`] applies the delivery rules independent of
//! HTTP, [`error`] maps each failure to its answer, and [`startup`] wires the
//! public and admin listeners and shuts them down.

pub mod error;
pub mod ingest;
pub mod routes;
pub mod startup;
