//! A bounded stream: when `jetstream.max_bytes` is reached, deliveries get
//! `503` with `Retry-After` and outcome `storage_full`, readiness stays up,
//! nothing acknowledged is lost, and once there is room the senders'
//! retries are stored exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;

use crate::helpers::*;

/// The smallest bound the settings take: a hundred or so test events.
const SMALL: &str = "65536";

/// An event of the same size whatever its number, so that once one does not
/// fit, none does.
fn sized_event(sender: usize, n: usize) -> (String, String) {
    let id = format!("full-{sender:02}-{n:05}");
    (id.clone(), event_body("video.media.ready", &id))
}

/// Polls `/readyz` until told to stop; counts every answer that is not 200.
fn watch_readiness(app: &TestApp, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let (http, url) = (app.http.clone(), app.url("/readyz"));
    tokio::spawn(async move {
        let (mut polls, mut not_ready) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            let ok = http.get(&url).send().await.is_ok_and(|r| r.status() == 200);
            polls += 1;
            not_ready += u64::from(!ok);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (polls, not_ready)
    })
}

#[tokio::test]
async fn a_full_stream_answers_503_storage_full_and_the_retries_are_stored_once_there_is_room() {
    let nats = NatsServer::start();
    let app = Arc::new(
        TestApp::spawn_with(
            &nats.url(),
            &[("FASTPIX_BRIDGE__JETSTREAM__MAX_BYTES", SMALL)],
        )
        .await,
    );
    let client = nats.client().await;
    let info = stream_info(&client, "FASTPIX").await;
    assert_eq!(info.config.max_bytes, 65536);
    assert_eq!(
        info.config.discard,
        jetstream::stream::DiscardPolicy::New,
        "a full stream refuses new events rather than dropping stored ones"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let readiness = watch_readiness(&app, stop.clone());

    // Four senders, each sending its own events in order and stopping at
    // its first refusal, as FastPix does with an endpoint that answers 503.
    // `full_seen` is raised once any sender was told the stream is full:
    // every answer to a request sent after that must be storage_full.
    let full_seen = Arc::new(AtomicBool::new(false));
    let late_successes = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for s in 0..4 {
        let (app, full_seen, late) = (app.clone(), full_seen.clone(), late_successes.clone());
        senders.push(tokio::spawn(async move {
            let mut stored = Vec::new();
            for n in 0..1000 {
                let (id, body) = sized_event(s, n);
                let after_full = full_seen.load(Ordering::SeqCst);
                let resp = app.post_signed(&body).await;
                let status = resp.status().as_u16();
                let retry_after = resp.headers().get("retry-after").cloned();
                let answer: serde_json::Value = resp.json().await.unwrap();
                if status == 200 {
                    late.fetch_add(u64::from(after_full), Ordering::SeqCst);
                    stored.push(id);
                    continue;
                }
                assert_eq!(status, 503, "{answer}");
                assert_eq!(answer["outcome"], "storage_full", "{answer}");
                assert!(retry_after.is_some(), "a 503 says when to retry");
                full_seen.store(true, Ordering::SeqCst);
                return (stored, n);
            }
            panic!("sender {s}: 1000 events fit in a 64 KiB stream");
        }));
    }
    let mut acknowledged = Vec::new();
    let mut pending = Vec::new();
    for (s, sender) in senders.into_iter().enumerate() {
        let (stored, next) = sender.await.unwrap();
        acknowledged.extend(stored);
        pending.push((s, next));
    }
    assert_eq!(
        late_successes.load(Ordering::SeqCst),
        0,
        "a request sent after the stream was full was stored"
    );
    // Retried while full: still refused the same way, every time.
    for _ in 0..3 {
        for &(s, n) in &pending {
            let resp = app.post_signed(&sized_event(s, n).1).await;
            assert_eq!(resp.status(), 503);
            assert!(resp.headers().contains_key("retry-after"));
            let answer: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(answer["outcome"], "storage_full", "{answer}");
        }
    }

    // Every event answered 2xx is stored, once.
    let stored = stream_messages(&client, "FASTPIX").await;
    let ids: Vec<&str> = stored
        .iter()
        .filter_map(|m| m.header("Nats-Msg-Id"))
        .collect();
    assert_eq!(ids.len(), acknowledged.len());
    for id in &acknowledged {
        assert!(
            ids.contains(&id.as_str()),
            "{id} was acknowledged and is not stored"
        );
    }

    // The metrics tell it apart from NATS being down, and say how full.
    let full = "fastpix_bridge_requests_total{webhook=\"default\",outcome=\"storage_full\"}";
    let unavailable =
        "fastpix_bridge_requests_total{webhook=\"default\",outcome=\"nats_unavailable\"}";
    let scrape = app.scrape().await;
    assert!(scrape.get(full) >= 4.0 + 12.0);
    assert_eq!(scrape.get(unavailable), 0.0);
    assert_eq!(
        scrape.get("fastpix_bridge_stream_max_bytes{stream=\"FASTPIX\"}"),
        65536.0
    );
    let filled = eventually(Duration::from_secs(60), || async {
        app.scrape()
            .await
            .value("fastpix_bridge_stream_bytes{stream=\"FASTPIX\"}")
            .is_some_and(|b| b > 65536.0 * 0.95)
    })
    .await;
    assert!(filled, "the bytes gauge shows the stream full");

    // An operator raises the limit: the senders' retries are stored, once.
    let mut config = info.config.clone();
    config.max_bytes = 4 * 1024 * 1024;
    jetstream::new(client.clone())
        .update_stream(config)
        .await
        .unwrap();
    let mut expected: BTreeMap<String, ()> = acknowledged.iter().map(|i| (i.clone(), ())).collect();
    for &(s, n) in &pending {
        for n in n..n + 5 {
            let (id, body) = sized_event(s, n);
            // Sent twice: FastPix's retry of an event it did not see answered.
            for _ in 0..2 {
                let resp = app.post_signed(&body).await;
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
            }
            expected.insert(id, ());
        }
    }
    let stored = stream_messages(&client, "FASTPIX").await;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &stored {
        *counts.entry(m.header("Nats-Msg-Id").unwrap()).or_default() += 1;
    }
    assert_eq!(counts.len(), expected.len());
    assert!(counts.values().all(|&c| c == 1), "stored more than once");
    assert!(expected.keys().all(|id| counts.contains_key(id.as_str())));

    stop.store(true, Ordering::SeqCst);
    let (polls, not_ready) = readiness.await.unwrap();
    assert!(polls > 0);
    assert_eq!(not_ready, 0, "readiness left 200 while storage was full");
}

#[tokio::test]
async fn a_bound_below_what_the_stream_holds_keeps_every_event_and_says_the_stream_is_full() {
    let nats = NatsServer::start();
    let first = TestApp::spawn(&nats).await;
    for n in 0..200 {
        let (_, body) = sized_event(9, n);
        assert_eq!(first.post_signed(&body).await.status(), 200);
    }
    first.shutdown().await.unwrap();
    let client = nats.client().await;
    let before = stream_messages(&client, "FASTPIX").await.len();
    assert_eq!(before, 200);

    // Restarted with a bound the stream is already over: nothing is purged.
    let bridge = BridgeProcess::start(&bridge_env_with(
        &nats,
        &[("FASTPIX_BRIDGE__JETSTREAM__MAX_BYTES", SMALL)],
    ));
    bridge.wait_ready().await;
    let limits = bridge.wait_for_line(Duration::from_secs(60), |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stream in place"))
    });
    assert_eq!(limits["max_bytes"], 65536, "{limits}");
    assert_eq!(limits["discard"], "new", "{limits}");
    let full = bridge.wait_for_line(Duration::from_secs(60), |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("the stream is full"))
    });
    assert_eq!(full["level"], "ERROR", "{full}");
    assert_eq!(stream_messages(&client, "FASTPIX").await.len(), before);

    let http = reqwest::Client::new();
    let (_, body) = sized_event(9, 999);
    let resp = bridge.post_signed(body).await;
    assert_eq!(resp.status(), 503);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["outcome"], "storage_full");
    let ready = http.get(bridge.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(stream_messages(&client, "FASTPIX").await.len(), before);
}

