//! The inspector's page in a real headless Chromium (Debian's `chromium`),
//! driven by Playwright for Python: see tests/python/inspector_browser.py.
//! Screenshots are kept in target/test-artifacts/inspector/.

use std::time::Duration;

use async_nats::jetstream;

use crate::helpers::*;
use crate::inspector::{TOKEN, TestInspector};

#[tokio::test]
async fn the_page_shows_events_refusals_and_consumers_in_a_real_browser() {
    let (Some(python), Some(chromium)) =
        (external_tool("TEST_PYTHON"), external_tool("CHROMIUM_BIN"))
    else {
        return;
    };
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
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
        // Five media types in the seed list, plus the hostile one.
        .env("EXPECT_PENDING", "6")
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
        "overview",
    ] {
        assert!(
            artifacts.join(format!("{shot}.png")).is_file(),
            "{shot}.png saved"
        );
    }
}
