//! What a Rust service needs to consume the bridge's events.
//!
//! - [`Event`]: the lenient envelope (only `type` is required).
//! - [`subject_for_type`] and [`SubjectPrefix::filter`]: the very mapping the
//!   bridge publishes with, so a consumer's filters cannot drift from it.
//! - [`Family`]: named filters for the families of event types FastPix lists.
//! - [`connect`], [`durable`], [`replay`]: a connection with the bridge's
//!   settings, a durable consumer that resumes where it left off, and an
//!   ordered replay from a point in time.
//! - [`webhook`]: with several webhooks configured, the one to read (its
//!   subject prefix, stream and secrets), named by [`WEBHOOK_ENV`]; or pick
//!   one with [`Settings::webhook`].
//! - [`Worker`] (in `worker`): a service built on a durable consumer, with
//!   an async handler, retries on a back-off schedule, per-object order and
//!   dead letters; [`dead_letters`] lists and redrives them; [`Dedup`] (in
//!   `dedup`) skips events handled before; [`Puller`] (in `pull`) reads a
//!   durable consumer one event at a time, for a reader that acknowledges
//!   each one itself.
//! - [`list_consumers`]: every durable consumer on the stream, with its counts.
//! - [`shutdown_signal`]: what a worker stops on (Ctrl-C or SIGTERM).

pub mod dead_letters;
pub mod dedup;
pub mod pull;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use consumer::FromConsumer as _;
use time::OffsetDateTime;

pub use crate::fastpix::catalog::{Family, seed_types};
pub use crate::fastpix::envelope::{Event, ObjectRef};
pub use crate::fastpix::subject::{
    EventType, InvalidFilter, Subject, SubjectFilter, SubjectPrefix, subject_for_type,
};
pub use crate::nats::connection::{ConnectError, Patience, connect};
pub use crate::nats::headers;
pub use crate::ops::shutdown_signal;
pub use crate::settings::{Settings, SettingsError, WEBHOOK_ENV, WebhookConfig};

pub use dedup::{Dedup, DedupError};
pub use pull::{PullError, Puller};
pub use worker::{Delivery, Outcome, Worker, WorkerError};

/// The webhook [`WEBHOOK_ENV`] names; when it is unset, the only one
/// configured (an error lists them when there are several). See
/// [`Settings::webhook_from_env`].
pub fn webhook(settings: &Settings) -> Result<&WebhookConfig, SettingsError> {
    settings.webhook_from_env()
}

/// Where a new consumer starts reading the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only events stored from now on.
    New,
    /// Everything the stream still holds.
    All,
    /// Events stored at or after this instant.
    Since(OffsetDateTime),
}

impl Start {
    fn policy(self) -> consumer::DeliverPolicy {
        match self {
            Start::New => consumer::DeliverPolicy::New,
            Start::All => consumer::DeliverPolicy::All,
            Start::Since(start_time) => consumer::DeliverPolicy::ByStartTime { start_time },
        }
    }
}

/// Why a consumer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "stream `{0}` does not exist: start the bridge once (it creates the stream), or set `jetstream.stream` (FASTPIX_BRIDGE__JETSTREAM__STREAM) to the bridge's stream"
    )]
    StreamNotFound(String),
    #[error("JetStream is not enabled on this NATS server (start nats-server with -js)")]
    NoJetStream,
    #[error(
        "consumer name {0:?} is not valid: use letters, digits, `_` or `-` (no spaces, `.`, `*`, `>`, `/` or `\\`)"
    )]
    InvalidName(String),
    #[error("{doing}: {source}")]
    Nats {
        /// What was being done (`cannot look up stream `FASTPIX``).
        doing: String,
        #[source]
        source: async_nats::Error,
    },
}

impl BindError {
    /// A NATS failure while `doing` something, its cause kept.
    pub fn nats(doing: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        BindError::Nats {
            doing: doing.into(),
            source: source.into(),
        }
    }
}

impl BindError {
    /// True when waiting may fix it (NATS or the bridge not up yet).
    pub fn is_transient(&self) -> bool {
        !matches!(self, BindError::InvalidName(_))
    }
}

fn is_valid_consumer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn get_stream(
    js: &jetstream::Context,
    stream: &str,
) -> Result<jetstream::stream::Stream, BindError> {
    use jetstream::context::GetStreamErrorKind;
    js.get_stream(stream).await.map_err(|e| match e.kind() {
        GetStreamErrorKind::JetStream(err)
            if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            BindError::StreamNotFound(stream.to_owned())
        }
        GetStreamErrorKind::JetStream(err) if err.code() == 503 => BindError::NoJetStream,
        // Nothing answers the JetStream API: the server runs without it.
        GetStreamErrorKind::Request if no_responders(&e) => BindError::NoJetStream,
        _ => BindError::nats(format!("cannot look up stream `{stream}`"), e),
    })
}

