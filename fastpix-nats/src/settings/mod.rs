//! Settings: defaults, then an optional TOML file, then `FASTPIX_BRIDGE__…`
//! environment variables, validated once at load so a bad value stops the
//! process at startup with the key that is wrong, never on the first request.
//!
//! One file per section, each with its shape, defaults and validation:
//! [`http`], [`nats`], [`jetstream`], [`log`], [`inspect`], [`secrets`]
//! (`[secrets]`, and the signing secrets held for reloading), and
//! [`webhooks`] (`[webhook]`, `[webhooks.<name>]`, `[subject]`,
//! `[cloudevents]`, resolved into one [`WebhookConfig`] each, and the choice
//! of one by name). [`raw`] is the file's shape as a whole and calls each
//! section's validation; [`refusals`] names a rule derived from the others.
//!
//! [`forward`] holds the `[forward.<name>]` HTTP destinations, checked
//! against the webhooks they read.

pub mod forward;
pub mod http;
pub mod inspect;
pub mod jetstream;
pub mod log;
pub mod nats;
mod raw;
pub mod refusals;
pub mod secrets;
pub mod webhooks;

use std::path::Path;

pub use forward::Destination;
pub use http::HttpSettings;
pub use inspect::{INSPECT_TOKEN_MIN_LEN, InspectSettings};
pub use jetstream::{JetStreamSettings, Storage};
pub use log::{LogFormat, LogSettings};
pub use nats::NatsSettings;
pub use refusals::RefusalsSettings;
pub use secrecy::{ExposeSecret, SecretString};
pub use secrets::{Secrets, SecretsFileError, SecretsSettings, read_secrets_file};
pub use webhooks::{CloudEvents, DEFAULT_WEBHOOK_NAME, WEBHOOK_ENV, WebhookConfig};

/// Prefix of every environment variable the bridge reads.
pub const ENV_PREFIX: &str = "FASTPIX_BRIDGE";
/// Variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "FASTPIX_BRIDGE_CONFIG";

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

pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> SettingsError {
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

/// Everything the bridge needs, validated. Each component is handed its own
/// section, not the whole.
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
    /// `[forward.<name>]` destinations, sorted by name.
    pub forward: Vec<Destination>,
}

/// Who the settings are for: the bridge must be able to verify what it
/// receives; a client (`subscribe`, `send`, a worker) shares the NATS,
/// subject and stream settings but may have no webhook secret at all; the
/// inspector is a client that also serves a page, so its own rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Bridge,
    Client,
    Inspector,
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

    /// Loads for `purpose` from these variables alone (`("FASTPIX_BRIDGE__NATS__URL",
    /// "nats://n:4222")`), not the process environment: settings made in a test.
    pub fn from_pairs(purpose: Purpose, pairs: &[(&str, &str)]) -> Result<Self, SettingsError> {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::load_for(purpose, None, Some(env))
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
        let raw: raw::Raw = builder
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
#[cfg(test)]
mod tests;
