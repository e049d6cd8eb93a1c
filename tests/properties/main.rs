//! Property tests of the types every event passes through (the subject
//! mapping, signatures, the envelope, header values), against the lean
//! `fastpix-nats` crate's public API. They live here, not next to their
//! code, so that the lean crate builds its examples without test crates.

mod envelope;
mod headers;
mod signature;
mod subject;
