//! Forwarding: every `[forward.<name>]` destination is a durable consumer
//! `forward-<name>` run by the consumer library's [`Worker`], whose handler
//! POSTs each event to the destination ([`deliver`]): re-signed as FastPix
//! signs, retried on the destination's back-off, kept as a dead letter of
//! `forward-<name>` once refused `max_attempts` times, and held while the
//! destination is down (the worker's gate closes; one event probes).
//! [`lease`] lets one forwarder process at a time deliver for a
//! destination, the others standing by. [`metrics`] counts it all; see
//! docs/forwarding.md.

pub mod deliver;
pub mod lease;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::future::join_all;
use tokio::sync::watch;

use crate::bridge::reload::{hangup_signals, next_hangup};
use crate::consumer::{Start, Worker, WorkerError};
use crate::settings::{Destination, Settings};
use deliver::{Reporter, Target};
use metrics::ForwardMetrics;

/// Far more than any delivery takes: the handler holds an event for as long
/// as its destination is down, and the worker must not abandon it.
const HOLD_LIMIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How the destinations are run.
#[derive(Clone, Default)]
pub struct Options {
    /// Where a new consumer starts (default: new events only).
    pub start: Option<Start>,
    /// Told of every attempt (the development mode's lines).
    pub report: Option<Reporter>,
}

/// Why forwarding could not run.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("destination `{0}`: cannot build its HTTP client: {1}")]
    Client(String, reqwest::Error),
    #[error("destination `{0}` reads webhook `{1}`, which is not configured")]
    Webhook(String, String),
    #[error("destination `{0}`: {1}")]
    Worker(String, WorkerError),
}

/// The worker running `dest`, not yet started.
pub fn worker_for(
    settings: &Settings,
    dest: &Destination,
    target: &Target,
    start: Start,
) -> Result<Worker, ForwardError> {
    let webhook = settings
        .webhooks
        .iter()
        .find(|w| w.name == dest.webhook)
        .ok_or_else(|| ForwardError::Webhook(dest.name.clone(), dest.webhook.clone()))?;
    let mut w = Worker::new(
        webhook.stream.clone(),
        webhook.prefix.clone(),
        dest.consumer(),
        dest.filters.clone(),
    );
    w.start = start;
    w.concurrency = dest.concurrency;
    // Attempts are counted by the handler (an outage's do not count); the
    // worker's count of deliveries is no limit here.
    w.max_deliveries = u64::MAX;
    w.backoff = dest.backoff.clone();
    w.handler_timeout = HOLD_LIMIT;
    w.grace = Duration::from_secs(10);
    w.gate = Some(target.gate());
    Ok(w)
}

