//! Settings: defaults, then an optional TOML file, then `FASTPIX_BRIDGE__…`
//! environment variables, validated once at load so a bad value stops the
//! process at startup with the key that is wrong, never on the first request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::fastpix::signature::{SigningSecret, Verifier};
use crate::fastpix::subject::SubjectPrefix;

/// Prefix of every environment variable the bridge reads.
pub const ENV_PREFIX: &str = "FASTPIX_BRIDGE";
/// Variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "FASTPIX_BRIDGE_CONFIG";
/// Room kept for NATS headers inside the server's `max_payload`.
pub const HEADER_RESERVE_BYTES: usize = 4096;

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
        key: &'static str,
        env: String,
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key,
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
    pub webhook: WebhookConfig,
    pub jetstream: JetStreamSettings,
    pub log: LogSettings,
}

/// One FastPix webhook: where it is received, how it is verified, where its
/// events go. Kept together so that a bridge can later serve several.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// HTTP path FastPix posts to.
    pub path: String,
    /// Every signing secret accepted (several webhooks, or a rotation).
    pub verifier: Verifier,
    /// Accept requests with no `FastPix-Signature` at all (development only).
    pub allow_unsigned: bool,
    /// Root of every subject this webhook's events are published on.
    pub prefix: SubjectPrefix,
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
    /// Requests handled at once; beyond it the bridge answers 503 at once
    /// instead of queueing without bound. Bodies are buffered only for
    /// these, so at most `max_in_flight × max_body_bytes` of body is held.
    pub max_in_flight: usize,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WebhookRaw {
    path: String,
    #[serde(deserialize_with = "string_list")]
    signing_secrets: Vec<String>,
    allow_unsigned: bool,
}

impl Default for WebhookRaw {
    fn default() -> Self {
        Self {
            path: "/webhooks/fastpix".to_owned(),
            signing_secrets: Vec::new(),
            allow_unsigned: false,
        }
    }
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
    webhook: WebhookRaw,
    subject: SubjectRaw,
    jetstream: JetStreamSettings,
    log: LogSettings,
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

impl Raw {
    fn validate(self, purpose: Purpose) -> Result<Settings, SettingsError> {
        let secrets = self
            .webhook
            .signing_secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                SigningSecret::from_base64(s).map_err(|e| {
                    invalid("webhook.signing_secrets", format!("secret #{} {e}", i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() && !self.webhook.allow_unsigned && purpose == Purpose::Bridge {
            return Err(invalid(
                "webhook.signing_secrets",
                format!(
                    "no signing secret is set: copy it from the FastPix dashboard, or set {}=true for development only",
                    env_name("webhook.allow_unsigned")
                ),
            ));
        }
        if !self.webhook.path.starts_with('/') {
            return Err(invalid("webhook.path", "must start with `/`"));
        }
        let prefix = SubjectPrefix::new(&self.subject.prefix)
            .map_err(|e| invalid("subject.prefix", e.to_string()))?;

        if self.http.max_body_bytes == 0 {
            return Err(invalid("http.max_body_bytes", "must be above 0"));
        }
        // NATS refuses any max_payload above 64 MiB, so no server can take more.
        if self.http.max_body_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "http.max_body_bytes",
                "must be at most 67108864 (the largest max_payload a NATS server allows)",
            ));
        }
        let (public, admin) = (self.http.listen, self.http.admin_listen);
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
        if self.http.max_in_flight == 0 {
            return Err(invalid("http.max_in_flight", "must be above 0"));
        }
        if self.http.body_timeout.is_zero() {
            return Err(invalid("http.body_timeout", "must be above 0"));
        }
        if self.http.header_timeout.is_zero() {
            return Err(invalid("http.header_timeout", "must be above 0"));
        }
        if self.nats.url.is_empty() {
            return Err(invalid("nats.url", "must name at least one server"));
        }
        // Neither message echoes the URL: it may hold a password.
        for (i, url) in self.nats.url.iter().enumerate() {
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
        if self.nats.publish_timeout.is_zero() {
            return Err(invalid("nats.publish_timeout", "must be above 0"));
        }
        if self.nats.tls_cert_file.is_some() != self.nats.tls_key_file.is_some() {
            return Err(invalid(
                "nats.tls_cert_file",
                "nats.tls_cert_file and nats.tls_key_file go together",
            ));
        }
        if self.nats.password.is_some() && self.nats.user.is_none() {
            return Err(invalid(
                "nats.user",
                "nats.password is set without nats.user",
            ));
        }
        let js = &self.jetstream;
        if js.enabled {
            let bad_name = js.stream.is_empty()
                || js
                    .stream
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'));
            if bad_name {
                return Err(invalid(
                    "jetstream.stream",
                    "must be non-empty, without spaces, `.`, `*`, `>`, `/` or `\\`",
                ));
            }
            if js.replicas == 0 || js.replicas > 5 {
                return Err(invalid("jetstream.replicas", "must be from 1 to 5"));
            }
            if js.duplicate_window.is_zero() {
                return Err(invalid(
                    "jetstream.duplicate_window",
                    "must be above 0, or retried deliveries would be stored twice",
                ));
            }
            if !js.max_age.is_zero() && js.duplicate_window > js.max_age {
                return Err(invalid(
                    "jetstream.duplicate_window",
                    "must not be longer than jetstream.max_age",
                ));
            }
        }
        Ok(Settings {
            http: self.http,
            nats: self.nats,
            webhook: WebhookConfig {
                path: self.webhook.path,
                verifier: Verifier::new(secrets),
                allow_unsigned: self.webhook.allow_unsigned,
                prefix,
            },
            jetstream: self.jetstream,
            log: self.log,
        })
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
        assert_eq!(s.http.body_timeout, Duration::from_secs(10));
        assert_eq!(s.http.header_timeout, Duration::from_secs(10));
        assert_eq!(s.nats.url, vec!["nats://127.0.0.1:4222"]);
        assert_eq!(s.nats.publish_timeout, Duration::from_secs(5));
        assert_eq!(s.webhook.path, "/webhooks/fastpix");
        assert!(!s.webhook.allow_unsigned);
        assert_eq!(s.webhook.prefix.as_str(), "fastpix");
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
        assert_eq!(s.webhook.prefix.as_str(), "acme.fastpix");
        assert!(!s.jetstream.enabled);
        assert_eq!(s.jetstream.max_age, Duration::from_secs(7 * 86400));
        assert_eq!(s.jetstream.storage, Storage::Memory);
        assert_eq!(s.log.format, LogFormat::Json);
        assert!(!s.webhook.verifier.is_empty());
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
        assert!(s.webhook.allow_unsigned && s.webhook.verifier.is_empty());
    }

    #[test]
    fn clients_load_without_a_secret_but_keep_every_other_rule() {
        let client = |pairs: &[(&str, &str)]| Settings::load_for(Purpose::Client, None, env(pairs));
        let s = client(&[("FASTPIX_BRIDGE__NATS__URL", "nats://n:4222")]).unwrap();
        assert!(s.webhook.verifier.is_empty());
        assert_eq!(s.nats.url, vec!["nats://n:4222"]);
        let s = client(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)]).unwrap();
        assert_eq!(s.webhook.verifier.secrets().len(), 1);
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
