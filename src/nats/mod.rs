//! The NATS adapter. From the `fastpix-nats` crate: [`connection`], the
//! one way to connect, [`headers`], the headers every stored message
//! carries, and [`dead_letters`], where consumers keep what they gave up
//! on. The bridge's own: [`sink`] is the seam the delivery rules publish
//! through (one message in, proof of storage out), [`publisher`] is the
//! sink that publishes to JetStream (or core NATS) and answers only once the
//! message is stored, [`acks`] routes each JetStream ack to the one publish
//! that waits for it, [`invalid`] says where signed bodies that are not
//! events are kept, and [`refused`] where records of refused deliveries go.
//! [`forward_leases`] names where forwarders record who delivers for each
//! destination, and its state.

pub mod acks;
pub mod forward_leases;
pub mod invalid;
pub mod publisher;
pub mod refused;
pub mod sink;

pub use fastpix_nats::nats::{connection, dead_letters, headers};

/// The JetStream storage `jetstream.storage` asks for, for every stream
/// the bridge creates.
pub(crate) fn storage_type(
    storage: &crate::settings::Storage,
) -> async_nats::jetstream::stream::StorageType {
    use crate::settings::Storage;
    use async_nats::jetstream::stream::StorageType;
    match storage {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}
