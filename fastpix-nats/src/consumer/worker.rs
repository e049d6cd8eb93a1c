//! [`Worker`]: a durable consumer service that does not lose work.
//!
//! The model is JetStream's own consumer semantics, with the retry schedule
//! of Sidekiq and the dead-letter queue (with redrive) of SQS:
//! - the handler's [`Outcome`] becomes `ack` (success), `nak` with a delay
//!   (retry) or `term` plus a dead letter (reject);
//! - a panic or a handler past its time limit is a retry;
//! - while a handler runs, and while an event waits for its turn, the worker
//!   sends `in_progress` every third of `ack_wait`, so the server does not
//!   hand the event to another copy;
//! - a retry waits the handler's delay, or the back-off schedule's entry for
//!   that delivery; once `max_deliveries` is reached the event becomes a dead
//!   letter (see [`super::dead_letters`]), never dropped. The server's own
//!   `max_deliver` stays unlimited: the worker counts, so an event whose
//!   handler crashes the whole process is dead-lettered on its next delivery
//!   instead of being dropped by the server.
//! - `concurrency` events run at a time; events of one FastPix object
//!   (`FastPix-Object-Id`) one at a time, in the order they were delivered.
//! - an optional gate stops pulling while it is closed (a destination that
//!   is down), the events already held still being handled;
//! - shutdown stops pulling, lets running handlers finish within `grace`, and
//!   hands the others back unacknowledged, once its pulls have ended (so
//!   that none comes back to it, behind its object's later events).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use super::dead_letters;
use super::dedup::Dedup;
use super::{BindError, Event, Start, SubjectFilter, SubjectPrefix, headers};
use crate::nats::dead_letters::{HEADER_STREAM_SEQ, HEADER_SUBJECT, Letter, header_value};

/// What the handler decided about one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: acknowledge it, it never comes again.
    Success,
    /// Not now: deliver it again after `delay` (or the back-off schedule's
    /// delay when `None`); `error` is kept as the dead letter's last error
    /// if the deliveries run out.
    Retry {
        delay: Option<Duration>,
        error: String,
    },
    /// Never: stop delivering it and keep it as a dead letter with this reason.
    Reject(String),
    /// Never, with the detail of the last try: a dead letter with this
    /// reason and last error, and these headers added to it (a status and
    /// the start of an answer, say).
    DeadLetter {
        reason: String,
        last_error: String,
        headers: Vec<(String, String)>,
    },
    /// Not handled because the process is stopping: handed back as the
    /// worker hands back the events it had not started, in each object's
    /// order, once the worker stops too. Only for a stop: until the
    /// worker's shutdown, the event waits.
    HandBack,
}

impl Outcome {
    /// A retry on the back-off schedule.
    pub fn retry(error: impl std::fmt::Display) -> Self {
        Outcome::Retry {
            delay: None,
            error: error.to_string(),
        }
    }

    /// A retry after `delay`.
    pub fn retry_after(delay: Duration, error: impl std::fmt::Display) -> Self {
        Outcome::Retry {
            delay: Some(delay),
            error: error.to_string(),
        }
    }

    /// A rejection with its reason.
    pub fn reject(reason: impl std::fmt::Display) -> Self {
        Outcome::Reject(reason.to_string())
    }
}

/// One delivery of an event, as the handler gets it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The subject the event was published on.
    pub subject: String,
    /// The payload read leniently; an error for a body that is not an event
    /// (a body kept on the bridge's `<prefix>_invalid` subject, when a
    /// consumer reads that stream).
    pub event: Result<Event, String>,
    /// The payload exactly as stored.
    pub payload: Bytes,
    pub headers: HeaderMap,
    /// The event's sequence in the events stream.
    pub stream_sequence: u64,
    /// 1 for the first delivery to this consumer, 2 for the first retry, …
    /// (counted again from 1 after a redrive).
    pub delivered: u64,
    /// True when the event comes from a redrive of its dead letter.
    pub redriven: bool,
}

