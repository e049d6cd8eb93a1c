//! `inspect`: runs the inspector ([`crate::inspect`]), with `send`'s
//! event templates behind its "send a test event" action.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::send;
use crate::cli::templates::Objects;
use crate::inspect::{Inspector, SendAnswer, TestSender};
use crate::ops::shutdown::shutdown_signal;
use crate::ops::telemetry;
use crate::settings::{ExposeSecret, Settings};

/// Exit 1 when the inspector cannot start or fails (settings that cannot
/// work, such as no token off loopback, are refused at load: exit 2).
pub async fn run(settings: Settings) -> ExitCode {
    telemetry::init(settings.log.format);
    let token = match &settings.inspect.token {
        Some(t) => t.expose_secret().trim().to_owned(),
        None => {
            let t = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            tracing::warn!(
                token = %t,
                "inspect.token is not set: this run's token is above (set FASTPIX_BRIDGE__INSPECT__TOKEN to choose one)"
            );
            t
        }
    };
    let inspector = match Inspector::build(&settings, token, Some(test_sender(&settings))).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match inspector.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "inspector failed");
            ExitCode::FAILURE
        }
    }
}

/// Posts signed test events to `inspect.bridge_url` (default: the local
/// bridge), with the first of the bridge's signing secrets.
pub fn test_sender(settings: &Settings) -> TestSender {
    // The webhook the inspector shows.
    let webhook = settings.webhook_from_env().ok();
    let url = settings
        .inspect
        .bridge_url
        .clone()
        .or_else(|| webhook.map(|w| send::default_url(settings, w)))
        .unwrap_or_default();
    let secret = webhook.and_then(|w| w.secrets.current().secrets().first().cloned());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!(
            "fastpix-nats-bridge-inspect/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .unwrap_or_default();
    Arc::new(move |event_type: String| {
        let (url, secret, http) = (url.clone(), secret.clone(), http.clone());
        Box::pin(async move {
            let Some(secret) = secret else {
                return Err(
                    "no signing secret: set webhook.signing_secrets for the inspector too"
                        .to_owned(),
                );
            };
            let id = uuid::Uuid::new_v4().to_string();
            let (status, answer) = send::post_one(
                &http,
                &url,
                Some(&secret),
                &event_type,
                &id,
                &Objects::fresh(),
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot reach the bridge at {url}: {}",
                    send::error_chain(&e)
                )
            })?;
            Ok(SendAnswer {
                url,
                event_type,
                id,
                status: status.as_u16(),
                answer: answer.trim().to_owned(),
            })
        })
    })
}
