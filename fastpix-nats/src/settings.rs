//! Settings: defaults, then an optional TOML file, then `FASTPIX_BRIDGE__…`
//! environment variables, validated once at load so a bad value stops the
//! process at startup with the key that is wrong, never on the first request.

mod secrets;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::fastpix::signature::{SigningSecret, Verifier};
use crate::fastpix::subject::SubjectPrefix;
pub use secrets::{Secrets, SecretsFileError, read_secrets_file};

/// Prefix of every environment variable the bridge reads.
pub const ENV_PREFIX: &str = "FASTPIX_BRIDGE";
/// Variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "FASTPIX_BRIDGE_CONFIG";
/// Room kept for NATS headers inside the server's `max_payload`.
pub const HEADER_RESERVE_BYTES: usize = 4096;
/// Variable naming the webhook (by name or subject prefix) a consumer reads,
/// and the default of `--webhook` on `subscribe` and `send`.
pub const WEBHOOK_ENV: &str = "FASTPIX_BRIDGE_WEBHOOK";
/// The name the single `[webhook]` section goes by (in `FastPix-Webhook`,
/// the metrics' `webhook` label and `--webhook`).
pub const DEFAULT_WEBHOOK_NAME: &str = "default";

/// Why settings were refused. Every message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot load settings: {0}")]
    Load(String),
    /// The file or the environment could not be read into settings; the
    /// message adds the variable of the key concerned, when config names one.
    #[error("cannot load settings: {source}{}", env_hint(.source))]
    Config {
        #[source]
        source: config::ConfigError,
    },
    #[error("invalid setting `{key}` ({env}): {reason}")]
    Invalid {
        key: String,
        env: String,
        reason: String,
    },
    #[error("{0}")]
    UnknownWebhook(String),
}

fn invalid(key: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key: key.to_owned(),
        env: env_name(key),
        reason: reason.into(),
    }
}

/// `http.max_body_bytes` → `FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES`.
pub fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}__{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// Everything the bridge needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub nats: NatsSettings,
    /// Every webhook served, never empty: the single `[webhook]` section
    /// (named [`DEFAULT_WEBHOOK_NAME`]), or the named `[webhooks.<name>]`
    /// sorted by name.
    pub webhooks: Vec<WebhookConfig>,
    pub jetstream: JetStreamSettings,
    pub log: LogSettings,
    pub inspect: InspectSettings,
    pub secrets: SecretsSettings,
}

/// One FastPix webhook (one workspace): where it is received, how it is
/// verified, where its events go and how they are marked.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `default` for the single section, else the key of `[webhooks.<name>]`.
    pub name: String,
    /// HTTP path FastPix posts to.
    pub path: String,
    /// Every signing secret accepted (a rotation in progress), reloadable.
    pub secrets: Secrets,
    /// Accept requests with no `FastPix-Signature` at all (development only).
    pub allow_unsigned: bool,
    /// Root of every subject this webhook's events are published on.
    pub prefix: SubjectPrefix,
    /// The JetStream stream holding its events: its own, or `jetstream.stream`.
    pub stream: String,
    /// CloudEvents binary-mode headers, when enabled for this webhook.
    pub cloudevents: Option<CloudEvents>,
}

/// How a webhook's events are described as CloudEvents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvents {
    /// `ce-source` for an event without a workspace id.
    pub source: String,
    /// Put before the FastPix type in `ce-type` (`io.fastpix.`).
    pub type_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// How often every `signing_secrets_file` is checked for a change
    /// (SIGHUP reloads at once).
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for SecretsSettings {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address of the public webhook listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Address of the admin listener: `/metrics`, `/healthz`, `/readyz`.
    /// Separate so the port exposed to FastPix need not expose metrics.
    pub admin_listen: SocketAddr,
    /// Largest body accepted; also kept under the NATS server's `max_payload`.
    pub max_body_bytes: usize,
    /// Requests handled at once. Bodies are buffered only for these, so at
    /// most `max_in_flight × max_body_bytes` of body is held.
    pub max_in_flight: usize,
    /// How long a delivery that finds every slot taken waits for one (first
    /// come, first served) before it is refused with 503: absorbs bursts.
    /// A waiting request has not read its body. `0s`: refuse at once.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Deliveries that may wait for a slot at once; beyond it, 503 at once.
    pub max_queued: usize,
    /// A client must deliver its whole body within this, or gets 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// A client must deliver a request's headers within this (and an idle
    /// keep-alive connection must start its next request within it), or the
    /// connection is closed: slow or silent clients cannot hold sockets.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            max_body_bytes: 1024 * 1024,
            max_in_flight: 256,
            queue_timeout: Duration::from_secs(1),
            max_queued: 1024,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URLs; a comma-separated string or a list.
    #[serde(deserialize_with = "string_list")]
    pub url: Vec<String>,
    pub creds_file: Option<PathBuf>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
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

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsSettings")
            .field("url", &self.url)
            .field("creds_file", &self.creds_file)
            .field("token", &redact(&self.token))
            .field("user", &self.user)
            .field("password", &redact(&self.password))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("publish_timeout", &self.publish_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    File,
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JetStreamSettings {
    /// Off: core NATS publish + flush, at-most-once.
    pub enabled: bool,
    pub stream: String,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is stored once.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    pub replicas: usize,
    pub storage: Storage,
}

impl Default for JetStreamSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            stream: "FASTPIX".to_owned(),
            max_age: Duration::from_secs(30 * 24 * 3600),
            duplicate_window: Duration::from_secs(3600),
            replicas: 1,
            storage: Storage::File,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// The inspector (`fastpix-nats-bridge inspect`): its page and API, and its
/// admin port. Read only by that command.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectSettings {
    /// Address of the page and the JSON API.
    pub listen: SocketAddr,
    /// Address of `/metrics`, `/healthz`, `/readyz` (no token needed).
    pub admin_listen: SocketAddr,
    /// Bearer token of the API and the page. Required when `listen` is not
    /// loopback; on loopback without one, a random token is made at start
    /// and logged, so no route is ever open.
    pub token: Option<String>,
    /// Webhook URL of the bridge the "send a test event" action posts to
    /// [default: the local bridge, from `http.listen` and `webhook.path`].
    pub bridge_url: Option<String>,
}

impl Default for InspectSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            token: None,
            bridge_url: None,
        }
    }
}

