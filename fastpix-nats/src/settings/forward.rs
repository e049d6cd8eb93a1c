//! `[forward.<name>]`: HTTP destinations the stream is delivered to, each
//! read by its own durable consumer `forward-<name>` (see docs/forwarding.md).
//! Checked against the webhooks: a destination reads one webhook's stream,
//! and its `types`/`families` become filters under that webhook's prefix.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use humantime_serde::re::humantime;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::secrets::{Secrets, read_secrets_file};
use super::webhooks::WebhookConfig;
use super::{SettingsError, invalid};
use crate::fastpix::catalog::Family;
use crate::fastpix::signature::{SigningSecret, Verifier};
use crate::fastpix::subject::SubjectFilter;

/// Defaults of every destination (docs/forwarding.md lists them).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_ATTEMPTS: u64 = 6;
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// The default back-off: 1s, 5s, 30s, 2min, 10min (the last repeats).
pub const DEFAULT_BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

/// One `[forward.<name>]` section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct DestinationRaw {
    url: String,
    #[serde(deserialize_with = "super::raw::string_list")]
    types: Vec<String>,
    #[serde(deserialize_with = "super::raw::string_list")]
    families: Vec<String>,
    signing_secret: Option<SecretString>,
    signing_secret_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    max_attempts: u64,
    #[serde(deserialize_with = "super::raw::string_list")]
    backoff: Vec<String>,
    concurrency: usize,
    rate_limit: f64,
    #[serde(with = "humantime_serde")]
    probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    retry_after_cap: Duration,
    headers: BTreeMap<String, SecretString>,
    webhook: Option<String>,
}

impl Default for DestinationRaw {
    fn default() -> Self {
        Self {
            url: String::new(),
            types: Vec::new(),
            families: Vec::new(),
            signing_secret: None,
            signing_secret_file: None,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            rate_limit: 0.0,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            retry_after_cap: DEFAULT_RETRY_AFTER_CAP,
            headers: BTreeMap::new(),
            webhook: None,
        }
    }
}

/// One HTTP destination, checked.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The key of `[forward.<name>]`; the consumer is `forward-<name>`.
    pub name: String,
    /// The durable consumer reading for it: `forward-<name>`.
    pub consumer: String,
    pub url: String,
    /// The webhook whose stream is read.
    pub webhook: String,
    /// What is delivered: the `types` and `families`, or everything.
    pub filters: Vec<SubjectFilter>,
    /// Signs each delivery (the first secret of the set); reloadable.
    pub secrets: Secrets,
    pub timeout: Duration,
    pub max_attempts: u64,
    pub backoff: Vec<Duration>,
    pub concurrency: usize,
    /// Requests per second at most; `None`: no limit.
    pub rate_limit: Option<f64>,
    pub probe_interval: Duration,
    pub retry_after_cap: Duration,
    /// Sent with every delivery; values never logged.
    pub headers: Vec<(String, SecretString)>,
}

impl Destination {
    /// The durable consumer reading for this destination.
    pub fn consumer(&self) -> String {
        self.consumer.clone()
    }
}

/// `forward-<name>`.
pub fn consumer_name(destination: &str) -> String {
    format!("forward-{destination}")
}

/// A destination name is part of a consumer name and a metric label;
/// lowercase because environment variable names reach the bridge lowercased.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An HTTP header name (RFC 9110 token characters).
fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers the forwarder sets itself; a static header may not replace them.
const OWN_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "fastpix-signature",
    "fastpix-event-id",
    "fastpix-event-type",
    "fastpix-webhook",
    "fastpix-delivery-attempt",
    "host",
];

/// Checks that `url` is an absolute http(s) URL with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must name a host, without spaces".to_owned());
    }
    Ok(())
}