#[tokio::test]
async fn a_message_larger_than_the_stream_takes_is_413_not_a_retry_forever() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    // An operator shrinks the stream's largest message below what the bridge accepts.
    let js = jetstream::new(nats.client().await);
    let mut config = js
        .get_stream("FASTPIX")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    config.max_message_size = 2048;
    js.update_stream(config).await.unwrap();
    let mut body: serde_json::Value =
        serde_json::from_str(&event_body("video.media.ready", "big-1")).unwrap();
    body["data"]["note"] = "x".repeat(4096).into();
    let resp = app.post_signed(&body.to_string()).await;
    assert_eq!(resp.status(), 413);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["outcome"], "too_large", "{answer}");
    // A small one is still stored: nothing else changed.
    let resp = app
        .post_signed(&event_body("video.media.ready", "small-1"))
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_bound_the_server_cannot_reserve_is_named_in_the_log_while_the_bridge_answers_503() {
    // 8 GiB (the default) on a server whose JetStream store is 64 MiB.
    let nats = NatsServer::start_with_config("jetstream {\n  max_file_store: 64MB\n}\n");
    let bridge = BridgeProcess::start(&bridge_env(&nats));
    let refused = bridge.wait_for_line(Duration::from_secs(60), |l| {
        l["message"] == "cannot create or update the stream; retrying"
    });
    assert_eq!(refused["level"], "ERROR");
    assert!(
        refused["hint"]
            .as_str()
            .is_some_and(|h| h.contains("jetstream.max_bytes")),
        "{refused}"
    );
    let http = reqwest::Client::new();
    let ready = http.get(bridge.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let (_, body) = sized_event(7, 1);
    let resp = bridge.post_signed(body).await;
    assert_eq!(resp.status(), 503);
}
