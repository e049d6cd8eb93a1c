//! `/metrics` on the admin listener, scraped after known traffic. Each bridge
//! has its own registry, so the counts are exact even with other tests
//! running in the same process.

use std::time::Duration;

use crate::helpers::*;

fn requests(outcome: &str) -> String {
    format!("fastpix_bridge_requests_total{{webhook=\"default\",outcome=\"{outcome}\"}}")
}

fn events(family: &str) -> String {
    format!("fastpix_bridge_events_published_total{{webhook=\"default\",family=\"{family}\"}}")
}

#[tokio::test]
async fn metrics_count_known_traffic_by_outcome_and_family() {
    let mut nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "2048")],
    )
    .await;

    let before = app.scrape().await;
    for outcome in [
        "published",
        "duplicate",
        "probe",
        "unsigned",
        "bad_signature",
        "too_large",
        "bad_request",
        "invalid",
        "overloaded",
        "nats_unavailable",
        "storage_full",
    ] {
        assert_eq!(before.get(&requests(outcome)), 0.0, "{outcome}");
    }
    assert_eq!(before.get("fastpix_bridge_nats_connected"), 1.0);
    assert_eq!(before.get("fastpix_bridge_ready"), 1.0);
    assert_eq!(before.get("fastpix_bridge_publishes_in_flight"), 0.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        before.get(&format!(
            "fastpix_bridge_build_info{{version=\"{version}\"}}"
        )),
        1.0
    );

    // Every seed type, then two types outside the seed families.
    for (i, t) in SEED_TYPES.iter().enumerate() {
        let resp = app.post_signed(&event_body(t, &format!("m{i}"))).await;
        assert_eq!(resp.status(), 200, "{t}");
    }
    for (i, t) in ["video.mediaAI.summary.ready", "video.>"]
        .iter()
        .enumerate()
    {
        let resp = app.post_signed(&event_body(t, &format!("o{i}"))).await;
        assert_eq!(resp.status(), 200, "{t}");
    }
    let published = SEED_TYPES.len() + 2;
    assert_eq!(
        app.post_signed(&event_body(SEED_TYPES[0], "m0"))
            .await
            .status(),
        200
    );
    assert_eq!(app.post("{}", None).await.status(), 200);
    let body = event_body("video.media.ready", "x");
    assert_eq!(app.post(&body, None).await.status(), 401);
    assert_eq!(app.post(&body, Some("forged")).await.status(), 401);
    let wrong = sign(SECRET_2, body.as_bytes());
    assert_eq!(app.post(&body, Some(&wrong)).await.status(), 401);
    let big = event_body("video.media.ready", &"x".repeat(3000));
    assert_eq!(app.post_signed(&big).await.status(), 413);
    assert_eq!(app.post_signed("[1]").await.status(), 400);

    let after = app.scrape().await;
    assert_eq!(after.get(&requests("published")), published as f64);
    assert_eq!(after.get(&requests("duplicate")), 1.0);
    assert_eq!(after.get(&requests("probe")), 1.0);
    assert_eq!(after.get(&requests("unsigned")), 1.0);
    assert_eq!(after.get(&requests("bad_signature")), 2.0);
    assert_eq!(after.get(&requests("too_large")), 1.0);
    assert_eq!(after.get(&requests("invalid")), 1.0);
    assert_eq!(after.get(&requests("nats_unavailable")), 0.0);
    // The families of the catalog, as the seed page groups its types: 5
    // media, 5 upload (one spelled `Video.media.`), 11 live stream (one of
    // them `video.asset.created`), 2 simulcast.
    for (family, n) in [
        ("media", 5.0),
        ("upload", 5.0),
        ("live_stream", 11.0),
        ("simulcast", 2.0),
        ("other", 2.0),
    ] {
        assert_eq!(after.get(&events(family)), n, "{family}");
    }
    let answered = published + 1 + 1 + 1 + 2 + 1 + 1;
    assert_eq!(
        after.get("fastpix_bridge_request_duration_seconds_count{webhook=\"default\"}"),
        answered as f64
    );
    assert_eq!(
        after
            .get("fastpix_bridge_request_duration_seconds_bucket{webhook=\"default\",le=\"+Inf\"}"),
        answered as f64
    );
    // Acknowledged publishes: the events, the duplicate, the kept invalid body.
    assert_eq!(
        after.get("fastpix_bridge_publish_duration_seconds_count"),
        (published + 2) as f64
    );
    assert_eq!(after.get("fastpix_bridge_publishes_in_flight"), 0.0);
    assert!(
        after
            .0
            .contains("# TYPE fastpix_bridge_request_duration_seconds histogram")
    );
    assert!(after.0.contains("# HELP fastpix_bridge_requests_total "));

    // The public port does not serve metrics; the admin port serves the probes too.
    assert_eq!(app.get_status("/metrics").await, 404);
    for path in ["/healthz", "/readyz"] {
        let resp = app.http.get(app.admin_url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    nats.stop();
    let resp = app
        .post_signed(&event_body("video.media.ready", "while-down"))
        .await;
    assert_eq!(resp.status(), 503);
    let down = eventually(Duration::from_secs(10), || async {
        let s = app.scrape().await;
        s.get("fastpix_bridge_nats_connected") == 0.0 && s.get("fastpix_bridge_ready") == 0.0
    })
    .await;
    let s = app.scrape().await;
    assert!(down, "NATS state not reported as down:\n{}", s.0);
    assert_eq!(s.get(&requests("nats_unavailable")), 1.0);
    assert_eq!(s.get(&requests("published")), published as f64);
    let resp = app.http.get(app.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn publishes_waiting_for_their_ack_are_counted_in_flight() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "30s")],
    )
    .await;
    nats.freeze();
    let http = app.http.clone();
    let url = app.webhook_url();
    let body = event_body("video.media.ready", "slow-ack");
    let sig = sign(SECRET, body.as_bytes());
    let pending = tokio::spawn(async move {
        http.post(url)
            .header("FastPix-Signature", sig)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let stuck = eventually(Duration::from_secs(10), || async {
        app.scrape().await.get("fastpix_bridge_publishes_in_flight") == 1.0
    })
    .await;
    nats.thaw();
    assert!(stuck, "publish awaiting its ack not counted in flight");
    assert_eq!(pending.await.unwrap().unwrap(), 200);
    let s = app.scrape().await;
    assert_eq!(s.get("fastpix_bridge_publishes_in_flight"), 0.0);
    assert_eq!(s.get(&requests("published")), 1.0);
}
