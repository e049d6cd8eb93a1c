//! `[nats]`: which servers, and how to authenticate to them.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{SettingsError, invalid};

/// `[nats]`, shared by the bridge and every client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URLs; a comma-separated string or a list.
    #[serde(deserialize_with = "super::raw::string_list")]
    pub url: Vec<String>,
    pub creds_file: Option<PathBuf>,
    /// Never printed: a secret type, even in `Debug`.
    pub token: Option<SecretString>,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// CA bundle to verify the server with (implies TLS).
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key, for servers that verify clients.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Longest wait for a publish ack before answering 503.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// How long startup waits for a first connection before serving without one.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: vec!["nats://127.0.0.1:4222".to_owned()],
            creds_file: None,
            token: None,
            user: None,
            password: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            publish_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl NatsSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.url.is_empty() {
            return Err(invalid("nats.url", "must name at least one server"));
        }
        // Neither message echoes the URL: it may hold a password.
        for (i, url) in self.url.iter().enumerate() {
            let Ok(addr) = url.parse::<async_nats::ServerAddr>() else {
                return Err(invalid(
                    "nats.url",
                    format!("entry #{} is not a NATS URL", i + 1),
                ));
            };
            // The NATS client ignores credentials in URLs (so they would not
            // authenticate) but prints URLs in its debug log.
            if addr.username().is_some() || addr.password().is_some() {
                return Err(invalid(
                    "nats.url",
                    format!(
                        "entry #{} carries credentials, which are not used there; set nats.user and nats.password, or nats.token",
                        i + 1
                    ),
                ));
            }
        }
        if self.publish_timeout.is_zero() {
            return Err(invalid("nats.publish_timeout", "must be above 0"));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(invalid(
                "nats.tls_cert_file",
                "nats.tls_cert_file and nats.tls_key_file go together",
            ));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(invalid(
                "nats.user",
                "nats.password is set without nats.user",
            ));
        }
        Ok(())
    }
}
