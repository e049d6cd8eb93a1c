use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fastpix_nats_bridge::settings::{CONFIG_FILE_ENV, Settings};
use fastpix_nats_bridge::startup::{Application, shutdown_signal};
use fastpix_nats_bridge::telemetry;

/// See Cargo.toml for why not the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// FastPix webhooks in, NATS JetStream out.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML settings file (environment variables FASTPIX_BRIDGE__SECTION__KEY override it).
    #[arg(long, global = true, env = CONFIG_FILE_ENV)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Receive webhooks and publish them (the default).
    Serve,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
    }
}

async fn serve(settings: Settings) -> ExitCode {
    telemetry::init(settings.log.format);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
