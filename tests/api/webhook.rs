//! The delivery rules of the bridge, one test per rule, against a real
//! nats-server and real HTTP.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn every_seed_event_type_lands_on_its_subject_unchanged_with_headers() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let mut sent = Vec::new();
    for (i, t) in SEED_TYPES.iter().enumerate() {
        let body = event_body(t, &format!("evt-{i}"));
        let resp = app.post_signed(&body).await;
        assert_eq!(resp.status(), 200, "{t}");
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(answer["subject"], format!("fastpix.{t}"));
        assert_eq!(answer["stream"], "FASTPIX");
        assert_eq!(answer["duplicate"], false);
        assert_eq!(answer["seq"], (i + 1) as u64);
        sent.push((t, body, format!("evt-{i}")));
    }
    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    assert_eq!(stored.len(), SEED_TYPES.len());
    for (m, (t, body, id)) in stored.iter().zip(&sent) {
        assert_eq!(m.subject, format!("fastpix.{t}"));
        assert_eq!(m.payload, body.as_bytes(), "payload must be byte-identical");
        assert_eq!(m.header("Nats-Msg-Id"), Some(id.as_str()));
        assert_eq!(m.header("FastPix-Event-Id"), Some(id.as_str()));
        assert_eq!(m.header("FastPix-Event-Type"), Some(**t));
        assert_eq!(m.header("FastPix-Object-Type"), Some("media"));
        assert_eq!(
            m.header("FastPix-Object-Id"),
            Some(format!("obj-{id}").as_str())
        );
        assert_eq!(m.header("FastPix-Workspace-Id"), Some("ws-test"));
        assert_eq!(m.header("Content-Type"), Some("application/json"));
    }
}

#[tokio::test]
async fn sdk_types_and_hostile_types_are_routed_safely() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let cases = [
        (
            "video.mediaAI.summary.ready",
            "fastpix.video.mediaAI.summary.ready",
        ),
        (
            "video.media.mp4Support.ready",
            "fastpix.video.media.mp4Support.ready",
        ),
        ("video.media.ready*", "fastpix.video.media.ready_"),
        ("video..idle", "fastpix.video._.idle"),
        ("video.>", "fastpix.video._"),
        ("a b.c", "fastpix.a_b.c"),
    ];
    for (i, (t, want)) in cases.iter().enumerate() {
        let resp = app.post_signed(&event_body(t, &format!("h{i}"))).await;
        assert_eq!(resp.status(), 200, "{t}");
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(answer["subject"], *want, "{t}");
    }
    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    let subjects: Vec<_> = stored.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, cases.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    assert_eq!(
        stored[2].header("FastPix-Event-Type"),
        Some("video.media.ready*")
    );
}

#[tokio::test]
async fn older_envelope_and_missing_id_still_publish() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let body = r#"{"type":"video.live_stream.idle","environment":{"id":"env-1"},"created_at":"2026-01-01T00:00:00Z","webhookId":7}"#;
    assert_eq!(app.post_signed(body).await.status(), 200);
    let m = &stream_messages(&nats.client().await, "FASTPIX").await[0];
    assert_eq!(m.header("FastPix-Workspace-Id"), Some("env-1"));
    assert_eq!(m.header("FastPix-Event-Id"), None);
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
    assert_eq!(m.header("Nats-Msg-Id"), Some(hash.as_str()));
}

#[tokio::test]
async fn validation_probes_get_200_and_are_not_published() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    for body in ["", "{}", " {} \n"] {
        let resp = app.post(body, None).await;
        assert_eq!(resp.status(), 200, "{body:?}");
    }
    // A signed JSON object without `type` is a probe too.
    let resp = app.post_signed(r#"{"hello":"fastpix"}"#).await;
    assert_eq!(resp.status(), 200);
    // Something that is published afterwards gets sequence 1: nothing came before it.
    let resp = app
        .post_signed(&event_body("video.media.ready", "after-probes"))
        .await;
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["seq"], 1);
}

