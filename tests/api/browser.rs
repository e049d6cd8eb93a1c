//! The inspector's page in a real headless Chromium (Debian's `chromium`),
//! driven by Playwright for Python: see tests/python/inspector_browser.py.
//! A forwarder (the real binary) delivers the media events to a receiver on
//! loopback, so that the page has a destination to show.
//! Screenshots are kept in target/test-artifacts/inspector/.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use crate::forward::{Forwarder, Got, Receiver, Reply, consumer_ready, dead_of, dest_env};
use crate::helpers::*;
use crate::inspector::{TOKEN, TestInspector};

#[tokio::test]
async fn the_page_shows_events_refusals_consumers_and_destinations_in_a_real_browser() {
    let (Some(python), Some(chromium)) =
        (external_tool("TEST_PYTHON"), external_tool("CHROMIUM_BIN"))
    else {
        return;
    };
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    // A forward destination taking media events: it refuses one (its
    // answer is markup, which the page must show as text) and takes the
    // rest. One attempt, one at a time: the refusal is a dead letter at
    // once, and the last status is the 200 of the events after it.
    let refused_id = "refused-by-crm";
    let answer = "<img src=x onerror=window.__xss=2>";
    let receiver = Receiver::start(Arc::new(move |g: &Got, _| {
        if g.id() == refused_id {
            Reply {
                answer,
                ..Reply::status(400)
            }
        } else {
            Reply::OK
        }
    }))
    .await;
    let forwarder = Forwarder::start(
        &nats,
        &[],
        &dest_env(
            "crm",
            &receiver.url(),
            SECRET,
            &[
                ("FAMILIES", "media"),
                ("MAX_ATTEMPTS", "1"),
                ("CONCURRENCY", "1"),
            ],
        ),
    );
    consumer_ready(&nats, "forward-crm", &forwarder).await;
    assert_eq!(
        app.post_signed(&event_body("video.media.failed", refused_id))
            .await
            .status(),
        200
    );
    for (i, t) in SEED_TYPES.iter().enumerate() {
        assert_eq!(
            app.post_signed(&event_body(t, &format!("seed-{i}")))
                .await
                .status(),
            200
        );
    }
    // An event carrying markup, which the page must show as text.
    let hostile = serde_json::json!({
        "type": "video.media.updated",
        "id": "hostile-1",
        "object": { "type": "media", "id": "<img src=x onerror=window.__xss=1>" },
        "data": { "title": "<script>window.__xss=1</script>" }
    })
    .to_string();
    assert_eq!(app.post_signed(&hostile).await.status(), 200);
    // A live stream's credentials, which the page must not show.
    let secrets = ["sk-browser-0d15ea5e", "srt-browser-f00d"];
    let keyed = serde_json::json!({
        "type": "video.live_stream.created",
        "id": "keyed-1",
        "object": { "type": "live_stream", "id": "ls-keyed" },
        "data": { "streamKey": secrets[0], "srtSecret": secrets[1], "simulcast": [{ "streamKey": secrets[0] }] }
    })
    .to_string();
    assert_eq!(app.post_signed(&keyed).await.status(), 200);
    assert_eq!(
        app.post(&event_body("video.media.ready", "forged"), Some("YmFk"))
            .await
            .status(),
        401
    );
    let client = nats.client().await;
    let js = jetstream::new(client);
    js.get_stream("FASTPIX")
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("media-catalog".into()),
            filter_subject: "fastpix.video.media.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    // The forwarder is done, and its lease says so, before the page looks.
    let ok = eventually(Duration::from_secs(120), || async {
        let d = insp.ok("/api/consumers").await["destinations"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["consumer"] == "forward-crm").cloned())
            .unwrap_or_default();
        d["state"] == "delivering"
            && d["pending"] == 0
            && d["last_status"] == "200"
            && !dead_of(&nats, "forward-crm").await.is_empty()
    })
    .await;
    assert!(ok, "the forwarder did not deliver the media events");
    let delivered_id = format!(
        "seed-{}",
        SEED_TYPES
            .iter()
            .position(|t| t.starts_with("video.media."))
            .unwrap()
    );
    assert!(receiver.ids().contains(&delivered_id));
    let artifacts = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts/inspector");
    let run = tokio::process::Command::new(python)
        .arg(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/python/inspector_browser.py"),
        )
        .env("INSPECTOR_URL", insp.url("/"))
        .env("TOKEN", TOKEN)
        .env("BRIDGE_URL", app.webhook_url())
        .env("SECRET", SECRET)
        .env("BRIDGE_BIN", env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
        .env("CHROMIUM_BIN", chromium)
        .env("ARTIFACTS", &artifacts)
        .env("CONSUMER", "media-catalog")
        .env("SECRET_EVENT_ID", "keyed-1")
        .env("SECRET_VALUES", secrets.join(","))
        // Five media types in the seed list, the hostile one and the one
        // the destination refused.
        .env("EXPECT_PENDING", "7")
        .env("DESTINATION", "crm")
        .env("DESTINATION_CONSUMER", "forward-crm")
        .env("DELIVERED_EVENT_ID", &delivered_id)
        .env("DEAD_EVENT_ID", refused_id)
        .env("DESTINATION_ANSWER", answer)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("browser checks finish")
        .expect("python runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser checks failed:\n{text}");
    assert!(text.contains("browser checks passed"), "{text}");
    for shot in [
        "live",
        "event-detail",
        "event-hidden-credentials",
        "refused",
        "consumers",
        "event-delivered-to-destination",
        "event-dead-lettered-by-destination",
        "overview",
    ] {
        assert!(
            artifacts.join(format!("{shot}.png")).is_file(),
            "{shot}.png saved"
        );
    }
}
