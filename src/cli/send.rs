//! `send`: posts realistic, signed FastPix events to a bridge, the way
//! FastPix would, and reports what the bridge answered.

use std::process::ExitCode;
use std::time::Duration;

use time::OffsetDateTime;

use crate::cli::templates::{self, Objects};
use crate::fastpix::catalog::seed_types;
use crate::fastpix::signature::{SIGNATURE_HEADER, SigningSecret};
use crate::fastpix::subject::EventType;
use crate::settings::{DEFAULT_WEBHOOK_NAME, Settings, WebhookConfig, env_name};

/// Variable naming the bridge URL when `--url` is not given.
pub const URL_ENV: &str = "FASTPIX_BRIDGE_URL";
/// The type sent when none is named.
pub const DEFAULT_TYPE: &str = "video.media.ready";

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Event types to send, e.g. video.live_stream.active (default: video.media.ready).
    #[arg(value_name = "TYPE", conflicts_with = "all")]
    pub types: Vec<String>,
    /// Send one event of every type FastPix's webhook page lists.
    #[arg(long)]
    pub all: bool,
    /// Webhook URL of the bridge [default: http://127.0.0.1:<http.listen port><webhook.path>].
    #[arg(long, env = URL_ENV)]
    pub url: Option<String>,
    /// Signing secret, base64 as the FastPix dashboard shows it [default: the first of
    /// webhook.signing_secrets, as the bridge is configured].
    #[arg(long, value_name = "BASE64", hide_env_values = true)]
    pub secret: Option<String>,
    /// Send every event this many times, each with a fresh id unless --id is given.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Use this event id for every event (the bridge stores an id once: test deduplication).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// With several webhooks configured: the one to post to, by name or
    /// subject prefix (its path and first secret). Needless with a single webhook.
    #[arg(long, value_name = "NAME|PREFIX", env = crate::settings::WEBHOOK_ENV)]
    pub webhook: Option<String>,
}

/// A problem with the command line or settings: nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum SendSetupError {
    #[error("--secret {0}")]
    BadSecret(crate::fastpix::signature::InvalidSecret),
    #[error(
        "no signing secret: pass --secret BASE64, or set {0} (the bridge's own setting) to the webhook's signing secret"
    )]
    NoSecret(String),
    #[error("event type {0:?} cannot be sent: {1}")]
    BadType(String, crate::fastpix::subject::InvalidEventType),
    #[error("{0}")]
    Webhook(String),
    #[error(
        "--url {0:?} is not an http:// URL (send talks to the bridge's own port; for a bridge behind TLS, port-forward to it)"
    )]
    BadUrl(String),
}

/// The URL of `webhook` on a bridge running here with `settings`.
pub fn default_url(settings: &Settings, webhook: &WebhookConfig) -> String {
    let listen = settings.http.listen;
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!("http://{host}:{}{}", listen.port(), webhook.path)
}

/// What `send` will do, resolved from the arguments and settings.
pub struct Plan {
    pub url: String,
    /// `None`: post unsigned (only when the bridge allows unsigned events).
    pub secret: Option<SigningSecret>,
    pub types: Vec<String>,
    pub repeat: u32,
    pub id: Option<String>,
}

