use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fastpix_nats_bridge::cli::send::{self, SendArgs};
use fastpix_nats_bridge::cli::subscribe::{self, SubscribeArgs};
use fastpix_nats_bridge::settings::{CONFIG_FILE_ENV, Purpose, Settings};
use fastpix_nats_bridge::startup::{Application, shutdown_signal};
use fastpix_nats_bridge::telemetry;

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
    /// Print events from NATS as they arrive (live, durable, or replayed from the stream).
    Subscribe(SubscribeArgs),
    /// Post signed test events to a bridge, as FastPix would, and print its answers.
    Send(SendArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let purpose = match command {
        Command::Serve => Purpose::Bridge,
        Command::Subscribe(_) | Command::Send(_) => Purpose::Client,
    };
    let settings = match Settings::load_for(purpose, cli.config.as_deref(), None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Serve => serve(settings).await,
        Command::Subscribe(args) => {
            telemetry::init_with(settings.log.format, "warn");
            subscribe::run(args, &settings).await
        }
        Command::Send(args) => send::run(args, &settings).await,
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