/// True when a JetStream request failed because nothing answers its subject.
fn no_responders(e: &(dyn std::error::Error + 'static)) -> bool {
    use jetstream::context::{RequestError, RequestErrorKind};
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<RequestError>()
            .is_some_and(|r| r.kind() == RequestErrorKind::NoResponders)
            || e.downcast_ref::<async_nats::RequestError>()
                .is_some_and(|r| r.kind() == async_nats::RequestErrorKind::NoResponders)
    })
}

/// The durable consumer `name` on `stream`, if it exists: looks, never
/// creates (what a consumer's container healthcheck asks).
pub async fn durable_info(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
) -> Result<Option<consumer::Info>, BindError> {
    if !is_valid_consumer_name(name) {
        return Err(BindError::InvalidName(name.to_owned()));
    }
    let stream_handle = get_stream(js, stream).await?;
    match stream_handle.consumer_info(name).await {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(BindError::nats(
            format!("cannot look up consumer `{name}`"),
            e,
        )),
    }
}

/// Puts a filter list where JetStream wants it: one filter in
/// `filter_subject` (any server), several in `filter_subjects`.
fn split_filters(filters: &[SubjectFilter]) -> (String, Vec<String>) {
    match filters {
        [one] => (one.to_string(), Vec::new()),
        many => (String::new(), many.iter().map(|f| f.to_string()).collect()),
    }
}

fn same_filters(config: &consumer::pull::Config, filters: &[SubjectFilter]) -> bool {
    let mut have: Vec<&str> = config.filter_subjects.iter().map(String::as_str).collect();
    if !config.filter_subject.is_empty() {
        have.push(&config.filter_subject);
    }
    let mut want: Vec<&str> = filters.iter().map(SubjectFilter::as_str).collect();
    have.sort_unstable();
    want.sort_unstable();
    have == want
}

/// What [`bind_durable`] found on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The consumer did not exist; it starts where `start` says.
    Created,
    /// It existed with these filters; it resumes after its last acknowledged event.
    Resumed,
    /// It existed with other filters (given here); they were replaced, its position kept.
    FiltersChanged(Vec<String>),
}

/// Binds the durable pull consumer `name` on `stream`, creating it (reading
/// from `start`) when it does not exist. An existing consumer keeps its
/// position: only its filters are updated when they changed. Every copy of a
/// service that binds the same name shares the work, each event going to one
/// of them; each acknowledged event is never delivered again.
pub async fn durable(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    filters: &[SubjectFilter],
    start: Start,
) -> Result<consumer::PullConsumer, BindError> {
    bind_durable(js, stream, name, filters, start)
        .await
        .map(|(c, _)| c)
}

/// As [`durable`], also telling whether the consumer was created, resumed or
/// had its filters changed.
pub async fn bind_durable(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    filters: &[SubjectFilter],
    start: Start,
) -> Result<(consumer::PullConsumer, Bound), BindError> {
    bind_with(js, stream, name, filters, start, None).await
}

/// As [`bind_durable`], also setting the consumer's `ack_wait` (a worker's
/// settings win over what an earlier run left).
pub(crate) async fn bind_tuned(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    filters: &[SubjectFilter],
    start: Start,
    ack_wait: Duration,
) -> Result<(consumer::PullConsumer, Bound), BindError> {
    bind_with(js, stream, name, filters, start, Some(ack_wait)).await
}

async fn bind_with(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    filters: &[SubjectFilter],
    start: Start,
    ack_wait: Option<Duration>,
) -> Result<(consumer::PullConsumer, Bound), BindError> {
    if !is_valid_consumer_name(name) {
        return Err(BindError::InvalidName(name.to_owned()));
    }
    let stream_handle = get_stream(js, stream).await?;
    let (filter_subject, filter_subjects) = split_filters(filters);
    let failed =
        |e: async_nats::Error| BindError::nats(format!("cannot set up consumer `{name}`"), e);
    match stream_handle.consumer_info(name).await {
        Ok(info) => {
            let mut config = consumer::pull::Config::try_from_consumer_config(info.config.clone())
                .map_err(|e| BindError::nats(format!("consumer `{name}`"), e))?;
            let same = same_filters(&config, filters);
            let ack_wait_differs = ack_wait.is_some_and(|w| w != config.ack_wait);
            if same && !ack_wait_differs {
                return Ok((
                    consumer::Consumer::new(config, info, js.clone()),
                    Bound::Resumed,
                ));
            }
            let mut before = config.filter_subjects.clone();
            if !config.filter_subject.is_empty() {
                before.push(config.filter_subject.clone());
            }
            config.filter_subject = filter_subject;
            config.filter_subjects = filter_subjects;
            if let Some(w) = ack_wait {
                config.ack_wait = w;
            }
            let updated = stream_handle
                .update_consumer(config)
                .await
                .map_err(|e| failed(e.into()))?;
            let bound = if same {
                Bound::Resumed
            } else {
                Bound::FiltersChanged(before)
            };
            Ok((updated, bound))
        }
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
            let created = stream_handle
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(name.to_owned()),
                    description: Some("fastpix-nats-bridge consumer".to_owned()),
                    filter_subject,
                    filter_subjects,
                    deliver_policy: start.policy(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ack_wait.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|e| failed(e.into()))?;
            Ok((created, Bound::Created))
        }
        Err(e) => Err(failed(e.into())),
    }
}

