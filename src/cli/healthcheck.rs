//! `fastpix-nats-bridge healthcheck`: an exit code that says whether a
//! container is healthy, so its healthcheck needs no shell, curl or wget in
//! the image. For a bridge, one plain HTTP GET of its readiness; for a
//! consumer, whether its durable consumer exists on the bridge's stream.

use std::time::Duration;

use async_nats::jetstream;

use crate::consumer::{self, BindError};
use crate::nats::connection::{self, ConnectError, Patience};
use crate::settings::Settings;

/// What the container healthcheck asks when given no `--url`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/readyz";

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// Check instead that this durable consumer exists, with the NATS and
    /// stream settings the consumer itself uses.
    #[arg(long, value_name = "NAME", conflicts_with = "url")]
    pub durable: Option<String>,
    /// With several webhooks configured: the one whose stream holds the
    /// durable consumer, by name or subject prefix (else
    /// `FASTPIX_BRIDGE_WEBHOOK`, as the consumer library reads it).
    #[arg(long, value_name = "NAME", requires = "durable")]
    pub webhook: Option<String>,
    /// Longest wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{0:?} is not an http:// URL with a host")]
    BadUrl(String),
    #[error("cannot reach {url}: {}", innermost(.source))]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered {status}")]
    Unhealthy { url: String, status: u16 },
    #[error("{0}")]
    Nats(#[from] ConnectError),
    #[error("cannot reach NATS at {servers}: {reason}")]
    NatsUnreachable { servers: String, reason: String },
    #[error("{0}")]
    Stream(#[from] BindError),
    #[error("no answer from NATS within {0:?}")]
    NatsTimeout(Duration),
    #[error("durable consumer `{name}` does not exist on stream `{stream}`")]
    NoConsumer { name: String, stream: String },
    #[error(transparent)]
    Webhook(#[from] crate::settings::SettingsError),
}

/// The innermost cause of `e`: reqwest's own text only says a request failed.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `url` when it is `http://` with a host: the bridge serves plain HTTP
/// (TLS ends in front of it), and the client is built without TLS.
fn parse(url: &str) -> Result<reqwest::Url, HealthcheckError> {
    let bad = || HealthcheckError::BadUrl(url.to_owned());
    let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
    if parsed.scheme() != "http" || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(parsed)
}

/// GETs `url` and returns its status when it is 2xx; any other answer, no
/// answer within `timeout`, or no connection is an error.
pub async fn check(url: &str, timeout: Duration) -> Result<u16, HealthcheckError> {
    let target = parse(url)?;
    let client = reqwest::Client::builder()
        .user_agent("fastpix-nats-bridge-healthcheck")
        // A container's proxy settings are for the outside world, not for itself.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|source| HealthcheckError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    let response = client.get(target).send().await.map_err(|source| {
        if source.is_timeout() {
            HealthcheckError::Timeout {
                url: url.to_owned(),
                timeout,
            }
        } else {
            HealthcheckError::Unreachable {
                url: url.to_owned(),
                source,
            }
        }
    })?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err(HealthcheckError::Unhealthy {
            url: url.to_owned(),
            status,
        })
    }
}

/// Succeeds when the durable consumer `name` exists on the stream of the
/// webhook `webhook` picks (or `FASTPIX_BRIDGE_WEBHOOK`, or the only one:
/// the stream the consumer library binds to), reached with the NATS
/// settings of `settings`, all within `timeout`. It only looks: a missing
/// consumer stays missing.
pub async fn check_durable(
    settings: &Settings,
    webhook: Option<&str>,
    name: &str,
    timeout: Duration,
) -> Result<(), HealthcheckError> {
    let picked = match webhook {
        Some(w) => settings.webhook(Some(w)),
        None => settings.webhook_from_env(),
    };
    let stream = picked?.stream.as_str();
    let look = async {
        let client = connection::connect(
            &settings.nats,
            "fastpix-nats-bridge-healthcheck",
            Patience::FailFast,
        )
        .await
        .map_err(|e| match e {
            ConnectError::Connect(reason) => HealthcheckError::NatsUnreachable {
                servers: settings.nats.url.join(", "),
                reason: reason.to_string(),
            },
            other => HealthcheckError::Nats(other),
        })?;
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        Ok::<_, HealthcheckError>(consumer::durable_info(&js, stream, name).await?)
    };
    match tokio::time::timeout(timeout, look).await {
        Err(_) => Err(HealthcheckError::NatsTimeout(timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(None)) => Err(HealthcheckError::NoConsumer {
            name: name.to_owned(),
            stream: stream.to_owned(),
        }),
        Ok(Ok(Some(_))) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host_are_asked() {
        assert_eq!(
            parse("http://127.0.0.1:8080/readyz").unwrap().as_str(),
            "http://127.0.0.1:8080/readyz"
        );
        let u = parse("http://[::1]/healthz?x=1").unwrap();
        assert_eq!(
            (u.host_str(), u.port_or_known_default()),
            (Some("[::1]"), Some(80))
        );
        assert_eq!(parse("http://bridge:8080").unwrap().path(), "/");
        for bad in [
            "https://a/readyz",
            "bridge:8080/readyz",
            "/readyz",
            "",
            "ftp://x/readyz",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
