//! NATS connection options shared by the bridge and its clients (`subscribe`,
//! the examples, any Rust consumer): the same servers, credentials and TLS
//! settings, and reconnecting without end once connected.

use std::time::Duration;

use async_nats::ConnectOptions;

use crate::settings::NatsSettings;

/// Wait before connection attempt `attempts` (counted from 1): none before
/// the first, so a client started next to a running server is ready at once,
/// then 100ms, 200ms, … capped at 2s: quick to come back, gentle on a down server.
pub(crate) fn reconnect_delay(attempts: usize) -> Duration {
    Duration::from_millis((attempts.saturating_sub(1) as u64 * 100).min(2000))
}

/// Options for a connection named `name` (shown by the server's monitoring),
/// with the credentials and TLS material of `nats`.
pub async fn options(nats: &NatsSettings, name: &str) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(nats.connect_timeout)
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
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
        options = options.user_and_password(user.clone(), password.clone());
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

/// Why the bridge could not start publishing.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read NATS credentials (setting `{key}`): {source}")]
    Credentials {
        key: &'static str,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    #[error(
        "invalid setting `http.max_body_bytes` (FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES): {limit} is above the NATS server's max_payload of {max_payload} bytes; lower it or raise max_payload on the server"
    )]
    BodyLimitAboveMaxPayload { limit: usize, max_payload: usize },
}
