//! HTTP edge cases and hostile bodies, each with the answer it must get.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::helpers::*;

/// POSTs raw bytes signed with the test secret.
async fn post_signed_bytes(app: &TestApp, body: &[u8]) -> reqwest::Response {
    app.http
        .post(app.webhook_url())
        .header("FastPix-Signature", sign(SECRET, body))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("request reaches the bridge")
}

async fn assert_json_error(resp: reqwest::Response, status: u16, outcome: &str) {
    assert_eq!(resp.status(), status);
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let err: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["outcome"], outcome, "{text}");
    assert!(err["error"].is_string(), "{text}");
}

async fn stored(nats: &NatsServer) -> Vec<StoredMessage> {
    stream_messages(&nats.client().await, "FASTPIX").await
}

/// The signed bodies kept as not routable, in their own stream.
async fn kept_invalid(nats: &NatsServer) -> Vec<StoredMessage> {
    stream_messages(&nats.client().await, "FASTPIX_INVALID").await
}

/// The bridge still takes a normal event while something else is going on.
async fn assert_serves_others(app: &TestApp, id: &str) {
    let resp = app.post_signed(&event_body("video.media.ready", id)).await;
    assert_eq!(resp.status(), 200, "{id}");
}

#[tokio::test]
async fn wrong_method_gets_405_and_unknown_path_gets_404_as_json() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let resp = app
            .http
            .request(method.clone(), app.webhook_url())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some("POST"),
            "{method}"
        );
        assert_json_error(resp, 405, "method_not_allowed").await;
    }
    for path in [
        "/",
        "/webhooks/fastpix/",
        "/webhooks/other",
        "/webhooks/fastpix/x",
    ] {
        let resp = app
            .http
            .post(app.url(path))
            .header("FastPix-Signature", sign(SECRET, b"{}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_json_error(resp, 404, "not_found").await;
    }
    assert!(stored(&nats).await.is_empty());
}

#[tokio::test]
async fn a_repeated_or_oversized_signature_header_is_refused() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let body = event_body("video.media.ready", "sig-edge");
    let good = sign(SECRET, body.as_bytes());
    // Two headers are ambiguous even when one of them (or both) is right.
    for (first, second) in [
        (good.clone(), good.clone()),
        (good.clone(), "garbage".to_owned()),
        ("garbage".to_owned(), good.clone()),
    ] {
        let resp = app
            .http
            .post(app.webhook_url())
            .header("FastPix-Signature", first)
            .header("FastPix-Signature", second)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_json_error(resp, 401, "bad_signature").await;
    }
    // Longer than any base64 HMAC-SHA256 could be, with the good one inside.
    let long = format!("{good}{}", "A".repeat(8 * 1024));
    let resp = app.post(&body, Some(&long)).await;
    assert_json_error(resp, 401, "bad_signature").await;

    // Larger than the server reads as headers at all: 431, and the server goes on.
    let huge = "A".repeat(512 * 1024);
    let answer = raw_exchange(app.addr.port(), |mut wr| async move {
        let head = format!(
            "POST /webhooks/fastpix HTTP/1.1\r\nHost: x\r\nFastPix-Signature: {huge}\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        let _ = wr.write_all(head.as_bytes()).await;
    })
    .await
    .unwrap()
    .expect("an answer");
    assert_eq!(answer.status, 431);
    assert_serves_others(&app, "after-huge-header").await;
    let ids: Vec<_> = stored(&nats)
        .await
        .iter()
        .map(|m| m.header("Nats-Msg-Id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["after-huge-header"]);
}

#[tokio::test]
async fn an_endless_chunked_body_gets_413_once_past_the_limit() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "65536")],
    )
    .await;
    let answer = raw_exchange(app.addr.port(), |mut wr| async move {
        let head = "POST /webhooks/fastpix HTTP/1.1\r\nHost: x\r\nFastPix-Signature: AAAA\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        // 4 KiB chunks for as long as the bridge reads them (at most 16 MiB).
        let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
        for _ in 0..4096 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
    .unwrap()
    .expect("an answer");
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["outcome"], "too_large");
    assert_serves_others(&app, "after-endless").await;
    assert_eq!(stored(&nats).await.len(), 1);
}

