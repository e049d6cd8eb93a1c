//! What no input can make the bridge do: publish outside its prefix, publish
//! an unsigned event when that is not allowed, or write a secret to its log.

use std::time::Duration;

use fastpix_nats_bridge::fastpix::subject::{SubjectPrefix, is_valid_subject_under};
use futures_util::StreamExt;

use crate::helpers::*;

const MARKER: &str = "test.subscriptions.ready";

/// Everything published in the account while `during` runs, by anyone
/// (`>` matches `$JS.…` and `_INBOX.…` subjects too).
async fn everything_published<F: std::future::Future<Output = ()>>(
    client: &async_nats::Client,
    during: F,
) -> Vec<async_nats::Message> {
    let mut all = client.subscribe(">").await.unwrap();
    // flush() only writes the socket; the server has processed the SUB
    // once our own marker comes back through it.
    client.publish(MARKER, "".into()).await.unwrap();
    let marker = tokio::time::timeout(Duration::from_secs(10), all.next())
        .await
        .expect("marker delivered")
        .expect("subscription open");
    assert_eq!(marker.subject.as_str(), MARKER);
    during.await;
    // Let the last messages arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), all.next()).await {
        seen.push(m);
    }
    seen
}

/// A JetStream acknowledgement sent to the bridge's reply inbox.
fn is_ack_to_bridge(m: &async_nats::Message) -> bool {
    m.subject.starts_with("_INBOX.")
        && serde_json::from_slice::<serde_json::Value>(&m.payload)
            .is_ok_and(|v| v.get("stream").is_some() && v.get("seq").is_some())
}

/// One of the two things the bridge writes outside its prefix: the record
/// of a refused delivery, on `<prefix>_refused` (outside the events' `<prefix>.>`).
fn is_refusal_record(m: &async_nats::Message, prefix: &str) -> bool {
    m.subject.as_str() == format!("{prefix}_refused")
}

/// The other: a signed body that is not an event, kept on `<prefix>_invalid`
/// (in a stream of its own, so it never takes the events stream's room).
fn is_kept_invalid(m: &async_nats::Message, prefix: &str) -> bool {
    m.subject.as_str() == format!("{prefix}_invalid")
}

/// The bridge reading its streams' size for its gauges (every 10 s): a
/// JetStream API request, its answer and the server's advisory of it; no event.
fn is_stream_size_read(m: &async_nats::Message) -> bool {
    let s = m.subject.as_str();
    s.starts_with("$JS.API.STREAM.INFO.")
        || s == "$JS.EVENT.ADVISORY.API"
        || (s.starts_with("_INBOX.")
            && serde_json::from_slice::<serde_json::Value>(&m.payload)
                .is_ok_and(|v| v["type"] == "io.nats.jetstream.api.v1.stream_info_response"))
}

#[tokio::test]
async fn no_type_can_publish_outside_the_prefix() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__SUBJECT__PREFIX", "acme.fp")],
    )
    .await;
    assert_eq!(app.get_status("/readyz").await, 200);
    let hostile = [
        ">",
        "*",
        "*.*",
        "a.>",
        "$JS.API.STREAM.DELETE.FASTPIX",
        "$SYS.REQ.SERVER.PING",
        "_INBOX.stolen",
        "acme.fp",
        ".",
        "..",
        "..acme.fp",
        "a..b.",
        " ",
        "\t.\u{a0}",
        "video media ready",
        "日本.語",
        "a\u{2028}b",
        "video.media.ready\u{0}",
        "a\r\nPUB other 1\r\nx",
        &"a.".repeat(200),
        &"x".repeat(300),
    ];
    let client = nats.client().await;
    let published = everything_published(&client, async {
        for (i, t) in hostile.iter().enumerate() {
            let resp = app.post_signed(&event_body(t, &format!("h{i}"))).await;
            // Routed (200) or refused and kept (400); never anything else.
            let status = resp.status().as_u16();
            assert!(status == 200 || status == 400, "{t:?}: {status}");
        }
    })
    .await;
    let prefix = SubjectPrefix::new("acme.fp").unwrap();
    let mut events = 0;
    for m in &published {
        if is_ack_to_bridge(m) || is_refusal_record(m, "acme.fp") || is_stream_size_read(m) {
            continue;
        }
        if is_kept_invalid(m, "acme.fp") {
            events += 1;
            continue;
        }
        assert!(
            is_valid_subject_under(&prefix, &m.subject),
            "published outside the prefix: {:?}",
            m.subject
        );
        events += 1;
    }
    assert_eq!(events, hostile.len(), "one message per delivery");
    for m in stream_messages(&client, "FASTPIX").await {
        assert!(is_valid_subject_under(&prefix, &m.subject), "{}", m.subject);
    }
}