#[tokio::test]
async fn missing_or_wrong_signatures_get_401_and_nothing_is_published() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let body = event_body("video.media.ready", "forged");
    let wrong_secret = sign(SECRET_2, body.as_bytes());
    let other_body = sign(SECRET, b"{\"type\":\"video.media.ready\"}");
    for signature in [
        None,
        Some(wrong_secret.as_str()),
        Some(other_body.as_str()),
        Some("garbage"),
        Some(""),
    ] {
        let resp = app.post(&body, signature).await;
        assert_eq!(resp.status(), 401, "{signature:?}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert!(err["error"].as_str().unwrap().contains("FastPix-Signature"));
    }
    // An unsigned `{}` with a wrong signature is not a probe.
    assert_eq!(app.post("{}", Some(&wrong_secret)).await.status(), 401);
    let info = stream_info(&nats.client().await, "FASTPIX").await;
    assert_eq!(info.state.messages, 0);
}

#[tokio::test]
async fn any_configured_secret_is_accepted() {
    let nats = NatsServer::start();
    let secrets = format!("{SECRET},{SECRET_2}");
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", &secrets)],
    )
    .await;
    let body = event_body("video.media.ready", "second-secret");
    let resp = app
        .post(&body, Some(&sign(SECRET_2, body.as_bytes())))
        .await;
    assert_eq!(resp.status(), 200);
    let body = event_body("video.media.ready", "first-secret");
    assert_eq!(app.post_signed(&body).await.status(), 200);
    assert_eq!(
        stream_messages(&nats.client().await, "FASTPIX").await.len(),
        2
    );
}

#[tokio::test]
async fn unsigned_events_are_published_only_when_allowed() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", ""),
            ("FASTPIX_BRIDGE__WEBHOOK__ALLOW_UNSIGNED", "true"),
        ],
    )
    .await;
    let resp = app.post(&event_body("video.media.ready", "u1"), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        stream_messages(&nats.client().await, "FASTPIX").await.len(),
        1
    );
}

#[tokio::test]
async fn bodies_above_the_limit_get_413_even_when_chunked() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "1024")],
    )
    .await;
    let big = event_body("video.media.ready", &"x".repeat(2000));
    let resp = app.post_signed(&big).await;
    assert_eq!(resp.status(), 413);

    // Chunked: no Content-Length, so the limit must hold while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(100).map(|c| Ok(c.to_vec())).collect();
    let resp = app
        .http
        .post(app.webhook_url())
        .header("FastPix-Signature", sign(SECRET, big.as_bytes()))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("larger than"));

    // Just under the limit still goes through.
    let small = event_body("video.media.ready", "small");
    assert!(small.len() < 1024);
    assert_eq!(app.post_signed(&small).await.status(), 200);
    assert_eq!(
        stream_messages(&nats.client().await, "FASTPIX").await.len(),
        1
    );
}

