//! fastpix-nats: what a service consuming FastPix events from NATS needs,
//! without the bridge's HTTP server.
//!
//! The folders are layers (the bridge's, less those of the server); a
//! folder imports only folders of lower layers:
//!
//! Layers, lowest first: fastpix → settings → ops → nats → consumer
//!
//! [`fastpix`] is what FastPix sends (envelope, signature, subject mapping,
//! the one event catalog) and depends on nothing else in the crate;
//! [`settings`] loads and validates the bridge's configuration, which its
//! consumers read too; [`ops`] waits for shutdown and sets up logs; [`nats`]
//! connects with those settings and names what is stored (message headers,
//! dead letters); [`consumer`] is the library consuming services build on
//! (binding durable consumers, the worker with retries and dead letters,
//! dedup, the pull engine).
//!
//! The bridge (`fastpix-nats-bridge`) depends on this crate and re-exports
//! these modules, adding its own layers on top.

pub mod consumer;
pub mod fastpix;
pub mod nats;
pub mod ops;
pub mod settings;
