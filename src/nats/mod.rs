//! The NATS adapter. From the `fastpix-nats` crate: [`connection`], the
//! one way to connect, [`headers`], the headers every stored message
//! carries, and [`dead_letters`], where consumers keep what they gave up
//! on. The bridge's own: [`sink`] is the seam the delivery rules publish
//! through (one message in, proof of storage out), [`publisher`] is the
//! sink that publishes to JetStream (or core NATS) and answers only once the
//! message is stored, [`invalid`] says where signed bodies that are not
//! events are kept, and [`refused`] where records of refused deliveries go.

pub mod invalid;
pub mod publisher;
pub mod refused;
pub mod sink;

pub use fastpix_nats::nats::{connection, dead_letters, headers};
