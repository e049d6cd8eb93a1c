//! The NATS adapter: [`connection`] holds the options the bridge and its
//! clients share, [`headers`] names the headers every stored message carries,
//! [`sink`] is the seam the delivery rules publish through (one message in,
//! proof of storage out), and [`publisher`] is the sink that publishes to
//! JetStream (or core NATS) and answers only once the message is stored.

pub mod connection;
pub mod headers;
pub mod publisher;
pub mod sink;
