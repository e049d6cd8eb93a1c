//! Faults under load, against the real binary: NATS restarted, the bridge
//! restarted, storage frozen, far more requests than the bridge admits. Each
//! ends with the same check: every event the FastPix-like senders generated
//! is in the stream exactly once, and nothing else is.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::helpers::*;
use crate::sender::{SendReport, assert_each_stored_exactly_once, send_with_retries};

const SENDERS: usize = 8;
const EVENTS: usize = 2000;
/// Total time the senders may take; a fault test must stay under a minute.
const SEND_DEADLINE: Duration = Duration::from_secs(50);

/// Messages in the stream, or 0 while it cannot be asked.
async fn stored_count(client: &async_nats::Client) -> u64 {
    let js = async_nats::jetstream::new(client.clone());
    match js.get_stream("FASTPIX").await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Waits until the senders are well under way, so the fault lands mid-run.
async fn wait_until_stored(client: &async_nats::Client, n: u64) {
    let reached = eventually(Duration::from_secs(30), || async {
        stored_count(client).await >= n
    })
    .await;
    assert!(reached, "fewer than {n} events stored after 30s");
}

/// The counters of a run, without its thousands of ids.
fn summary(report: &SendReport) -> String {
    format!(
        "{} events, {} attempts, {} non-2xx, {} connection errors, {} given up",
        report.ids.len(),
        report.attempts,
        report.non_2xx,
        report.connection_errors,
        report.gave_up.len()
    )
}

fn assert_the_fault_was_felt(report: &SendReport) {
    assert!(
        report.non_2xx + report.connection_errors > 0,
        "no attempt failed, so the fault missed the traffic: {}",
        summary(report)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_under_load_loses_nothing_and_stores_nothing_twice() {
    let started = Instant::now();
    let mut nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env_with(
        &nats,
        &[("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "2s")],
    ));
    bridge.wait_ready().await;
    let url = bridge.url("/webhooks/fastpix");
    let sending =
        tokio::spawn(async move { send_with_retries(&url, SENDERS, EVENTS, SEND_DEADLINE).await });

    wait_until_stored(&nats.client().await, 500).await;
    nats.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.restart();

    let report = sending.await.expect("senders");
    assert_the_fault_was_felt(&report);
    assert_each_stored_exactly_once(&nats.client().await, "FASTPIX", &report).await;
    eprintln!(
        "nats restart: {} in {:?}",
        summary(&report),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_restarted_under_load_loses_nothing_and_stores_nothing_twice() {
    let started = Instant::now();
    let nats = NatsServer::start();
    let env = bridge_env(&nats);
    let mut first = BridgeProcess::start(&env);
    let addr = first.addr;
    first.wait_ready().await;
    let url = first.url("/webhooks/fastpix");
    let sending =
        tokio::spawn(async move { send_with_retries(&url, SENDERS, EVENTS, SEND_DEADLINE).await });

    wait_until_stored(&nats.client().await, 600).await;
    first.terminate();
    assert_eq!(
        first.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        first.log_text()
    );
    // A new bridge on the same port, as a supervisor or an orchestrator would start it.
    let second = tokio::task::spawn_blocking(move || BridgeProcess::start_on(addr, &env))
        .await
        .expect("start the second bridge");

    let report = sending.await.expect("senders");
    assert_the_fault_was_felt(&report);
    assert_each_stored_exactly_once(&nats.client().await, "FASTPIX", &report).await;
    assert!(first.log_text().contains("shutting down"));
    assert!(second.log_text().contains("listening"));
    eprintln!(
        "bridge restart: {} in {:?}",
        summary(&report),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_storage_gets_503_within_the_publish_timeout_and_nothing_acked_is_lost() {
    let started = Instant::now();
    let publish_timeout = Duration::from_secs(2);
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env_with(
        &nats,
        &[("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "2s")],
    ));
    bridge.wait_ready().await;
    let url = bridge.url("/webhooks/fastpix");
    let sender_url = url.clone();
    let sending = tokio::spawn(async move {
        send_with_retries(&sender_url, SENDERS, EVENTS, SEND_DEADLINE).await
    });

    wait_until_stored(&nats.client().await, 500).await;
    nats.freeze();
    let frozen_at = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let run = format!("frozen-{}", uuid::Uuid::new_v4());
    let mut probes = Vec::new();
    for i in 0..3 {
        let id = format!("{run}-{i}");
        let body = event_body("video.media.ready", &id);
        let asked = Instant::now();
        let resp = http
            .post(&url)
            .header("FastPix-Signature", sign(SECRET, body.as_bytes()))
            .body(body.clone())
            .send()
            .await
            .expect("the bridge answers while NATS is frozen");
        let took = asked.elapsed();
        assert_eq!(resp.status(), 503, "{id}");
        assert_eq!(resp.headers()["retry-after"], "2");
        // The publish timeout, plus slack for a loaded machine; never a hang.
        assert!(
            took < publish_timeout + Duration::from_secs(3),
            "503 took {took:?}"
        );
        probes.push((id, body));
    }
    // Frozen for well over the publish timeout in all.
    let frozen_for = Duration::from_secs(5);
    tokio::time::sleep(frozen_for.saturating_sub(frozen_at.elapsed())).await;
    nats.thaw();

    // Recovery: each refused probe, retried as FastPix would, gets its 2xx.
    for (id, body) in &probes {
        let stored = eventually(Duration::from_secs(20), || async {
            http.post(&url)
                .header("FastPix-Signature", sign(SECRET, body.as_bytes()))
                .body(body.clone())
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(stored, "{id} never got a 2xx after the thaw");
    }
    // The probes waited in the connection while NATS was frozen, and were
    // stored after the thaw: their acks came to nobody, and are counted.
    let metrics = bridge.admin_url("/metrics");
    let late = eventually(Duration::from_secs(30), || async {
        let Ok(answer) = http.get(&metrics).send().await else {
            return false;
        };
        let text = answer.text().await.unwrap_or_default();
        Scrape(text)
            .value("fastpix_bridge_late_acks_total")
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(late, "no late ack counted after the thaw");
    let mut report = sending.await.expect("senders");
    assert_the_fault_was_felt(&report);
    report.ids.extend(probes.into_iter().map(|(id, _)| id));
    assert_each_stored_exactly_once(&nats.client().await, "FASTPIX", &report).await;
    eprintln!(
        "frozen storage: {} in {:?}",
        summary(&report),
        started.elapsed()
    );
}

/// Peak resident set size of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A POST over a raw socket that sends 960 KiB of body (under the limit,
/// which leaves room for NATS headers) and never the last byte, so a bridge
/// that admits it must hold that body until the body timeout. Raw, because
/// HTTP clients report a refusal that arrives while they are still writing
/// the body as a broken pipe rather than as the answer.
async fn never_finishing_post(port: u16) -> std::io::Result<Option<RawAnswer>> {
    never_finishing_post_of(port, 15 * 64 * 1024).await
}

/// A POST with a signature header that declares `SENT + 1` bytes of body and
/// sends `SENT` (rounded down to 64 KiB), never the last byte.
async fn never_finishing_post_of(port: u16, sent: usize) -> std::io::Result<Option<RawAnswer>> {
    let chunks = sent / (64 * 1024);
    let sent = chunks * 64 * 1024;
    raw_exchange(port, |mut wr| async move {
        let head = format!(
            "POST /webhooks/fastpix HTTP/1.1\r\nHost: 127.0.0.1\r\nFastPix-Signature: AAAA\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            sent + 1
        );
        let chunk = vec![b' '; 64 * 1024];
        if wr.write_all(head.as_bytes()).await.is_ok() {
            for _ in 0..chunks {
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        }
        // Keep the socket open: the body is never finished.
        std::future::pending::<()>().await
    })
    .await
}

/// Beyond `max_in_flight`, requests wait at most `queue_timeout` (behind at
/// most `max_queued` others) and are then refused: never a hang, and memory
/// stays bounded since a waiting request has read no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_within_the_queue_timeout_with_retry_after_and_memory_stays_bounded() {
    const MAX_IN_FLIGHT: usize = 16;
    const MAX_QUEUED: usize = 64;
    const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
    const FLOOD: usize = 400;
    // A bridge holding all 400 bodies would be far above this; one holding
    // 16 is far below, even as a debug build.
    const RSS_CEILING_KIB: u64 = 200 * 1024;
    let started = Instant::now();
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env_with(
        &nats,
        &[
            ("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", "16"),
            ("FASTPIX_BRIDGE__HTTP__MAX_QUEUED", "64"),
            ("FASTPIX_BRIDGE__HTTP__QUEUE_TIMEOUT", "1s"),
            ("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "60s"),
        ],
    ));
    bridge.wait_ready().await;
    let url = bridge.url("/webhooks/fastpix");
    let pid = bridge.pid().expect("bridge running");

    // 400 concurrent requests, each with ~1 MiB of body that never ends:
    // the 16 admitted ones hold their slots for as long as the test wants,
    // so every other one can only be answered by a refusal: at once beyond
    // the 64 waiting, after the queue timeout for those.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let (tx, port) = (tx.clone(), bridge.addr.port());
        flood.push(tokio::spawn(async move {
            let asked = Instant::now();
            let answer = never_finishing_post(port).await;
            let _ = tx.send((asked.elapsed(), answer));
        }));
    }
    let mut slowest = Duration::ZERO;
    for n in 0..FLOOD - MAX_IN_FLIGHT {
        let (took, answer) = tokio::time::timeout(Duration::from_secs(40), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {n} refusals: requests beyond the bound hang"))
            .expect("flood task");
        let answer = answer
            .expect("refused requests get an answer, not a reset")
            .expect("refused requests get an answer before the bridge closes");
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_eq!(answer.header("retry-after"), Some("2"));
        let err: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(err["outcome"], "overloaded");
        slowest = slowest.max(took);
    }
    // Within the queue timeout plus slack for 400 connections on a loaded
    // machine: never a hang.
    assert!(
        slowest < QUEUE_TIMEOUT + Duration::from_secs(15),
        "slowest refusal {slowest:?}"
    );
    // The admitted ones are still waiting for the rest of their bodies.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "more requests answered than refused: the bound let extra ones through"
    );

    // FastPix-like senders arrive while the bridge is full: refused, they
    // retry, and once the flood goes away every event gets through.
    let sender_url = url.clone();
    let sending = tokio::spawn(async move {
        send_with_retries(&sender_url, SENDERS, EVENTS, SEND_DEADLINE).await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak_under_flood = peak_rss_kib(pid);
    for task in &flood {
        task.abort();
    }
    let report = sending.await.expect("senders");
    assert!(
        report.non_2xx > 0,
        "senders were never refused: {}",
        summary(&report)
    );
    assert_each_stored_exactly_once(&nats.client().await, "FASTPIX", &report).await;

    // The kernel folds the current RSS into VmHWM lazily, so keep the larger reading.
    let peak = peak_rss_kib(pid).max(peak_under_flood);
    assert!(
        peak < RSS_CEILING_KIB,
        "peak RSS {peak} KiB is above the {RSS_CEILING_KIB} KiB ceiling"
    );
    eprintln!(
        "overload: {FLOOD} never-ending 960 KiB requests, max_in_flight {MAX_IN_FLIGHT}, \
         max_queued {MAX_QUEUED}: \
         slowest refusal {slowest:?}; peak RSS {peak_under_flood} KiB under the flood, \
         {peak} KiB overall; {} in {:?}",
        summary(&report),
        started.elapsed()
    );
}

/// The bridge as the Kubernetes manifest configures it, flooded with what an
/// attacker can send (a signature header, bodies as large as the limit allows,
/// never finished) from four times as many connections as it admits: its
/// peak RSS stays under the manifest's memory limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_against_the_manifest_settings_stays_under_the_manifest_memory_limit() {
    let shipped = crate::repo_files::shipped_bridges();
    let k8s = shipped
        .iter()
        .find(|b| b.file == "deploy/kubernetes")
        .expect("the Kubernetes bridge");
    let limit_kib = k8s.memory_limit.expect("the manifest sets a memory limit") / 1024;
    let nats = NatsServer::start();
    let mut env = bridge_env(&nats);
    let from_manifest: Vec<(String, String)> = k8s
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("FASTPIX_BRIDGE__HTTP__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(from_manifest.iter().cloned());
    // Long enough that no admitted body is dropped during the test.
    env.push(("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT".into(), "60s".into()));
    let setting = |key: &str, default: usize| {
        from_manifest
            .iter()
            .find(|(k, _)| k == key)
            .map_or(default, |(_, v)| v.parse().expect("a number"))
    };
    let max_in_flight = setting("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", 256);
    let max_body = setting("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", 1 << 20);
    let bridge = BridgeProcess::start(&env);
    bridge.wait_ready().await;
    let pid = bridge.pid().expect("bridge running");

    // Just under the limit the bridge applies (the test server's
    // max_payload is 1 MiB, so a 1 MiB limit is lowered by 4 KiB).
    let body = max_body.min(1 << 20) - 8 * 1024;
    let flood_size = 4 * max_in_flight;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut flood = Vec::new();
    for _ in 0..flood_size {
        let (tx, port) = (tx.clone(), bridge.addr.port());
        flood.push(tokio::spawn(async move {
            let answer = never_finishing_post_of(port, body).await;
            let _ = tx.send(answer);
        }));
    }
    // Every request beyond the admitted ones is refused (at once or after
    // the queue timeout), while the admitted ones hold their bodies.
    let mut peak = 0;
    for n in 0..flood_size - max_in_flight {
        let answer = tokio::time::timeout(Duration::from_secs(50), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {n} refusals"))
            .expect("flood task");
        let answer = answer.expect("an answer").expect("an answer");
        assert_eq!(answer.status, 503, "{}", answer.body);
        peak = peak.max(peak_rss_kib(pid));
    }
    // The admitted bodies are all in by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    peak = peak.max(peak_rss_kib(pid));
    for task in &flood {
        task.abort();
    }
    assert!(
        peak < limit_kib,
        "peak RSS {peak} KiB is above the manifest's limit of {limit_kib} KiB"
    );
    eprintln!(
        "manifest flood: {flood_size} never-ending {body}-byte requests, max_in_flight \
         {max_in_flight}: peak RSS {peak} KiB of a {limit_kib} KiB limit"
    );
}