#[tokio::test]
async fn slow_or_silent_headers_are_cut_off_while_others_are_served() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__HTTP__HEADER_TIMEOUT", "1s")],
    )
    .await;
    let port = app.addr.port();
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..20 {
        slow.push(tokio::spawn(async move {
            raw_exchange(port, move |mut wr| async move {
                // One byte every 200 ms: each read is "progress", but the
                // headers would take minutes to arrive.
                let head = format!("POST /webhooks/fastpix HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ");
                let _ = wr.write_all(head.as_bytes()).await;
                for _ in 0..600 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if wr.write_all(b"a").await.is_err() {
                        return;
                    }
                }
            })
            .await
        }));
    }
    // A client that connects and sends nothing at all.
    let silent = tokio::spawn(raw_exchange(port, |wr| async move {
        // Holds the write half: dropping it would send FIN, which ends
        // the connection without any timer.
        let _open = wr;
        std::future::pending::<()>().await
    }));
    // Others are served while the slow ones hang on.
    for i in 0..5 {
        assert_serves_others(&app, &format!("during-slow-{i}")).await;
    }
    for s in slow {
        let answer = tokio::time::timeout(Duration::from_secs(20), s)
            .await
            .expect("slow client cut off")
            .unwrap()
            .unwrap();
        assert!(answer.is_none(), "{answer:?}");
    }
    let answer = tokio::time::timeout(Duration::from_secs(20), silent)
        .await
        .expect("silent client cut off")
        .unwrap()
        .unwrap();
    assert!(answer.is_none(), "{answer:?}");
    // Cut off by the 1 s timeout, not by the 120 s the headers would take.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(stored(&nats).await.len(), 5);
}

