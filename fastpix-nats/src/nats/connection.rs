//! The one way to connect to NATS, for the bridge and its clients alike
//! (`subscribe`, the inspector, the examples, any Rust consumer): the same
//! servers, credentials and TLS settings, reconnecting without end once
//! connected, and one log of the connection's ups and downs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use secrecy::ExposeSecret;
use tokio::sync::Notify;

use crate::settings::NatsSettings;

/// What to do when NATS is not there at the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Fail at once with the reason (a command a person is waiting on).
    FailFast,
    /// Keep trying in the background and return at once (a worker that may
    /// start before NATS does, or the bridge itself).
    Forever,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read NATS credentials (setting `{key}`): {source}")]
    Credentials {
        key: &'static str,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
}

/// Connects as `name` (shown by the server's monitoring) with the settings'
/// servers, credentials and TLS. Once connected, the client reconnects
/// without end.
pub async fn connect(
    nats: &NatsSettings,
    name: &str,
    patience: Patience,
) -> Result<Client, ConnectError> {
    open(nats, name, patience, None).await
}

/// As [`connect`], also waking `connected` on every connection and
/// reconnection (the bridge then checks the server's limits and its streams).
pub async fn connect_notifying(
    nats: &NatsSettings,
    name: &str,
    patience: Patience,
    connected: Arc<Notify>,
) -> Result<Client, ConnectError> {
    open(nats, name, patience, Some(connected)).await
}

async fn open(
    nats: &NatsSettings,
    name: &str,
    patience: Patience,
    connected: Option<Arc<Notify>>,
) -> Result<Client, ConnectError> {
    // One warning per outage, not one per reconnect attempt.
    let reported = Arc::new(AtomicBool::new(false));
    let servers = nats.url.join(", ");
    let mut options = options(nats, name).await?.event_callback(move |event| {
        let reported = reported.clone();
        let servers = servers.clone();
        let connected = connected.clone();
        async move {
            match event {
                async_nats::Event::Connected => {
                    reported.store(false, Ordering::Relaxed);
                    tracing::info!("connected to NATS");
                    if let Some(connected) = connected {
                        connected.notify_one();
                    }
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("disconnected from NATS; reconnecting")
                }
                async_nats::Event::ClientError(e) => {
                    if !reported.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%servers, error = %e, "cannot reach NATS; trying again until it answers");
                    }
                }
                async_nats::Event::Draining | async_nats::Event::Closed => {
                    tracing::debug!(event = %event, "NATS event")
                }
                other => tracing::info!(event = %other, "NATS event"),
            }
        }
    });
    if patience == Patience::Forever {
        options = options.retry_on_initial_connect();
    }
    options
        .connect(nats.url.clone())
        .await
        .map_err(ConnectError::Connect)
}

/// How often the client pings the server. A network partition leaves the
/// TCP connection open but silent: only unanswered pings reveal it, and the
/// client reconnects (to another node of a cluster) after two go unanswered.
/// With the client's default of 60 s, a bridge cut off from its node answered
/// 503 for about two minutes while the rest of the cluster kept a quorum
/// (BENCHMARKS.md, "The Compose stack"); 10 s makes it about 30 s.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Wait before connection attempt `attempts` (counted from 1): none before
/// the first, so a client started next to a running server is ready at once,
/// then 100ms, 200ms, … capped at 2s: quick to come back, gentle on a down server.
fn reconnect_delay(attempts: usize) -> Duration {
    Duration::from_millis((attempts.saturating_sub(1) as u64 * 100).min(2000))
}

/// Options for a connection named `name`, with the credentials and TLS
/// material of `nats`.
async fn options(nats: &NatsSettings, name: &str) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(nats.connect_timeout)
        .ping_interval(PING_INTERVAL)
        .reconnect_delay_callback(reconnect_delay);
    if let Some(path) = &nats.creds_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Credentials {
                    key: "nats.creds_file",
                    source,
                })?;
    }
    if let Some(token) = &nats.token {
        options = options.token(token.expose_secret().to_owned());
    }
    if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
        options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
    }
    if let Some(ca) = &nats.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&nats.tls_cert_file, &nats.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_connection_attempt_does_not_wait() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(3), Duration::from_millis(200));
        assert_eq!(reconnect_delay(1000), Duration::from_secs(2));
    }
}