impl Delivery {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    /// The FastPix event id (`FastPix-Event-Id`, else the payload's `id`).
    pub fn event_id(&self) -> Option<&str> {
        self.header(headers::EVENT_ID)
            .or_else(|| self.event.as_ref().ok()?.id.as_deref())
    }

    /// The FastPix object id the event is about: events with the same one
    /// are handled one at a time, in order.
    pub fn object_id(&self) -> Option<&str> {
        self.header(headers::OBJECT_ID)
            .or_else(|| self.event.as_ref().ok()?.object_id())
    }
}

/// The default back-off schedule: 1s, 5s, 30s, 2min, 10min (the last entry
/// repeats for later deliveries).
pub const DEFAULT_BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];
/// The first delivery and one retry per back-off entry.
pub const DEFAULT_MAX_DELIVERIES: u64 = 6;
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(20);

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("worker setting `{0}`: {1}")]
    Config(&'static str, String),
}

/// A durable consumer service: binds `durable` on `stream` through `filters`
/// and runs an async handler on each event. Build it with [`Worker::new`],
/// adjust the public fields, then [`Worker::run`].
#[derive(Debug, Clone)]
pub struct Worker {
    /// The bridge's stream (`jetstream.stream`).
    pub stream: String,
    /// The bridge's subject prefix (`subject.prefix`): dead letters and
    /// redrives are written next to it.
    pub prefix: SubjectPrefix,
    /// The durable consumer's name; every copy of a service that uses the
    /// same name shares the work.
    pub durable: String,
    pub filters: Vec<SubjectFilter>,
    /// Where the consumer starts when it is created.
    pub start: Start,
    /// Handlers running at once (default 1).
    pub concurrency: usize,
    /// Delay before delivery n+1 after a retry of delivery n: entry n-1, the
    /// last entry for later ones.
    pub backoff: Vec<Duration>,
    /// Deliveries before an event that keeps failing becomes a dead letter.
    pub max_deliveries: u64,
    /// The consumer's `ack_wait`: how long an event given to a copy that
    /// went silent (crashed) waits before it is delivered again.
    pub ack_wait: Duration,
    /// A handler running longer is abandoned and its event retried.
    pub handler_timeout: Duration,
    /// How long running handlers may take to finish on shutdown.
    pub grace: Duration,
    /// Skips events this consumer already handled (by FastPix event id).
    pub dedup: Option<Dedup>,
    /// While it holds `false`, no new events are pulled (those held still
    /// run): a handler whose destination is down closes it.
    pub gate: Option<watch::Receiver<bool>>,
}

impl Worker {
    /// A worker with the documented defaults.
    pub fn new(
        stream: impl Into<String>,
        prefix: SubjectPrefix,
        durable: impl Into<String>,
        filters: Vec<SubjectFilter>,
    ) -> Self {
        Worker {
            stream: stream.into(),
            prefix,
            durable: durable.into(),
            filters,
            start: Start::All,
            concurrency: 1,
            backoff: DEFAULT_BACKOFF.to_vec(),
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            ack_wait: DEFAULT_ACK_WAIT,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            grace: DEFAULT_GRACE,
            dedup: None,
            gate: None,
        }
    }

    fn check(&self) -> Result<(), WorkerError> {
        let bad = |key, why: &str| Err(WorkerError::Config(key, why.to_owned()));
        if self.concurrency == 0 {
            return bad("concurrency", "must be at least 1");
        }
        if self.max_deliveries == 0 {
            return bad("max_deliveries", "must be at least 1");
        }
        if self.backoff.is_empty() {
            return bad("backoff", "needs at least one delay");
        }
        if self.ack_wait < Duration::from_secs(1) {
            return bad("ack_wait", "must be at least 1s");
        }
        if self.handler_timeout.is_zero() || self.filters.is_empty() {
            return bad("handler_timeout/filters", "must not be empty or zero");
        }
        Ok(())
    }

