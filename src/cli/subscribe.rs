//! `subscribe`: prints the bridge's events as they arrive, one line each,
//! for people or (`--json`) for `jq`.
//!
//! Modes: a live core subscription (default), shared by a queue group with
//! `--queue`; a durable JetStream consumer with `--durable`, acknowledging
//! each event once it is written; a replay of the stream with `--since` or
//! `--all`, which then follows new events.

use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use time::OffsetDateTime;

use crate::cli::templates::created_at;
use crate::consumer::{
    self, BindError, Bound, Event, Family, Puller, Start, SubjectFilter, headers,
};
use crate::fastpix::subject::SubjectPrefix;
use crate::ops::shutdown::shutdown_signal;
use crate::settings::{Settings, env_name};

#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    /// What to receive: NATS subject filters under the prefix (fastpix.video.media.*),
    /// FastPix event types or patterns (video.live_stream.active, video.live_stream.*),
    /// or family names (media, upload, live_stream, simulcast). Default: everything.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Print each event's payload exactly as stored, one per line.
    #[arg(long)]
    pub json: bool,
    /// Join a queue group: copies started with the same GROUP share the events,
    /// each going to one of them (live only; for a durable share, start copies
    /// with the same --durable NAME).
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["durable", "since", "all"])]
    pub queue: Option<String>,
    /// Read through the durable JetStream consumer NAME: each event is acknowledged
    /// once written, and a restart resumes after the last one. Copies started with
    /// the same NAME share the events.
    #[arg(long, value_name = "NAME")]
    pub durable: Option<String>,
    /// Start from events stored this long ago (90s, 15m, 2h, 7d) or since this
    /// RFC 3339 time, then follow new ones. With --durable: where a new consumer starts.
    #[arg(long, value_name = "DURATION|RFC3339", conflicts_with = "all")]
    pub since: Option<String>,
    /// Start from the oldest event the stream holds, then follow new ones.
    /// With --durable: where a new consumer starts.
    #[arg(long)]
    pub all: bool,
    /// Exit after this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// With several webhooks configured: the one to read, by name or subject
    /// prefix (its subjects and stream). Needless with a single webhook.
    #[arg(long, value_name = "NAME|PREFIX", env = crate::settings::WEBHOOK_ENV)]
    pub webhook: Option<String>,
}

/// A problem with the command line: nothing was subscribed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("bad filter {input:?}: {reason}")]
    Filter { input: String, reason: String },
    #[error("filters {0} and {1} overlap (one subject could match both): narrow one of them")]
    Overlap(String, String),
    #[error(
        "--since takes a duration (90s, 15m, 2h, 7d) or an RFC 3339 time (2026-05-11T20:42:16Z), got {0:?}"
    )]
    Since(String),
    #[error(
        "--durable, --since and --all read the bridge's JetStream stream, but jetstream.enabled is false ({0})"
    )]
    NoJetStream(String),
    #[error("--queue needs a group name without spaces")]
    Queue,
    #[error("{0}")]
    Webhook(String),
}

/// How events are received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Live { queue: Option<String> },
    Durable { name: String, start: Start },
    Replay { start: Start },
}

/// Turns what the user typed into filters: family names expand to their
/// filters, the rest goes through [`SubjectPrefix::filter`]. Filters covered
/// by another are dropped (they would deliver events twice); filters that
/// overlap otherwise are refused.
pub fn resolve_filters(
    prefix: &SubjectPrefix,
    inputs: &[String],
) -> Result<Vec<SubjectFilter>, UsageError> {
    let mut filters: Vec<SubjectFilter> = Vec::new();
    for input in inputs {
        match Family::from_name(input) {
            Some(family) => filters.extend(family.filters(prefix)),
            None => filters.push(prefix.filter(input).map_err(|e| UsageError::Filter {
                input: input.clone(),
                reason: e.to_string(),
            })?),
        }
    }
    if filters.is_empty() {
        return Ok(vec![prefix.all()]);
    }
    let mut kept: Vec<SubjectFilter> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let covered = filters
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.covers(f) && (!f.covers(other) || j < i));
        if !covered {
            kept.push(f.clone());
        }
    }
    for (i, a) in kept.iter().enumerate() {
        if let Some(b) = kept[i + 1..].iter().find(|b| a.overlaps(b)) {
            return Err(UsageError::Overlap(a.to_string(), b.to_string()));
        }
    }
    Ok(kept)
}