/// Builds a target per destination.
pub fn targets(
    destinations: &[Destination],
    metrics: &ForwardMetrics,
    options: &Options,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<Arc<Target>>, ForwardError> {
    destinations
        .iter()
        .map(|d| {
            Target::new(
                d.clone(),
                metrics.clone(),
                options.report.clone(),
                stop.clone(),
            )
            .map_err(|e| ForwardError::Client(d.name.clone(), e))
        })
        .collect()
}

/// Runs every target until `stop` turns true.
pub async fn run(
    settings: &Settings,
    js: &jetstream::Context,
    targets: &[Arc<Target>],
    options: &Options,
    stop: watch::Receiver<bool>,
) -> Result<(), ForwardError> {
    let start = options.start.unwrap_or(Start::New);
    let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let mut runs = Vec::new();
    for target in targets {
        // Checked before anything runs: a bad name or webhook stops at once.
        worker_for(settings, &target.dest, target, start)?;
        let target = target.clone();
        let (settings, js, stop, holder) = (settings, js.clone(), stop.clone(), holder.clone());
        tracing::info!(
            destination = %target.dest.name,
            url = %target.dest.url,
            consumer = %target.dest.consumer(),
            "forwarding"
        );
        runs.push(async move {
            while let Some(lease) = take_lease(&js, settings, &target, &holder, &stop).await {
                let worker = worker_for(settings, &target.dest, &target, start)?;
                deliver_while_held(&js, worker, &target, &holder, lease, stop.clone()).await?;
            }
            Ok(())
        });
    }
    // Listened for before any consumer is made: a SIGHUP sent once
    // delivering has begun is never the default's (a stop).
    let hangup = targets
        .iter()
        .any(|t| t.dest.secrets.file().is_some())
        .then(hangup_signals);
    let secrets = tokio::spawn(watch_secrets(
        targets.to_vec(),
        settings.secrets.check_interval,
        hangup,
    ));
    let results = join_all(runs).await;
    secrets.abort();
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(drop)
}

/// Waits for the destination's lease (or the stop: `None`).
async fn take_lease(
    js: &jetstream::Context,
    settings: &Settings,
    target: &Target,
    holder: &str,
    stop: &watch::Receiver<bool>,
) -> Option<lease::Lease> {
    let stream = settings
        .webhooks
        .iter()
        .find(|w| w.name == target.dest.webhook)
        .map(|w| w.stream.clone())?;
    let key = target.dest.consumer();
    let mut told = false;
    loop {
        if *stop.borrow() {
            return None;
        }
        let taken = match lease::bucket(js, &stream).await {
            Ok(store) => lease::Lease::try_take(&store, &key, &target.lease_state(holder)).await,
            Err(e) => Err(e),
        };
        match taken {
            Ok(Some(l)) => {
                tracing::info!(destination = %target.dest.name, "lease taken: delivering");
                return Some(l);
            }
            Ok(None) if !told => {
                told = true;
                tracing::info!(destination = %target.dest.name, "another forwarder delivers for this destination; standing by to take over");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(destination = %target.dest.name, error = %e, "cannot reach the leases bucket; trying again");
            }
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(lease::RENEW) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

/// Runs the worker until the stop, or until the lease is lost; then gives
/// the lease up.
async fn deliver_while_held(
    js: &jetstream::Context,
    worker: Worker,
    target: &Arc<Target>,
    holder: &str,
    lease: lease::Lease,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ForwardError> {
    let held = Arc::new(tokio::sync::Mutex::new(Some(lease)));
    let renewing = held.clone();
    let (state_of, holder) = (target.clone(), holder.to_owned());
    let name = target.dest.name.clone();
    let until = async move {
        let every = lease::RENEW;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = ticks.tick() => {
                    let mut lease = renewing.lock().await;
                    if let Some(l) = lease.as_mut()
                        && let Err(e) = l.renew(&state_of.lease_state(&holder)).await
                    {
                        tracing::warn!(destination = %name, error = %e, "lease lost: stopping; another forwarder takes over");
                        *lease = None;
                        return;
                    }
                }
            }
        }
    };
    let handler = target.clone();
    let result = worker
        .run(js, until, move |d| handler.clone().deliver(d))
        .await
        .map_err(|e| ForwardError::Worker(target.dest.name.clone(), e));
    if let Some(l) = held.lock().await.take() {
        l.release().await;
    }
    result
}

/// Reloads every destination's `signing_secret_file` on SIGHUP, and one
/// whose content changed (checked every `every`), as the bridge reloads the
/// webhooks' secrets. A reload that fails keeps the secret in force.
/// `hangup` is `None` when no destination has a file (SIGHUP then keeps its
/// default: it stops the process, as it stops `forward --to` when its
/// terminal closes).
async fn watch_secrets(
    targets: Vec<Arc<Target>>,
    every: Duration,
    mut hangup: Option<crate::bridge::reload::Hangup>,
) {
    let Some(hangup) = hangup.as_mut() else {
        return;
    };
    let read = |t: &Target| t.dest.secrets.file().and_then(|p| std::fs::read(p).ok());
    let mut seen: Vec<Option<Vec<u8>>> = targets.iter().map(|t| read(t)).collect();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = next_hangup(hangup) => {
                tracing::info!("SIGHUP: reloading every destination's signing secret file");
                for (t, seen) in targets.iter().zip(seen.iter_mut()) {
                    *seen = read(t);
                    reload_secret(t, "SIGHUP");
                }
            }
            _ = ticks.tick() => {
                for (t, seen) in targets.iter().zip(seen.iter_mut()) {
                    let now = read(t);
                    if now != *seen {
                        *seen = now;
                        reload_secret(t, "file changed");
                    }
                }
            }
        }
    }
}

/// Reads a destination's `signing_secret_file` again (nothing without one),
/// logging the result: the file, never the secret.
fn reload_secret(t: &Target, why: &str) {
    let Some(file) = t.dest.secrets.file() else {
        return;
    };
    match t.dest.secrets.reload() {
        Ok(_) => {
            tracing::info!(destination = %t.dest.name, file = %file.display(), trigger = why, "signing secret reloaded");
        }
        Err(e) => {
            tracing::error!(destination = %t.dest.name, file = %file.display(), trigger = why, error = %e, "signing secret not reloaded; the one in force stays");
        }
    }
}