    /// The retry delay after delivery `delivered`.
    pub fn backoff_for(&self, delivered: u64) -> Duration {
        let i = (delivered.max(1) - 1) as usize;
        self.backoff
            .get(i)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    /// Runs until `shutdown` completes: waits for NATS and the stream, binds
    /// the consumer (and its redrive consumer), and hands each event to
    /// `handler`. Fails only on what waiting cannot fix (an invalid name or
    /// setting).
    pub async fn run<F, Fut>(
        self,
        js: &jetstream::Context,
        shutdown: impl Future<Output = ()>,
        handler: F,
    ) -> Result<(), WorkerError>
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        self.check()?;
        tokio::pin!(shutdown);
        let retry = Duration::from_secs(2);
        let bound = loop {
            let attempt = self.bind(js);
            let result = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = attempt => r,
            };
            match result {
                Ok(b) => break b,
                Err(e) if e.is_transient() => {
                    tracing::warn!(consumer = %self.durable, error = %e, "consumer not ready; trying again in {retry:?}");
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(retry) => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (events, redrive) = bound;
        tracing::info!(
            consumer = %self.durable,
            stream = %self.stream,
            filters = ?self.filters.iter().map(SubjectFilter::as_str).collect::<Vec<_>>(),
            concurrency = self.concurrency,
            "waiting for events"
        );
        // Events held at once: enough that other objects' events can run
        // while one object's wait their turn.
        let concurrency = self.concurrency;
        let held = (concurrency * 4).max(4);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (abandon_tx, abandon_rx) = watch::channel(false);
        let (pulls_ended_tx, pulls_ended_rx) = watch::channel(false);
        let (track_tx, mut track_rx) = mpsc::channel::<()>(1);
        let shared = Arc::new(Shared {
            js: js.clone(),
            worker: self,
            handler: Arc::new(handler),
            held: Arc::new(Semaphore::new(held)),
            held_redriven: Arc::new(Semaphore::new(concurrency)),
            running: Arc::new(Semaphore::new(0)),
            lanes: Mutex::new(HashMap::new()),
            stop: stop_rx,
            abandon: abandon_rx,
            pulls_ended: pulls_ended_rx,
        });
        shared.running.add_permits(shared.worker.concurrency);
        let pullers = [
            tokio::spawn(pull(
                shared.clone(),
                Source::Events,
                events,
                track_tx.clone(),
            )),
            tokio::spawn(pull(
                shared.clone(),
                Source::Redrive,
                redrive,
                track_tx.clone(),
            )),
        ];
        drop(track_tx);
        shutdown.await;
        tracing::info!(consumer = %shared.worker.durable, "stopping: no new events; waiting for running handlers");
        let _ = stop_tx.send(true);
        // Nothing is handed back before the pulls end (each at most
        // PULL_EXPIRES and a second after the stop): see `pulls_closed`.
        let aborts: Vec<_> = pullers.iter().map(|p| p.abort_handle()).collect();
        let ended = tokio::spawn(async move {
            for p in pullers {
                let _ = p.await;
            }
            let _ = pulls_ended_tx.send(true);
        });
        let grace = shared.worker.grace;
        if tokio::time::timeout(grace, track_rx.recv()).await.is_err() {
            tracing::warn!(consumer = %shared.worker.durable, "handlers still running after {grace:?}: leaving their events unacknowledged");
            let _ = abandon_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(2), track_rx.recv()).await;
        }
        for p in aborts {
            p.abort();
        }
        ended.abort();
        Ok(())
    }

    /// Creates what the worker needs: the dead-letter and redrive streams,
    /// the durable consumer, and its redrive consumer.
    async fn bind(
        &self,
        js: &jetstream::Context,
    ) -> Result<(consumer::PullConsumer, consumer::PullConsumer), BindError> {
        let events = super::bind_tuned(
            js,
            &self.stream,
            &self.durable,
            &self.filters,
            self.start,
            self.ack_wait,
        )
        .await?
        .0;
        let (_, redrive_stream) =
            dead_letters::ensure_streams(js, &self.stream, &self.prefix).await?;
        let filter = dead_letters::redrive_subject(&self.prefix, &self.durable);
        let config = consumer::pull::Config {
            durable_name: Some(self.durable.clone()),
            description: Some("fastpix-nats-bridge: redriven dead letters".to_owned()),
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            ..Default::default()
        };
        let redrive = match redrive_stream.get_consumer(&self.durable).await {
            Ok(c) => c,
            Err(_) => redrive_stream
                .create_consumer(config)
                .await
                .map_err(|e| BindError::nats("cannot set up the redrive consumer", e))?,
        };
        Ok((events, redrive))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Events,
    Redrive,
}

struct Shared<F> {
    js: jetstream::Context,
    worker: Worker,
    handler: Arc<F>,
    /// Events received and not yet settled, per source: a pull waiting on
    /// an empty source must not take the room of the other.
    held: Arc<Semaphore>,
    held_redriven: Arc<Semaphore>,
    /// Handlers running.
    running: Arc<Semaphore>,
    /// Per object: a receiver that completes when the object's latest event
    /// is settled; the next event of that object waits on it.
    lanes: Mutex<HashMap<String, oneshot::Receiver<()>>>,
    stop: watch::Receiver<bool>,
    abandon: watch::Receiver<bool>,
    /// True once stopping and both pulls have ended.
    pulls_ended: watch::Receiver<bool>,
}

const PULL_EXPIRES: Duration = Duration::from_secs(5);
const MAX_PULL: usize = 64;

/// Pulls events while there is room for them, until stopped.
async fn pull<F, Fut>(
    shared: Arc<Shared<F>>,
    source: Source,
    mut consumer: consumer::PullConsumer,
    track: mpsc::Sender<()>,
) where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let mut stop = shared.stop.clone();
    let w = &shared.worker;
    let room = match source {
        Source::Events => shared.held.clone(),
        Source::Redrive => shared.held_redriven.clone(),
    };
    loop {
        if *stop.borrow() {
            return;
        }
        if let Some(gate) = &w.gate {
            let mut gate = gate.clone();
            tokio::select! {
                _ = stop.changed() => return,
                open = gate.wait_for(|open| *open) => if open.is_err() { return },
            }
        }
        let mut permits: OwnedSemaphorePermit = tokio::select! {
            _ = stop.changed() => return,
            p = room.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let more = room.available_permits().min(MAX_PULL - 1);
        if more > 0
            && let Ok(p) = room.clone().try_acquire_many_owned(more as u32)
        {
            permits.merge(p);
        }
        let want = permits.num_permits();
        let batch = consumer
            .batch()
            .max_messages(want)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(consumer = %w.durable, ?source, error = %e, "cannot pull events; binding again in 2s");
                drop(permits);
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                if let Ok((events, redrive)) = w.bind(&shared.js).await {
                    consumer = match source {
                        Source::Events => events,
                        Source::Redrive => redrive,
                    };
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = stop.changed() => {
                    // Events already on their way, and any the open pull
                    // still brings until it ends (at most PULL_EXPIRES), are
                    // settled as stopping ones are: handed back in each
                    // object's order, not left to come again only after
                    // ack_wait, behind later events of their object.
                    let until = tokio::time::Instant::now() + PULL_EXPIRES + Duration::from_secs(1);
                    while let Ok(Some(Ok(msg))) =
                        tokio::time::timeout_at(until, batch.next()).await
                    {
                        match permits.split(1) {
                            Some(one) => dispatch(&shared, source, msg, one, track.clone()),
                            None => {
                                let (shared, track) = (shared.clone(), track.clone());
                                tokio::spawn(async move {
                                    hand_back(&shared, &msg).await;
                                    drop(track);
                                });
                            }
                        }
                    }
                    return;
                }
                next = batch.next() => next,
            };
            match next {
                None => break,
                Some(Ok(msg)) => {
                    let Some(one) = permits.split(1) else {
                        // More than asked for: hand it back at once.
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                        continue;
                    };
                    dispatch(&shared, source, msg, one, track.clone());
                }
                Some(Err(e)) => {
                    tracing::debug!(consumer = %w.durable, ?source, error = %e, "pull ended");
                    break;
                }
            }
        }
    }
}

/// Starts settling `msg`, after the earlier events of its object.
fn dispatch<F, Fut>(
    shared: &Arc<Shared<F>>,
    source: Source,
    msg: jetstream::Message,
    held: OwnedSemaphorePermit,
    track: mpsc::Sender<()>,
) where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let delivery = delivery_of(&msg, source);
    let (done, next_waits) = oneshot::channel::<()>();
    let before = delivery.object_id().and_then(|object| {
        let mut lanes = shared.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if lanes.len() > 1024 {
            // Forget objects with nothing in flight.
            lanes.retain(|_, rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        }
        lanes.insert(object.to_owned(), next_waits)
    });
    let shared = shared.clone();
    tokio::spawn(async move {
        settle(&shared, msg, delivery, before).await;
        drop(done);
        drop(held);
        drop(track);
    });
}

fn delivery_of(msg: &jetstream::Message, source: Source) -> Delivery {
    let headers = msg.headers.clone().unwrap_or_default();
    let (seq, delivered) = msg
        .info()
        .map(|i| (i.stream_sequence, i.delivered.max(1) as u64))
        .unwrap_or((0, 1));
    let header = |n: &str| headers.get(n).map(|v| v.as_str().to_owned());
    let (subject, stream_sequence) = match source {
        Source::Events => (msg.subject.to_string(), seq),
        Source::Redrive => (
            header(HEADER_SUBJECT).unwrap_or_else(|| msg.subject.to_string()),
            header(HEADER_STREAM_SEQ)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        ),
    };
    Delivery {
        subject,
        event: Event::from_json(&msg.payload).map_err(|e| e.to_string()),
        payload: msg.payload.clone(),
        headers,
        stream_sequence,
        delivered,
        redriven: source == Source::Redrive,
    }
}

async fn settle<F, Fut>(
    shared: &Shared<F>,
    msg: jetstream::Message,
    delivery: Delivery,
    before: Option<oneshot::Receiver<()>>,
) where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let w = &shared.worker;
    let mut stop = shared.stop.clone();
    let mut abandon = shared.abandon.clone();
    let every = w.ack_wait / 3;
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let keep = |msg: &jetstream::Message| {
        let msg = msg.clone();
        async move {
            if let Err(e) = msg.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %e, "in_progress not sent");
            }
        }
    };
    // Its turn: after the object's earlier event, then a free slot. A stop
    // before then hands it back for the next run or another copy, after the
    // object's earlier event is settled or handed back itself: the server
    // delivers what is handed back in that order, so the object's order
    // holds for whoever takes over.
    if let Some(mut before) = before {
        loop {
            tokio::select! {
                _ = &mut before => break,
                _ = progress.tick() => keep(&msg).await,
                _ = stop.changed() => {
                    loop {
                        tokio::select! {
                            _ = &mut before => break,
                            _ = progress.tick() => keep(&msg).await,
                        }
                    }
                    return hand_back(shared, &msg).await;
                }
            }
        }
    }
    let slot = loop {
        if *stop.borrow() {
            return hand_back(shared, &msg).await;
        }
        tokio::select! {
            slot = shared.running.acquire() => match slot {
                Ok(s) => break s,
                Err(_) => return,
            },
            _ = progress.tick() => keep(&msg).await,
            _ = stop.changed() => return hand_back(shared, &msg).await,
        }
    };
    let delivered = delivery.delivered;
    if delivered > w.max_deliveries {
        let reason = format!(
            "delivered {delivered} times, more than max_deliveries ({})",
            w.max_deliveries
        );
        let last = "no outcome from the earlier deliveries (the worker stopped or crashed while handling it)";
        return dead_letter(shared, &msg, &delivery, &reason, last, &[]).await;
    }
    let event_id = delivery.event_id().map(str::to_owned);
    if let (Some(dedup), Some(id)) = (&w.dedup, &event_id) {
        match dedup.seen(&w.durable, id).await {
            Ok(true) => {
                tracing::info!(consumer = %w.durable, event_id = %id, "already handled: skipped");
                return ack(&msg).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot ask the dedup bucket; handling the event"),
        }
    }
    let mut handling = tokio::spawn((shared.handler)(delivery.clone()));
    let deadline = tokio::time::sleep(w.handler_timeout);
    tokio::pin!(deadline);
    let outcome = loop {
        tokio::select! {
            done = &mut handling => break match done {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => Outcome::retry(format!("handler panicked: {}", panic_text(e))),
                Err(e) => Outcome::retry(format!("handler did not finish: {e}")),
            },
            _ = &mut deadline => {
                handling.abort();
                break Outcome::retry(format!("handler took longer than its time limit ({:?})", w.handler_timeout));
            }
            _ = progress.tick() => keep(&msg).await,
            _ = abandon.changed() => {
                handling.abort();
                return;
            }
        }
    };
    // The handler is done: its slot goes to the next event while this one
    // is settled (an acknowledgement is a round trip to the server).
    drop(slot);
    match outcome {
        Outcome::Success => {
            if let (Some(dedup), Some(id)) = (&w.dedup, &event_id)
                && let Err(e) = dedup.remember(&w.durable, id).await
            {
                tracing::warn!(error = %e, "cannot record the event as handled");
            }
            ack(&msg).await;
        }
        Outcome::Retry { delay, error } if delivered < w.max_deliveries => {
            let delay = delay.unwrap_or_else(|| w.backoff_for(delivered));
            tracing::info!(consumer = %w.durable, seq = delivery.stream_sequence, delivered, ?delay, %error, "retrying later");
            pulls_closed(shared).await;
            if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                tracing::warn!(error = %e, "nak lost; the event comes again after ack_wait");
            }
        }
        Outcome::Retry { error, .. } => {
            let reason = format!("retries exhausted after {delivered} deliveries");
            dead_letter(shared, &msg, &delivery, &reason, &error, &[]).await;
        }
        Outcome::HandBack => {
            // The handler saw its process stop first; the worker's own stop
            // follows, and with it the end of its pulls.
            let mut stop = shared.stop.clone();
            let _ = stop.wait_for(|s| *s).await;
            tracing::info!(consumer = %w.durable, seq = delivery.stream_sequence, "stopping: handed back");
            hand_back(shared, &msg).await;
        }
        Outcome::Reject(reason) => {
            let reason = format!("rejected: {reason}");
            dead_letter(shared, &msg, &delivery, &reason, &reason, &[]).await;
        }
        Outcome::DeadLetter {
            reason,
            last_error,
            headers,
        } => {
            dead_letter(shared, &msg, &delivery, &reason, &last_error, &headers).await;
        }
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

async fn ack(msg: &jetstream::Message) {
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(error = %e, "acknowledgement lost; the event will come again");
    }
}