/// `--since` as an instant: a duration back from `now`, or an RFC 3339 time.
pub fn parse_since(input: &str, now: OffsetDateTime) -> Result<OffsetDateTime, UsageError> {
    let input = input.trim();
    if let Ok(d) = humantime::parse_duration(input) {
        return time::Duration::try_from(d)
            .ok()
            .and_then(|d| now.checked_sub(d))
            .ok_or_else(|| UsageError::Since(input.to_owned()));
    }
    OffsetDateTime::parse(input, &time::format_description::well_known::Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| UsageError::Since(input.to_owned()))
}

/// Reads the mode from the flags.
pub fn mode(
    args: &SubscribeArgs,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<Mode, UsageError> {
    let start = match (&args.since, args.all) {
        (Some(since), _) => Some(Start::Since(parse_since(since, now)?)),
        (None, true) => Some(Start::All),
        (None, false) => None,
    };
    let reads_stream = args.durable.is_some() || start.is_some();
    if reads_stream && !settings.jetstream.enabled {
        return Err(UsageError::NoJetStream(env_name("jetstream.enabled")));
    }
    if let Some(q) = &args.queue
        && (q.is_empty() || q.chars().any(char::is_whitespace))
    {
        return Err(UsageError::Queue);
    }
    Ok(match (&args.durable, start) {
        (Some(name), start) => Mode::Durable {
            name: name.clone(),
            start: start.unwrap_or(Start::New),
        },
        (None, Some(start)) => Mode::Replay { start },
        (None, None) => Mode::Live {
            queue: args.queue.clone(),
        },
    })
}

/// One event as received, whatever the mode.
struct Incoming {
    subject: String,
    payload: Bytes,
    headers: Option<HeaderMap>,
    /// Stream sequence and storage time, in the stream modes.
    stored: Option<(u64, OffsetDateTime)>,
    /// The message to acknowledge once written (durable mode).
    ack: Option<jetstream::Message>,
}

impl Incoming {
    fn from_jetstream(msg: jetstream::Message, keep_for_ack: bool) -> Self {
        let stored = msg.info().ok().map(|i| (i.stream_sequence, i.published));
        Incoming {
            subject: msg.subject.to_string(),
            payload: msg.payload.clone(),
            headers: msg.headers.clone(),
            stored,
            ack: keep_for_ack.then_some(msg),
        }
    }
}

/// An error from the source; `fatal` ones end the command.
struct SourceError {
    fatal: bool,
    message: String,
}

type Messages = Pin<Box<dyn Stream<Item = Result<Incoming, SourceError>> + Send>>;

/// Where events come from.
enum Source {
    /// Core subscriptions or an ordered replay: nothing to acknowledge.
    Plain(Messages),
    Durable(Box<Puller>),
}

impl Source {
    async fn next(&mut self) -> Option<Result<Incoming, SourceError>> {
        match self {
            Source::Plain(messages) => messages.next().await,
            Source::Durable(d) => d.next().await.map(|pulled| match pulled {
                Ok(msg) => Ok(Incoming::from_jetstream(msg, true)),
                Err(e) => Err(SourceError {
                    fatal: e.is_fatal(),
                    message: e.to_string(),
                }),
            }),
        }
    }

    /// Hands back events received but not written, so that the next reader
    /// gets them at once instead of after the acknowledgement wait.
    async fn release(&mut self) {
        if let Source::Durable(d) = self {
            d.release().await;
        }
    }
}

/// Runs `subscribe`: 0 after `--count` events, Ctrl-C or a closed stdout; 1
/// when NATS or the stream fails; 2 for a usage error.
pub async fn run(args: SubscribeArgs, settings: &Settings) -> ExitCode {
    let setup = settings
        .webhook(args.webhook.as_deref())
        .map_err(|e| UsageError::Webhook(e.to_string()))
        .and_then(|webhook| {
            let filters = resolve_filters(&webhook.prefix, &args.filters)?;
            let mode = mode(&args, settings, OffsetDateTime::now_utc())?;
            Ok((webhook, filters, mode))
        });
    let (webhook, filters, mode) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match super::connect_or_report(settings, "fastpix-nats-bridge subscribe").await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let source = match open(&client, &webhook.stream, &filters, &mode, args.count).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = pump(source, args.json, args.count).await;
    // Leaves cleanly: acknowledgements and unsubscriptions reach the server.
    let _ = client.drain().await;
    code
}

/// Sets up the subscription or consumer for `mode` and says so on stderr
/// (a line starting with `ready:`) once events can flow.
async fn open(
    client: &async_nats::Client,
    stream: &str,
    filters: &[SubjectFilter],
    mode: &Mode,
    count: Option<u64>,
) -> Result<Source, BindError> {
    let shown: Vec<&str> = filters.iter().map(SubjectFilter::as_str).collect();
    let shown = shown.join(" ");
    match mode {
        Mode::Live { queue } => {
            let source = live(client, filters, queue.as_deref()).await?;
            match queue {
                Some(q) => eprintln!(
                    "ready: subscribed to {shown} in queue group `{q}` (live: each new event goes to one member)"
                ),
                None => {
                    eprintln!("ready: subscribed to {shown} (live: events published from now on)")
                }
            }
            Ok(source)
        }
        Mode::Durable { name, start } => {
            let js = jetstream::new(client.clone());
            let (consumer, bound) =
                consumer::bind_durable(&js, stream, name, filters, *start).await?;
            match &bound {
                Bound::Created => {}
                Bound::Resumed if *start != Start::New => eprintln!(
                    "note: durable consumer `{name}` already exists and resumes where it left off; --all and --since apply only when it is created"
                ),
                Bound::Resumed => {}
                Bound::FiltersChanged(before) => eprintln!(
                    "note: durable consumer `{name}` had the filters {}; they are now {shown}, and it keeps its place in the stream",
                    before.join(" ")
                ),
            }
            let info = consumer.cached_info();
            let how = if bound == Bound::Created {
                "created"
            } else {
                "resumed"
            };
            eprintln!(
                "ready: durable consumer `{name}` ({how}) on stream {stream} ({shown}), {} event(s) waiting; each is acknowledged once written",
                info.num_pending + info.num_ack_pending as u64
            );
            Ok(Source::Durable(Box::new(Puller::new(
                client.clone(),
                consumer,
                name.clone(),
                count,
            ))))
        }
        Mode::Replay { start } => {
            let js = jetstream::new(client.clone());
            let messages = consumer::replay(&js, stream, filters, *start)
                .await?
                .messages()
                .await
                .map_err(|e| BindError::nats(format!("cannot read stream `{stream}`"), e))?;
            let from = match start {
                Start::Since(t) => created_at(*t),
                _ => "its first event".to_owned(),
            };
            eprintln!(
                "ready: replaying stream {stream} ({shown}) from {from}, then following new events"
            );
            Ok(Source::Plain(Box::pin(messages.map(|m| match m {
                Ok(msg) => Ok(Incoming::from_jetstream(msg, false)),
                Err(e) => Err(SourceError {
                    fatal: false,
                    message: format!("replay: {e}"),
                }),
            }))))
        }
    }
}

async fn live(
    client: &async_nats::Client,
    filters: &[SubjectFilter],
    queue: Option<&str>,
) -> Result<Source, BindError> {
    let mut subscriptions = Vec::with_capacity(filters.len());
    for filter in filters {
        let subject = filter.to_string();
        let sub = match queue {
            Some(q) => client.queue_subscribe(subject, q.to_owned()).await,
            None => client.subscribe(subject).await,
        }
        .map_err(|e| BindError::nats(format!("cannot subscribe to {filter}"), e))?;
        subscriptions.push(sub);
    }
    // The server has the subscriptions once it answers a flush's ping.
    client
        .flush()
        .await
        .map_err(|e| BindError::nats("cannot subscribe", e))?;
    let merged = futures_util::stream::select_all(subscriptions).map(|msg| {
        Ok(Incoming {
            subject: msg.subject.to_string(),
            payload: msg.payload,
            headers: msg.headers,
            stored: None,
            ack: None,
        })
    });
    Ok(Source::Plain(Box::pin(merged)))
}

/// Writes events until `count`, a signal, a closed stdout or a fatal error.
/// A durable event is acknowledged only once its line is written.
async fn pump(mut source: Source, json: bool, count: Option<u64>) -> ExitCode {
    let mut written: u64 = 0;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let stdout = std::io::stdout();
    let code = loop {
        if count.is_some_and(|n| written >= n) {
            break ExitCode::SUCCESS;
        }
        let item = tokio::select! {
            _ = &mut shutdown => break ExitCode::SUCCESS,
            item = source.next() => item,
        };
        let incoming = match item {
            None => {
                eprintln!("error: the subscription was closed");
                break ExitCode::FAILURE;
            }
            Some(Err(e)) if e.fatal => {
                eprintln!("error: {}", e.message);
                break ExitCode::FAILURE;
            }
            Some(Err(e)) => {
                tracing::warn!("{}", e.message);
                continue;
            }
            Some(Ok(incoming)) => incoming,
        };
        let line = if json {
            let mut line = Vec::with_capacity(incoming.payload.len() + 1);
            line.extend_from_slice(&incoming.payload);
            line.push(b'\n');
            line
        } else {
            human_line(&incoming).into_bytes()
        };
        let mut out = stdout.lock();
        let written_ok = out.write_all(&line).and_then(|()| out.flush());
        drop(out);
        if let Err(e) = written_ok {
            if let Some(msg) = &incoming.ack {
                let _ = msg.ack_with(AckKind::Nak(None)).await;
            }
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break ExitCode::SUCCESS;
            }
            eprintln!("error: cannot write to stdout: {e}");
            break ExitCode::FAILURE;
        }
        if let Some(msg) = &incoming.ack
            && let Err(e) = msg.double_ack().await
        {
            let seq = incoming.stored.map(|(s, _)| s).unwrap_or_default();
            tracing::warn!(
                "event seq {seq} was written but not acknowledged ({e}); it will be delivered again"
            );
        }
        written += 1;
    };
    source.release().await;
    code
}