/// Parses a back-off list (`1s, 5s, 30s`).
pub fn parse_backoff(items: &[String]) -> Result<Vec<Duration>, String> {
    items
        .iter()
        .map(|s| {
            humantime::parse_duration(s)
                .map_err(|e| format!("{s:?} is not a duration ({e})"))
                .and_then(|d| {
                    if d.is_zero() {
                        Err("delays must be above 0".to_owned())
                    } else {
                        Ok(d)
                    }
                })
        })
        .collect()
}

pub(super) fn resolve(
    raw: &BTreeMap<String, DestinationRaw>,
    webhooks: &[WebhookConfig],
) -> Result<Vec<Destination>, SettingsError> {
    raw.iter()
        .map(|(name, d)| resolve_one(name, d, webhooks))
        .collect()
}

fn resolve_one(
    name: &str,
    d: &DestinationRaw,
    webhooks: &[WebhookConfig],
) -> Result<Destination, SettingsError> {
    let key = |k: &str| format!("forward.{name}.{k}");
    if !is_valid_name(name) {
        return Err(invalid(
            &format!("forward.{name}"),
            format!(
                "the destination name {name:?} must be 1 to 64 lowercase letters, digits, `_` or `-`"
            ),
        ));
    }
    if d.url.is_empty() {
        return Err(invalid(&key("url"), "is required"));
    }
    check_url(&d.url).map_err(|why| invalid(&key("url"), why))?;
    let webhook = match &d.webhook {
        Some(w) => webhooks.iter().find(|c| &c.name == w).ok_or_else(|| {
            let names: Vec<&str> = webhooks.iter().map(|c| c.name.as_str()).collect();
            invalid(
                &key("webhook"),
                format!(
                    "no webhook is named {w:?} (configured: {})",
                    names.join(", ")
                ),
            )
        })?,
        None if webhooks.len() == 1 => &webhooks[0],
        None => {
            return Err(invalid(
                &key("webhook"),
                "is required when several webhooks are configured",
            ));
        }
    };
    let mut filters = Vec::new();
    for t in &d.types {
        filters.push(
            webhook
                .prefix
                .filter(t)
                .map_err(|e| invalid(&key("types"), format!("{t:?}: {e}")))?,
        );
    }
    for f in &d.families {
        let family = Family::from_name(f).ok_or_else(|| {
            let known: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
            invalid(
                &key("families"),
                format!("unknown family {f:?} (known: {})", known.join(", ")),
            )
        })?;
        filters.extend(family.filters(&webhook.prefix));
    }
    if filters.is_empty() {
        filters.push(webhook.prefix.all());
    }
    filters.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    filters.dedup();
    // JetStream refuses overlapping filters: drop those another covers,
    // refuse the rest.
    let all = filters.clone();
    filters.retain(|f| !all.iter().any(|g| g != f && g.covers(f)));
    for (i, a) in filters.iter().enumerate() {
        if let Some(b) = filters[i + 1..].iter().find(|b| a.overlaps(b)) {
            return Err(invalid(
                &key("types"),
                format!("{a} and {b} overlap: list patterns that do not"),
            ));
        }
    }
    let secrets = match (&d.signing_secret, &d.signing_secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                &key("signing_secret"),
                format!(
                    "set either it or {} ({}), not both",
                    key("signing_secret_file"),
                    super::env_name(&key("signing_secret_file"))
                ),
            ));
        }
        (None, None) => {
            return Err(invalid(
                &key("signing_secret"),
                format!(
                    "is required (or {}): destinations verify FastPix-Signature with it",
                    key("signing_secret_file")
                ),
            ));
        }
        (Some(s), None) => {
            let secret = SigningSecret::from_base64(s.expose_secret())
                .map_err(|e| invalid(&key("signing_secret"), e.to_string()))?;
            Secrets::new(Verifier::new(vec![secret]), None, false)
        }
        (None, Some(path)) => {
            let list = read_secrets_file(path)
                .map_err(|e| invalid(&key("signing_secret_file"), e.to_string()))?;
            if list.is_empty() {
                return Err(invalid(
                    &key("signing_secret_file"),
                    format!("{} holds no secret", path.display()),
                ));
            }
            Secrets::new(Verifier::new(list), Some(path.clone()), false)
        }
    };
    if d.timeout.is_zero() {
        return Err(invalid(&key("timeout"), "must be above 0"));
    }
    if d.max_attempts == 0 {
        return Err(invalid(&key("max_attempts"), "must be at least 1"));
    }
    let backoff = if d.backoff.is_empty() {
        DEFAULT_BACKOFF.to_vec()
    } else {
        parse_backoff(&d.backoff).map_err(|why| invalid(&key("backoff"), why))?
    };
    if d.concurrency == 0 || d.concurrency > 1024 {
        return Err(invalid(&key("concurrency"), "must be from 1 to 1024"));
    }
    if !d.rate_limit.is_finite() || d.rate_limit < 0.0 {
        return Err(invalid(
            &key("rate_limit"),
            "must be a number of requests per second, 0 for no limit",
        ));
    }
    if d.probe_interval.is_zero() {
        return Err(invalid(&key("probe_interval"), "must be above 0"));
    }
    if d.retry_after_cap.is_zero() {
        return Err(invalid(&key("retry_after_cap"), "must be above 0"));
    }
    let mut headers = Vec::new();
    for (raw_name, value) in &d.headers {
        // Environment variables cannot hold `-`: `X_API_KEY` is `x-api-key`.
        let header = raw_name.replace('_', "-");
        let at = key(&format!("headers.{raw_name}"));
        if !is_valid_header_name(&header) {
            return Err(invalid(&at, "is not a valid HTTP header name"));
        }
        if OWN_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            return Err(invalid(&at, "is set by the forwarder itself"));
        }
        if value
            .expose_secret()
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(invalid(&at, "the value must not hold control characters"));
        }
        headers.push((header, value.clone()));
    }
    Ok(Destination {
        name: name.to_owned(),
        consumer: consumer_name(name),
        url: d.url.clone(),
        webhook: webhook.name.clone(),
        filters,
        secrets,
        timeout: d.timeout,
        max_attempts: d.max_attempts,
        backoff,
        concurrency: d.concurrency,
        rate_limit: (d.rate_limit > 0.0).then_some(d.rate_limit),
        probe_interval: d.probe_interval,
        retry_after_cap: d.retry_after_cap,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SECRET, load, load_err};
    use super::*;

    const URL: (&str, &str) = (
        "FASTPIX_BRIDGE__FORWARD__BILLING__URL",
        "http://127.0.0.1:9/hook",
    );
    const SIGNED: (&str, &str) = ("FASTPIX_BRIDGE__FORWARD__BILLING__SIGNING_SECRET", SECRET);
    const WEBHOOK: (&str, &str) = ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET);

    #[test]
    fn a_destination_from_the_environment_with_defaults() {
        let s = load(&[WEBHOOK, URL, SIGNED]).unwrap();
        let [d] = &s.forward[..] else {
            panic!("{:?}", s.forward)
        };
        assert_eq!(d.name, "billing");
        assert_eq!(d.consumer(), "forward-billing");
        assert_eq!(d.webhook, "default");
        assert_eq!(d.filters.len(), 1);
        assert_eq!(d.filters[0].as_str(), "fastpix.>");
        assert_eq!(d.timeout, DEFAULT_TIMEOUT);
        assert_eq!(d.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(d.backoff, DEFAULT_BACKOFF.to_vec());
        assert_eq!(d.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(d.rate_limit, None);
        assert_eq!(d.probe_interval, DEFAULT_PROBE_INTERVAL);
        assert_eq!(d.retry_after_cap, DEFAULT_RETRY_AFTER_CAP);
        let signed = SigningSecret::from_base64(SECRET).unwrap().sign(b"{}");
        assert_eq!(d.secrets.current().secrets()[0].sign(b"{}"), signed);
    }

    #[test]
    fn filters_headers_and_tuning_are_read() {
        let s = load(&[
            WEBHOOK,
            URL,
            SIGNED,
            (
                "FASTPIX_BRIDGE__FORWARD__BILLING__TYPES",
                "video.media.ready, video.media.failed",
            ),
            ("FASTPIX_BRIDGE__FORWARD__BILLING__FAMILIES", "live_stream"),
            ("FASTPIX_BRIDGE__FORWARD__BILLING__BACKOFF", "100ms, 2s"),
            ("FASTPIX_BRIDGE__FORWARD__BILLING__RATE_LIMIT", "50"),
            ("FASTPIX_BRIDGE__FORWARD__BILLING__HEADERS__X_API_KEY", "k"),
        ])
        .unwrap();
        let d = &s.forward[0];
        let filters: Vec<&str> = d.filters.iter().map(|f| f.as_str()).collect();
        assert!(
            filters.contains(&"fastpix.video.media.ready"),
            "{filters:?}"
        );
        assert!(
            filters.contains(&"fastpix.video.live_stream.*"),
            "{filters:?}"
        );
        assert_eq!(
            d.backoff,
            [Duration::from_millis(100), Duration::from_secs(2)]
        );
        assert_eq!(d.rate_limit, Some(50.0));
        assert_eq!(d.headers.len(), 1);
        assert_eq!(d.headers[0].0, "x-api-key");
        assert_eq!(d.headers[0].1.expose_secret(), "k");
        // Never printed.
        assert!(!format!("{d:?}").contains(SECRET));
    }

    #[test]
    fn bad_values_name_the_key_and_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[SIGNED], "FASTPIX_BRIDGE__FORWARD__BILLING__URL"),
            (&[URL], "FASTPIX_BRIDGE__FORWARD__BILLING__SIGNING_SECRET"),
            (
                &[
                    URL,
                    (
                        "FASTPIX_BRIDGE__FORWARD__BILLING__SIGNING_SECRET",
                        "not*b64",
                    ),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__SIGNING_SECRET",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    ("FASTPIX_BRIDGE__FORWARD__BILLING__URL", "ftp://x"),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__URL",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    ("FASTPIX_BRIDGE__FORWARD__BILLING__MAX_ATTEMPTS", "0"),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__MAX_ATTEMPTS",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    ("FASTPIX_BRIDGE__FORWARD__BILLING__BACKOFF", "1s, soon"),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__BACKOFF",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    ("FASTPIX_BRIDGE__FORWARD__BILLING__CONCURRENCY", "0"),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__CONCURRENCY",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    ("FASTPIX_BRIDGE__FORWARD__BILLING__RATE_LIMIT", "-1"),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__RATE_LIMIT",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    ("FASTPIX_BRIDGE__FORWARD__BILLING__FAMILIES", "nope"),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__FAMILIES",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    ("FASTPIX_BRIDGE__FORWARD__BILLING__WEBHOOK", "other"),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__WEBHOOK",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    ("FASTPIX_BRIDGE__FORWARD__BILLING__PROBE_INTERVAL", "0s"),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__PROBE_INTERVAL",
            ),
            (
                &[
                    URL,
                    SIGNED,
                    (
                        "FASTPIX_BRIDGE__FORWARD__BILLING__HEADERS__FASTPIX_SIGNATURE",
                        "x",
                    ),
                ],
                "FASTPIX_BRIDGE__FORWARD__BILLING__HEADERS__FASTPIX_SIGNATURE",
            ),
        ];
        for (pairs, env) in cases {
            let mut all = vec![WEBHOOK];
            all.extend_from_slice(pairs);
            let err = load_err(&all);
            assert!(err.contains(env), "{pairs:?}: {err}");
            assert!(!err.contains(SECRET), "{err}");
        }
    }
}
