//! `fastpix-nats-bridge healthcheck`: an exit code that says whether a
//! container is healthy, so its healthcheck needs no shell, curl or wget in
//! the image. For a bridge, one plain HTTP GET of its readiness; for a
//! consumer, whether its durable consumer exists on the bridge's stream.

use std::time::Duration;

use async_nats::jetstream;
use axum::http::Uri;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::consumer::{self, BindError, ConnectError, Patience};
use crate::settings::Settings;

/// What the container healthcheck asks when given no `--url`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/readyz";

/// Longest status line read; anything longer is not an HTTP answer.
const MAX_STATUS_LINE: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{0:?} is not an http:// URL with a host")]
    BadUrl(String),
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: std::io::Error },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} did not answer with HTTP")]
    NotHttp { url: String },
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
}

/// Where to connect and what to ask for.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn parse(url: &str) -> Result<Target, HealthcheckError> {
    let bad = || HealthcheckError::BadUrl(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Target {
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_owned(),
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    })
}

/// GETs `url` and returns its status when it is 2xx; any other answer, no
/// answer within `timeout`, or no connection is an error.
pub async fn check(url: &str, timeout: Duration) -> Result<u16, HealthcheckError> {
    let target = parse(url)?;
    let status = tokio::time::timeout(timeout, fetch_status(&target))
        .await
        .map_err(|_| HealthcheckError::Timeout {
            url: url.to_owned(),
            timeout,
        })?
        .map_err(|source| HealthcheckError::Unreachable {
            url: url.to_owned(),
            source,
        })?
        .ok_or_else(|| HealthcheckError::NotHttp {
            url: url.to_owned(),
        })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(HealthcheckError::Unhealthy {
            url: url.to_owned(),
            status,
        })
    }
}

/// Succeeds when the durable consumer `name` exists on the stream of
/// `settings` (`jetstream.stream`), reached with its NATS settings, all
/// within `timeout`. It only looks: a missing consumer stays missing.
pub async fn check_durable(
    settings: &Settings,
    name: &str,
    timeout: Duration,
) -> Result<(), HealthcheckError> {
    let stream = settings.jetstream.stream.as_str();
    let look = async {
        let client = consumer::connect(
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

async fn fetch_status(target: &Target) -> std::io::Result<Option<u16>> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: fastpix-nats-bridge-healthcheck\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_STATUS_LINE))
        .read_line(&mut line)
        .await?;
    Ok(status_code(&line))
}

/// `HTTP/1.1 503 Service Unavailable` → 503.
fn status_code(status_line: &str) -> Option<u16> {
    let mut parts = status_line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_what_the_request_needs() {
        assert_eq!(
            parse("http://127.0.0.1:8080/readyz").unwrap(),
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                path: "/readyz".into(),
            }
        );
        let t = parse("http://[::1]/healthz?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert_eq!(t.path, "/healthz?x=1");
        assert_eq!(parse("http://bridge:8080").unwrap().path, "/");
        for bad in ["https://a/readyz", "bridge:8080/readyz", "/readyz", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines_are_read_and_anything_else_refused() {
        assert_eq!(status_code("HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code("HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(""), None);
    }
}