/// `time  subject  id=…  object=type/id  workspace=…`, from the payload when
/// it is an event, from the headers otherwise.
fn human_line(incoming: &Incoming) -> String {
    let header =
        |name: &str| {
            incoming.headers.as_ref().and_then(|h| h.get(name)).map(
                |v| match headers::decode_value(v.as_str()) {
                    Some(decoded) => decoded.into_owned(),
                    None => v.as_str().to_owned(),
                },
            )
        };
    let event = Event::from_json(&incoming.payload).ok();
    let time = event
        .as_ref()
        .and_then(|e| e.created_at.clone())
        .or_else(|| incoming.stored.map(|(_, t)| created_at(t)))
        .unwrap_or_else(|| created_at(OffsetDateTime::now_utc()));
    let id = event
        .as_ref()
        .and_then(|e| e.id.clone())
        .or_else(|| header(headers::EVENT_ID))
        .unwrap_or_else(|| "-".to_owned());
    let object_type = event
        .as_ref()
        .and_then(|e| e.object.as_ref()?.kind.clone())
        .or_else(|| header(headers::OBJECT_TYPE));
    let object_id = event
        .as_ref()
        .and_then(|e| e.object_id().map(str::to_owned))
        .or_else(|| header(headers::OBJECT_ID));
    let object = match (object_type, object_id) {
        (Some(t), Some(i)) => format!("{t}/{i}"),
        (None, Some(i)) => i,
        (Some(t), None) => t,
        (None, None) => "-".to_owned(),
    };
    let workspace = event
        .as_ref()
        .and_then(|e| e.workspace_id().map(str::to_owned))
        .or_else(|| header(headers::WORKSPACE_ID))
        .unwrap_or_else(|| "-".to_owned());
    let mut line = format!(
        "{time}  {}  id={id}  object={object}  workspace={workspace}",
        incoming.subject
    );
    if let Some((seq, _)) = incoming.stored {
        line.push_str(&format!("  seq={seq}"));
    }
    if let Some(error) = header(headers::BRIDGE_ERROR) {
        line.push_str(&format!("  error={error:?}"));
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Purpose;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(Purpose::Client, pairs).unwrap()
    }

    fn resolve(inputs: &[&str]) -> Result<Vec<String>, UsageError> {
        let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        resolve_filters(&SubjectPrefix::default(), &inputs)
            .map(|f| f.iter().map(|f| f.to_string()).collect())
    }

    /// The family label the bridge's metrics count an event of `event_type` under.
    fn counted_as(event_type: &str) -> String {
        use crate::ops::metrics::{EVENTS_PUBLISHED_TOTAL, Metrics};
        let m = Metrics::new();
        m.event_published(0, Family::of_type(event_type));
        let text = m.render(true, true);
        let counted: Vec<&str> = crate::fastpix::catalog::LABELS
            .into_iter()
            .filter(|f| {
                text.contains(&format!(
                    "{EVENTS_PUBLISHED_TOTAL}{{webhook=\"default\",family=\"{f}\"}} 1"
                ))
            })
            .collect();
        assert_eq!(counted.len(), 1, "{event_type}: {text}");
        counted[0].to_owned()
    }

    /// The families whose `subscribe <family>` receives an event of `event_type`.
    fn subscribed_by(event_type: &str) -> Vec<&'static str> {
        let prefix = SubjectPrefix::default();
        let subject = crate::fastpix::subject::subject_for_type(&prefix, event_type).unwrap();
        Family::ALL
            .into_iter()
            .filter(|f| {
                resolve_filters(&prefix, &[f.name().to_owned()])
                    .unwrap()
                    .iter()
                    .any(|filter| filter.matches(subject.as_str()))
            })
            .map(Family::name)
            .collect()
    }

    #[test]
    fn metrics_and_subscribe_agree_on_every_catalogued_type() {
        for t in crate::fastpix::catalog::known_types() {
            let subscribed = subscribed_by(t);
            assert!(subscribed.len() <= 1, "{t} is in {subscribed:?}");
            let want = subscribed.first().copied().unwrap_or("other");
            assert_eq!(counted_as(t), want, "{t}");
        }
        // Where two classifications once disagreed, the webhook page decides.
        for (t, family) in [
            ("video.live_stream.simulcast_target.created", "simulcast"),
            ("video.asset.created", "live_stream"),
            ("Video.media.live_stream.created", "upload"),
            ("video.mediaAI.summary.ready", "other"),
        ] {
            assert_eq!(counted_as(t), family, "{t}");
            let subscribed = subscribed_by(t);
            assert_eq!(
                subscribed.first().copied().unwrap_or("other"),
                family,
                "{t}"
            );
        }
    }

    #[test]
    fn filters_default_to_everything_and_expand_families() {
        assert_eq!(resolve(&[]).unwrap(), ["fastpix.>"]);
        assert_eq!(
            resolve(&["live_stream", "fastpix.video.media.ready"]).unwrap(),
            [
                "fastpix.video.live_stream.*",
                "fastpix.video.asset.created",
                "fastpix.video.media.ready"
            ]
        );
        assert_eq!(
            resolve(&["video.live_stream.active"]).unwrap(),
            ["fastpix.video.live_stream.active"]
        );
    }

    #[test]
    fn covered_filters_are_dropped_and_overlaps_refused() {
        assert_eq!(
            resolve(&["video.media.ready", "media", "video.media.ready"]).unwrap(),
            ["fastpix.video.media.>"]
        );
        assert_eq!(resolve(&[">", "simulcast"]).unwrap(), ["fastpix.>"]);
        assert!(matches!(
            resolve(&["*.media.ready", "video.*.ready"]),
            Err(UsageError::Overlap(..))
        ));
        let err = resolve(&["fastpix.video..x"]).unwrap_err().to_string();
        assert!(err.contains("fastpix.video..x"), "{err}");
    }

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = OffsetDateTime::from_unix_timestamp(1_778_532_136).unwrap();
        assert_eq!(
            parse_since("90m", now).unwrap(),
            now - time::Duration::minutes(90)
        );
        assert_eq!(
            parse_since("7d", now).unwrap(),
            now - time::Duration::days(7)
        );
        let t = parse_since("2026-05-11T22:42:16.361817248+02:00", now).unwrap();
        assert_eq!(created_at(t), "2026-05-11T20:42:16.361817248Z");
        for bad in ["", "yesterday", "2026-05-11", "-5m"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_pick_the_mode() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: SubscribeArgs,
        }
        let parse = |argv: &[&str]| {
            let mut full = vec!["subscribe"];
            full.extend_from_slice(argv);
            Wrapper::try_parse_from(full).map(|w| w.args)
        };
        let now = OffsetDateTime::now_utc();
        let s = settings(&[]);
        let m = |argv: &[&str]| mode(&parse(argv).unwrap(), &s, now);
        assert_eq!(m(&[]).unwrap(), Mode::Live { queue: None });
        assert_eq!(
            m(&["--queue", "g"]).unwrap(),
            Mode::Live {
                queue: Some("g".into())
            }
        );
        assert_eq!(
            m(&["--durable", "d"]).unwrap(),
            Mode::Durable {
                name: "d".into(),
                start: Start::New
            }
        );
        assert_eq!(
            m(&["--durable", "d", "--all"]).unwrap(),
            Mode::Durable {
                name: "d".into(),
                start: Start::All
            }
        );
        assert_eq!(m(&["--all"]).unwrap(), Mode::Replay { start: Start::All });
        assert!(matches!(
            m(&["--since", "1h"]).unwrap(),
            Mode::Replay {
                start: Start::Since(_)
            }
        ));
        assert!(parse(&["--queue", "g", "--durable", "d"]).is_err());
        assert!(parse(&["--queue", "g", "--all"]).is_err());
        assert!(parse(&["--since", "1h", "--all"]).is_err());
        assert!(parse(&["--count", "0"]).is_err());
        let core = settings(&[("FASTPIX_BRIDGE__JETSTREAM__ENABLED", "false")]);
        let err = mode(&parse(&["--all"]).unwrap(), &core, now).unwrap_err();
        assert!(err.to_string().contains("jetstream.enabled"), "{err}");
        assert!(mode(&parse(&[]).unwrap(), &core, now).is_ok());
    }

    #[test]
    fn human_lines_never_print_the_credentials_a_payload_carries() {
        let incoming = Incoming {
            subject: "fastpix.video.live_stream.created".into(),
            payload: Bytes::from_static(
                br#"{"type":"video.live_stream.created","id":"e2","object":{"type":"live_stream","id":"ls1"},"workspace":{"id":"w1"},"data":{"streamKey":"sk-top-secret","srtSecret":"srt-secret-1","simulcast":[{"streamKey":"sk-target-secret"}]}}"#,
            ),
            headers: None,
            stored: Some((8, OffsetDateTime::now_utc())),
            ack: None,
        };
        let line = human_line(&incoming);
        assert!(line.contains("id=e2  object=live_stream/ls1"), "{line}");
        for secret in ["sk-top-secret", "srt-secret-1", "sk-target-secret"] {
            assert!(!line.contains(secret), "{line}");
        }
    }

    #[test]
    fn human_lines_show_time_subject_ids_and_workspace() {
        let incoming = Incoming {
            subject: "fastpix.video.media.ready".into(),
            payload: Bytes::from_static(
                br#"{"type":"video.media.ready","id":"e1","object":{"type":"media","id":"m1"},"workspace":{"id":"w1"},"createdAt":"2026-05-11T20:42:16.361817248Z"}"#,
            ),
            headers: None,
            stored: Some((7, OffsetDateTime::now_utc())),
            ack: None,
        };
        assert_eq!(
            human_line(&incoming),
            "2026-05-11T20:42:16.361817248Z  fastpix.video.media.ready  id=e1  object=media/m1  workspace=w1  seq=7\n"
        );
        let mut h = HeaderMap::new();
        h.insert(headers::BRIDGE_ERROR, "body%20is%20not%20a%20JSON%20object");
        let invalid = Incoming {
            subject: "fastpix_invalid".into(),
            payload: Bytes::from_static(b"[1]"),
            headers: Some(h),
            stored: None,
            ack: None,
        };
        let line = human_line(&invalid);
        assert!(
            line.contains(
                "fastpix_invalid  id=-  object=-  workspace=-  error=\"body is not a JSON object\""
            ),
            "{line}"
        );
    }
}
