//! One delivery to an HTTP destination: the request (the stored body, re-
//! signed), what its answer means, and the destination's health: after
//! [`DOWN_AFTER`] failures of the "down" kind in a row the destination is
//! paused, and one event at a time probes it, no more often than
//! `probe_interval`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::settings::ExposeSecret as _;
use bytes::Bytes;
use tokio::sync::{Mutex, watch};

use crate::consumer::{Delivery, Outcome, headers};
use crate::nats::forward_leases::LeaseState;
use crate::settings::Destination;

use super::metrics::ForwardMetrics;

/// Failures of the "down" kind in a row that pause a destination.
pub const DOWN_AFTER: u32 = 5;
/// The start of an answer kept with a dead letter.
const ANSWER_KEPT: usize = 1024;
/// Read of a successful answer at most (then the connection is dropped).
const ANSWER_READ_MAX: usize = 64 * 1024;

/// Added to a dead letter of a forward consumer.
pub const HEADER_STATUS: &str = "FastPix-Forward-Status";
pub const HEADER_ANSWER: &str = "FastPix-Forward-Answer";

/// What one HTTP attempt came to; the metric's `outcome` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered(u16),
    /// A status that says no to this event (4xx but 408 and 429, 3xx).
    Refused { status: u16, answer: String },
    /// 5xx, 408 or 429: the destination cannot take events now.
    Unavailable {
        status: u16,
        answer: String,
        retry_after: Option<Duration>,
    },
    /// No answer within `timeout`.
    Timeout(String),
    /// Connection refused or reset, DNS, TLS.
    Unreachable(String),
}

impl Attempt {
    pub fn label(&self) -> &'static str {
        match self {
            Attempt::Delivered(_) => "delivered",
            Attempt::Refused { .. } => "refused",
            Attempt::Unavailable { .. } => "unavailable",
            Attempt::Timeout(_) => "timeout",
            Attempt::Unreachable(_) => "unreachable",
        }
    }

    /// True for failures that say the destination is down, not that it
    /// refuses this event.
    pub fn is_down(&self) -> bool {
        matches!(
            self,
            Attempt::Unavailable { .. } | Attempt::Timeout(_) | Attempt::Unreachable(_)
        )
    }

    /// The status, or what kept one from coming, as printed and logged.
    pub fn status_text(&self) -> String {
        match self {
            Attempt::Delivered(s)
            | Attempt::Refused { status: s, .. }
            | Attempt::Unavailable { status: s, .. } => s.to_string(),
            Attempt::Timeout(_) => "timeout".to_owned(),
            Attempt::Unreachable(_) => "unreachable".to_owned(),
        }
    }

    fn error(&self) -> String {
        match self {
            Attempt::Delivered(s) => format!("HTTP {s}"),
            Attempt::Refused { status, answer } | Attempt::Unavailable { status, answer, .. } => {
                format!("HTTP {status}: {answer}")
            }
            Attempt::Timeout(e) => format!("timeout: {e}"),
            Attempt::Unreachable(e) => format!("unreachable: {e}"),
        }
    }
}

/// Reads `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(wait.try_into().unwrap_or(Duration::ZERO))
}

/// What one delivery reports (a line of `forward --to`).
#[derive(Debug, Clone)]
pub struct Report {
    pub destination: String,
    pub event_type: String,
    pub event_id: String,
    pub attempt: u64,
    pub outcome: Attempt,
    pub latency: Duration,
}

/// Told of every attempt.
pub type Reporter = Arc<dyn Fn(&Report) + Send + Sync>;

