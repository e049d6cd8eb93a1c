//! A service that keeps a media catalogue: what media exist, whether they
//! are ready to play, and their playback id.
//!
//! It reads the media family (`video.media.>`) as a queue group: every copy
//! of the service binds the same durable JetStream consumer, `media-catalog`,
//! and JetStream hands each event to exactly one of them. Start one copy or
//! ten, none sees an event twice (unless it dies before acknowledging it), and
//! events published while every copy is down wait in the stream. In a real
//! service the catalogue is a table all copies share; here each copy keeps
//! the share it was given in memory and says so.
//!
//! It handles four events at a time (`concurrency`), events of one media one
//! at a time and in stream order. A message on a media subject that is not an
//! event is rejected: it becomes a dead letter (`fastpix-nats-bridge
//! dead-letters list --consumer media-catalog`).
//!
//! It prints one line per event on stdout; progress and problems go to stderr.
//!
//! ```text
//! FASTPIX_BRIDGE__NATS__URL=nats://127.0.0.1:4222 cargo run -p fastpix-nats --example media_catalog
//! ```
//!
//! Settings are the bridge's own (`FASTPIX_BRIDGE__NATS__*`, `…__SUBJECT__PREFIX`,
//! `…__JETSTREAM__STREAM`, or the file in `FASTPIX_BRIDGE_CONFIG`); no signing
//! secret is needed. It waits, without end, for NATS and for the stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use fastpix_nats::consumer::{self, Event, Family, Outcome, Patience, Worker, shutdown_signal};
use fastpix_nats::settings::{CONFIG_FILE_ENV, Settings};
use time::OffsetDateTime;

/// The queue group: the durable consumer every copy binds.
const GROUP: &str = "media-catalog";

/// One media as the catalogue lists it.
struct Entry {
    status: String,
    playback_id: Option<String>,
    duration: Option<String>,
    last_event_id: Option<String>,
    last_event_at: Option<OffsetDateTime>,
}

#[derive(Default)]
struct Catalogue {
    media: HashMap<String, Entry>,
}

impl Catalogue {
    /// Applies one event and returns the line that describes the change.
    fn apply(&mut self, event: &Event) -> String {
        let media_id = event.object_id().unwrap_or("unknown").to_owned();
        let event_id = event.id.clone().unwrap_or_else(|| "-".to_owned());
        let at = event.created_at.clone().unwrap_or_else(|| "-".to_owned());
        let suffix = format!("[{} event={event_id} createdAt={at}]", event.event_type);
        if let Some(known) = self.media.get(&media_id) {
            if event.id.is_some() && known.last_event_id == event.id {
                return format!("media {media_id}: already applied, skipped {suffix}");
            }
            if let (Some(new), Some(old)) = (event.created_at_time(), known.last_event_at)
                && new < old
            {
                return format!(
                    "media {media_id}: older than the catalogue entry, ignored {suffix}"
                );
            }
        }
        let action = event.event_type.rsplit('.').next().unwrap_or_default();
        let change = if matches!(action, "delete" | "deleted") {
            self.media.remove(&media_id);
            "removed from the catalogue".to_owned()
        } else {
            let data = &event.data;
            let text = |key: &str| data.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            let playback_id = data
                .get("playbackIds")
                .and_then(|p| p.get(0))
                .and_then(|p| p.get("id"))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            let status = event
                .status
                .clone()
                .or_else(|| text("status"))
                .unwrap_or_else(|| action.to_owned());
            let previous = self.media.remove(&media_id);
            let entry = Entry {
                playback_id: playback_id.or(previous.as_ref().and_then(|p| p.playback_id.clone())),
                duration: text("duration").or(previous.as_ref().and_then(|p| p.duration.clone())),
                status,
                last_event_id: event.id.clone(),
                last_event_at: event.created_at_time(),
            };
            let change = match (&previous, entry.status.as_str()) {
                (None, s) => format!("added ({s})"),
                (Some(p), s) if p.status != s => format!("{} -> {s}", p.status),
                (Some(_), s) => format!("updated ({s})"),
            };
            let details = match (&entry.playback_id, &entry.duration, entry.status.as_str()) {
                (Some(pb), Some(d), "ready") => format!(", playable as {pb}, {d}"),
                (Some(pb), None, "ready") => format!(", playable as {pb}"),
                (_, _, "failed") => {
                    let reason = data
                        .pointer("/error/messages/0")
                        .and_then(|v| v.as_str())
                        .unwrap_or("no reason given");
                    format!(", hidden from the catalogue: {reason}")
                }
                _ => String::new(),
            };
            self.media.insert(media_id.clone(), entry);
            format!("{change}{details}")
        };
        let ready = self.media.values().filter(|e| e.status == "ready").count();
        format!(
            "media {media_id}: {change} (this copy lists {} media, {ready} ready) {suffix}",
            self.media.len()
        )
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // async_nats reports every reconnect attempt at info; one warning per outage is enough.
    fastpix_nats::ops::telemetry::init_with(Default::default(), "info,async_nats=warn");
    let file = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
    let settings = match Settings::load_client(file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // With several webhooks, FASTPIX_BRIDGE_WEBHOOK names the one to read.
    let webhook = match consumer::webhook(&settings) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Names this copy in its lines, so a scaled stack shows who did what.
    let copy = std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid{}", std::process::id()));
    let client = match consumer::connect(&settings.nats, GROUP, Patience::Forever).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let js = jetstream::new(client.clone());
    let filters = Family::Media.filters(&webhook.prefix);
    let catalogue = Arc::new(Mutex::new(Catalogue::default()));
    tracing::info!(servers = ?settings.nats.url, group = GROUP, copy = %copy, "starting");
    let mut worker = Worker::new(
        webhook.stream.clone(),
        webhook.prefix.clone(),
        GROUP,
        filters,
    );
    worker.concurrency = 4;
    let result = worker
        .run(&js, shutdown_signal(), move |delivery| {
            let catalogue = catalogue.clone();
            let copy = copy.clone();
            async move {
                match &delivery.event {
                    Ok(event) => {
                        let line = catalogue
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .apply(event);
                        println!("[{GROUP}@{copy}] {line}");
                        Outcome::Success
                    }
                    Err(e) => {
                        println!(
                            "[{GROUP}@{copy}] rejected a message on {} that is not an event: {e}",
                            delivery.subject.escape_debug()
                        );
                        Outcome::reject(format!("not an event: {e}"))
                    }
                }
            }
        })
        .await;
    let _ = client.drain().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
