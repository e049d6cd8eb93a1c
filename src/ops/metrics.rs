//! Prometheus metrics: what the bridge counts, and the text `/metrics` serves.
//!
//! Each [`Metrics`] owns its recorder instead of installing a global one.
//! Every series is registered once at startup, so recording is an atomic add
//! with no key lookup or allocation, every series is exported (at 0) from the
//! first scrape, and bridges sharing a process (as in the tests) keep their
//! own counts. Nothing in the bridge uses the `metrics` macros, so there is
//! no global recorder for them to reach.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::fastpix::catalog::{self, Family};
use crate::ops::outcome::DeliveryOutcome;

pub const REQUESTS_TOTAL: &str = "fastpix_bridge_requests_total";
pub const EVENTS_PUBLISHED_TOTAL: &str = "fastpix_bridge_events_published_total";
pub const REQUEST_DURATION: &str = "fastpix_bridge_request_duration_seconds";
pub const PUBLISH_DURATION: &str = "fastpix_bridge_publish_duration_seconds";
pub const PUBLISHES_IN_FLIGHT: &str = "fastpix_bridge_publishes_in_flight";
pub const SLOT_WAIT: &str = "fastpix_bridge_slot_wait_seconds";
pub const REQUESTS_WAITING: &str = "fastpix_bridge_requests_waiting";
pub const NATS_CONNECTED: &str = "fastpix_bridge_nats_connected";
pub const READY: &str = "fastpix_bridge_ready";
pub const BUILD_INFO: &str = "fastpix_bridge_build_info";
pub const REFUSAL_RECORDS_DROPPED_TOTAL: &str = "fastpix_bridge_refusal_records_dropped_total";
pub const SECRETS_RELOADS_TOTAL: &str = "fastpix_bridge_secrets_reloads_total";
pub const LATE_ACKS_TOTAL: &str = "fastpix_bridge_late_acks_total";
pub const STREAM_BYTES: &str = "fastpix_bridge_stream_bytes";
pub const STREAM_MAX_BYTES: &str = "fastpix_bridge_stream_max_bytes";

/// Histogram buckets, in seconds: a JetStream ack on a LAN takes around a
/// millisecond, and nothing may take longer than the publish timeout.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// The bridge's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// Indexed by webhook (in configuration order), then by outcome or family.
struct Inner {
    /// Kept for the series only known once NATS answers (each stream's size).
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: Vec<Vec<Counter>>,
    events: Vec<Vec<Counter>>,
    /// `[ok, failed]` per webhook.
    reloads: Vec<[Counter; 2]>,
    request_duration: Vec<Histogram>,
    publish_duration: Histogram,
    publishes_in_flight: Gauge,
    slot_wait: Histogram,
    requests_waiting: Gauge,
    nats_connected: Gauge,
    ready: Gauge,
    refusal_records_dropped: Counter,
    late_acks: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics of a bridge with the single webhook.
    pub fn new() -> Self {
        Self::for_webhooks(&[crate::settings::DEFAULT_WEBHOOK_NAME])
    }

