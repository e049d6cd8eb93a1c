//! Reloading signing secrets without a restart: on SIGHUP every webhook's
//! `signing_secrets_file` is read again, and each file is also checked every
//! `secrets.check_interval` and reloaded when its content changed. A reload
//! swaps a webhook's whole set at once; one that fails keeps the set in
//! force, logs an error naming the file (never a secret) and is counted in
//! `fastpix_bridge_secrets_reloads_total{result="failed"}`.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::ops::metrics::Metrics;
use crate::settings::WebhookConfig;

/// What a check saw of a file: its content's hash, or why it could not be read.
#[derive(PartialEq, Eq)]
enum FileState {
    Content([u8; 32]),
    Unreadable(std::io::ErrorKind),
}

fn look(path: &std::path::Path) -> FileState {
    match std::fs::read(path) {
        Ok(bytes) => FileState::Content(Sha256::digest(&bytes).into()),
        Err(e) => FileState::Unreadable(e.kind()),
    }
}

/// Reloads webhook number `index`'s secrets, logging and counting the result.
pub fn reload_one(webhooks: &[WebhookConfig], index: usize, metrics: &Metrics, why: &str) {
    let w = &webhooks[index];
    let Some(file) = w.secrets.file() else {
        return;
    };
    match w.secrets.reload() {
        Ok(count) => {
            metrics.secrets_reloaded(index, true);
            tracing::info!(webhook = w.name.as_str(), file = %file.display(), secrets = count, trigger = why, "signing secrets reloaded");
        }
        Err(e) => {
            metrics.secrets_reloaded(index, false);
            tracing::error!(webhook = w.name.as_str(), file = %file.display(), trigger = why, error = %e, "signing secrets not reloaded; the ones in force stay");
        }
    }
}

/// Runs until aborted: reloads on SIGHUP, and when a file changes.
pub async fn watch(webhooks: Arc<[WebhookConfig]>, metrics: Metrics, every: Duration) {
    let files: Vec<usize> = (0..webhooks.len())
        .filter(|&i| webhooks[i].secrets.file().is_some())
        .collect();
    let mut seen: Vec<FileState> = files
        .iter()
        .filter_map(|&i| webhooks[i].secrets.file().map(look))
        .collect();
    let mut hangup = hangup_signals();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = next_hangup(&mut hangup) => {
                tracing::info!("SIGHUP: reloading every webhook's signing secrets file");
                for (slot, &i) in files.iter().enumerate() {
                    if let Some(file) = webhooks[i].secrets.file() {
                        seen[slot] = look(file);
                    }
                    reload_one(&webhooks, i, &metrics, "SIGHUP");
                }
            }
            _ = ticks.tick() => {
                for (slot, &i) in files.iter().enumerate() {
                    let Some(file) = webhooks[i].secrets.file() else { continue };
                    let now = look(file);
                    if now != seen[slot] {
                        seen[slot] = now;
                        reload_one(&webhooks, i, &metrics, "file changed");
                    }
                }
            }
        }
    }
}

/// SIGHUPs as they come (none where there are no signals, or when they
/// cannot be listened for). The forwarder reloads its files on them too.
#[cfg(unix)]
pub type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangup = ();

/// Starts listening for SIGHUP: from now on it no longer stops the process,
/// and each one is kept until [`next_hangup`] takes it.
#[cfg(unix)]
pub fn hangup_signals() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; secrets files are still checked for changes");
            None
        }
    }
}

#[cfg(not(unix))]
pub fn hangup_signals() -> Hangup {}

/// Waits for the next SIGHUP (forever when there is none to listen for).
#[cfg(unix)]
pub async fn next_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
pub async fn next_hangup(_: &mut Hangup) {
    std::future::pending::<()>().await
}
