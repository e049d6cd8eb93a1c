//! `forward`: delivers the stream to HTTP destinations. Without `--to`, every
//! `[forward.<name>]` destination, with `/metrics` on `http.admin_listen`;
//! with `--to URL`, the development mode: one destination named on the
//! command line, one line per delivery on stdout.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::settings::SecretString;
use axum::routing::get;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::subscribe::{parse_since, resolve_filters};
use crate::consumer::Start;
use crate::forward::deliver::{Report, Reporter};
use crate::forward::metrics::ForwardMetrics;
use crate::forward::{self, Options};
use crate::ops::serve::{Timeouts, bind, serve};
use crate::ops::shutdown::shutdown_signal;
use crate::settings::forward::{DEFAULT_BACKOFF, check_url};
use crate::settings::{Destination, Secrets, Settings};

#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// Development mode: deliver to this URL (like `stripe listen --forward-to`)
    /// instead of the configured destinations.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// With --to: the base64 signing secret the local handler verifies
    /// FastPix-Signature with (ignored without --to; never shown in --help).
    #[arg(
        long,
        value_name = "BASE64",
        env = "FASTPIX_FORWARD_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// With --to: event types or patterns to deliver (video.media.*); repeatable.
    #[arg(long = "type", value_name = "TYPE", requires = "to")]
    pub types: Vec<String>,
    /// With --to: families to deliver (media, upload, live_stream, simulcast); repeatable.
    #[arg(long = "family", value_name = "FAMILY", requires = "to")]
    pub families: Vec<String>,
    /// With --to: start from events stored this long ago (2h) or since this
    /// RFC 3339 time; with --durable, where a new consumer starts.
    #[arg(long, value_name = "DURATION|RFC3339", requires = "to")]
    pub since: Option<String>,
    /// With --to: keep a durable consumer NAME, so that a restart catches up
    /// on everything stored while it was away.
    #[arg(long, value_name = "NAME", requires = "to")]
    pub durable: Option<String>,
    /// With --to: attempts before an event is kept as a dead letter.
    #[arg(long, value_name = "N", default_value_t = 3, requires = "to")]
    pub max_attempts: u64,
    /// With --to and several webhooks: the one to read, by name or prefix.
    #[arg(long, value_name = "NAME|PREFIX", env = crate::settings::WEBHOOK_ENV)]
    pub webhook: Option<String>,
}

pub async fn run(args: ForwardArgs, settings: Settings) -> ExitCode {
    match &args.to {
        Some(url) => develop(url.clone(), &args, settings).await,
        None => service(settings).await,
    }
}

/// Every configured destination, until SIGTERM or Ctrl-C.
async fn service(settings: Settings) -> ExitCode {
    if settings.forward.is_empty() {
        eprintln!(
            "error: no destination is configured: add a [forward.<name>] section with its url and signing_secret (FASTPIX_BRIDGE__FORWARD__<NAME>__URL, …); see docs/forwarding.md"
        );
        return ExitCode::from(2);
    }
    let names: Vec<&str> = settings.forward.iter().map(|d| d.name.as_str()).collect();
    let metrics = ForwardMetrics::new(&names);
    let listener = match bind("http.admin_listen", settings.http.admin_listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(addr = %addr, "admin listening: /metrics, /healthz");
    }
    let (stop_tx, stop) = watch::channel(false);
    let scrape = metrics.clone();
    let router = axum::Router::new()
        .route("/metrics", get(move || async move { scrape.render() }))
        .route("/healthz", get(|| async { "ok" }));
    let timeouts = Timeouts {
        header: settings.http.header_timeout,
        shutdown_grace: settings.http.shutdown_grace,
    };
    let mut admin_stop = stop.clone();
    let admin = tokio::spawn(serve("admin", listener, router, timeouts, async move {
        let _ = admin_stop.wait_for(|s| *s).await;
    }));
    let upkeep = {
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(5));
            loop {
                t.tick().await;
                m.run_upkeep();
            }
        })
    };
    let options = Options::default();
    let code = drive(
        &settings,
        settings.forward.clone(),
        &metrics,
        &options,
        stop_tx,
        stop,
    )
    .await;
    upkeep.abort();
    let _ = admin.await;
    code
}

