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
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::fastpix::catalog::{self, Family};
use crate::ops::outcome::Outcome;

pub const REQUESTS_TOTAL: &str = "fastpix_bridge_requests_total";
pub const EVENTS_PUBLISHED_TOTAL: &str = "fastpix_bridge_events_published_total";
pub const REQUEST_DURATION: &str = "fastpix_bridge_request_duration_seconds";
pub const PUBLISH_DURATION: &str = "fastpix_bridge_publish_duration_seconds";
pub const PUBLISHES_IN_FLIGHT: &str = "fastpix_bridge_publishes_in_flight";
pub const NATS_CONNECTED: &str = "fastpix_bridge_nats_connected";
pub const READY: &str = "fastpix_bridge_ready";
pub const BUILD_INFO: &str = "fastpix_bridge_build_info";

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

struct Inner {
    handle: PrometheusHandle,
    requests: Vec<Counter>,
    events: Vec<Counter>,
    request_duration: Histogram,
    publish_duration: Histogram,
    publishes_in_flight: Gauge,
    nats_connected: Gauge,
    ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
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
            "Webhook requests answered, by outcome.",
        );
        describe(
            EVENTS_PUBLISHED_TOTAL,
            Some(Unit::Count),
            "Events newly stored (duplicates excluded), by event family.",
        );
        describe(
            REQUEST_DURATION,
            Some(Unit::Seconds),
            "Time from the start of a webhook request to its answer.",
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
            BUILD_INFO,
            None,
            "Always 1; the labels say which build is running.",
        );

        let labelled = |name: &'static str, label: &'static str, value: &'static str| {
            Key::from_parts(name, vec![Label::from_static_parts(label, value)])
        };
        let requests = Outcome::ALL
            .iter()
            .map(|o| {
                recorder
                    .register_counter(&labelled(REQUESTS_TOTAL, "outcome", o.as_str()), &METADATA)
            })
            .collect();
        // The family label is the catalog's: a fixed set, so a hostile or
        // novel `type` cannot add series.
        let events = catalog::LABELS
            .iter()
            .map(|family| {
                recorder.register_counter(
                    &labelled(EVENTS_PUBLISHED_TOTAL, "family", family),
                    &METADATA,
                )
            })
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
            request_duration: recorder.register_histogram(&plain(REQUEST_DURATION), &METADATA),
            publish_duration: recorder.register_histogram(&plain(PUBLISH_DURATION), &METADATA),
            publishes_in_flight: recorder.register_gauge(&plain(PUBLISHES_IN_FLIGHT), &METADATA),
            nats_connected: recorder.register_gauge(&plain(NATS_CONNECTED), &METADATA),
            ready: recorder.register_gauge(&plain(READY), &METADATA),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// One webhook request answered.
    pub fn request(&self, outcome: Outcome, took: Duration) {
        self.inner.requests[outcome as usize].increment(1);
        self.inner.request_duration.record(took.as_secs_f64());
    }

    /// One event newly stored, of a family of the catalog (`None`: `other`).
    pub fn event_published(&self, family: Option<Family>) {
        self.inner.events[catalog::label_index(family)].increment(1);
    }

    /// Counts a publish as in flight until the returned guard is dropped.
    pub fn publish_started(&self) -> PublishTimer {
        self.inner.publishes_in_flight.increment(1.0);
        PublishTimer {
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
        for o in Outcome::ALL {
            assert!(
                text.contains(&format!("{REQUESTS_TOTAL}{{outcome=\"{o}\"}} 0")),
                "{o}: {text}"
            );
        }
        for f in catalog::LABELS {
            let line = format!("{EVENTS_PUBLISHED_TOTAL}{{family=\"{f}\"}} 0");
            assert!(text.contains(&line), "{text}");
        }
        assert!(text.contains(&format!("{NATS_CONNECTED} 0")), "{text}");
        assert!(text.contains("# TYPE fastpix_bridge_requests_total counter"));

        m.request(Outcome::Published, Duration::from_millis(3));
        m.request(Outcome::Published, Duration::from_millis(30));
        m.event_published(Some(Family::Simulcast));
        let timer = m.publish_started();
        let in_flight = m.render(true, true);
        assert!(
            in_flight.contains(&format!("{PUBLISHES_IN_FLIGHT} 1")),
            "{in_flight}"
        );
        timer.acknowledged();
        let text = m.render(true, true);
        assert!(text.contains(&format!("{REQUESTS_TOTAL}{{outcome=\"published\"}} 2")));
        assert!(text.contains(&format!(
            "{EVENTS_PUBLISHED_TOTAL}{{family=\"simulcast\"}} 1"
        )));
        assert!(text.contains(&format!("{PUBLISHES_IN_FLIGHT} 0")), "{text}");
        assert!(
            text.contains(&format!("{REQUEST_DURATION}_bucket{{le=\"0.005\"}} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{REQUEST_DURATION}_count 2")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{PUBLISH_DURATION}_count 1")),
            "{text}"
        );
        assert!(text.contains(&format!("{NATS_CONNECTED} 1")));
        assert!(text.contains(&format!(
            "{BUILD_INFO}{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
