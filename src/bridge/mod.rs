//! The receiving side: [`routes`] speaks HTTP (body limits, status codes),
//! [`admission`] decides which deliveries are handled now (the slots, the
//! line for them, lingering after early answers), [`ingest`] applies the delivery rules independent of
//! HTTP, [`error`] maps each failure to its answer, [`refused`] records
//! refusals for the inspector, [`reload`] swaps signing secrets from files on
//! SIGHUP or a change, and [`startup`] wires the public and admin listeners
//! and shuts them down. The delivery rules are unit-tested through the
//! router against an in-memory sink (`rules_tests`).

pub mod admission;
pub mod error;
pub mod ingest;
pub mod refused;
pub mod reload;
pub mod routes;
#[cfg(test)]
mod rules_tests;
pub mod startup;