impl std::fmt::Debug for InspectSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectSettings")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("bridge_url", &self.bridge_url)
            .finish()
    }
}

/// Shortest `inspect.token` accepted: it guards replay and test sends.
pub const INSPECT_TOKEN_MIN_LEN: usize = 16;

impl InspectSettings {
    /// The rules only the inspector needs: a token whenever the page can be
    /// reached from another host, and a usable bridge URL.
    pub fn check(&self) -> Result<(), SettingsError> {
        match &self.token {
            None if !self.listen.ip().is_loopback() => {
                return Err(invalid(
                    "inspect.token",
                    format!(
                        "required because inspect.listen ({}) is not a loopback address: anyone who reaches it would read every event",
                        self.listen
                    ),
                ));
            }
            Some(t) if t.trim().len() < INSPECT_TOKEN_MIN_LEN => {
                return Err(invalid(
                    "inspect.token",
                    format!("must be at least {INSPECT_TOKEN_MIN_LEN} characters"),
                ));
            }
            _ => {}
        }
        if let Some(url) = &self.bridge_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return Err(invalid(
                "inspect.bridge_url",
                "must be an http:// or https:// URL",
            ));
        }
        let (page, admin) = (self.listen, self.admin_listen);
        if admin.port() != 0 && admin == page {
            return Err(invalid(
                "inspect.admin_listen",
                format!("{admin} clashes with inspect.listen; give it its own port"),
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WebhookRaw {
    path: String,
    #[serde(deserialize_with = "string_list")]
    signing_secrets: Vec<String>,
    signing_secrets_file: Option<PathBuf>,
    allow_unsigned: bool,
}

impl Default for WebhookRaw {
    fn default() -> Self {
        Self {
            path: "/webhooks/fastpix".to_owned(),
            signing_secrets: Vec::new(),
            signing_secrets_file: None,
            allow_unsigned: false,
        }
    }
}

/// `[webhooks.<name>]`: the single section's keys, plus its own subject
/// prefix, stream and CloudEvents overrides.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct NamedWebhookRaw {
    path: Option<String>,
    #[serde(deserialize_with = "string_list")]
    signing_secrets: Vec<String>,
    signing_secrets_file: Option<PathBuf>,
    allow_unsigned: bool,
    prefix: Option<String>,
    stream: Option<String>,
    cloudevents: CloudEventsOverride,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct CloudEventsRaw {
    enabled: bool,
    source: Option<String>,
    type_prefix: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct CloudEventsOverride {
    enabled: Option<bool>,
    source: Option<String>,
    type_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SubjectRaw {
    prefix: String,
}

impl Default for SubjectRaw {
    fn default() -> Self {
        Self {
            prefix: "fastpix".to_owned(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    http: HttpSettings,
    nats: NatsSettings,
    /// `None` when the section is absent, to tell it apart from `webhooks`.
    webhook: Option<WebhookRaw>,
    webhooks: BTreeMap<String, NamedWebhookRaw>,
    subject: SubjectRaw,
    jetstream: JetStreamSettings,
    log: LogSettings,
    inspect: InspectSettings,
    cloudevents: CloudEventsRaw,
    secrets: SecretsSettings,
}

/// Accepts `"a, b"` or `["a", "b"]`; empty entries are dropped.
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Who the settings are for: the bridge must be able to verify what it
/// receives; a client (`subscribe`, `send`, a worker) shares the NATS,
/// subject and stream settings but may have no webhook secret at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Bridge,
    Client,
}

impl Settings {
    /// Loads from an optional file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, None)
    }

    /// As [`Settings::load`], with the environment given as a map (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, SettingsError> {
        Self::load_for(Purpose::Bridge, file, env)
    }

    /// Loads the settings a client command or a consumer needs, from the same
    /// file and variables as the bridge. Every rule is checked except that a
    /// signing secret must be set; secrets that are set must still be valid.
    pub fn load_client(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_for(Purpose::Client, file, None)
    }

    /// Loads for `purpose` from an optional file and an environment map
    /// (`None`: the process environment).
    pub fn load_for(
        purpose: Purpose,
        file: Option<&Path>,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(SettingsError::Load(format!(
                    "config file {} does not exist (from --config or {CONFIG_FILE_ENV})",
                    path.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(env),
        );
        let raw: Raw = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|source| SettingsError::Config { source })?;
        raw.validate(purpose)
    }
}

/// The key a config error is about (`http.listen`), read from the error's
/// structure: the outermost one given.
fn config_key(e: &config::ConfigError) -> Option<&str> {
    match e {
        config::ConfigError::At { key: Some(key), .. }
        | config::ConfigError::Type { key: Some(key), .. } => Some(key),
        config::ConfigError::At { error, .. } => config_key(error),
        _ => None,
    }
}

/// config's messages name the key as `http.listen`; add the variable too.
fn env_hint(e: &config::ConfigError) -> String {
    config_key(e).map_or_else(String::new, |key| {
        format!(" (environment variable {})", env_name(key))
    })
}

/// One webhook's settings before checking, with the keys they came from.
struct WebhookDraft<'a> {
    name: String,
    /// `webhook` or `webhooks.<name>`: what every key of it starts with.
    keys: String,
    path: String,
    inline: &'a [String],
    file: Option<&'a Path>,
    allow_unsigned: bool,
    prefix: String,
    prefix_key: String,
    stream: Option<&'a str>,
    cloudevents: Option<&'a CloudEventsOverride>,
}

/// A webhook name is a subject token, a path segment and a header value;
/// lowercase because environment variable names reach the bridge lowercased.
fn is_valid_webhook_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

const STREAM_NAME_RULE: &str = "must be non-empty, without spaces, `.`, `*`, `>`, `/` or `\\`";

/// True when one prefix's subjects can fall under the other's (`a` and
/// `a.b`, or equal ones): their `<prefix>.>` filters overlap.
fn prefixes_overlap(a: &SubjectPrefix, b: &SubjectPrefix) -> bool {
    let (a, b) = (a.as_str(), b.as_str());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long == short || long.starts_with(&format!("{short}."))
}

impl Raw {
    fn drafts(&self) -> Result<Vec<WebhookDraft<'_>>, SettingsError> {
        if self.webhook.is_some() && !self.webhooks.is_empty() {
            let names: Vec<&str> = self.webhooks.keys().map(String::as_str).collect();
            return Err(invalid(
                "webhooks",
                format!(
                    "both the single [webhook] section and named webhooks ({}) are set; a bridge uses one or the other: move the [webhook] settings into a [webhooks.<name>] section, or remove the named ones",
                    names.join(", ")
                ),
            ));
        }
        if self.webhooks.is_empty() {
            static DEFAULT: std::sync::OnceLock<WebhookRaw> = std::sync::OnceLock::new();
            let w = self
                .webhook
                .as_ref()
                .unwrap_or_else(|| DEFAULT.get_or_init(WebhookRaw::default));
            return Ok(vec![WebhookDraft {
                name: DEFAULT_WEBHOOK_NAME.to_owned(),
                keys: "webhook".to_owned(),
                path: w.path.clone(),
                inline: &w.signing_secrets,
                file: w.signing_secrets_file.as_deref(),
                allow_unsigned: w.allow_unsigned,
                prefix: self.subject.prefix.clone(),
                prefix_key: "subject.prefix".to_owned(),
                stream: None,
                cloudevents: None,
            }]);
        }
        let mut drafts = Vec::new();
        for (name, w) in &self.webhooks {
            let keys = format!("webhooks.{name}");
            if !is_valid_webhook_name(name) {
                return Err(invalid(
                    &keys,
                    format!(
                        "the webhook name {name:?} must be 1 to 64 lowercase letters, digits, `_` or `-`"
                    ),
                ));
            }
            drafts.push(WebhookDraft {
                name: name.clone(),
                path: w
                    .path
                    .clone()
                    .unwrap_or_else(|| format!("/webhooks/{name}")),
                inline: &w.signing_secrets,
                file: w.signing_secrets_file.as_deref(),
                allow_unsigned: w.allow_unsigned,
                prefix: w
                    .prefix
                    .clone()
                    .unwrap_or_else(|| format!("{}.{name}", self.subject.prefix)),
                prefix_key: format!("{keys}.prefix"),
                stream: w.stream.as_deref(),
                cloudevents: Some(&w.cloudevents),
                keys,
            });
        }
        Ok(drafts)
    }

    fn webhooks(&self, purpose: Purpose) -> Result<Vec<WebhookConfig>, SettingsError> {
        let mut done: Vec<(WebhookConfig, String)> = Vec::new();
        for d in self.drafts()? {
            let keys = &d.keys;
            let secrets_key = format!("{keys}.signing_secrets");
            let file_key = format!("{keys}.signing_secrets_file");
            if !d.inline.is_empty() && d.file.is_some() {
                return Err(invalid(
                    &file_key,
                    format!("set either {secrets_key} or {file_key}, not both"),
                ));
            }
            let mut secrets = d
                .inline
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    SigningSecret::from_base64(s)
                        .map_err(|e| invalid(&secrets_key, format!("secret #{} {e}", i + 1)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(file) = d.file {
                match read_secrets_file(file) {
                    Ok(s) => secrets = s,
                    // A client (`subscribe`, a worker) may run where the file is not mounted.
                    Err(_) if purpose == Purpose::Client => {}
                    Err(e) => return Err(invalid(&file_key, e.to_string())),
                }
            }
            if secrets.is_empty() && !d.allow_unsigned && purpose == Purpose::Bridge {
                return Err(invalid(
                    &secrets_key,
                    format!(
                        "no signing secret is set for webhook `{}`: copy it from the FastPix dashboard into {secrets_key} or a file named by {file_key}, or set {}=true for development only",
                        d.name,
                        env_name(&format!("{keys}.allow_unsigned"))
                    ),
                ));
            }
            let path_key = format!("{keys}.path");
            if !d.path.starts_with('/') {
                return Err(invalid(&path_key, "must start with `/`"));
            }
            // The router reads `{…}` and `*` as captures, and serves the probes itself.
            if d.path.contains(['{', '}', '*']) || matches!(d.path.as_str(), "/healthz" | "/readyz")
            {
                return Err(invalid(
                    &path_key,
                    "must not contain `{`, `}` or `*`, nor be /healthz or /readyz",
                ));
            }
            let prefix =
                SubjectPrefix::new(&d.prefix).map_err(|e| invalid(&d.prefix_key, e.to_string()))?;
            let stream = match d.stream {
                Some(s) if !is_valid_stream_name(s) => {
                    return Err(invalid(&format!("{keys}.stream"), STREAM_NAME_RULE));
                }
                Some(s) => s.to_owned(),
                None => self.jetstream.stream.clone(),
            };
            for (other, other_keys) in &done {
                if other.path == d.path {
                    return Err(invalid(
                        &path_key,
                        format!(
                            "{} is also the path of webhook `{}`; every webhook needs its own",
                            d.path, other.name
                        ),
                    ));
                }
                if prefixes_overlap(&other.prefix, &prefix) {
                    return Err(invalid(
                        &d.prefix_key,
                        format!(
                            "{prefix} overlaps {other_keys}.prefix ({}) of webhook `{}`: one webhook's events would land under the other's prefix (and JetStream refuses overlapping streams); give each a prefix the other does not start with",
                            other.prefix, other.name
                        ),
                    ));
                }
            }
            let cloudevents = self.cloudevents_for(&d)?;
            done.push((
                WebhookConfig {
                    name: d.name,
                    path: d.path,
                    secrets: Secrets::new(
                        Verifier::new(secrets),
                        d.file.map(Path::to_owned),
                        d.allow_unsigned,
                    ),
                    allow_unsigned: d.allow_unsigned,
                    prefix,
                    stream,
                    cloudevents,
                },
                d.keys,
            ));
        }
        Ok(done.into_iter().map(|(w, _)| w).collect())
    }

    fn cloudevents_for(&self, d: &WebhookDraft<'_>) -> Result<Option<CloudEvents>, SettingsError> {
        let global = &self.cloudevents;
        let over = d.cloudevents;
        let enabled = over.and_then(|o| o.enabled).unwrap_or(global.enabled);
        if !enabled {
            return Ok(None);
        }
        let (source_key, source) = match over.and_then(|o| o.source.clone()) {
            Some(s) => (format!("{}.cloudevents.source", d.keys), s),
            None => (
                "cloudevents.source".to_owned(),
                global
                    .source
                    .clone()
                    .unwrap_or_else(|| format!("/fastpix/webhooks/{}", d.name)),
            ),
        };
        if source.is_empty() || source.chars().any(char::is_control) {
            return Err(invalid(
                &source_key,
                "must be a non-empty URI reference without control characters",
            ));
        }
        let (prefix_key, type_prefix) = match over.and_then(|o| o.type_prefix.clone()) {
            Some(p) => (format!("{}.cloudevents.type_prefix", d.keys), p),
            None => (
                "cloudevents.type_prefix".to_owned(),
                global.type_prefix.clone(),
            ),
        };
        if type_prefix.chars().any(char::is_control) {
            return Err(invalid(&prefix_key, "must not hold control characters"));
        }
        Ok(Some(CloudEvents {
            source,
            type_prefix,
        }))
    }

    fn validate(self, purpose: Purpose) -> Result<Settings, SettingsError> {
        let webhooks = self.webhooks(purpose)?;
        if self.secrets.check_interval.is_zero() {
            return Err(invalid("secrets.check_interval", "must be above 0"));
        }

        self.http.validate()?;
        self.nats.validate()?;
        self.jetstream.validate()?;
        Ok(Settings {
            http: self.http,
            nats: self.nats,
            webhooks,
            jetstream: self.jetstream,
            log: self.log,
            secrets: self.secrets,
            inspect: self.inspect,
        })
    }
}

impl HttpSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.max_body_bytes == 0 {
            return Err(invalid("http.max_body_bytes", "must be above 0"));
        }
        // NATS refuses any max_payload above 64 MiB, so no server can take more.
        if self.max_body_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "http.max_body_bytes",
                "must be at most 67108864 (the largest max_payload a NATS server allows)",
            ));
        }
        let (public, admin) = (self.listen, self.admin_listen);
        let overlapping_ips = public.ip() == admin.ip()
            || public.ip().is_unspecified()
            || admin.ip().is_unspecified();
        if admin.port() != 0 && admin.port() == public.port() && overlapping_ips {
            return Err(invalid(
                "http.admin_listen",
                format!(
                    "{admin} clashes with http.listen ({public}); give the admin listener its own port"
                ),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(invalid("http.max_in_flight", "must be above 0"));
        }
        if self.body_timeout.is_zero() {
            return Err(invalid("http.body_timeout", "must be above 0"));
        }
        if self.header_timeout.is_zero() {
            return Err(invalid("http.header_timeout", "must be above 0"));
        }
        Ok(())
    }
}

impl NatsSettings {
    fn validate(&self) -> Result<(), SettingsError> {
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

impl JetStreamSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.enabled {
            let bad_name = self.stream.is_empty()
                || self
                    .stream
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'));
            if bad_name {
                return Err(invalid(
                    "jetstream.stream",
                    "must be non-empty, without spaces, `.`, `*`, `>`, `/` or `\\`",
                ));
            }
            if self.replicas == 0 || self.replicas > 5 {
                return Err(invalid("jetstream.replicas", "must be from 1 to 5"));
            }
            if self.duplicate_window.is_zero() {
                return Err(invalid(
                    "jetstream.duplicate_window",
                    "must be above 0, or retried deliveries would be stored twice",
                ));
            }
            if !self.max_age.is_zero() && self.duplicate_window > self.max_age {
                return Err(invalid(
                    "jetstream.duplicate_window",
                    "must not be longer than jetstream.max_age",
                ));
            }
        }
        Ok(())
    }
}

impl Settings {
    /// The webhook a client command or consumer works with: the one named
    /// `selector`, or whose subject prefix it is; with no selector, the only
    /// webhook there is.
    pub fn webhook(&self, selector: Option<&str>) -> Result<&WebhookConfig, SettingsError> {
        let names = || {
            self.webhooks
                .iter()
                .map(|w| format!("{} ({})", w.name, w.prefix))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match selector {
            None => match self.webhooks.as_slice() {
                [only] => Ok(only),
                _ => Err(SettingsError::UnknownWebhook(format!(
                    "several webhooks are configured: pick one with --webhook NAME or PREFIX, one of {}",
                    names()
                ))),
            },
            Some(s) => self
                .webhooks
                .iter()
                .find(|w| w.name == s)
                .or_else(|| self.webhooks.iter().find(|w| w.prefix.as_str() == s))
                .ok_or_else(|| {
                    SettingsError::UnknownWebhook(format!(
                        "no webhook is named {s:?} or has that subject prefix; configured: {}",
                        names()
                    ))
                }),
        }
    }
}

impl Settings {
    /// The webhook [`WEBHOOK_ENV`] names; when it is unset, the only one
    /// configured (an error lists them when there are several).
    pub fn webhook_from_env(&self) -> Result<&WebhookConfig, SettingsError> {
        let selector = std::env::var(WEBHOOK_ENV).ok().filter(|s| !s.is_empty());
        self.webhook(selector.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

    fn env(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load_from(None, env(pairs))
    }

    fn load_err(pairs: &[(&str, &str)]) -> String {
        load(pairs).unwrap_err().to_string()
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = load(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)]).unwrap();
        assert_eq!(s.http.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(s.http.admin_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(s.http.max_body_bytes, 1_048_576);
        assert_eq!(s.http.max_in_flight, 256);
        assert_eq!(s.http.queue_timeout, Duration::from_secs(1));
        assert_eq!(s.http.max_queued, 1024);
        assert_eq!(s.http.body_timeout, Duration::from_secs(10));
        assert_eq!(s.http.header_timeout, Duration::from_secs(10));
        assert_eq!(s.nats.url, vec!["nats://127.0.0.1:4222"]);
        assert_eq!(s.nats.publish_timeout, Duration::from_secs(5));
        assert_eq!(s.webhooks[0].path, "/webhooks/fastpix");
        assert!(!s.webhooks[0].allow_unsigned);
        assert_eq!(s.webhooks[0].prefix.as_str(), "fastpix");
        assert!(s.jetstream.enabled);
        assert_eq!(s.jetstream.stream, "FASTPIX");
        assert_eq!(s.jetstream.max_age, Duration::from_secs(30 * 86400));
        assert_eq!(s.jetstream.duplicate_window, Duration::from_secs(3600));
        assert_eq!(s.jetstream.replicas, 1);
        assert_eq!(s.jetstream.storage, Storage::File);
        assert_eq!(s.log.format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_every_section() {
        let s = load(&[
            (
                "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS",
                &format!("{SECRET}, AAECAwQFBgcICQoLDA0ODw=="),
            ),
            ("FASTPIX_BRIDGE__HTTP__LISTEN", "127.0.0.1:0"),
            ("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "2048"),
            ("FASTPIX_BRIDGE__NATS__URL", "nats://a:4222,nats://b:4222"),
            ("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "750ms"),
            ("FASTPIX_BRIDGE__SUBJECT__PREFIX", "acme.fastpix"),
            ("FASTPIX_BRIDGE__JETSTREAM__ENABLED", "false"),
            ("FASTPIX_BRIDGE__JETSTREAM__MAX_AGE", "7d"),
            ("FASTPIX_BRIDGE__JETSTREAM__STORAGE", "memory"),
            ("FASTPIX_BRIDGE__LOG__FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(s.http.max_body_bytes, 2048);
        assert_eq!(s.nats.url, vec!["nats://a:4222", "nats://b:4222"]);
        assert_eq!(s.nats.publish_timeout, Duration::from_millis(750));
        assert_eq!(s.webhooks[0].prefix.as_str(), "acme.fastpix");
        assert!(!s.jetstream.enabled);
        assert_eq!(s.jetstream.max_age, Duration::from_secs(7 * 86400));
        assert_eq!(s.jetstream.storage, Storage::Memory);
        assert_eq!(s.log.format, LogFormat::Json);
        assert!(!s.webhooks[0].secrets.current().is_empty());
    }

    #[test]
    fn a_file_is_read_and_the_environment_wins_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.toml");
        std::fs::write(
            &path,
            format!("[webhook]\nsigning_secrets = [\"{SECRET}\"]\n[http]\nmax_body_bytes = 4096\n[nats]\nurl = [\"nats://x:1\"]\n"),
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&path),
            env(&[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "8192")]),
        )
        .unwrap();
        assert_eq!(s.http.max_body_bytes, 8192);
        assert_eq!(s.nats.url, vec!["nats://x:1"]);

        std::fs::write(&path, "[http]\nlisen = \"0.0.0.0:1\"\n").unwrap();
        let err = Settings::load_from(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let missing =
            Settings::load_from(Some(&dir.path().join("nope.toml")), env(&[])).unwrap_err();
        assert!(missing.to_string().contains("nope.toml"), "{missing}");
    }

    #[test]
    fn startup_refuses_without_a_secret_unless_unsigned_is_allowed() {
        let err = load_err(&[]);
        assert!(
            err.contains("webhook.signing_secrets")
                && err.contains("FASTPIX_BRIDGE__WEBHOOK__ALLOW_UNSIGNED"),
            "{err}"
        );
        let s = load(&[("FASTPIX_BRIDGE__WEBHOOK__ALLOW_UNSIGNED", "true")]).unwrap();
        assert!(s.webhooks[0].allow_unsigned && s.webhooks[0].secrets.current().is_empty());
    }

    #[test]
    fn clients_load_without_a_secret_but_keep_every_other_rule() {
        let client = |pairs: &[(&str, &str)]| Settings::load_for(Purpose::Client, None, env(pairs));
        let s = client(&[("FASTPIX_BRIDGE__NATS__URL", "nats://n:4222")]).unwrap();
        assert!(s.webhooks[0].secrets.current().is_empty());
        assert_eq!(s.nats.url, vec!["nats://n:4222"]);
        let s = client(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)]).unwrap();
        assert_eq!(s.webhooks[0].secrets.current().secrets().len(), 1);
        for (pairs, key) in [
            (
                &[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", "not*base64")][..],
                "webhook.signing_secrets",
            ),
            (&[("FASTPIX_BRIDGE__NATS__URL", " , ")][..], "nats.url"),
            (
                &[("FASTPIX_BRIDGE__SUBJECT__PREFIX", "a..b")][..],
                "subject.prefix",
            ),
            (
                &[("FASTPIX_BRIDGE__JETSTREAM__STREAM", "a.b")][..],
                "jetstream.stream",
            ),
            (&[("FASTPIX_BRIDGE__NATS__LISEN", "x")][..], "lisen"),
        ] {
            let err = client(pairs).unwrap_err().to_string();
            assert!(err.contains(key), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn refusals_name_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", "not*base64")],
                "webhook.signing_secrets",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "lots")],
                "http.max_body_bytes",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "0")],
                "http.max_body_bytes",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "100000000")],
                "http.max_body_bytes",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__LISTEN", "nowhere")],
                "http.listen",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", "0")],
                "http.max_in_flight",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__QUEUE_TIMEOUT", "briefly")],
                "http.queue_timeout",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__MAX_QUEUED", "-1")],
                "http.max_queued",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "0s")],
                "http.body_timeout",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__HEADER_TIMEOUT", "0s")],
                "http.header_timeout",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__HEADER_TIMEOUT", "slowly")],
                "http.header_timeout",
            ),
            (
                &[("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "soon")],
                "nats.publish_timeout",
            ),
            (&[("FASTPIX_BRIDGE__NATS__URL", " , ")], "nats.url"),
            (
                &[("FASTPIX_BRIDGE__SUBJECT__PREFIX", "fastpix.>")],
                "subject.prefix",
            ),
            (
                &[("FASTPIX_BRIDGE__JETSTREAM__ENABLED", "maybe")],
                "jetstream.enabled",
            ),
            (
                &[("FASTPIX_BRIDGE__JETSTREAM__STREAM", "a.b")],
                "jetstream.stream",
            ),
            (
                &[("FASTPIX_BRIDGE__JETSTREAM__REPLICAS", "0")],
                "jetstream.replicas",
            ),
            (
                &[("FASTPIX_BRIDGE__JETSTREAM__STORAGE", "tape")],
                "jetstream.storage",
            ),
            (
                &[("FASTPIX_BRIDGE__JETSTREAM__DUPLICATE_WINDOW", "60d")],
                "jetstream.duplicate_window",
            ),
            (&[("FASTPIX_BRIDGE__LOG__FORMAT", "xml")], "log.format"),
            (
                &[("FASTPIX_BRIDGE__WEBHOOK__PATH", "hooks")],
                "webhook.path",
            ),
            (&[("FASTPIX_BRIDGE__NATS__PASSWORD", "pw")], "nats.user"),
            (
                &[("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:8080")],
                "http.admin_listen",
            ),
            (
                &[("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "9090")],
                "http.admin_listen",
            ),
        ];
        for (pairs, key) in cases {
            let mut pairs = pairs.to_vec();
            if !pairs.iter().any(|(k, _)| k.contains("SIGNING_SECRETS")) {
                pairs.push(("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET));
            }
            let err = load_err(&pairs);
            assert!(err.contains(key), "{pairs:?}: {err}");
        }
        // A value config itself cannot read names its variable too.
        for (pairs, var) in [
            (
                [("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "lots")],
                "FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES",
            ),
            (
                [("FASTPIX_BRIDGE__JETSTREAM__ENABLED", "maybe")],
                "FASTPIX_BRIDGE__JETSTREAM__ENABLED",
            ),
        ] {
            let mut pairs = pairs.to_vec();
            pairs.push(("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET));
            let err = load_err(&pairs);
            assert!(err.contains(var), "{pairs:?}: {err}");
        }
    }

    const SECRET_B: &str = "AAECAwQFBgcICQoLDA0ODw==";

    #[test]
    fn named_webhooks_take_their_defaults_from_the_name() {
        let s = load(&[
            ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
            (
                "FASTPIX_BRIDGE__WEBHOOKS__STAGING__SIGNING_SECRETS",
                SECRET_B,
            ),
            (
                "FASTPIX_BRIDGE__WEBHOOKS__STAGING__STREAM",
                "FASTPIX_STAGING",
            ),
            (
                "FASTPIX_BRIDGE__WEBHOOKS__STAGING__CLOUDEVENTS__ENABLED",
                "true",
            ),
        ])
        .unwrap();
        let names: Vec<_> = s.webhooks.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["prod", "staging"]);
        let (prod, staging) = (&s.webhooks[0], &s.webhooks[1]);
        assert_eq!(prod.path, "/webhooks/prod");
        assert_eq!(prod.prefix.as_str(), "fastpix.prod");
        assert_eq!(prod.stream, "FASTPIX");
        assert!(prod.cloudevents.is_none());
        assert_eq!(staging.path, "/webhooks/staging");
        assert_eq!(staging.prefix.as_str(), "fastpix.staging");
        assert_eq!(staging.stream, "FASTPIX_STAGING");
        assert_eq!(
            staging.cloudevents.as_ref().map(|c| c.source.as_str()),
            Some("/fastpix/webhooks/staging")
        );
        let sig = |secret: &str| SigningSecret::from_base64(secret).unwrap().sign(b"body");
        assert!(
            prod.secrets
                .current()
                .verify(sig(SECRET).as_bytes(), b"body")
        );
        assert!(
            !prod
                .secrets
                .current()
                .verify(sig(SECRET_B).as_bytes(), b"body")
        );

        assert_eq!(s.webhook(Some("staging")).unwrap().name, "staging");
        assert_eq!(s.webhook(Some("fastpix.prod")).unwrap().name, "prod");
        let err = s.webhook(None).unwrap_err().to_string();
        assert!(
            err.contains("--webhook") && err.contains("prod") && err.contains("staging"),
            "{err}"
        );
        assert!(s.webhook(Some("dev")).is_err());
        let single = load(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)]).unwrap();
        assert_eq!(single.webhook(None).unwrap().name, "default");
    }

    #[test]
    fn named_webhooks_read_from_a_file_with_cloudevents_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("prod-secrets");
        std::fs::write(&secrets, format!("{SECRET}\n{SECRET_B}\n")).unwrap();
        let path = dir.path().join("bridge.toml");
        std::fs::write(
            &path,
            format!(
                "[cloudevents]\nenabled = true\ntype_prefix = \"io.fastpix.\"\nsource = \"/acme\"\n\
                 [webhooks.prod]\nsigning_secrets_file = \"{}\"\npath = \"/hooks/p\"\nprefix = \"acme.prod\"\n\
                 [webhooks.staging]\nallow_unsigned = true\n[webhooks.staging.cloudevents]\nenabled = false\n",
                secrets.display()
            ),
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[])).unwrap();
        let prod = s.webhook(Some("prod")).unwrap();
        assert_eq!(prod.path, "/hooks/p");
        assert_eq!(prod.prefix.as_str(), "acme.prod");
        assert_eq!(prod.secrets.current().secrets().len(), 2);
        assert_eq!(prod.secrets.file(), Some(secrets.as_path()));
        assert_eq!(
            prod.cloudevents,
            Some(CloudEvents {
                source: "/acme".to_owned(),
                type_prefix: "io.fastpix.".to_owned()
            })
        );
        assert!(s.webhook(Some("staging")).unwrap().cloudevents.is_none());
    }

    /// Variables set, and the texts the refusal must hold.
    type RefusalCase<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

    #[test]
    fn webhook_refusals_name_the_webhook_and_the_key() {
        let both = load_err(&[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
        ]);
        assert!(
            both.contains("[webhook]") && both.contains("prod"),
            "{both}"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let missing = missing.to_str().unwrap();
        let cases: &[RefusalCase] = &[
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOKS__B__SIGNING_SECRETS", SECRET_B),
                    ("FASTPIX_BRIDGE__WEBHOOKS__B__PATH", "/webhooks/a"),
                ],
                &["webhooks.b.path", "`a`"],
            ),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__PREFIX", "fastpix"),
                    ("FASTPIX_BRIDGE__WEBHOOKS__B__SIGNING_SECRETS", SECRET_B),
                ],
                &["webhooks.b.prefix", "webhooks.a.prefix", "overlaps"],
            ),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOKS__B__PREFIX", "fastpix.a"),
                    ("FASTPIX_BRIDGE__WEBHOOKS__B__ALLOW_UNSIGNED", "true"),
                ],
                &["webhooks.b.prefix", "overlaps"],
            ),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOKS__B__PATH", "/b"),
                ],
                &[
                    "webhooks.b.signing_secrets",
                    "`b`",
                    "FASTPIX_BRIDGE__WEBHOOKS__B__ALLOW_UNSIGNED",
                ],
            ),
            (
                &[("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", "not*b64")],
                &["webhooks.a.signing_secrets"],
            ),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS_FILE", missing),
                ],
                &["webhooks.a.signing_secrets_file", "not both"],
            ),
            (
                &[("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS_FILE", missing)],
                &["webhooks.a.signing_secrets_file", missing],
            ),
            (
                &[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS_FILE", missing)],
                &["webhook.signing_secrets_file", missing],
            ),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__STREAM", "a.b"),
                ],
                &["webhooks.a.stream"],
            ),
            (&[("FASTPIX_BRIDGE__WEBHOOKS__A__PATHS", "/x")], &["paths"]),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__PATH", "/hooks/{id}"),
                ],
                &["webhooks.a.path", "`{`"],
            ),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOK__PATH", "/readyz"),
                ],
                &["webhook.path", "/readyz"],
            ),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__SECRETS__CHECK_INTERVAL", "0s"),
                ],
                &["secrets.check_interval"],
            ),
            (
                &[
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__SIGNING_SECRETS", SECRET),
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__CLOUDEVENTS__ENABLED", "true"),
                    ("FASTPIX_BRIDGE__WEBHOOKS__A__CLOUDEVENTS__SOURCE", ""),
                ],
                &["webhooks.a.cloudevents.source"],
            ),
        ];
        for (pairs, wanted) in cases {
            let err = load_err(pairs);
            for w in *wanted {
                assert!(err.contains(w), "{pairs:?}: {w} not in {err}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.toml");
        std::fs::write(&path, "[webhooks.\"Prod X\"]\nallow_unsigned = true\n").unwrap();
        let err = Settings::load_from(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("webhook name"), "{err}");
    }

    #[test]
    fn the_inspector_needs_a_token_off_loopback() {
        let s = load(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)]).unwrap();
        assert_eq!(s.inspect.listen.to_string(), "127.0.0.1:8090");
        assert_eq!(s.inspect.admin_listen.to_string(), "127.0.0.1:9091");
        assert!(s.inspect.check().is_ok());
        let s = load(&[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__INSPECT__LISTEN", "0.0.0.0:8090"),
        ])
        .unwrap();
        let err = s.inspect.check().unwrap_err().to_string();
        assert!(
            err.contains("inspect.token") && err.contains("FASTPIX_BRIDGE__INSPECT__TOKEN"),
            "{err}"
        );
        let s = load(&[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__INSPECT__LISTEN", "0.0.0.0:8090"),
            ("FASTPIX_BRIDGE__INSPECT__TOKEN", "short"),
        ])
        .unwrap();
        assert!(s.inspect.check().is_err());
        let s = load(&[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__INSPECT__LISTEN", "0.0.0.0:8090"),
            ("FASTPIX_BRIDGE__INSPECT__TOKEN", "a-long-enough-token-0123"),
        ])
        .unwrap();
        assert!(s.inspect.check().is_ok());
        assert!(!format!("{s:?}").contains("a-long-enough-token"));
    }

    #[test]
    fn secrets_never_reach_debug_output_or_errors() {
        let s = load(&[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__NATS__TOKEN", "tok-s3cr3t"),
            ("FASTPIX_BRIDGE__NATS__USER", "u"),
            ("FASTPIX_BRIDGE__NATS__PASSWORD", "pw-s3cr3t"),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        for secret in [SECRET, "tok-s3cr3t", "pw-s3cr3t"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        let err = load_err(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", "zz-not*b64")]);
        assert!(!err.contains("zz-not*b64"), "{err}");
        for url in [
            "nats://u:pw-s3cr3t@h:4222",
            "nats://pw-s3cr3t@h:4222",
            "pw-s3cr3t://::",
        ] {
            let err = load_err(&[
                ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
                ("FASTPIX_BRIDGE__NATS__URL", url),
            ]);
            assert!(err.contains("nats.url") && !err.contains("s3cr3t"), "{err}");
        }
    }
}