/// Every durable consumer on `stream`, by name.
pub async fn list_consumers(
    js: &jetstream::Context,
    stream: &str,
) -> Result<Vec<consumer::Info>, BindError> {
    use futures_util::TryStreamExt as _;
    let stream_handle = get_stream(js, stream).await?;
    let mut all: Vec<consumer::Info> = stream_handle
        .consumers()
        .try_collect()
        .await
        .map_err(|e| BindError::nats(format!("cannot list the consumers of `{stream}`"), e))?;
    all.retain(|c| c.config.durable_name.is_some());
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// As [`durable`], but waits for NATS, JetStream and the stream to be there,
/// trying again every `retry` and logging why it waits. Stops only on an
/// error waiting cannot fix (an invalid name).
pub async fn durable_when_ready(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    filters: &[SubjectFilter],
    start: Start,
    retry: Duration,
) -> Result<consumer::PullConsumer, BindError> {
    loop {
        match durable(js, stream, name, filters, start).await {
            Ok(c) => return Ok(c),
            Err(e) if e.is_transient() => {
                tracing::warn!(consumer = name, error = %e, "consumer not ready; trying again in {retry:?}");
                tokio::time::sleep(retry).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// An ephemeral, ordered consumer that reads `stream` from `start` through
/// `filters`, then follows new events. Nothing is acknowledged or kept on the
/// server once the reader goes away.
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    filters: &[SubjectFilter],
    start: Start,
) -> Result<consumer::Consumer<consumer::pull::OrderedConfig>, BindError> {
    let stream_handle = get_stream(js, stream).await?;
    let (filter_subject, filter_subjects) = split_filters(filters);
    stream_handle
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject,
            filter_subjects,
            deliver_policy: start.policy(),
            ..Default::default()
        })
        .await
        .map_err(|e| BindError::nats(format!("cannot start a replay of `{stream}`"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_type_is_in_exactly_one_family_and_its_own() {
        let prefix = SubjectPrefix::default();
        for family in Family::ALL {
            for t in family.seed_types() {
                let subject = subject_for_type(&prefix, t).unwrap();
                let owners: Vec<Family> = Family::ALL
                    .into_iter()
                    .filter(|f| {
                        f.filters(&prefix)
                            .iter()
                            .any(|x| x.matches(subject.as_str()))
                    })
                    .collect();
                assert_eq!(owners, vec![family], "{t}");
                assert_eq!(Family::of_type(t), Some(family), "{t}");
            }
        }
        assert_eq!(seed_types().count(), 23);
    }

    #[test]
    fn family_filters_follow_the_prefix_and_names_read_back() {
        let acme = SubjectPrefix::new("acme.fastpix").unwrap();
        let filters: Vec<String> = Family::LiveStream
            .filters(&acme)
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(
            filters,
            [
                "acme.fastpix.video.live_stream.*",
                "acme.fastpix.video.asset.created"
            ]
        );
        for f in Family::ALL {
            assert_eq!(Family::from_name(f.name()), Some(f));
            assert_eq!(f.filters(&acme).len(), f.patterns().len());
        }
        assert_eq!(Family::from_name("Live-Stream"), Some(Family::LiveStream));
        assert_eq!(Family::from_name("video"), None);
    }

    #[test]
    fn consumer_names_are_checked() {
        for ok in ["worker", "live-stream_worker-2"] {
            assert!(is_valid_consumer_name(ok), "{ok}");
        }
        for bad in ["", "a.b", "a b", "a*", ">", "a/b", "a\\b"] {
            assert!(!is_valid_consumer_name(bad), "{bad:?}");
        }
    }
}
