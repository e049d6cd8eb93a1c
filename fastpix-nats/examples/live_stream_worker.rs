//! A worker that reacts to live-stream state changes.
//!
//! It reads the live-stream family (`video.live_stream.*`, `video.asset.created`)
//! through the durable JetStream consumer `live-stream-worker`: events that
//! arrive while it is down wait in the stream, and a restart resumes after the
//! last event it acknowledged. FastPix delivers at least once and in no
//! guaranteed order, so the worker keeps the last event it applied per live
//! stream and ignores repeats and events older than that one.
//!
//! Going on air notifies the stream's followers, an async call to another
//! service that can fail. With `--flaky` the call fails on the first delivery
//! of each event that needs it: the handler returns a retry, the event comes
//! back after the back-off delay (1s), and the second delivery succeeds. The
//! worker's state changes only once the call succeeded, so a retried event is
//! applied once.
//!
//! It prints one line per event on stdout; progress and problems go to stderr.
//!
//! ```text
//! FASTPIX_BRIDGE__NATS__URL=nats://127.0.0.1:4222 cargo run -p fastpix-nats --example live_stream_worker [-- --flaky]
//! ```
//!
//! Settings are the bridge's own (`FASTPIX_BRIDGE__NATS__*`, `…__SUBJECT__PREFIX`,
//! `…__JETSTREAM__STREAM`, or the file in `FASTPIX_BRIDGE_CONFIG`); no signing
//! secret is needed. It waits, without end, for NATS and for the stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use fastpix_nats::consumer::{
    self, Delivery, Event, Family, Outcome, Patience, Worker, shutdown_signal,
};
use fastpix_nats::settings::{CONFIG_FILE_ENV, Settings};
use time::OffsetDateTime;

const DURABLE: &str = "live-stream-worker";

/// What the worker knows about one live stream.
struct LiveStream {
    status: String,
    last_event_id: Option<String>,
    last_event_at: Option<OffsetDateTime>,
}

#[derive(Default)]
struct Streams {
    streams: HashMap<String, LiveStream>,
}

/// What an event does to the state, decided before any side effect.
struct Plan {
    line: String,
    stream_id: String,
    /// The new state (`None`: forget the stream), or no change at all.
    change: Option<Option<LiveStream>>,
    /// Going on air: followers are notified before the change is applied.
    notify: bool,
}

impl Streams {
    /// Decides what one event does and the line that describes it.
    fn plan(&self, event: &Event) -> Plan {
        let stream_id = match event.event_type.as_str() {
            // The recording of a live stream became a media: file it under the stream.
            "video.asset.created" => event
                .data
                .get("liveStreamId")
                .and_then(|v| v.as_str())
                .or(event.object_id()),
            _ => event.object_id(),
        }
        .unwrap_or("unknown")
        .to_owned();
        let event_id = event.id.clone().unwrap_or_else(|| "-".to_owned());
        let at = event.created_at.clone().unwrap_or_else(|| "-".to_owned());
        let suffix = format!("[{} event={event_id} createdAt={at}]", event.event_type);

        let known = self.streams.get(&stream_id);
        if let Some(k) = known {
            let unchanged = |line: String| Plan {
                line,
                stream_id: stream_id.clone(),
                change: None,
                notify: false,
            };
            if event.id.is_some() && k.last_event_id == event.id {
                return unchanged(format!(
                    "live stream {stream_id}: already handled, skipped {suffix}"
                ));
            }
            if let (Some(new), Some(old)) = (event.created_at_time(), k.last_event_at)
                && new < old
            {
                return unchanged(format!(
                    "live stream {stream_id}: older than the last event applied, ignored {suffix}"
                ));
            }
        }
        let action = event.event_type.rsplit('.').next().unwrap_or_default();
        let is_asset = event.event_type == "video.asset.created";
        let status = if is_asset {
            known.map_or("idle".to_owned(), |k| k.status.clone())
        } else {
            event.status.clone().unwrap_or_else(|| action.to_owned())
        };
        let reaction = if is_asset {
            format!(
                "recording saved as media {}: adding it to the replay shelf",
                event.object_id().unwrap_or("-")
            )
        } else {
            match action {
                "created" => "registered: waiting for the encoder".to_owned(),
                "connected" => "encoder connected: showing \"starting soon\"".to_owned(),
                "recording" => "recording started".to_owned(),
                "active" => "ON AIR: publishing the player page and notifying followers".to_owned(),
                "disconnected" => {
                    "encoder dropped: holding the page for the reconnect window".to_owned()
                }
                "idle" => "broadcast over: taking the player page down".to_owned(),
                "updated" => "settings changed: refreshing the cached stream settings".to_owned(),
                "enabled" => "enabled: broadcasts accepted again".to_owned(),
                "disabled" => "disabled: new broadcasts are refused".to_owned(),
                "deleted" => "deleted: forgetting it".to_owned(),
                other => format!("{other}: no action"),
            }
        };
        let transition = match known {
            Some(k) if k.status != status => format!("{} -> {status}", k.status),
            _ => status.clone(),
        };
        let change = if action == "deleted" && !is_asset {
            None
        } else {
            Some(LiveStream {
                status,
                last_event_id: event.id.clone(),
                last_event_at: event.created_at_time(),
            })
        };
        Plan {
            line: format!("live stream {stream_id}: {transition}: {reaction} {suffix}"),
            stream_id,
            change: Some(change),
            notify: action == "active" && !is_asset,
        }
    }

