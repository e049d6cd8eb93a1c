//! `[webhook]`, `[webhooks.<name>]`, `[subject]` and `[cloudevents]`:
//! resolved into one [`WebhookConfig`] per webhook (defaults taken from the
//! name, secrets read, paths and prefixes checked against each other), and
//! the choice of one by name or prefix ([`Settings::webhook`]), or by
//! [`WEBHOOK_ENV`] ([`Settings::webhook_from_env`]).

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::jetstream::{STREAM_NAME_RULE, is_valid_stream_name};
use super::raw::Raw;
use super::secrets::{Secrets, read_secrets_file};
use super::{Purpose, Settings, SettingsError, env_name, invalid};
use crate::fastpix::signature::{SigningSecret, Verifier};
use crate::fastpix::subject::SubjectPrefix;

/// Variable naming the webhook (by name or subject prefix) a consumer reads,
/// and the default of `--webhook` on `subscribe` and `send`.
pub const WEBHOOK_ENV: &str = "FASTPIX_BRIDGE_WEBHOOK";
/// The name the single `[webhook]` section goes by (in `FastPix-Webhook`,
/// the metrics' `webhook` label and `--webhook`).
pub const DEFAULT_WEBHOOK_NAME: &str = "default";

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct WebhookRaw {
    path: String,
    #[serde(deserialize_with = "super::raw::string_list")]
    signing_secrets: Vec<SecretString>,
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
pub(super) struct NamedWebhookRaw {
    path: Option<String>,
    #[serde(deserialize_with = "super::raw::string_list")]
    signing_secrets: Vec<SecretString>,
    signing_secrets_file: Option<PathBuf>,
    allow_unsigned: bool,
    prefix: Option<String>,
    stream: Option<String>,
    cloudevents: CloudEventsOverride,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct CloudEventsRaw {
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
pub(super) struct SubjectRaw {
    prefix: String,
}

impl Default for SubjectRaw {
    fn default() -> Self {
        Self {
            prefix: "fastpix".to_owned(),
        }
    }
}

/// One webhook's settings before checking, with the keys they came from.
struct WebhookDraft<'a> {
    name: String,
    /// `webhook` or `webhooks.<name>`: what every key of it starts with.
    keys: String,
    path: String,
    inline: &'a [SecretString],
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

    pub(super) fn webhooks(&self, purpose: Purpose) -> Result<Vec<WebhookConfig>, SettingsError> {
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
                    SigningSecret::from_base64(s.expose_secret())
                        .map_err(|e| invalid(&secrets_key, format!("secret #{} {e}", i + 1)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(file) = d.file {
                match read_secrets_file(file) {
                    Ok(s) => secrets = s,
                    // A client (`subscribe`, a worker) may run where the file is not mounted.
                    Err(_) if purpose != Purpose::Bridge => {}
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
    use super::super::tests::{SECRET, SECRET_B, env, load, load_err};
    use super::*;

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
}
