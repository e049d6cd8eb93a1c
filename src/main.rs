use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fastpix_nats_bridge::cli::send::{self, SendArgs};
use fastpix_nats_bridge::cli::subscribe::{self, SubscribeArgs};
use fastpix_nats_bridge::healthcheck;
use fastpix_nats_bridge::settings::{CONFIG_FILE_ENV, Purpose, Settings};
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
    /// Print events from NATS as they arrive (live, durable, or replayed from the stream).
    Subscribe(SubscribeArgs),
    /// Post signed test events to a bridge, as FastPix would, and print its answers.
    Send(SendArgs),
    /// Exit 0 when healthy, 1 with the reason otherwise (for container
    /// healthchecks): a bridge answering 2xx at URL (needs no settings), or
    /// with --durable, a consumer's durable consumer on the bridge's stream.
    Healthcheck {
        #[arg(long, default_value = healthcheck::DEFAULT_URL)]
        url: String,
        /// Check instead that this durable consumer exists, with the NATS and
        /// stream settings the consumer itself uses.
        #[arg(long, value_name = "NAME", conflicts_with = "url")]
        durable: Option<String>,
        /// Longest wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let purpose = match command {
        Command::Serve => Purpose::Bridge,
        Command::Subscribe(_) | Command::Send(_) => Purpose::Client,
        Command::Healthcheck {
            url,
            durable,
            timeout,
        } => return check_health(&url, durable.as_deref(), cli.config.as_deref(), timeout).await,
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
        Command::Healthcheck {
            url,
            durable,
            timeout,
        } => check_health(&url, durable.as_deref(), cli.config.as_deref(), timeout).await,
    }
}

/// Any failure, bad settings included, exits 1: container engines reserve
/// other codes.
async fn check_health(
    url: &str,
    durable: Option<&str>,
    config: Option<&std::path::Path>,
    timeout: Duration,
) -> ExitCode {
    let checked = match durable {
        None => healthcheck::check(url, timeout).await.map(drop),
        Some(name) => match Settings::load_client(config) {
            Ok(settings) => healthcheck::check_durable(&settings, name, timeout).await,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match checked {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
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
