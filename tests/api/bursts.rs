//! Bursts: a delivery that finds every slot (`http.max_in_flight`) taken
//! waits for one, first come first served, up to `http.queue_timeout`,
//! behind at most `http.max_queued` others; waiting requests read no body.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::helpers::*;

/// Takes the bridge's one slot and keeps it: a signed-looking request whose
/// body never ends. Dropping the returned task closes the socket, which
/// frees the slot.
async fn hold_the_slot(app: &TestApp) -> tokio::task::JoinHandle<()> {
    let port = app.addr.port();
    let (sent, written) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(async move {
        let _ = raw_exchange(port, |mut wr| async move {
            let head = "POST /webhooks/fastpix HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                        FastPix-Signature: AAAA\r\nContent-Length: 1000\r\n\r\n{";
            let _ = wr.write_all(head.as_bytes()).await;
            let _ = sent.send(());
            std::future::pending::<()>().await
        })
        .await;
    });
    written.await.expect("the holder connects");
    // The bridge runs on this test's runtime: give it a moment to admit
    // the holder before anything else arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder
}

async fn waiting(app: &TestApp) -> f64 {
    app.scrape().await.get("fastpix_bridge_requests_waiting")
}

async fn wait_for_waiting(app: &TestApp, n: f64) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            waiting(app).await == n
        })
        .await,
        "never saw {n} requests waiting (now {})",
        waiting(app).await
    );
}

fn spawn_post(app: &TestApp, id: &str) -> tokio::task::JoinHandle<(u16, Duration, String)> {
    let (http, url, body) = (
        app.http.clone(),
        app.webhook_url(),
        event_body("video.media.ready", id),
    );
    tokio::spawn(async move {
        let asked = Instant::now();
        let resp = http
            .post(url)
            .header("FastPix-Signature", sign(SECRET, body.as_bytes()))
            .body(body)
            .send()
            .await
            .expect("request reaches the bridge");
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, asked.elapsed(), retry)
    })
}

#[tokio::test]
async fn a_delivery_that_finds_no_free_slot_waits_and_is_admitted_when_one_frees() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", "1"),
            ("FASTPIX_BRIDGE__HTTP__QUEUE_TIMEOUT", "30s"),
        ],
    )
    .await;
    let holder = hold_the_slot(&app).await;
    let waiter = spawn_post(&app, "admitted-after-wait");
    wait_for_waiting(&app, 1.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter was answered while the slot was held"
    );

    holder.abort();
    let (status, took, _) = waiter.await.unwrap();
    assert_eq!(status, 200, "admitted once the slot freed");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let s = app.scrape().await;
    assert_eq!(s.get("fastpix_bridge_requests_waiting"), 0.0);
    assert!(
        s.get("fastpix_bridge_slot_wait_seconds_count") >= 1.0,
        "{}",
        s.0
    );
    let ids: Vec<_> = stream_messages(&nats.client().await, "FASTPIX")
        .await
        .into_iter()
        .filter_map(|m| m.header("FastPix-Event-Id").map(str::to_owned))
        .collect();
    assert!(ids.contains(&"admitted-after-wait".to_owned()), "{ids:?}");
}

#[tokio::test]
async fn waiters_are_admitted_first_come_first_served() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", "1"),
            ("FASTPIX_BRIDGE__HTTP__QUEUE_TIMEOUT", "30s"),
        ],
    )
    .await;
    let holder = hold_the_slot(&app).await;
    let mut waiters = Vec::new();
    for i in 0..5 {
        waiters.push(spawn_post(&app, &format!("fifo-{i}")));
        // Each one in line before the next arrives.
        wait_for_waiting(&app, (i + 1) as f64).await;
    }
    holder.abort();
    for w in waiters {
        assert_eq!(w.await.unwrap().0, 200);
    }
    // One slot: each is stored before the next is admitted, so the stream's
    // order is the order of admission.
    let ids: Vec<_> = stream_messages(&nats.client().await, "FASTPIX")
        .await
        .into_iter()
        .filter_map(|m| m.header("FastPix-Event-Id").map(str::to_owned))
        .filter(|id| id.starts_with("fifo-"))
        .collect();
    let want: Vec<_> = (0..5).map(|i| format!("fifo-{i}")).collect();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn beyond_max_queued_the_answer_is_503_at_once() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", "1"),
            ("FASTPIX_BRIDGE__HTTP__MAX_QUEUED", "2"),
            ("FASTPIX_BRIDGE__HTTP__QUEUE_TIMEOUT", "60s"),
        ],
    )
    .await;
    let holder = hold_the_slot(&app).await;
    let first = spawn_post(&app, "queued-1");
    let second = spawn_post(&app, "queued-2");
    wait_for_waiting(&app, 2.0).await;
    // The queue is full: the third is refused without waiting the 60 s.
    let (status, took, retry) = spawn_post(&app, "beyond-the-queue").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(retry, "2");
    assert!(took < Duration::from_secs(20), "refused after {took:?}");
    assert_eq!(waiting(&app).await, 2.0);
    holder.abort();
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(second.await.unwrap().0, 200);
    let s = app.scrape().await;
    assert!(
        s.get("fastpix_bridge_requests_total{webhook=\"default\",outcome=\"overloaded\"}") >= 1.0
    );
}

#[tokio::test]
async fn a_waiter_is_refused_with_503_once_the_queue_timeout_passes() {
    let queue_timeout = Duration::from_secs(2);
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", "1"),
            ("FASTPIX_BRIDGE__HTTP__QUEUE_TIMEOUT", "2s"),
            ("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "60s"),
        ],
    )
    .await;
    let _holder = hold_the_slot(&app).await;
    let (status, took, retry) = spawn_post(&app, "timed-out").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(retry, "2");
    // It waited (not refused at once), and no longer than the timeout plus
    // slack for a loaded machine.
    assert!(
        took >= queue_timeout - Duration::from_millis(100),
        "{took:?}"
    );
    assert!(took < queue_timeout + Duration::from_secs(5), "{took:?}");
    let s = app.scrape().await;
    assert_eq!(s.get("fastpix_bridge_requests_waiting"), 0.0);
    assert!(s.get("fastpix_bridge_slot_wait_seconds_count") >= 1.0);
}

#[tokio::test]
async fn a_slow_client_ahead_holds_the_line_no_longer_than_the_body_timeout() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", "1"),
            ("FASTPIX_BRIDGE__HTTP__QUEUE_TIMEOUT", "60s"),
            ("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "2s"),
        ],
    )
    .await;
    // The slow client is never dropped: only the body timeout frees its slot.
    let _slow = hold_the_slot(&app).await;
    let (status, took, _) = spawn_post(&app, "behind-a-slow-client").await.unwrap();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(20), "{took:?}");
}
