//! A FastPix-like sender for tests: several concurrent senders post signed
//! events and, as FastPix does, retry any non-2xx answer or connection error
//! with back-off until a 2xx arrives, within a total time bound. And the
//! check every fault test ends with: each generated id is in the stream
//! exactly once, and nothing else is.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::helpers::{SECRET, SEED_TYPES, event_body, sign, stream_messages};

/// What happened while sending.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Every event id generated, in generation order.
    pub ids: Vec<String>,
    /// Ids that never got a 2xx before the deadline.
    pub gave_up: Vec<String>,
    pub attempts: u64,
    pub non_2xx: u64,
    pub connection_errors: u64,
}

/// Sends `events` events from `senders` concurrent senders to `url`; each
/// event is retried until 2xx or until `deadline` passes for the whole run.
pub async fn send_with_retries(
    url: &str,
    senders: usize,
    events: usize,
    deadline: Duration,
) -> SendReport {
    let until = tokio::time::Instant::now() + deadline;
    let run = format!("{:x}", rand_suffix());
    let ids: Vec<String> = (0..events).map(|i| format!("{run}-{i}")).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let attempts = Arc::new(AtomicU64::new(0));
    let non_2xx = Arc::new(AtomicU64::new(0));
    let connection_errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (http, url, ids, next) = (http.clone(), url.to_owned(), ids.clone(), next.clone());
        let (attempts, non_2xx, connection_errors) =
            (attempts.clone(), non_2xx.clone(), connection_errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut gave_up = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(id) = ids.get(i) else { break };
                let body = event_body(SEED_TYPES[i % SEED_TYPES.len()], id);
                let signature = sign(SECRET, body.as_bytes());
                let attempt = || {
                    let req = http
                        .post(&url)
                        .header("FastPix-Signature", &signature)
                        .header("content-type", "application/json")
                        .body(body.clone());
                    let (attempts, non_2xx, connection_errors) =
                        (&attempts, &non_2xx, &connection_errors);
                    async move {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        match req.send().await {
                            Ok(r) if r.status().is_success() => Ok(()),
                            Ok(r) => {
                                non_2xx.fetch_add(1, Ordering::Relaxed);
                                Err(format!("status {}", r.status()))
                            }
                            Err(e) => {
                                connection_errors.fetch_add(1, Ordering::Relaxed);
                                Err(e.to_string())
                            }
                        }
                    }
                };
                let retried = tryhard::retry_fn(attempt)
                    .retries(u32::MAX)
                    .exponential_backoff(Duration::from_millis(50))
                    .max_delay(Duration::from_secs(1));
                if tokio::time::timeout_at(until, retried).await.is_err() {
                    gave_up.push(id.clone());
                }
            }
            gave_up
        }));
    }
    let mut report = SendReport::default();
    for t in tasks {
        report.gave_up.extend(t.await.expect("sender task"));
    }
    report.ids = Arc::try_unwrap(ids).unwrap_or_else(|a| (*a).clone());
    report.attempts = attempts.load(Ordering::Relaxed);
    report.non_2xx = non_2xx.load(Ordering::Relaxed);
    report.connection_errors = connection_errors.load(Ordering::Relaxed);
    report
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Asserts that every id of `report` is in `stream` exactly once (by
/// `Nats-Msg-Id`) and that the stream holds nothing else.
pub async fn assert_each_stored_exactly_once(
    client: &async_nats::Client,
    stream: &str,
    report: &SendReport,
) {
    assert!(
        report.gave_up.is_empty(),
        "{} events never got a 2xx: {:?}",
        report.gave_up.len(),
        &report.gave_up[..report.gave_up.len().min(10)]
    );
    let stored = stream_messages(client, stream).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in &stored {
        let id = m.header("Nats-Msg-Id").unwrap_or("<none>").to_owned();
        *counts.entry(id).or_default() += 1;
    }
    let missing: Vec<_> = report
        .ids
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let foreign: Vec<_> = counts
        .keys()
        .filter(|id| !report.ids.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    assert!(foreign.is_empty(), "stored but never sent: {foreign:?}");
    assert_eq!(stored.len(), report.ids.len());
}

/// The seed list here is the specification: the crate's catalog must name
/// exactly these types.
#[test]
fn catalog_matches_the_seed_page() {
    let mut catalog: Vec<&str> = fastpix_nats_bridge::fastpix::catalog::seed_types().collect();
    let mut page = SEED_TYPES.to_vec();
    catalog.sort_unstable();
    page.sort_unstable();
    assert_eq!(catalog, page);
}
