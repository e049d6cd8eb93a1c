//! NATS as the bridge and its consumers share it: [`connection`] is the one
//! way to connect with the bridge's settings, [`headers`] names the headers
//! every stored message carries, and [`dead_letters`] says where and how
//! consumers keep the events they gave up on (the twin of the bridge's
//! records of refused deliveries).

pub mod connection;
pub mod dead_letters;
pub mod headers;
