//! The command line: [`Cli`] parses it and [`run`] dispatches to serving
//! (the default), the client commands `subscribe` (reads events from NATS),
//! `send` (posts signed test events to a bridge), `consumers` (lists the
//! durable consumers) and `dead-letters` (lists and redrives them), `inspect`
//! (the inspector's page and API), `forward` (delivers events to HTTP
//! destinations), and `healthcheck`.
//! Client commands load the bridge's own settings (see
//! [`crate::settings::Settings::load_client`]), so they need no setup of
//! their own beside a running bridge and NATS.
pub mod consumers;
pub mod dead_letters;
pub mod forward;
pub mod healthcheck;
pub mod inspect;
pub mod send;
pub mod subscribe;
pub mod templates;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bridge::startup::Application;
use crate::nats::connection::{self, Patience};
use crate::ops::shutdown::shutdown_signal;
use crate::ops::telemetry;
use crate::settings::{CONFIG_FILE_ENV, Purpose, Settings};
use consumers::ConsumersArgs;
use dead_letters::DeadLettersCommand;
use forward::ForwardArgs;
use healthcheck::HealthcheckArgs;
use send::SendArgs;
use subscribe::SubscribeArgs;

/// FastPix webhooks in, NATS JetStream out.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML settings file (environment variables FASTPIX_BRIDGE__SECTION__KEY override it).
    #[arg(long, global = true, env = CONFIG_FILE_ENV)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Receive webhooks and publish them (the default).
    Serve,
    /// Print events from NATS as they arrive (live, durable, or replayed from the stream).
    Subscribe(SubscribeArgs),
    /// Post signed test events to a bridge, as FastPix would, and print its answers.
    Send(SendArgs),
    /// List every durable consumer on the stream: filters, pending,
    /// ack-pending and redelivered counts, last activity.
    Consumers(ConsumersArgs),
    /// List the events consumers gave up on, or deliver them again to one consumer.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Deliver events to HTTP destinations (forward.<name>.* settings), or
    /// with --to URL to one local handler (development mode).
    Forward(ForwardArgs),
    /// Serve the inspector: a web page and JSON API showing stored events,
    /// refused deliveries and consumers, read from NATS (inspect.* settings).
    Inspect,
    /// Exit 0 when healthy, 1 with the reason otherwise (for container
    /// healthchecks): a bridge answering 2xx at URL (needs no settings), or
    /// with --durable, a consumer's durable consumer on the bridge's stream.
    Healthcheck(HealthcheckArgs),
}

/// Runs the command `cli` names: loads settings for it and dispatches.
pub async fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve);
    let config = cli.config.as_deref();
    let purpose = match &command {
        // Needs no settings for a URL; with --durable it loads the
        // consumer's own, and any failure (bad settings too) exits 1.
        Command::Healthcheck(args) => return check_health(args, config).await,
        Command::Serve => Purpose::Bridge,
        Command::Inspect => Purpose::Inspector,
        Command::Subscribe(_)
        | Command::Forward(_)
        | Command::Send(_)
        | Command::Consumers(_)
        | Command::DeadLetters(_) => Purpose::Client,
    };
    let settings = match Settings::load_for(purpose, config, None) {
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
        Command::Inspect => inspect::run(settings).await,
        Command::Forward(args) => {
            let quiet = if args.to.is_some() { "warn" } else { "info" };
            telemetry::init_with(settings.log.format, quiet);
            forward::run(args, settings).await
        }
        Command::Consumers(args) => {
            telemetry::init_with(settings.log.format, "warn");
            consumers::run(args, &settings).await
        }
        Command::DeadLetters(command) => {
            telemetry::init_with(settings.log.format, "warn");
            dead_letters::run(command, &settings).await
        }
        Command::Healthcheck(args) => check_health(&args, config).await,
    }
}

/// Any failure, bad settings included, exits 1: container engines reserve
/// other codes.
async fn check_health(args: &HealthcheckArgs, config: Option<&std::path::Path>) -> ExitCode {
    let timeout = args.timeout;
    let checked = match &args.durable {
        None => healthcheck::check(&args.url, timeout).await.map(drop),
        Some(name) => match Settings::load_client(config) {
            Ok(settings) => {
                healthcheck::check_durable(&settings, args.webhook.as_deref(), name, timeout).await
            }
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

/// Connects a client command to NATS at once, or says why not (naming the
/// setting) and gives the exit code for it: 1, as for any NATS failure.
pub(crate) async fn connect_or_report(
    settings: &Settings,
    name: &str,
) -> Result<async_nats::Client, ExitCode> {
    connection::connect(&settings.nats, name, Patience::FailFast)
        .await
        .map_err(|e| {
            eprintln!(
                "error: cannot reach NATS at {} (setting `nats.url`, {}): {e}",
                settings.nats.url.join(", "),
                crate::settings::env_name("nats.url")
            );
            ExitCode::FAILURE
        })
}
