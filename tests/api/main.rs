//! Black-box tests: a real nats-server per test, the bridge over loopback HTTP
//! (in-process, or the real binary where its output is under test); and
//! `fuzz`, the fuzz target's checks on a fixed corpus. All modules build into
//! one test binary.

mod acks;
mod admin;
mod browser;
mod bursts;
mod cluster;
mod compose_stack;
mod consumers;
mod deploy;
mod edge;
mod faults;
mod forward;
mod fuzz;
mod headers;
mod helpers;
mod inspector;
mod logs;
mod metrics;
mod observability;
mod polyglot;
mod process;
#[path = "../common/repo_files.rs"]
mod repo_files;
mod secrets;
mod security;
mod sender;
mod storage;
mod webhook;
mod webhooks;
mod worker;