/// Hands an event back for the next run or another copy.
async fn hand_back<F>(shared: &Shared<F>, msg: &jetstream::Message) {
    pulls_closed(shared).await;
    let _ = msg.ack_with(AckKind::Nak(None)).await;
}

/// Once stopping, waits for this worker's pulls to end: an event handed
/// back while one is still open comes straight back to it and is handed
/// back once more, behind its object's later events, which whoever takes
/// over then gets first.
async fn pulls_closed<F>(shared: &Shared<F>) {
    if *shared.stop.borrow() {
        let mut ended = shared.pulls_ended.clone();
        let _ = ended.wait_for(|e| *e).await;
    }
}

/// Keeps the event as a dead letter, then stops its deliveries. If the dead
/// letter cannot be written the event is retried instead: never dropped.
async fn dead_letter<F>(
    shared: &Shared<F>,
    msg: &jetstream::Message,
    delivery: &Delivery,
    reason: &str,
    last_error: &str,
    extra: &[(String, String)],
) {
    let w = &shared.worker;
    let mut original = delivery.headers.clone();
    for (name, value) in extra {
        original.insert(name.as_str(), header_value(value).as_str());
    }
    let (source, source_seq) = match (delivery.redriven, msg.info()) {
        (false, Ok(i)) => ("events", i.stream_sequence),
        (true, Ok(i)) => ("redrive", i.stream_sequence),
        (_, Err(_)) => ("unknown", delivery.stream_sequence),
    };
    let letter = Letter {
        consumer: &w.durable,
        subject: &delivery.subject,
        stream_sequence: delivery.stream_sequence,
        deliveries: delivery.delivered,
        reason,
        last_error,
        msg_id: format!("{}.{source}.{source_seq}", w.durable),
    };
    match dead_letters::write(
        &shared.js,
        &w.prefix,
        Some(&original),
        delivery.payload.clone(),
        &letter,
    )
    .await
    {
        Ok(seq) => {
            tracing::warn!(consumer = %w.durable, seq = delivery.stream_sequence, dead_letter = seq, %reason, "kept as a dead letter");
            if let Err(e) = msg.double_ack_with(AckKind::Term).await {
                tracing::warn!(error = %e, "term lost; the event comes again and its dead letter is not repeated");
            }
        }
        Err(e) => {
            let delay = w.backoff_for(delivery.delivered);
            tracing::error!(consumer = %w.durable, error = %e, "cannot write the dead letter; the event comes again in {delay:?}");
            pulls_closed(shared).await;
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> Worker {
        let prefix = SubjectPrefix::default();
        let all = prefix.all();
        Worker::new("FASTPIX", prefix, "w", vec![all])
    }

    #[test]
    fn backoff_follows_the_schedule_then_repeats_its_last_entry() {
        let w = worker();
        assert_eq!(w.backoff_for(1), Duration::from_secs(1));
        assert_eq!(w.backoff_for(2), Duration::from_secs(5));
        assert_eq!(w.backoff_for(5), Duration::from_secs(600));
        assert_eq!(w.backoff_for(9), Duration::from_secs(600));
        assert_eq!(w.backoff_for(0), Duration::from_secs(1));
    }

    #[test]
    fn settings_that_make_no_sense_are_refused() {
        let mut w = worker();
        assert!(w.check().is_ok());
        w.concurrency = 0;
        assert!(w.check().unwrap_err().to_string().contains("concurrency"));
        let mut w = worker();
        w.backoff.clear();
        assert!(w.check().unwrap_err().to_string().contains("backoff"));
        let mut w = worker();
        w.max_deliveries = 0;
        assert!(w.check().is_err());
    }

    #[test]
    fn object_and_event_ids_come_from_headers_or_payload() {
        let mut headers = HeaderMap::new();
        headers.insert(headers::OBJECT_ID, "from-header");
        let payload = Bytes::from_static(
            br#"{"type":"video.media.ready","id":"e1","object":{"type":"media","id":"m1"}}"#,
        );
        let mut d = Delivery {
            subject: "fastpix.video.media.ready".into(),
            event: Event::from_json(&payload).map_err(|e| e.to_string()),
            payload,
            headers,
            stream_sequence: 1,
            delivered: 1,
            redriven: false,
        };
        assert_eq!(d.object_id(), Some("from-header"));
        assert_eq!(d.event_id(), Some("e1"));
        d.headers = HeaderMap::new();
        assert_eq!(d.object_id(), Some("m1"));
    }
}
