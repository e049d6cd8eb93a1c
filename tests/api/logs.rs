//! Logs and trace context, read from the real binary's JSON output.

use std::time::Duration;

use crate::helpers::*;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn post_signed(url: &str, body: &str, traceparent: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("FastPix-Signature", sign(SECRET, body.as_bytes()))
        .body(body.to_owned());
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    req.send().await.expect("bridge answers").status().as_u16()
}

#[tokio::test]
async fn json_logs_carry_the_request_span_and_the_trace_reaches_the_message() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env_with(
        &nats,
        &[("RUST_LOG", "fastpix_nats_bridge=debug")],
    ));
    let url = bridge.url("/webhooks/fastpix");
    let body = event_body("video.live_stream.active", "traced-1");
    assert_eq!(post_signed(&url, &body, Some(TRACEPARENT)).await, 200);

    let line = bridge.wait_for_line(Duration::from_secs(10), |l| {
        l["message"] == "event stored" && l["span"]["event_id"] == "traced-1"
    });
    assert_eq!(line["level"], "DEBUG");
    assert_eq!(line["outcome"], "published");
    let span = &line["span"];
    assert_eq!(span["name"], "webhook");
    assert_eq!(span["event_type"], "video.live_stream.active");
    assert_eq!(span["subject"], "fastpix.video.live_stream.active");
    assert_eq!(span["traceparent"], TRACEPARENT);

    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].header("traceparent"), Some(TRACEPARENT));

    // A malformed traceparent is neither logged nor forwarded.
    let body = event_body("video.live_stream.idle", "traced-2");
    assert_eq!(
        post_signed(&url, &body, Some("00-zz-not-a-trace")).await,
        200
    );
    let line = bridge.wait_for_line(Duration::from_secs(10), |l| {
        l["message"] == "event stored" && l["span"]["event_id"] == "traced-2"
    });
    assert!(line["span"].get("traceparent").is_none(), "{line}");
    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    assert_eq!(stored[1].header("traceparent"), None);
}

#[tokio::test]
async fn at_the_default_level_only_requests_that_were_not_published_are_logged() {
    let mut nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env(&nats));
    let url = bridge.url("/webhooks/fastpix");
    for i in 0..20 {
        let body = event_body("video.media.ready", &format!("quiet-{i}"));
        assert_eq!(post_signed(&url, &body, Some(TRACEPARENT)).await, 200);
    }
    let forged = reqwest::Client::new()
        .post(&url)
        .header("FastPix-Signature", "forged")
        .body(event_body("video.media.ready", "forged-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let refused = bridge.wait_for_line(Duration::from_secs(10), |l| {
        l["message"] == "delivery refused"
    });
    assert_eq!(refused["level"], "INFO");
    assert_eq!(refused["outcome"], "bad_signature");
    // Lines are written in request order, so the published ones would be there by now.
    let per_request: Vec<String> = bridge
        .raw_lines()
        .into_iter()
        .filter(|l| l.contains("quiet-") || l.contains("event stored"))
        .collect();
    assert!(per_request.is_empty(), "{per_request:?}");

    nats.stop();
    let body = event_body("video.media.failed", "lost-1");
    assert_eq!(post_signed(&url, &body, Some(TRACEPARENT)).await, 503);
    let warned = bridge.wait_for_line(Duration::from_secs(10), |l| {
        l["message"] == "event not stored"
    });
    assert_eq!(warned["level"], "WARN");
    assert_eq!(warned["outcome"], "nats_unavailable");
    assert_eq!(warned["event_id"], "lost-1");
    assert_eq!(warned["event_type"], "video.media.failed");
    assert_eq!(warned["subject"], "fastpix.video.media.failed");
    assert_eq!(warned["traceparent"], TRACEPARENT);
    assert!(warned["error"].as_str().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn the_binary_serves_metrics_and_probes_on_the_admin_port_only() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env(&nats));
    assert_ne!(bridge.addr.port(), bridge.admin_addr.port());
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.expect("bridge answers") }
    };
    bridge.wait_ready().await;
    assert_eq!(get(bridge.admin_url("/healthz")).await.status(), 200);
    let resp = get(bridge.admin_url("/metrics")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("fastpix_bridge_requests_total{webhook=\"default\",outcome=\"published\"} 0"),
        "{text}"
    );
    assert_eq!(get(bridge.url("/metrics")).await.status(), 404);
}
