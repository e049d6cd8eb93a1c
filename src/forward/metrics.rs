//! What the forwarder counts, for Prometheus: deliveries by destination and
//! outcome, their latency, dead letters, and whether a destination is paused.
//! Every series of a destination is registered at startup, so each is
//! exported (at 0) from the first scrape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const DELIVERIES_TOTAL: &str = "fastpix_forward_deliveries_total";
pub const DELIVERY_DURATION: &str = "fastpix_forward_delivery_duration_seconds";
pub const DEAD_LETTERS_TOTAL: &str = "fastpix_forward_dead_letters_total";
pub const PAUSED: &str = "fastpix_forward_paused";

/// Every value of the `outcome` label.
pub const OUTCOMES: [&str; 5] = [
    "delivered",
    "refused",
    "unavailable",
    "timeout",
    "unreachable",
];

const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

struct Series {
    deliveries: HashMap<&'static str, Counter>,
    duration: Histogram,
    dead_letters: Counter,
    paused: Gauge,
}

/// The forwarder's metrics; cheap to clone.
#[derive(Clone)]
pub struct ForwardMetrics {
    handle: PrometheusHandle,
    by_destination: Arc<HashMap<String, Series>>,
}

impl ForwardMetrics {
    pub fn new<S: AsRef<str>>(destinations: &[S]) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .unwrap_or_else(|_| unreachable!("the bucket list is not empty"))
            .build_recorder();
        recorder.describe_counter(
            KeyName::from_const_str(DELIVERIES_TOTAL),
            Some(Unit::Count),
            "HTTP delivery attempts to forward destinations, by destination and outcome.".into(),
        );
        recorder.describe_histogram(
            KeyName::from_const_str(DELIVERY_DURATION),
            Some(Unit::Seconds),
            "Time from sending a delivery to its answer, by destination.".into(),
        );
        recorder.describe_counter(
            KeyName::from_const_str(DEAD_LETTERS_TOTAL),
            Some(Unit::Count),
            "Events a destination refused until max_attempts, kept as dead letters.".into(),
        );
        recorder.describe_gauge(
            KeyName::from_const_str(PAUSED),
            None,
            "1 while a destination is down and only probed, else 0.".into(),
        );
        let mut by_destination = HashMap::new();
        for d in destinations {
            let d = d.as_ref();
            let label = || vec![Label::new("destination", d.to_owned())];
            let deliveries = OUTCOMES
                .iter()
                .map(|o| {
                    let mut labels = label();
                    labels.push(Label::new("outcome", *o));
                    let key = Key::from_parts(DELIVERIES_TOTAL, labels);
                    (*o, recorder.register_counter(&key, &METADATA))
                })
                .collect();
            let series = Series {
                deliveries,
                duration: recorder
                    .register_histogram(&Key::from_parts(DELIVERY_DURATION, label()), &METADATA),
                dead_letters: recorder
                    .register_counter(&Key::from_parts(DEAD_LETTERS_TOTAL, label()), &METADATA),
                paused: recorder.register_gauge(&Key::from_parts(PAUSED, label()), &METADATA),
            };
            series.paused.set(0.0);
            by_destination.insert(d.to_owned(), series);
        }
        ForwardMetrics {
            handle: recorder.handle(),
            by_destination: Arc::new(by_destination),
        }
    }

    pub fn attempt(&self, destination: &str, outcome: &'static str, took: Duration) {
        if let Some(s) = self.by_destination.get(destination) {
            if let Some(c) = s.deliveries.get(outcome) {
                c.increment(1);
            }
            s.duration.record(took.as_secs_f64());
        }
    }

    pub fn dead_letter(&self, destination: &str) {
        if let Some(s) = self.by_destination.get(destination) {
            s.dead_letters.increment(1);
        }
    }

    pub fn paused(&self, destination: &str, paused: bool) {
        if let Some(s) = self.by_destination.get(destination) {
            s.paused.set(if paused { 1.0 } else { 0.0 });
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded durations into the histograms (every few seconds).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}