    /// Metrics of a bridge serving these webhooks: the `webhook` label takes
    /// these values only, and a webhook is named by its index here.
    pub fn for_webhooks<S: AsRef<str>>(webhooks: &[S]) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&DURATION_BUCKETS)
            .unwrap_or_else(|_| unreachable!("the bucket list is not empty"))
            .build_recorder();
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            let name = KeyName::from_const_str(name);
            match name.as_str() {
                n if n.ends_with("_total") => recorder.describe_counter(name, unit, help.into()),
                n if n.ends_with("_seconds") => {
                    recorder.describe_histogram(name, unit, help.into())
                }
                _ => recorder.describe_gauge(name, unit, help.into()),
            }
        };
        describe(
            REQUESTS_TOTAL,
            Some(Unit::Count),
            "Webhook requests answered, by webhook and outcome.",
        );
        describe(
            EVENTS_PUBLISHED_TOTAL,
            Some(Unit::Count),
            "Events newly stored (duplicates excluded), by webhook and event family.",
        );
        describe(
            REQUEST_DURATION,
            Some(Unit::Seconds),
            "Time from the start of a webhook request to its answer, by webhook.",
        );
        describe(
            SECRETS_RELOADS_TOTAL,
            Some(Unit::Count),
            "Reloads of a webhook's signing secrets file, by result (a failed one keeps the secrets in force).",
        );
        describe(
            PUBLISH_DURATION,
            Some(Unit::Seconds),
            "Time from publishing a message to its JetStream acknowledgement (or flush in core mode).",
        );
        describe(
            PUBLISHES_IN_FLIGHT,
            None,
            "Messages published and not yet acknowledged.",
        );
        describe(
            SLOT_WAIT,
            Some(Unit::Seconds),
            "Time a delivery that found every slot taken waited for one (admitted or refused).",
        );
        describe(
            REQUESTS_WAITING,
            None,
            "Deliveries waiting for a slot (http.max_in_flight) right now.",
        );
        describe(
            NATS_CONNECTED,
            None,
            "1 while connected to a NATS server, else 0.",
        );
        describe(
            READY,
            None,
            "1 while events can be stored (connected, and the stream in place), as /readyz says.",
        );
        describe(
            REFUSAL_RECORDS_DROPPED_TOTAL,
            Some(Unit::Count),
            "Refused deliveries not recorded for the inspector: over the record rate, or NATS busy.",
        );
        describe(
            LATE_ACKS_TOTAL,
            Some(Unit::Count),
            "JetStream acks that came after their publish had given up (answered 503): those events are stored, and FastPix's retry of each is a duplicate (read every 10 s).",
        );
        describe(
            STREAM_BYTES,
            Some(Unit::Bytes),
            "Bytes the events stream holds, by stream (read every 10 s).",
        );
        describe(
            STREAM_MAX_BYTES,
            Some(Unit::Bytes),
            "The events stream's bound (jetstream.max_bytes) by stream; when reached, new events are answered 503 storage_full.",
        );
        describe(
            BUILD_INFO,
            None,
            "Always 1; the labels say which build is running.",
        );

        let labelled = |name: &'static str, webhook: &str, label: &'static str, value: &str| {
            let mut labels = vec![Label::new("webhook", webhook.to_owned())];
            if !label.is_empty() {
                labels.push(Label::new(label, value.to_owned()));
            }
            Key::from_parts(name, labels)
        };
        let webhooks: Vec<&str> = webhooks.iter().map(AsRef::as_ref).collect();
        let requests = webhooks
            .iter()
            .map(|w| {
                DeliveryOutcome::ALL
                    .iter()
                    .map(|o| {
                        recorder.register_counter(
                            &labelled(REQUESTS_TOTAL, w, "outcome", o.as_str()),
                            &METADATA,
                        )
                    })
                    .collect()
            })
            .collect();
        // The family label is the catalog's: a fixed set, so a hostile or
        // novel `type` cannot add series.
        let events = webhooks
            .iter()
            .map(|w| {
                catalog::LABELS
                    .iter()
                    .map(|family| {
                        recorder.register_counter(
                            &labelled(EVENTS_PUBLISHED_TOTAL, w, "family", family),
                            &METADATA,
                        )
                    })
                    .collect()
            })
            .collect();
        let reloads = webhooks
            .iter()
            .map(|w| {
                ["ok", "failed"].map(|r| {
                    recorder.register_counter(
                        &labelled(SECRETS_RELOADS_TOTAL, w, "result", r),
                        &METADATA,
                    )
                })
            })
            .collect();
        let request_duration = webhooks
            .iter()
            .map(|w| recorder.register_histogram(&labelled(REQUEST_DURATION, w, "", ""), &METADATA))
            .collect();
        let plain = |name: &'static str| Key::from_static_name(name);
        recorder
            .register_gauge(
                &Key::from_parts(
                    BUILD_INFO,
                    vec![Label::from_static_parts(
                        "version",
                        env!("CARGO_PKG_VERSION"),
                    )],
                ),
                &METADATA,
            )
            .set(1.0);
        let inner = Inner {
            handle: recorder.handle(),
            requests,
            events,
            reloads,
            request_duration,
            publish_duration: recorder.register_histogram(&plain(PUBLISH_DURATION), &METADATA),
            publishes_in_flight: recorder.register_gauge(&plain(PUBLISHES_IN_FLIGHT), &METADATA),
            slot_wait: recorder.register_histogram(&plain(SLOT_WAIT), &METADATA),
            requests_waiting: recorder.register_gauge(&plain(REQUESTS_WAITING), &METADATA),
            nats_connected: recorder.register_gauge(&plain(NATS_CONNECTED), &METADATA),
            ready: recorder.register_gauge(&plain(READY), &METADATA),
            refusal_records_dropped: recorder
                .register_counter(&plain(REFUSAL_RECORDS_DROPPED_TOTAL), &METADATA),
            late_acks: recorder.register_counter(&plain(LATE_ACKS_TOTAL), &METADATA),
            recorder,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// One request to webhook number `webhook` answered.
    pub fn request(&self, webhook: usize, outcome: DeliveryOutcome, took: Duration) {
        if let Some(counters) = self.inner.requests.get(webhook) {
            counters[outcome as usize].increment(1);
        }
        if let Some(h) = self.inner.request_duration.get(webhook) {
            h.record(took.as_secs_f64());
        }
    }

    /// One event of webhook number `webhook` newly stored, of a family of
    /// the catalog (`None`: `other`).
    pub fn event_published(&self, webhook: usize, family: Option<Family>) {
        if let Some(counters) = self.inner.events.get(webhook) {
            counters[catalog::label_index(family)].increment(1);
        }
    }

    /// One reload of webhook number `webhook`'s secrets file, done or failed.
    pub fn secrets_reloaded(&self, webhook: usize, ok: bool) {
        if let Some([done, failed]) = self.inner.reloads.get(webhook) {
            if ok { done } else { failed }.increment(1);
        }
    }

    /// One refused delivery left unrecorded (rate bound or queue full).
    pub fn refusal_record_dropped(&self) {
        self.inner.refusal_records_dropped.increment(1);
    }

    /// Acks that came after their publish had given up, since the start.
    pub fn late_acks(&self, total: u64) {
        self.inner.late_acks.absolute(total);
    }

    /// How full `stream` is: the bytes it holds and its bound (0: none).
    pub fn stream_usage(&self, stream: &str, bytes: u64, max_bytes: i64) {
        let key = |name: &'static str| {
            Key::from_parts(name, vec![Label::new("stream", stream.to_owned())])
        };
        let recorder = &self.inner.recorder;
        recorder
            .register_gauge(&key(STREAM_BYTES), &METADATA)
            .set(bytes as f64);
        recorder
            .register_gauge(&key(STREAM_MAX_BYTES), &METADATA)
            .set(max_bytes.max(0) as f64);
    }

    /// Counts a publish as in flight until the returned guard is dropped.
    pub fn publish_started(&self) -> PublishTimer {
        self.inner.publishes_in_flight.increment(1.0);
        PublishTimer {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    /// Counts a delivery as waiting for a slot until the returned guard is
    /// dropped, which records how long it waited.
    pub fn waiting_for_slot(&self) -> SlotWait {
        self.inner.requests_waiting.increment(1.0);
        SlotWait {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    /// The Prometheus text exposition, with the NATS state as of now.
    pub fn render(&self, nats_connected: bool, ready: bool) -> String {
        let as_gauge = |b: bool| if b { 1.0 } else { 0.0 };
        self.inner.nats_connected.set(as_gauge(nats_connected));
        self.inner.ready.set(as_gauge(ready));
        self.inner.handle.render()
    }

    /// Folds recorded durations into the histograms. Run it every few
    /// seconds: samples are kept raw until then, so skipping it would let
    /// memory grow between scrapes.
    pub fn run_upkeep(&self) {
        self.inner.handle.run_upkeep();
    }
}

/// One delivery waiting for a slot.
pub struct SlotWait {
    metrics: Metrics,
    started: Instant,
}

impl Drop for SlotWait {
    // On drop, so a wait that ends any way (admitted, timed out, or the
    // request abandoned) leaves the gauge and is timed.
    fn drop(&mut self) {
        let inner = &self.metrics.inner;
        inner.requests_waiting.decrement(1.0);
        inner.slot_wait.record(self.started.elapsed().as_secs_f64());
    }
}

/// One publish in flight; records its duration when acknowledged.
pub struct PublishTimer {
    metrics: Metrics,
    started: Instant,
}

impl PublishTimer {
    pub fn acknowledged(self) {
        self.metrics
            .inner
            .publish_duration
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for PublishTimer {
    // On drop rather than on completion, so a publish abandoned half-way
    // (client gone, timeout) still leaves the gauge.
    fn drop(&mut self) {
        self.metrics.inner.publishes_in_flight.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_exported_from_the_start_and_counts_add_up() {
        let m = Metrics::new();
        let text = m.render(false, false);
        for o in DeliveryOutcome::ALL {
            assert!(
                text.contains(&format!(
                    "{REQUESTS_TOTAL}{{webhook=\"default\",outcome=\"{o}\"}} 0"
                )),
                "{o}: {text}"
            );
        }
        for f in catalog::LABELS {
            let line = format!("{EVENTS_PUBLISHED_TOTAL}{{webhook=\"default\",family=\"{f}\"}} 0");
            assert!(text.contains(&line), "{text}");
        }
        assert!(text.contains(&format!("{NATS_CONNECTED} 0")), "{text}");
        assert!(text.contains(&format!("{LATE_ACKS_TOTAL} 0")), "{text}");
        assert!(text.contains("# TYPE fastpix_bridge_requests_total counter"));

        m.request(0, DeliveryOutcome::Published, Duration::from_millis(3));
        m.request(0, DeliveryOutcome::Published, Duration::from_millis(30));
        m.event_published(0, Some(Family::Simulcast));
        let timer = m.publish_started();
        let in_flight = m.render(true, true);
        assert!(
            in_flight.contains(&format!("{PUBLISHES_IN_FLIGHT} 1")),
            "{in_flight}"
        );
        timer.acknowledged();
        let waiting = m.waiting_for_slot();
        let text = m.render(true, true);
        assert!(text.contains(&format!("{REQUESTS_WAITING} 1")), "{text}");
        drop(waiting);
        let text = m.render(true, true);
        assert!(text.contains(&format!("{REQUESTS_WAITING} 0")), "{text}");
        assert!(text.contains(&format!("{SLOT_WAIT}_count 1")), "{text}");
        assert!(text.contains(&format!(
            "{REQUESTS_TOTAL}{{webhook=\"default\",outcome=\"published\"}} 2"
        )));
        assert!(text.contains(&format!(
            "{EVENTS_PUBLISHED_TOTAL}{{webhook=\"default\",family=\"simulcast\"}} 1"
        )));
        assert!(text.contains(&format!("{PUBLISHES_IN_FLIGHT} 0")), "{text}");
        assert!(
            text.contains(&format!(
                "{REQUEST_DURATION}_bucket{{webhook=\"default\",le=\"0.005\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{REQUEST_DURATION}_count{{webhook=\"default\"}} 2"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("{PUBLISH_DURATION}_count 1")),
            "{text}"
        );
        assert!(text.contains(&format!("{NATS_CONNECTED} 1")));
        m.stream_usage("FASTPIX", 1024, 8 << 30);
        let text = m.render(true, true);
        assert!(
            text.contains(&format!("{STREAM_BYTES}{{stream=\"FASTPIX\"}} 1024")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{STREAM_MAX_BYTES}{{stream=\"FASTPIX\"}} 8589934592"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "{BUILD_INFO}{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
