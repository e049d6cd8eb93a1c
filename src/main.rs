use std::process::ExitCode;

use clap::Parser;
use fastpix_nats_bridge::cli::{self, Cli};

/// See Cargo.toml for why not the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    cli::run(Cli::parse()).await
}