    fn apply(&mut self, plan: Plan) -> String {
        match plan.change {
            Some(Some(state)) => {
                self.streams.insert(plan.stream_id, state);
            }
            Some(None) => {
                self.streams.remove(&plan.stream_id);
            }
            None => {}
        }
        plan.line
    }
}

/// Tells the stream's followers it is on air: a call to another service.
/// `flaky` makes it fail on an event's first delivery.
async fn notify_followers(stream_id: &str, delivered: u64, flaky: bool) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if flaky && delivered == 1 {
        return Err(format!(
            "notification service timed out for live stream {stream_id}"
        ));
    }
    Ok(())
}

/// One delivery: plan, run the async step, then apply and print.
async fn handle(streams: &Mutex<Streams>, delivery: Delivery, flaky: bool) -> Outcome {
    let event = match &delivery.event {
        Ok(e) => e,
        Err(e) => {
            println!(
                "[{DURABLE}] rejected a message on {} that is not an event: {e}",
                delivery.subject.escape_debug()
            );
            return Outcome::reject(format!("not an event: {e}"));
        }
    };
    let lock = || streams.lock().unwrap_or_else(|p| p.into_inner());
    let plan = lock().plan(event);
    if plan.notify
        && let Err(e) = notify_followers(&plan.stream_id, delivery.delivered, flaky).await
    {
        eprintln!(
            "[{DURABLE}] delivery {} of event seq {} failed: {e}; retrying",
            delivery.delivered, delivery.stream_sequence
        );
        return Outcome::retry(e);
    }
    let line = lock().apply(plan);
    println!("[{DURABLE}] {line}");
    Outcome::Success
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
    let client = match consumer::connect(&settings.nats, DURABLE, Patience::Forever).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let js = jetstream::new(client.clone());
    let filters = Family::LiveStream.filters(&webhook.prefix);
    let flaky = std::env::args().skip(1).any(|a| a == "--flaky");
    let streams = Arc::new(Mutex::new(Streams::default()));
    tracing::info!(servers = ?settings.nats.url, consumer = DURABLE, flaky, "starting");
    let worker = Worker::new(
        webhook.stream.clone(),
        webhook.prefix.clone(),
        DURABLE,
        filters,
    );
    let result = worker
        .run(&js, shutdown_signal(), move |delivery| {
            let streams = streams.clone();
            async move { handle(&streams, delivery, flaky).await }
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
