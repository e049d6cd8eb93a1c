//! Black-box tests: a real nats-server per test, the bridge over loopback HTTP
//! (in-process, or the real binary where its output is under test).
//! All modules build into one test binary.

mod helpers;
mod logs;
mod metrics;
mod webhook;