#[tokio::test]
async fn unsigned_or_badly_signed_events_are_never_published_unless_unsigned_is_allowed() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let body = event_body("video.media.ready", "forged");
    let tampered = body.replace("obj-forged", "obj-other");
    let attempts: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("empty header", Some(String::new())),
        ("blank header", Some("   ".to_owned())),
        ("other secret", Some(sign(SECRET_2, body.as_bytes()))),
        ("other body", Some(sign(SECRET, tampered.as_bytes()))),
        (
            "hex instead of base64",
            Some(hex::encode(
                base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    sign(SECRET, body.as_bytes()),
                )
                .unwrap(),
            )),
        ),
        (
            "truncated",
            Some(sign(SECRET, body.as_bytes())[..20].to_owned()),
        ),
    ];
    for core in [false, true] {
        let jetstream = if core { "false" } else { "true" };
        let app = TestApp::spawn_with(
            &nats.url(),
            &[("FASTPIX_BRIDGE__JETSTREAM__ENABLED", jetstream)],
        )
        .await;
        let published = everything_published(&client, async {
            for (what, sig) in &attempts {
                let resp = app.post(&body, sig.as_deref()).await;
                assert_eq!(resp.status(), 401, "{what} (core: {core})");
            }
            // Unsigned bodies that are not probes are refused too.
            for b in [
                r#"{"hello":"fastpix"}"#,
                r#"{"type":"video.media.ready"}"#,
                "[]",
            ] {
                assert_eq!(app.post(b, None).await.status(), 401, "{b}");
            }
        })
        .await;
        let (records, other): (Vec<_>, Vec<_>) = published
            .iter()
            .filter(|m| !is_stream_size_read(m))
            .partition(|m| is_refusal_record(m, "fastpix"));
        assert!(
            other.is_empty(),
            "published: {:?}",
            other.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
        // A record of each refusal (none in core mode, where nothing keeps
        // them), and never the body.
        let expected = if core { 0 } else { attempts.len() + 3 };
        assert_eq!(records.len(), expected);
        for r in records {
            let text = String::from_utf8_lossy(&r.payload);
            assert!(
                !text.contains("obj-forged") && !text.contains("hello"),
                "{text}"
            );
        }
        app.shutdown().await.unwrap();
    }

    // allow_unsigned lets a request with no signature through, and nothing else:
    // a signature that is present is still checked against the secrets.
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__WEBHOOK__ALLOW_UNSIGNED", "true")],
    )
    .await;
    for (what, sig) in &attempts[3..] {
        assert_eq!(
            app.post(&body, sig.as_deref()).await.status(),
            401,
            "{what}"
        );
    }
    assert_eq!(app.post(&body, None).await.status(), 200);
    let stored = stream_messages(&client, "FASTPIX").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload, body.as_bytes());
}