#[tokio::test]
async fn a_slow_body_gets_408_while_others_are_served() {
    let nats = NatsServer::start();
    let app =
        TestApp::spawn_with(&nats.url(), &[("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "1s")]).await;
    let body = event_body("video.media.ready", "slow-body");
    let sig = sign(SECRET, body.as_bytes());
    let port = app.addr.port();
    let slow = tokio::spawn(async move {
        raw_exchange(port, move |mut wr| async move {
            let head = format!(
                "POST /webhooks/fastpix HTTP/1.1\r\nHost: x\r\nFastPix-Signature: {sig}\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = wr.write_all(head.as_bytes()).await;
            // One byte a second: the whole body would take minutes.
            for b in body.bytes() {
                if wr.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .await
    });
    for i in 0..3 {
        assert_serves_others(&app, &format!("during-slow-body-{i}")).await;
    }
    let answer = tokio::time::timeout(Duration::from_secs(20), slow)
        .await
        .expect("slow body cut off")
        .unwrap()
        .unwrap()
        .expect("an answer");
    assert_eq!(answer.status, 408);
    assert_eq!(answer.json()["outcome"], "bad_request");
    let ids: Vec<_> = stored(&nats)
        .await
        .iter()
        .map(|m| m.header("Nats-Msg-Id").unwrap().to_owned())
        .collect();
    assert!(!ids.contains(&"slow-body".to_owned()), "{ids:?}");
}

#[tokio::test]
async fn ambiguous_or_malformed_types_get_400_and_are_kept_on_invalid() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Invalid UTF-8 inside the `type` string.
        (
            b"{\"type\":\"video.\xff\xfe.ready\",\"id\":\"utf8\"}".to_vec(),
            "not a JSON object",
        ),
        // A lone surrogate escape is not a Unicode scalar either.
        (
            br#"{"type":"video.\ud800.ready","id":"surrogate"}"#.to_vec(),
            "not valid Unicode",
        ),
        // Duplicate `type` keys, plainly, with the same value, and spelled with an escape.
        (
            br#"{"type":"video.media.ready","id":"d1","type":"video.media.failed"}"#.to_vec(),
            "more than once",
        ),
        (
            br#"{"type":"video.media.ready","type":"video.media.ready","id":"d2"}"#.to_vec(),
            "more than once",
        ),
        (
            br#"{"type":"video.media.ready","typ\u0065":"x.>","id":"d3"}"#.to_vec(),
            "more than once",
        ),
    ];
    for (body, reason) in &cases {
        let resp = post_signed_bytes(&app, body).await;
        assert_eq!(resp.status(), 400, "{}", String::from_utf8_lossy(body));
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["outcome"], "invalid");
        assert!(err["error"].as_str().unwrap().contains(reason), "{err}");
    }
    assert!(stored(&nats).await.is_empty());
    let kept = kept_invalid(&nats).await;
    assert_eq!(kept.len(), cases.len());
    for (m, (body, reason)) in kept.iter().zip(&cases) {
        assert_eq!(m.subject, "fastpix_invalid");
        assert_eq!(&m.payload, body, "kept byte for byte");
        assert!(
            m.decoded_header("FastPix-Bridge-Error")
                .unwrap()
                .contains(reason)
        );
    }
}

#[tokio::test]
async fn deeply_nested_json_is_routed_without_recursion_and_published_as_is() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let depth = 100_000;
    let (open, close) = ("[".repeat(depth), "]".repeat(depth));
    // Deep in a field the bridge does not read: an event like any other.
    let deep_data =
        format!(r#"{{"type":"video.media.ready","id":"deep-data","data":{open}{close}}}"#);
    let resp = app.post_signed(&deep_data).await;
    assert_eq!(resp.status(), 200);
    // Deep inside a field it reads: that field is ignored, the event routed.
    let deep_object = format!(
        r#"{{"type":"video.media.ready","id":"deep-object","object":{{"id":{open}1{close}}}}}"#
    );
    assert_eq!(app.post_signed(&deep_object).await.status(), 200);
    // Deep where an object is needed, or never closed: not an event.
    let deep_top = format!("{open}{close}");
    let unclosed = format!(r#"{{"type":"video.media.ready","data":{open}"#);
    let deep_type = format!(r#"{{"type":{open}{close}}}"#);
    for body in [&deep_top, &unclosed, &deep_type] {
        let resp = app.post_signed(body).await;
        assert_eq!(resp.status(), 400);
    }
    assert_serves_others(&app, "after-deep").await;

    let kept = stored(&nats).await;
    let subjects: Vec<_> = kept.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["fastpix.video.media.ready"; 3]);
    assert_eq!(kept[0].payload, deep_data.as_bytes());
    assert_eq!(kept[1].header("FastPix-Object-Id"), None);
    let invalid = kept_invalid(&nats).await;
    let subjects: Vec<_> = invalid.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["fastpix_invalid"; 3]);
    assert_eq!(invalid[0].payload, deep_top.as_bytes());
}

#[tokio::test]
async fn a_whitespace_only_body_is_a_probe_unsigned_and_invalid_signed() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let blank = " \n\t\r\n ";
    // Unsigned and blank: what FastPix sends when an endpoint is registered.
    let resp = app.post(blank, None).await;
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["probe"], true);
    assert!(stored(&nats).await.is_empty());
    // Signed, it claims to be an event and is not one.
    let resp = app.post_signed(blank).await;
    assert_eq!(resp.status(), 400);
    // With a wrong signature it is refused before anything else.
    let resp = app
        .post(blank, Some(&sign(SECRET_2, blank.as_bytes())))
        .await;
    assert_eq!(resp.status(), 401);
    assert!(stored(&nats).await.is_empty());
    let kept = kept_invalid(&nats).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].subject, "fastpix_invalid");
    assert_eq!(kept[0].payload, blank.as_bytes());
}

#[tokio::test]
async fn a_request_still_running_after_the_shutdown_grace_does_not_hold_shutdown() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "60s"),
            ("FASTPIX_BRIDGE__HTTP__SHUTDOWN_GRACE", "1s"),
        ],
    )
    .await;
    let port = app.addr.port();
    // Headers and half a body, then nothing: the request stays in flight.
    let stuck = tokio::spawn(raw_exchange(port, |mut wr| async move {
        let head = "POST /webhooks/fastpix HTTP/1.1\r\nHost: x\r\nFastPix-Signature: AAAA\r\n\
                    Content-Length: 100\r\n\r\n{\"type\":";
        let _ = wr.write_all(head.as_bytes()).await;
        std::future::pending::<()>().await
    }));
    assert_serves_others(&app, "before-shutdown").await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), app.shutdown())
        .await
        .expect("shutdown ends after the grace period, not the body timeout")
        .expect("clean shutdown");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The stuck request was cut, not answered.
    let answer = tokio::time::timeout(Duration::from_secs(10), stuck)
        .await
        .expect("the stuck connection is closed")
        .unwrap()
        .unwrap();
    assert!(answer.is_none(), "{answer:?}");
}