impl Plan {
    pub fn new(args: SendArgs, settings: &Settings) -> Result<Self, SendSetupError> {
        let webhook = settings
            .webhook(args.webhook.as_deref())
            .map_err(|e| SendSetupError::Webhook(e.to_string()))?;
        let url = args.url.unwrap_or_else(|| default_url(settings, webhook));
        if !url.starts_with("http://") {
            return Err(SendSetupError::BadUrl(url));
        }
        let secret = match &args.secret {
            Some(b64) => Some(SigningSecret::from_base64(b64).map_err(SendSetupError::BadSecret)?),
            None => match webhook.secrets.current().secrets().first() {
                Some(s) => Some(s.clone()),
                None if webhook.allow_unsigned => None,
                None => {
                    let key =
                        if settings.webhooks.len() == 1 && webhook.name == DEFAULT_WEBHOOK_NAME {
                            "webhook.signing_secrets".to_owned()
                        } else {
                            format!("webhooks.{}.signing_secrets", webhook.name)
                        };
                    return Err(SendSetupError::NoSecret(env_name(&key)));
                }
            },
        };
        let types: Vec<String> = if args.all {
            seed_types().map(str::to_owned).collect()
        } else if args.types.is_empty() {
            vec![DEFAULT_TYPE.to_owned()]
        } else {
            args.types
        };
        for t in &types {
            EventType::parse(t).map_err(|e| SendSetupError::BadType(t.clone(), e))?;
        }
        Ok(Plan {
            url,
            secret,
            types,
            repeat: args.repeat,
            id: args.id,
        })
    }
}

