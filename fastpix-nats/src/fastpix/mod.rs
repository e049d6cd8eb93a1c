//! What FastPix sends, and nothing else: pure functions and types with no
//! I/O. [`envelope`] reads the few fields of a body that routing needs,
//! [`signature`] verifies `FastPix-Signature`, [`subject`] maps event types to
//! NATS subjects and reads subject filters, and [`catalog`] is the one list of
//! event types and the families they belong to. Nothing here imports anything
//! else from the crate.

pub mod catalog;
pub mod envelope;
pub mod signature;
pub mod subject;