/// One full run of the real binary at debug level with every kind of secret
/// configured: start, events under two secrets, refusals, a NATS restart
/// (reconnect logging), SIGTERM. Returns the log.
async fn full_run_log(format: &str, auth: &str) -> String {
    const TOKEN: &str = "tok-Zq8vN3xK7pL2wR9s";
    const USER: &str = "bridge-user";
    const PASSWORD: &str = "pw-Hj4mT6yB1cV5nX0e";
    let (config, creds): (String, Vec<(&str, &str)>) = match auth {
        "token" => (
            format!("authorization {{ token: \"{TOKEN}\" }}"),
            vec![("FASTPIX_BRIDGE__NATS__TOKEN", TOKEN)],
        ),
        _ => (
            format!("authorization {{ user: \"{USER}\", password: \"{PASSWORD}\" }}"),
            vec![
                ("FASTPIX_BRIDGE__NATS__USER", USER),
                ("FASTPIX_BRIDGE__NATS__PASSWORD", PASSWORD),
            ],
        ),
    };
    let mut nats = NatsServer::start_with_config(&config);
    let mut env = vec![
        ("FASTPIX_BRIDGE__NATS__URL".to_owned(), nats.url()),
        (
            "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".to_owned(),
            format!("{SECRET},{SECRET_2}"),
        ),
        ("FASTPIX_BRIDGE__LOG__FORMAT".to_owned(), format.to_owned()),
        (
            "FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT".to_owned(),
            "1s".to_owned(),
        ),
        ("RUST_LOG".to_owned(), "debug".to_owned()),
    ];
    env.extend(creds.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut bridge = BridgeProcess::start(&env);
    let url = bridge.url("/webhooks/fastpix");
    let http = reqwest::Client::new();
    let post = |body: String, sig: Option<String>| {
        let mut req = http.post(&url).body(body);
        if let Some(sig) = sig {
            req = req.header("FastPix-Signature", sig);
        }
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    bridge.wait_ready().await;
    let ev = |id: &str| event_body("video.media.ready", id);
    assert_eq!(
        post(ev("l1"), Some(sign(SECRET, ev("l1").as_bytes()))).await,
        200
    );
    assert_eq!(
        post(ev("l2"), Some(sign(SECRET_2, ev("l2").as_bytes()))).await,
        200
    );
    assert_eq!(post(ev("l3"), Some("bad".to_owned())).await, 401);
    assert_eq!(post(ev("l4"), None).await, 401);
    assert_eq!(
        post("[1]".to_owned(), Some(sign(SECRET, b"[1]"))).await,
        400
    );
    nats.stop();
    assert_eq!(
        post(ev("l5"), Some(sign(SECRET, ev("l5").as_bytes()))).await,
        503
    );
    nats.restart();
    assert!(
        eventually(Duration::from_secs(20), || async {
            post(ev("l6"), Some(sign(SECRET, ev("l6").as_bytes()))).await == 200
        })
        .await,
        "{}",
        bridge.log_text()
    );
    bridge.terminate();
    assert_eq!(bridge.wait_exit(Duration::from_secs(30)).await, Some(0));
    bridge.log_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_the_log_of_a_full_run_in_either_format() {
    let decoded = |s: &str| {
        String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).unwrap(),
        )
        .unwrap()
    };
    let secrets = [
        SECRET.to_owned(),
        SECRET_2.to_owned(),
        decoded(SECRET),
        decoded(SECRET_2),
        "tok-Zq8vN3xK7pL2wR9s".to_owned(),
        "pw-Hj4mT6yB1cV5nX0e".to_owned(),
    ];
    for (format, auth) in [("text", "token"), ("json", "password")] {
        let log = full_run_log(format, auth).await;
        // The run really logged at debug level, through reconnects and shutdown.
        for expected in ["event stored", "disconnected", "connected", "shutting down"] {
            assert!(
                log.contains(expected),
                "{format}: no {expected:?} in\n{log}"
            );
        }
        if format == "json" {
            for line in log.lines() {
                assert!(
                    serde_json::from_str::<serde_json::Value>(line).is_ok(),
                    "not JSON: {line}"
                );
            }
        }
        for secret in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "{format}/{auth}: the log contains {secret:?}"
            );
        }
    }
}

#[tokio::test]
async fn credentials_in_the_nats_url_are_refused_without_being_echoed() {
    // The NATS client would ignore them and print the URL in its debug log.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
        .env_clear()
        .env("RUST_LOG", "trace")
        .env("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)
        .env(
            "FASTPIX_BRIDGE__NATS__URL",
            "nats://bridge:pw-in-url-0042@127.0.0.1:4222",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nats.url") && stderr.contains("nats.password"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw-in-url-0042"), "{stderr}");
}