/// Runs `send`: exit 0 when every post got a 2xx, 1 otherwise, 2 when
/// nothing could be sent because of the arguments or settings.
pub async fn run(args: SendArgs, settings: &Settings) -> ExitCode {
    let plan = match Plan::new(args, settings) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if plan.secret.is_none() {
        eprintln!(
            "note: no signing secret is set and webhook.allow_unsigned=true: posting unsigned"
        );
    }
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!(
            "fastpix-nats-bridge-send/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot set up the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let objects = Objects::fresh();
    let mut refused: Vec<u16> = Vec::new();
    for _ in 0..plan.repeat {
        for event_type in &plan.types {
            let id = plan
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let (status, answer) = match post_one(
                &http,
                &plan.url,
                plan.secret.as_ref(),
                event_type,
                &id,
                &objects,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!(
                        "error: cannot reach the bridge at {}: {}. Is it running? (set --url or {URL_ENV})",
                        plan.url,
                        error_chain(&e)
                    );
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "{status}  {event_type}  id={id}  {}",
                answer.trim().replace(['\r', '\n'], " ")
            );
            if !status.is_success() {
                refused.push(status.as_u16());
            }
        }
    }
    if refused.is_empty() {
        return ExitCode::SUCCESS;
    }
    refused.sort_unstable();
    refused.dedup();
    for status in refused {
        eprintln!("error: {}", explain(status));
    }
    ExitCode::FAILURE
}

/// Posts one event of `event_type` with `id`, signed with `secret` when
/// given, and returns the bridge's status and answer.
pub async fn post_one(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&SigningSecret>,
    event_type: &str,
    id: &str,
    objects: &Objects,
) -> Result<(reqwest::StatusCode, String), reqwest::Error> {
    let event = templates::event(event_type, id, objects, OffsetDateTime::now_utc());
    let body = event.to_string().into_bytes();
    let mut request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(secret) = secret {
        request = request.header(SIGNATURE_HEADER, secret.sign(&body));
    }
    let response = request.body(body).send().await?;
    let status = response.status();
    let answer = response
        .text()
        .await
        .unwrap_or_else(|e| format!("(answer unreadable: {e})"));
    Ok((status, answer))
}

/// What a refusal most likely means, for the person at the terminal.
fn explain(status: u16) -> String {
    match status {
        401 => format!(
            "the bridge answered 401: it does not accept the signature. `send` signs with --secret, or else the first of {}; that secret must be one of the bridge's signing secrets",
            env_name("webhook.signing_secrets")
        ),
        400 => "the bridge answered 400: it could not route the event (see its answer above)".to_owned(),
        404 | 405 => "the bridge answered that nothing receives webhooks at this URL: check --url and webhook.path".to_owned(),
        413 => "the bridge answered 413: the event is larger than http.max_body_bytes".to_owned(),
        503 => "the bridge answered 503: it could not store the event (is NATS up? see /readyz)".to_owned(),
        other => format!("the bridge answered {other}"),
    }
}

/// reqwest's error with its causes (the top one alone says little).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Purpose;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(Purpose::Client, pairs).unwrap()
    }

    fn args(extra: &[&str]) -> SendArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: SendArgs,
        }
        let mut argv = vec!["send"];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).unwrap().args
    }

    const SECRET: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

    #[test]
    fn the_default_url_follows_the_bridge_settings() {
        let s = settings(&[]);
        assert_eq!(
            default_url(&s, &s.webhooks[0]),
            "http://127.0.0.1:8080/webhooks/fastpix"
        );
        let s = settings(&[
            ("FASTPIX_BRIDGE__HTTP__LISTEN", "127.0.0.2:9000"),
            ("FASTPIX_BRIDGE__WEBHOOK__PATH", "/hooks"),
        ]);
        assert_eq!(
            default_url(&s, &s.webhooks[0]),
            "http://127.0.0.2:9000/hooks"
        );
    }

    #[test]
    fn the_plan_takes_the_first_configured_secret_and_the_seed_types() {
        let s = settings(&[(
            "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS",
            &format!("{SECRET},AAECAwQFBgcICQoLDA0ODw=="),
        )]);
        let plan = Plan::new(args(&["--all"]), &s).unwrap();
        assert_eq!(plan.types.len(), 23);
        let first = SigningSecret::from_base64(SECRET).unwrap();
        assert_eq!(plan.secret.unwrap().sign(b"x"), first.sign(b"x"));
        let plan = Plan::new(args(&[]), &s).unwrap();
        assert_eq!(plan.types, [DEFAULT_TYPE]);
    }

    #[test]
    fn with_several_webhooks_the_plan_takes_the_chosen_ones_path_and_secret() {
        let staging = "AAECAwQFBgcICQoLDA0ODw==";
        let s = settings(&[
            ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
            (
                "FASTPIX_BRIDGE__WEBHOOKS__STAGING__SIGNING_SECRETS",
                staging,
            ),
            ("FASTPIX_BRIDGE__WEBHOOKS__QA__ALLOW_UNSIGNED", "false"),
        ]);
        let err = Plan::new(args(&[]), &s).err().unwrap().to_string();
        assert!(
            err.contains("--webhook") && err.contains("staging"),
            "{err}"
        );
        let plan = Plan::new(args(&["--webhook", "staging"]), &s).unwrap();
        assert_eq!(plan.url, "http://127.0.0.1:8080/webhooks/staging");
        let want = SigningSecret::from_base64(staging).unwrap();
        assert_eq!(plan.secret.unwrap().sign(b"x"), want.sign(b"x"));
        let plan = Plan::new(args(&["--webhook", "fastpix.prod"]), &s).unwrap();
        assert_eq!(plan.url, "http://127.0.0.1:8080/webhooks/prod");
        let err = Plan::new(args(&["--webhook", "qa"]), &s)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("FASTPIX_BRIDGE__WEBHOOKS__QA__SIGNING_SECRETS"),
            "{err}"
        );
    }

    #[test]
    fn the_plan_refuses_what_cannot_work() {
        let none = settings(&[]);
        let err = Plan::new(args(&[]), &none).err().unwrap().to_string();
        assert!(
            err.contains("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS"),
            "{err}"
        );
        let err = Plan::new(args(&["--secret", "not*b64"]), &none)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--secret") && !err.contains("not*b64"),
            "{err}"
        );
        let err = Plan::new(
            args(&["--secret", SECRET, "--url", "https://bridge.example.com/x"]),
            &none,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("http://"), "{err}");
        let err = Plan::new(args(&["--secret", SECRET, ""]), &none)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("empty"), "{err}");
        let unsigned = settings(&[("FASTPIX_BRIDGE__WEBHOOK__ALLOW_UNSIGNED", "true")]);
        assert!(Plan::new(args(&[]), &unsigned).unwrap().secret.is_none());
    }
}
