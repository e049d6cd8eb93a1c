//! The receiving side: [`routes`] speaks HTTP (body limits, the in-flight
//! bound, status codes), [`ingest`] applies the delivery rules independent of
//! HTTP, [`error`] maps each failure to its answer, [`reload`] swaps signing
//! secrets from files on SIGHUP or a change, and [`startup`] wires the
//! public and admin listeners and shuts them down.

pub mod error;
pub mod ingest;
pub mod reload;
pub mod routes;
pub mod startup;
