//! The settings file's shape as a whole (every section, before checking),
//! and the one place that checks each section and builds [`Settings`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::webhooks::{CloudEventsRaw, NamedWebhookRaw, SubjectRaw, WebhookRaw};
use super::{
    HttpSettings, InspectSettings, JetStreamSettings, LogSettings, NatsSettings, Purpose,
    SecretsSettings, Settings, SettingsError,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Raw {
    pub(super) http: HttpSettings,
    pub(super) nats: NatsSettings,
    /// `None` when the section is absent, to tell it apart from `webhooks`.
    pub(super) webhook: Option<WebhookRaw>,
    pub(super) webhooks: BTreeMap<String, NamedWebhookRaw>,
    pub(super) subject: SubjectRaw,
    pub(super) jetstream: JetStreamSettings,
    pub(super) log: LogSettings,
    pub(super) inspect: InspectSettings,
    pub(super) cloudevents: CloudEventsRaw,
    pub(super) secrets: SecretsSettings,
}

impl Raw {
    pub(super) fn validate(self, purpose: Purpose) -> Result<Settings, SettingsError> {
        let webhooks = self.webhooks(purpose)?;
        self.secrets.validate()?;
        self.http.validate()?;
        self.nats.validate()?;
        self.jetstream.validate(self.http.max_body_bytes)?;
        if purpose == Purpose::Inspector {
            self.inspect.validate()?;
        }
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

/// Accepts `"a, b"` or `["a", "b"]`; empty entries are dropped. Each entry
/// becomes a `T`: a `String`, or a secret that cannot print.
pub(super) fn string_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
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
        .map(T::from)
        .collect())
}