#[tokio::test]
async fn signed_bodies_that_are_not_events_get_400_and_are_kept_on_invalid() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let long_type = "a".repeat(257);
    let many_tokens = ["t"; 17].join(".");
    let cases: Vec<(String, &str)> = vec![
        ("[1,2,3]".to_owned(), "not a JSON object"),
        ("not json".to_owned(), "not a JSON object"),
        ("   ".to_owned(), "not a JSON object"),
        (r#"{"type":42,"id":"n"}"#.to_owned(), "not a string"),
        (r#"{"type":"","id":"e"}"#.to_owned(), "empty"),
        (format!(r#"{{"type":"{long_type}"}}"#), "256 bytes"),
        (format!(r#"{{"type":"{many_tokens}"}}"#), "16"),
        (r#"{"type":"a","type":"b"}"#.to_owned(), "more than once"),
    ];
    for (body, reason) in &cases {
        let resp = app.post_signed(body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert!(
            err["error"].as_str().unwrap().contains(reason),
            "{body}: {err}"
        );
    }
    // A retry of the same bad delivery is not stored twice.
    assert_eq!(app.post_signed(&cases[0].0).await.status(), 400);

    // Kept in a stream of their own: they never take the events stream's room.
    let client = nats.client().await;
    assert!(stream_messages(&client, "FASTPIX").await.is_empty());
    let stored = stream_messages(&client, "FASTPIX_INVALID").await;
    assert_eq!(stored.len(), cases.len());
    for (m, (body, reason)) in stored.iter().zip(&cases) {
        assert_eq!(m.subject, "fastpix_invalid");
        assert_eq!(m.payload, body.as_bytes());
        assert!(
            m.decoded_header("FastPix-Bridge-Error")
                .unwrap()
                .contains(reason)
        );
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
        assert_eq!(m.header("Nats-Msg-Id"), Some(hash.as_str()));
    }
}

#[tokio::test]
async fn the_same_id_twice_is_stored_once_and_both_get_2xx() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let body = event_body("video.live_stream.active", "dup-1");
    let first: serde_json::Value = app.post_signed(&body).await.json().await.unwrap();
    let resp = app.post_signed(&body).await;
    assert_eq!(resp.status(), 200);
    let second: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["seq"], second["seq"]);
    // Same id, different bytes (a FastPix retry with new `attempts`): still once.
    let retried = body.replace("\"attempts\":[]", "\"attempts\":[{\"status\":500}]");
    assert_ne!(retried, body);
    let third: serde_json::Value = app.post_signed(&retried).await.json().await.unwrap();
    assert_eq!(third["duplicate"], true);
    assert_eq!(
        stream_messages(&nats.client().await, "FASTPIX").await.len(),
        1
    );
}

#[tokio::test]
async fn the_stream_is_created_or_updated_at_startup() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    // An existing stream with other settings is brought to the configured ones.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["other.>".into()],
        max_age: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .unwrap();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__JETSTREAM__STREAM", "EVENTS"),
            ("FASTPIX_BRIDGE__JETSTREAM__MAX_AGE", "2d"),
            ("FASTPIX_BRIDGE__JETSTREAM__DUPLICATE_WINDOW", "10m"),
            ("FASTPIX_BRIDGE__SUBJECT__PREFIX", "acme.fp"),
        ],
    )
    .await;
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.subjects, vec!["acme.fp.>".to_owned()]);
    assert_eq!(info.config.max_age, Duration::from_secs(2 * 86400));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(600));
    assert!(
        info.config.allow_direct,
        "one event can be read by sequence from any replica"
    );
    let resp: serde_json::Value = app
        .post_signed(&event_body("video.media.ready", "p1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resp["subject"], "acme.fp.video.media.ready");
    assert_eq!(resp["stream"], "EVENTS");
}

#[tokio::test]
async fn core_mode_publishes_and_flushes_before_answering() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let mut sub = client.subscribe("fastpix.>").await.unwrap();
    // flush() only writes the socket; a marker coming back proves the server has the subscription.
    client.publish("fastpix.marker", "m".into()).await.unwrap();
    let marker = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut sub),
    )
    .await
    .expect("marker arrives")
    .unwrap();
    assert_eq!(marker.subject.as_str(), "fastpix.marker");
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__JETSTREAM__ENABLED", "false")],
    )
    .await;
    assert_eq!(app.get_status("/readyz").await, 200);
    let body = event_body("video.live_stream.connected", "core-1");
    let resp = app.post_signed(&body).await;
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["stream"], serde_json::Value::Null);
    let msg = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut sub),
    )
    .await
    .expect("message arrives")
    .unwrap();
    assert_eq!(msg.subject.as_str(), "fastpix.video.live_stream.connected");
    assert_eq!(msg.payload.as_ref(), body.as_bytes());
    assert_eq!(
        msg.headers.unwrap().get("Nats-Msg-Id").unwrap().as_str(),
        "core-1"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    assert_eq!(app.get_status("/healthz").await, 200);
    assert_eq!(app.get_status("/readyz").await, 200);
}