/// A destination as the forwarder drives it.
pub struct Target {
    pub dest: Destination,
    http: reqwest::Client,
    metrics: ForwardMetrics,
    /// True while events are taken (the worker's gate).
    open: watch::Sender<bool>,
    down_in_a_row: AtomicU32,
    /// Deliveries that succeeded: a down-kind failure counts against an
    /// event's attempts only when others got through since its last try.
    successes: AtomicU64,
    /// While paused: the one probe at a time, and when the next may go.
    probe: Mutex<ProbeState>,
    /// The next free slot under `rate_limit`.
    rate: Option<std::sync::Mutex<Instant>>,
    report: Option<Reporter>,
    stop: watch::Receiver<bool>,
    pub last_status: std::sync::Mutex<String>,
}

struct ProbeState {
    next: Instant,
    /// Failed probes since the pause, for the back-off.
    failed: u64,
}

impl Target {
    pub fn new(
        dest: Destination,
        metrics: ForwardMetrics,
        report: Option<Reporter>,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(dest.timeout)
            .connect_timeout(dest.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(dest.concurrency)
            .tcp_nodelay(true)
            .build()?;
        let (open, _) = watch::channel(true);
        Ok(Arc::new(Target {
            rate: dest
                .rate_limit
                .map(|_| std::sync::Mutex::new(Instant::now())),
            dest,
            http,
            metrics,
            open,
            down_in_a_row: AtomicU32::new(0),
            successes: AtomicU64::new(0),
            probe: Mutex::new(ProbeState {
                next: Instant::now(),
                failed: 0,
            }),
            report,
            stop,
            last_status: std::sync::Mutex::new(String::new()),
        }))
    }

    /// What the lease records of this destination now.
    pub fn lease_state(&self, holder: &str) -> LeaseState {
        LeaseState {
            holder: holder.to_owned(),
            destination: self.dest.name.clone(),
            paused: self.is_paused(),
            last_status: self
                .last_status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            updated: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }

    /// The gate the worker pulls through.
    pub fn gate(&self) -> watch::Receiver<bool> {
        self.open.subscribe()
    }

    pub fn is_paused(&self) -> bool {
        !*self.open.borrow()
    }

    fn backoff(&self, n: u64) -> Duration {
        let i = (n.max(1) - 1) as usize;
        self.dest
            .backoff
            .get(i)
            .or(self.dest.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    fn set_paused(&self, paused: bool) {
        let changed = self.open.send_if_modified(|open| {
            let was = *open;
            *open = !paused;
            was != *open
        });
        if changed {
            self.metrics.paused(&self.dest.name, paused);
            if paused {
                tracing::warn!(destination = %self.dest.name, "destination down: paused; probing it");
            } else {
                tracing::info!(destination = %self.dest.name, "destination back: delivering again");
            }
        }
    }

    /// Sleeps `d`, or less when the forwarder stops; false then.
    async fn sleep(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    async fn rate_slot(&self) {
        let (Some(rate), Some(per_s)) = (&self.rate, self.dest.rate_limit) else {
            return;
        };
        let at = {
            let mut next = rate.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + Duration::from_secs_f64(1.0 / per_s);
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }

    /// Delivers one event until it is accepted, dead-lettered, or the
    /// forwarder stops. Every try happens here, the event held meanwhile,
    /// so that the object's next event waits for it (per-object order).
    pub async fn deliver(self: Arc<Self>, d: Delivery) -> Outcome {
        let event_type = d
            .header(headers::EVENT_TYPE)
            .map(str::to_owned)
            .or_else(|| d.event.as_ref().ok().map(|e| e.event_type.clone()))
            .unwrap_or_default();
        let event_id = d.event_id().unwrap_or_default().to_owned();
        let traceparent = d.header(headers::TRACEPARENT).map(str::to_owned);
        // Earlier deliveries of this event (a restart, a redrive) count as tries.
        let mut attempt = d.delivered.max(1) - 1;
        let mut counted = 0u64;
        let mut tries_here = 0u64;
        // When this event's next try may go: the wait its last failure asked
        // for is kept even when the destination is paused or resumed meanwhile.
        let mut not_before: Option<Instant> = None;
        loop {
            if let Some(at) = not_before.take()
                && !self
                    .sleep(at.saturating_duration_since(Instant::now()))
                    .await
            {
                return stopped();
            }
            let seen = self.successes.load(Ordering::Relaxed);
            // While paused, one event at a time probes, at the probe's pace.
            let probing = if self.is_paused() {
                let guard = self.probe.lock().await;
                if self.is_paused() {
                    if !self
                        .sleep(guard.next.saturating_duration_since(Instant::now()))
                        .await
                    {
                        return stopped();
                    }
                    Some(guard)
                } else {
                    None
                }
            } else {
                None
            };
            if *self.stop.borrow() {
                return stopped();
            }
            self.rate_slot().await;
            attempt += 1;
            tries_here += 1;
            let started = Instant::now();
            let outcome = self
                .post(
                    &d.payload,
                    &event_id,
                    &event_type,
                    attempt,
                    traceparent.as_deref(),
                )
                .await;
            let latency = started.elapsed();
            self.metrics
                .attempt(&self.dest.name, outcome.label(), latency);
            *self.last_status.lock().unwrap_or_else(|p| p.into_inner()) = outcome.status_text();
            if let Some(report) = &self.report {
                report(&Report {
                    destination: self.dest.name.clone(),
                    event_type: event_type.clone(),
                    event_id: event_id.clone(),
                    attempt,
                    outcome: outcome.clone(),
                    latency,
                });
            }
            if let Attempt::Delivered(_) = outcome {
                self.successes.fetch_add(1, Ordering::Relaxed);
                self.down_in_a_row.store(0, Ordering::Relaxed);
                if let Some(mut p) = probing {
                    p.failed = 0;
                }
                self.set_paused(false);
                return Outcome::Success;
            }
            let down = outcome.is_down();
            // A failure counts unless the destination is down: a refusal
            // always; a down-kind failure only when other events got
            // through since this one's last try.
            let others_got_through = self.successes.load(Ordering::Relaxed) != seen;
            if !down || others_got_through {
                counted += 1;
            }
            if down {
                let n = self.down_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= DOWN_AFTER {
                    self.set_paused(true);
                }
            } else {
                // It answers: not down.
                self.down_in_a_row.store(0, Ordering::Relaxed);
                self.set_paused(false);
            }
            // Why no answer came (the connection's error, not the answer's
            // bytes, which are the destination's and kept with a dead letter).
            let cause = match &outcome {
                Attempt::Timeout(e) | Attempt::Unreachable(e) => e.as_str(),
                _ => "",
            };
            tracing::info!(
                destination = %self.dest.name,
                event_id = %event_id,
                attempt,
                outcome = outcome.label(),
                status = %outcome.status_text(),
                cause,
                "delivery failed"
            );
            if counted >= self.dest.max_attempts {
                return self.dead_letter(&outcome, counted);
            }
            let wait = match &outcome {
                Attempt::Unavailable {
                    retry_after: Some(r),
                    ..
                } => (*r).min(self.dest.retry_after_cap),
                _ => self.backoff(tries_here),
            };
            match probing {
                Some(mut p) => {
                    p.failed += 1;
                    let pace = match &outcome {
                        Attempt::Unavailable {
                            retry_after: Some(_),
                            ..
                        } => wait,
                        _ => self.backoff(p.failed),
                    };
                    p.next = Instant::now() + pace.min(self.dest.probe_interval);
                    not_before = Some(p.next);
                }
                None if self.is_paused() => {
                    // Just paused: the first probe waits its back-off.
                    let mut p = self.probe.lock().await;
                    let at = Instant::now() + wait.min(self.dest.probe_interval);
                    if p.next < at {
                        p.next = at;
                    }
                    not_before = Some(at);
                }
                None => not_before = Some(Instant::now() + wait),
            }
        }
    }

    fn dead_letter(&self, last: &Attempt, attempts: u64) -> Outcome {
        self.metrics.dead_letter(&self.dest.name);
        let mut headers = Vec::new();
        match last {
            Attempt::Refused { status, answer } | Attempt::Unavailable { status, answer, .. } => {
                headers.push((HEADER_STATUS.to_owned(), status.to_string()));
                if !answer.is_empty() {
                    headers.push((HEADER_ANSWER.to_owned(), answer.clone()));
                }
            }
            _ => headers.push((HEADER_STATUS.to_owned(), last.status_text())),
        }
        Outcome::DeadLetter {
            reason: format!(
                "{} refused it {attempts} times (max_attempts {})",
                self.dest.url, self.dest.max_attempts
            ),
            last_error: last.error(),
            headers,
        }
    }

    async fn post(
        &self,
        body: &Bytes,
        event_id: &str,
        event_type: &str,
        attempt: u64,
        traceparent: Option<&str>,
    ) -> Attempt {
        let signature = match self.dest.secrets.current().secrets().first() {
            Some(s) => s.sign(body),
            None => String::new(),
        };
        let mut req = self
            .http
            .post(&self.dest.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!(
                    "fastpix-nats-bridge/",
                    env!("CARGO_PKG_VERSION"),
                    " (forward)"
                ),
            )
            .header("FastPix-Signature", signature)
            .header("FastPix-Webhook", &self.dest.webhook)
            .header("FastPix-Delivery-Attempt", attempt.to_string());
        // Untrusted bytes: a value a header cannot hold is left out.
        for (name, value) in [
            ("FastPix-Event-Id", event_id),
            ("FastPix-Event-Type", event_type),
        ] {
            if !value.is_empty() && reqwest::header::HeaderValue::from_str(value).is_ok() {
                req = req.header(name, value);
            }
        }
        if let Some(tp) = traceparent
            && reqwest::header::HeaderValue::from_str(tp).is_ok()
        {
            req = req.header("traceparent", tp);
        }
        for (name, value) in &self.dest.headers {
            req = req.header(name.as_str(), value.expose_secret());
        }
        let resp = match req.body(body.clone()).send().await {
            Ok(r) => r,
            Err(e) => return failure(&e),
        };
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let success = resp.status().is_success();
        let answer = match read_start(
            resp,
            if success {
                ANSWER_READ_MAX
            } else {
                ANSWER_KEPT
            },
        )
        .await
        {
            Ok(a) => a,
            Err(e) if !success => return failure(&e),
            Err(_) => Vec::new(),
        };
        if success {
            return Attempt::Delivered(status);
        }
        let mut answer =
            String::from_utf8_lossy(&answer[..answer.len().min(ANSWER_KEPT)]).into_owned();
        answer.retain(|c| !c.is_control() || c == ' ');
        if status >= 500 || status == 408 || status == 429 {
            Attempt::Unavailable {
                status,
                answer,
                retry_after: retry,
            }
        } else {
            Attempt::Refused { status, answer }
        }
    }
}

/// The forwarder stops: the event goes back, in its object's order, for
/// whoever delivers next.
fn stopped() -> Outcome {
    Outcome::HandBack
}

fn failure(e: &reqwest::Error) -> Attempt {
    let text = innermost(e);
    if e.is_timeout() {
        Attempt::Timeout(text)
    } else {
        Attempt::Unreachable(text)
    }
}

/// The innermost cause: reqwest's own text only says a request failed.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .last()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// The first `max` bytes of the answer's body.
async fn read_start(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while out.len() < max {
        match resp.chunk().await? {
            Some(chunk) => out.extend_from_slice(&chunk[..chunk.len().min(max - out.len())]),
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn down_is_not_refused() {
        let refused = Attempt::Refused {
            status: 422,
            answer: String::new(),
        };
        assert!(!refused.is_down());
        assert!(Attempt::Timeout(String::new()).is_down());
        assert!(Attempt::Unreachable(String::new()).is_down());
        assert_eq!(refused.label(), "refused");
    }
}