/// An unsigned request can only be the probe, so its body is never read
/// beyond the probe's size: a larger declared length is refused before a
/// byte of it is sent, and an unsigned chunked body is cut off once past it.
#[tokio::test]
async fn unsigned_bodies_beyond_the_probe_size_are_refused_without_being_read() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "30s")],
    )
    .await;
    let port = app.addr.port();

    // Declared 512 KiB, nothing of it sent: 401 at once, not a wait for the body.
    let asked = Instant::now();
    let answer = raw_exchange(port, |mut wr| async move {
        let head = "POST /webhooks/fastpix HTTP/1.1\r\nHost: x\r\nContent-Length: 524288\r\n\r\n";
        let _ = wr.write_all(head.as_bytes()).await;
        std::future::pending::<()>().await
    })
    .await
    .unwrap()
    .expect("an answer");
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.json()["outcome"], "unsigned");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );

    // Chunked and endless: 401 once past the probe's size, not after the
    // body limit (413) or the body timeout (408).
    let asked = Instant::now();
    let answer = raw_exchange(port, |mut wr| async move {
        let head =
            "POST /webhooks/fastpix HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let _ = wr.write_all(head.as_bytes()).await;
        // 40 bytes a chunk, slowly: the bridge must stop after two of them.
        for _ in 0..200 {
            let chunk = format!("28\r\n{}\r\n", " ".repeat(40));
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::future::pending::<()>().await
    })
    .await
    .unwrap()
    .expect("an answer");
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );

    // The probe as FastPix sends it, and padded up to the bound, still 200.
    for body in [
        "",
        "{}",
        "{}\n",
        " { }\r\n",
        &format!("{{}}{}", " ".repeat(62)),
    ] {
        let resp = app.post(body, None).await;
        assert_eq!(resp.status(), 200, "{body:?}");
    }
    // One byte past the bound: not a probe any more.
    let resp = app.post(&format!("{{}}{}", " ".repeat(63)), None).await;
    assert_json_error(resp, 401, "unsigned").await;
    // Signed bodies keep the full limit.
    assert_serves_others(&app, "signed-after-unsigned").await;
    assert!(stored(&nats).await.len() == 1);
}

/// With `webhook.allow_unsigned=true` unsigned events are accepted, so the
/// probe-size bound does not apply.
#[tokio::test]
async fn with_unsigned_allowed_unsigned_events_keep_the_full_limit() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__WEBHOOK__ALLOW_UNSIGNED", "true")],
    )
    .await;
    let resp = app
        .post(&event_body("video.media.ready", "unsigned-allowed"), None)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(stored(&nats).await.len(), 1);
}

/// A client that writes its whole body before reading (Python's urllib, as
/// a new user would try it) reads the 413 for a body over the limit, signed
/// or not, instead of a broken pipe.
#[tokio::test]
async fn a_client_that_writes_the_whole_body_first_reads_the_early_answer() {
    let Some(python) = which_python() else {
        return;
    };
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "65536")],
    )
    .await;
    // 8 MiB: more than the socket buffers of both ends can take, so the
    // client is still writing when the answer is sent.
    let script = r#"
import sys, urllib.request, urllib.error
url, signed = sys.argv[1], sys.argv[2] == "signed"
body = b'{"type":"video.media.ready","pad":"' + b"x" * (8 * 1024 * 1024) + b'"}'
headers = {"Content-Type": "application/json"}
if signed:
    headers["FastPix-Signature"] = "AAAA"
req = urllib.request.Request(url, data=body, headers=headers, method="POST")
try:
    with urllib.request.urlopen(req, timeout=30) as resp:
        print(resp.status, resp.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
except Exception as e:
    print("failed", type(e).__name__, e)
"#;
    for (mode, status, outcome) in [("signed", 413, "too_large"), ("unsigned", 413, "too_large")] {
        let url = app.webhook_url();
        let (python, script) = (python.clone(), script.to_owned());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .args(["-c", &script, &url, mode])
                .output()
                .expect("run python")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.starts_with(&format!("{status} ")),
            "{mode}: urllib read {stdout:?} {stderr}"
        );
        assert!(stdout.contains(outcome), "{stdout}");
    }
    assert_serves_others(&app, "after-early-answers").await;
}

/// `python3` from PATH (plain standard library).
fn which_python() -> Option<std::path::PathBuf> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("python3".into());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "python3 is not on PATH, and CI=true runs every test"
    );
    eprintln!("skipping: python3 is not on PATH");
    None
}
