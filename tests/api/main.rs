//! Black-box tests: a real nats-server per test, the bridge over loopback HTTP.
//! All modules build into one test binary.

mod cluster;
mod compose_stack;
mod consumers;
mod deploy;
mod deploy_files;
mod helpers;
mod process;
mod sender;
mod webhook;
