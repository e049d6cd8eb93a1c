//! `[jetstream]`: the stream events are stored in.

use std::time::Duration;

use serde::Deserialize;

use super::{SettingsError, invalid};

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

impl JetStreamSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.enabled {
            if !is_valid_stream_name(&self.stream) {
                return Err(invalid("jetstream.stream", STREAM_NAME_RULE));
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

/// A JetStream stream name: `jetstream.stream`, or a webhook's own `stream`.
pub(super) fn is_valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

pub(super) const STREAM_NAME_RULE: &str =
    "must be non-empty, without spaces, `.`, `*`, `>`, `/` or `\\`";