/// Runs `destinations` until a shutdown signal.
async fn drive(
    settings: &Settings,
    destinations: Vec<Destination>,
    metrics: &ForwardMetrics,
    options: &Options,
    stop_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) -> ExitCode {
    let targets = match forward::targets(&destinations, metrics, options, &stop) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let client = match super::connect_or_report(settings, "fastpix-nats-bridge forward").await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let js = async_nats::jetstream::new(client.clone());
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let result = forward::run(settings, &js, &targets, options, stop).await;
    let _ = client.drain().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `--to URL`: one destination from the command line.
async fn develop(url: String, args: &ForwardArgs, settings: Settings) -> ExitCode {
    let dest = match dev_destination(&url, args, &settings) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let start = match &args.since {
        None => Start::New,
        Some(s) => match parse_since(s, OffsetDateTime::now_utc()) {
            Ok(t) => Start::Since(t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let report: Reporter = Arc::new(|r: &Report| {
        println!("{}", report_line(r, OffsetDateTime::now_utc()));
    });
    let options = Options {
        start: Some(start),
        report: Some(report),
    };
    let metrics = ForwardMetrics::new(&[dest.name.as_str()]);
    let consumer = dest.consumer();
    let durable = args.durable.is_some();
    eprintln!(
        "ready: forwarding to {url} through consumer `{consumer}`{}",
        if durable { "" } else { " (removed on exit)" }
    );
    let (stop_tx, stop) = watch::channel(false);
    let code = drive(
        &settings,
        vec![dest.clone()],
        &metrics,
        &options,
        stop_tx,
        stop,
    )
    .await;
    if !durable {
        remove_consumer(&settings, &dest).await;
    }
    code
}

/// Deletes a development consumer and its redrive consumer.
async fn remove_consumer(settings: &Settings, dest: &Destination) {
    let Some(webhook) = settings.webhooks.iter().find(|w| w.name == dest.webhook) else {
        return;
    };
    let Ok(client) = super::connect_or_report(settings, "fastpix-nats-bridge forward").await else {
        return;
    };
    let js = async_nats::jetstream::new(client.clone());
    if let Ok(stream) = js.get_stream(&webhook.stream).await {
        let _ = stream.delete_consumer(&dest.consumer()).await;
    }
    let redrive = crate::nats::dead_letters::redrive_stream(&webhook.stream);
    if let Ok(stream) = js.get_stream(&redrive).await {
        let _ = stream.delete_consumer(&dest.consumer()).await;
    }
    let _ = client.drain().await;
}

fn dev_destination(
    url: &str,
    args: &ForwardArgs,
    settings: &Settings,
) -> Result<Destination, String> {
    check_url(url).map_err(|why| format!("--to {url:?}: {why}"))?;
    let webhook = settings
        .webhook(args.webhook.as_deref())
        .map_err(|e| e.to_string())?;
    let secret = args.secret.as_deref().ok_or(
        "--to needs --secret (or FASTPIX_FORWARD_SECRET): the base64 signing secret your handler verifies FastPix-Signature with",
    )?;
    let secret = crate::fastpix::signature::SigningSecret::from_base64(secret)
        .map_err(|e| format!("--secret {e}"))?;
    let mut inputs = args.types.clone();
    inputs.extend(args.families.iter().cloned());
    let filters = resolve_filters(&webhook.prefix, &inputs).map_err(|e| e.to_string())?;
    let (name, consumer) = match &args.durable {
        Some(n) => (n.clone(), n.clone()),
        None => {
            let n = format!("dev-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            (n.clone(), format!("forward-{n}"))
        }
    };
    if args.max_attempts == 0 {
        return Err("--max-attempts must be at least 1".to_owned());
    }
    let dest = Destination {
        name,
        consumer,
        url: url.to_owned(),
        webhook: webhook.name.clone(),
        filters,
        secrets: Secrets::new(
            crate::fastpix::signature::Verifier::new(vec![secret]),
            None,
            false,
        ),
        timeout: Duration::from_secs(10),
        max_attempts: args.max_attempts,
        backoff: DEFAULT_BACKOFF[..3].to_vec(),
        concurrency: 1,
        rate_limit: None,
        probe_interval: Duration::from_secs(5),
        retry_after_cap: Duration::from_secs(60),
        headers: Vec::<(String, SecretString)>::new(),
    };
    Ok(dest)
}

/// `2026-05-11T20:42:16Z video.media.ready 3f1c… 200 12ms attempt 1`.
fn report_line(r: &Report, now: OffsetDateTime) -> String {
    let time = now
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let clean = |s: &str| -> String {
        let s: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
        if s.is_empty() { "-".to_owned() } else { s }
    };
    format!(
        "{time} {} {} {} {}ms attempt {}",
        clean(&r.event_type),
        clean(&r.event_id),
        r.outcome.status_text(),
        r.latency.as_millis(),
        r.attempt
    )
}