#[tokio::test]
async fn nats_down_gives_503_within_the_timeout_and_recovers_after_restart() {
    let mut nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "1s")],
    )
    .await;
    assert_eq!(
        app.post_signed(&event_body("video.media.ready", "before"))
            .await
            .status(),
        200
    );

    nats.stop();
    for i in 0..3 {
        let started = Instant::now();
        let resp = app
            .post_signed(&event_body("video.media.ready", &format!("during-{i}")))
            .await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().get("retry-after").is_some());
        // Within the publish timeout, plus slack for a slow shared machine.
        assert!(took < Duration::from_secs(3), "503 took {took:?}");
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.get_status("/readyz").await == 503
        })
        .await
    );
    assert_eq!(app.get_status("/healthz").await, 200);

    nats.restart();
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.get_status("/readyz").await == 200
        })
        .await,
        "bridge reconnects on its own"
    );
    let resp = app
        .post_signed(&event_body("video.media.ready", "after"))
        .await;
    assert_eq!(resp.status(), 200);
    let ids: Vec<String> = stream_messages(&nats.client().await, "FASTPIX")
        .await
        .iter()
        .map(|m| m.header("Nats-Msg-Id").unwrap().to_owned())
        .collect();
    assert!(
        ids.contains(&"before".to_owned()) && ids.contains(&"after".to_owned()),
        "{ids:?}"
    );
}

#[tokio::test]
async fn a_bridge_started_before_nats_serves_health_and_becomes_ready() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let app =
        TestApp::spawn_with(&url, &[("FASTPIX_BRIDGE__NATS__CONNECT_TIMEOUT", "200ms")]).await;
    assert_eq!(app.get_status("/healthz").await, 200);
    assert_eq!(app.get_status("/readyz").await, 503);
    let resp = app
        .post_signed(&event_body("video.media.ready", "early"))
        .await;
    assert_eq!(resp.status(), 503);
    // Probes are answered even without NATS, so the endpoint can be registered.
    assert_eq!(app.post("{}", None).await.status(), 200);

    let nats = NatsServer::start_on_port(port);
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.get_status("/readyz").await == 200
        })
        .await
    );
    assert_eq!(
        app.post_signed(&event_body("video.media.ready", "late"))
            .await
            .status(),
        200
    );
    assert_eq!(
        stream_messages(&nats.client().await, "FASTPIX").await.len(),
        1
    );
}

#[tokio::test]
async fn a_body_limit_above_the_servers_max_payload_is_refused_at_startup() {
    let nats = NatsServer::start_with_config("max_payload: 65536");
    let settings = test_settings(
        &nats.url(),
        &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "1048576")],
    );
    let err = match fastpix_nats_bridge::bridge::startup::Application::build(settings).await {
        Ok(_) => panic!("startup must refuse"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("http.max_body_bytes") && err.contains("65536"),
        "{err}"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_publishes() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let http = app.http.clone();
    let url = app.webhook_url();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (http, url) = (http.clone(), url.clone());
        let body = event_body("video.media.ready", &format!("inflight-{i}"));
        tasks.push(tokio::spawn(async move {
            let sig = sign(SECRET, body.as_bytes());
            let r = http
                .post(url)
                .header("FastPix-Signature", sig)
                .body(body)
                .send()
                .await;
            (i, r.map(|r| r.status().as_u16()))
        }));
    }
    // Shut down once traffic flows, so the stop lands among requests in flight.
    let client = nats.client().await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            !stream_messages(&client, "FASTPIX").await.is_empty()
        })
        .await,
        "no event stored before shutdown"
    );
    app.shutdown().await.expect("clean shutdown");
    let stored: std::collections::HashSet<String> = stream_messages(&client, "FASTPIX")
        .await
        .iter()
        .map(|m| m.header("Nats-Msg-Id").unwrap().to_owned())
        .collect();
    let mut answered = 0;
    for t in tasks {
        let (i, status) = t.await.unwrap();
        // Refused connections are fine (the listener closed); an answer is 200.
        if let Ok(status) = status {
            assert_eq!(status, 200, "event {i}");
            answered += 1;
            assert!(
                stored.contains(&format!("inflight-{i}")),
                "2xx'd event {i} not stored"
            );
        }
    }
    assert!(answered > 0, "no request was answered");
}
