//! The inspector, black-box: a real nats-server, a real bridge, and the
//! inspector's HTTP API over loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use fastpix_nats_bridge::cli::inspect::test_sender;
use fastpix_nats_bridge::inspect::Inspector;
use fastpix_nats_bridge::settings::{Purpose, Settings};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::Digest;

use crate::helpers::*;

pub const TOKEN: &str = "inspector-test-token-0123456789";

pub struct TestInspector {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestInspector {
    pub async fn spawn(nats_url: &str, bridge: Option<&TestApp>) -> Self {
        Self::spawn_with(nats_url, bridge, &[]).await
    }

    /// As [`TestInspector::spawn`], with more settings.
    pub async fn spawn_with(
        nats_url: &str,
        bridge: Option<&TestApp>,
        extra: &[(&str, &str)],
    ) -> Self {
        let url = bridge.map(|b| b.webhook_url());
        let mut overrides = vec![
            ("FASTPIX_BRIDGE__INSPECT__LISTEN", "127.0.0.1:0"),
            ("FASTPIX_BRIDGE__INSPECT__ADMIN_LISTEN", "127.0.0.1:0"),
            ("FASTPIX_BRIDGE__INSPECT__TOKEN", TOKEN),
        ];
        overrides.extend_from_slice(extra);
        if let Some(u) = &url {
            overrides.push(("FASTPIX_BRIDGE__INSPECT__BRIDGE_URL", u.as_str()));
        }
        let settings: Settings = test_settings_for(Purpose::Inspector, nats_url, &overrides)
            .expect("inspector settings are valid");
        let inspector = Inspector::build(&settings, TOKEN.to_owned(), Some(test_sender(&settings)))
            .await
            .expect("inspector starts");
        let addr = inspector.local_addr().unwrap();
        let admin_addr = inspector.admin_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(inspector.run_until(async {
            let _ = rx.await;
        }));
        let me = TestInspector {
            addr,
            admin_addr,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        };
        assert!(
            eventually(Duration::from_secs(20), || async {
                me.http
                    .get(format!("http://{}/readyz", me.admin_addr))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            })
            .await,
            "inspector ready"
        );
        me
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("inspector answers");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")),
        )
    }

    pub async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("inspector answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The sequences of an object's events, as its timeline lists them.
    pub async fn timeline(&self, object: &str) -> Vec<u64> {
        let page = self
            .ok(&format!("/api/objects/{object}/events?limit=100"))
            .await;
        seqs(page["events"].as_array().expect("events"))
    }

    /// The sequences of the events with this id.
    pub async fn seqs_of_id(&self, id: &str) -> Vec<u64> {
        seqs(
            self.ok(&format!("/api/events?id={id}")).await["events"]
                .as_array()
                .expect("events"),
        )
    }

    /// Waits until the index has every stored event.
    pub async fn wait_indexed(&self) {
        let last = std::sync::Mutex::new(Value::Null);
        assert!(
            eventually(Duration::from_secs(30), || async {
                let (s, o) = self.get("/api/overview").await;
                let caught_up = s == 200
                    && o["index_pending"] == 0
                    && o["windows"]["month"]["total"] == o["stream"]["messages"];
                *last.lock().unwrap() = o;
                caught_up
            })
            .await,
            "index caught up; the last overview: {}",
            last.lock().unwrap()
        );
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for TestInspector {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// An event of `object` with `id`; unicode and odd spacing so that a
/// re-serialised payload would differ from the stored bytes.
fn object_event(event_type: &str, id: &str, object: &str) -> String {
    format!(
        "{{\"type\": \"{event_type}\",  \"id\":\"{id}\", \"object\": {{\"type\":\"media\",\"id\":\"{object}\"}},\n \"workspace\":{{\"id\":\"ws-1\"}}, \"data\": {{\"title\": \"caf\\u00e9 – été <b>x</b>\"}}, \"createdAt\": \"2026-05-11T20:42:16.361817248Z\"}}"
    )
}

async fn all_pages(insp: &TestInspector, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<u64> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/events?limit={limit}{query}");
        if let Some(b) = before {
            path.push_str(&format!("&before_seq={b}"));
        }
        let page = insp.ok(&path).await;
        let events = page["events"].as_array().unwrap().clone();
        assert!(events.len() <= limit);
        out.extend(events);
        match page["next_before_seq"].as_u64() {
            Some(n) => before = Some(n),
            None => return out,
        }
    }
    panic!("paging did not end");
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn every_route_needs_the_token_and_shows_nothing_without_it() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let secret_text = "very-private-payload-text";
    let body = object_event("video.media.ready", "e-secret", secret_text);
    assert_eq!(app.post_signed(&body).await.status(), 200);
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    let gets = [
        "/",
        "/assets/app.js",
        "/api/events",
        "/api/events/1",
        "/api/objects/x/events",
        "/api/live",
        "/api/refused",
        "/api/dead_letters",
        "/api/consumers",
        "/api/overview",
        "/api/catalog",
        "/no/such/path",
    ];
    for path in gets {
        for auth in [None, Some("Bearer wrong-token-wrong-token"), Some(TOKEN)] {
            if auth == Some(TOKEN) {
                continue;
            }
            let mut req = insp.http.get(insp.url(path));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} {auth:?}");
            let text = r.text().await.unwrap();
            assert!(
                !text.contains(secret_text) && !text.contains("e-secret"),
                "{path}: {text}"
            );
            if path != "/" {
                assert!(!text.trim().contains('\n'), "one line: {text}");
                assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
            } else {
                assert!(text.contains("<form") && text.contains("/login"), "{text}");
            }
        }
    }
    for path in ["/api/actions/send", "/api/actions/replay", "/logout"] {
        let r = insp
            .http
            .post(insp.url(path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // Actions are POSTs: a GET (a link, an image) does nothing.
    let r = insp
        .http
        .get(insp.url("/api/actions/send"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // The page's login: a wrong token gets the form again, the right one a cookie.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .post(insp.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = no_redirect
        .post(insp.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the cookie never holds the token");
    let pair = cookie.split(';').next().unwrap();
    let r = no_redirect
        .get(insp.url("/api/events"))
        .header("Cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = no_redirect
        .get(insp.url("/"))
        .header("Cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    // An action by cookie from another origin is refused.
    let r = no_redirect
        .post(insp.url("/api/actions/send"))
        .header("Cookie", pair)
        .header("Origin", "http://evil.example")
        .json(&json!({"type": "video.media.ready"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn silent_clients_are_cut_off_and_an_open_live_stream_does_not_hold_the_stop() {
    let nats = NatsServer::start();
    // The bridge puts the events stream in place; the inspector is ready after.
    let app = TestApp::spawn(&nats).await;
    let insp = TestInspector::spawn_with(
        &nats.url(),
        Some(&app),
        &[
            ("FASTPIX_BRIDGE__HTTP__HEADER_TIMEOUT", "1s"),
            ("FASTPIX_BRIDGE__HTTP__SHUTDOWN_GRACE", "1s"),
        ],
    )
    .await;
    // A connection that never sends its request head is closed after
    // http.header_timeout, on the page's port and on the admin port.
    for port in [insp.addr.port(), insp.admin_addr.port()] {
        let silent = raw_exchange(port, |wr| async move {
            // Holds the write half: dropping it would send FIN, which ends
            // the connection without any timer.
            let _open = wr;
            std::future::pending::<()>().await
        });
        let answer = tokio::time::timeout(Duration::from_secs(20), silent)
            .await
            .unwrap_or_else(|_| panic!("a silent client of port {port} was not cut off"))
            .expect("connects");
        assert!(answer.is_none(), "{answer:?}");
    }
    // The live page's event stream never ends by itself; the stop waits for
    // it no longer than http.shutdown_grace.
    let live = insp
        .http
        .get(insp.url("/api/live"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("live stream opens");
    assert_eq!(live.status(), 200);
    let stopped = tokio::time::timeout(Duration::from_secs(15), insp.shutdown()).await;
    assert!(
        stopped.is_ok(),
        "the inspector did not stop with a live stream open"
    );
    drop(live);
}

#[tokio::test]
async fn the_command_refuses_a_public_listener_without_a_token() {
    let nats = NatsServer::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
        .arg("inspect")
        .env("FASTPIX_BRIDGE__NATS__URL", nats.url())
        .env("FASTPIX_BRIDGE__INSPECT__LISTEN", "0.0.0.0:0")
        .env_remove("FASTPIX_BRIDGE__INSPECT__TOKEN")
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("inspect.token") && err.contains("FASTPIX_BRIDGE__INSPECT__TOKEN"),
        "{err}"
    );
}

#[tokio::test]
async fn history_filters_and_pages_without_gaps_or_repeats() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let types = [
        "video.media.created",
        "video.media.ready",
        "video.upload.created",
        "video.live_stream.active",
        "video.live_stream.simulcast.created",
    ];
    let mut bodies = Vec::new();
    for i in 0..45 {
        let t = types[i % types.len()];
        let body = object_event(t, &format!("ev-{i}"), &format!("obj-{}", i % 4));
        assert_eq!(app.post_signed(&body).await.status(), 200);
        bodies.push(body);
    }
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;

    // Every event once, newest first, whatever the page size.
    for limit in [1, 7, 50] {
        let all = all_pages(&insp, "", limit).await;
        let got = seqs(&all);
        let want: Vec<u64> = (1..=45).rev().collect();
        assert_eq!(got, want, "limit {limit}");
    }
    let first = insp.ok("/api/events").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 45);
    assert!(first["next_before_seq"].is_null());
    let e = &first["events"][0];
    for key in [
        "seq",
        "subject",
        "type",
        "id",
        "object_type",
        "object_id",
        "workspace_id",
        "created_at",
        "stored_at",
        "size",
    ] {
        assert!(e.get(key).is_some(), "{key} in {e}");
    }
    assert_eq!(e["size"].as_u64().unwrap() as usize, bodies[44].len());

    // Family: exactly the media events, over several pages.
    let media = all_pages(&insp, "&family=media", 4).await;
    let want: Vec<u64> = (1..=45u64).rev().filter(|s| (s - 1) % 5 < 2).collect();
    assert_eq!(seqs(&media), want);
    assert!(
        media
            .iter()
            .all(|e| e["type"].as_str().unwrap().starts_with("video.media."))
    );
    // A type, a pattern, and both with a family.
    let ready = all_pages(&insp, "&type=video.media.ready", 3).await;
    assert_eq!(ready.len(), 9);
    let live = all_pages(&insp, "&type=video.live_stream.*", 50).await;
    assert_eq!(
        live.len(),
        9,
        "the pattern keeps simulcast (one token deeper) out"
    );
    let none = all_pages(&insp, "&type=video.media.ready&family=upload", 50).await;
    assert!(none.is_empty());
    let simulcast = all_pages(&insp, "&family=simulcast", 2).await;
    assert_eq!(simulcast.len(), 9);

    // By event id and by object: through the index.
    let by_id = insp.ok("/api/events?id=ev-17").await;
    assert_eq!(seqs(by_id["events"].as_array().unwrap()), [18]);
    let by_object = all_pages(&insp, "&object=obj-1", 3).await;
    let want: Vec<u64> = (1..=45u64).rev().filter(|s| (s - 1) % 4 == 1).collect();
    assert_eq!(seqs(&by_object), want);
    let both = insp
        .ok("/api/events?object=obj-1&type=video.media.ready")
        .await;
    assert!(
        both["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["object_id"] == "obj-1" && e["type"] == "video.media.ready")
    );
    let timeline = insp.ok("/api/objects/obj-1/events").await;
    let mut ascending = want.clone();
    ascending.reverse();
    assert_eq!(
        seqs(timeline["events"].as_array().unwrap()),
        ascending,
        "oldest first"
    );
    let unknown = insp.ok("/api/objects/nobody/events").await;
    assert_eq!(unknown["events"], json!([]));

    // Time range.
    assert_eq!(all_pages(&insp, "&since=1h", 50).await.len(), 45);
    assert!(all_pages(&insp, "&until=1h", 50).await.is_empty());
    assert!(
        all_pages(&insp, "&since=2999-01-01T00:00:00Z", 50)
            .await
            .is_empty()
    );
    let stored_at = first["events"][10]["stored_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let until = all_pages(&insp, &format!("&until={stored_at}"), 50).await;
    assert_eq!(seqs(&until)[0], 35, "until is inclusive");

    // The payload exactly as stored.
    for (i, body) in bodies.iter().enumerate().step_by(11) {
        let detail = insp.ok(&format!("/api/events/{}", i + 1)).await;
        assert_eq!(
            detail["payload"].as_str().unwrap().as_bytes(),
            body.as_bytes()
        );
        assert_eq!(detail["headers"]["FastPix-Event-Id"], format!("ev-{i}"));
        assert_eq!(detail["seq"], i + 1);
        assert!(detail["subject"].as_str().unwrap().starts_with("fastpix."));
        assert!(detail["stored_at"].is_string());
    }
    assert_eq!(insp.get("/api/events/4500").await.0, 404);

    // Bad input: a status and one line of JSON.
    for path in [
        "/api/events?limit=0",
        "/api/events?limit=501",
        "/api/events?since=yesterday-ish",
        "/api/events?family=cooking",
        "/api/events?type=video.>.x",
        "/api/events?colour=red",
        "/api/events/abc",
    ] {
        let (status, body) = insp.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].is_string());
    }
    assert_eq!(
        insp.ok("/api/events?limit=500").await["events"]
            .as_array()
            .unwrap()
            .len(),
        45
    );
}

#[tokio::test]
async fn live_events_arrive_and_test_events_can_be_sent() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    let resp = insp
        .http
        .get(insp.url("/api/live"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.bytes_stream();
    // The live consumer starts at the newest event: post until one shows.
    let (status, sent) = insp
        .post(
            "/api/actions/send",
            json!({"type": "video.live_stream.idle"}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], 200);
    let id = sent["id"].as_str().unwrap().to_owned();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), body.next()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        } else {
            // Nothing yet: the first send may have come before the live consumer.
            let _ = app
                .post_signed(&object_event(
                    "video.media.ready",
                    &format!("poke-{}", text.len()),
                    "o",
                ))
                .await;
        }
        found = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|e| e["id"] == id.as_str() || e["type"] == "video.media.ready");
    }
    let e = found.expect("a stored event arrived on /api/live");
    assert!(e["seq"].is_u64() && e["stored_at"].is_string() && e["subject"].is_string());
    let (status, bad) = insp
        .post("/api/actions/send", json!({"type": "not.a.type"}))
        .await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test]
async fn refusals_dead_letters_and_consumers_are_shown() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let forged = object_event("video.media.ready", "forged-1", "unsigned-secret-body");
    let r = app.post(&forged, Some("bm90IGEgc2lnbmF0dXJl")).await;
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .post(app.webhook_url())
        .header("user-agent", "curious-agent/1.0")
        .body("{\"type\":\"video.media.ready\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let not_routable = "{\"type\": 42, \"id\":\"bad-type\"}";
    assert_eq!(app.post_signed(not_routable).await.status(), 400);
    for i in 0..6 {
        assert_eq!(
            app.post_signed(&object_event("video.media.ready", &format!("c{i}"), "m"))
                .await
                .status(),
            200
        );
    }
    // A worker's durable consumer that has read nothing yet.
    let stream = js.get_stream("FASTPIX").await.unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("media-worker".into()),
            filter_subject: "fastpix.video.media.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // A consumer's dead letter, as the consumer work writes them.
    js.create_stream(jetstream::stream::Config {
        name: "FASTPIX_DEAD_LETTERS".into(),
        subjects: vec!["fastpix_dead_letters.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut h = async_nats::HeaderMap::new();
    h.insert("FastPix-Dead-Letter-Consumer", "media-worker");
    h.insert("FastPix-Dead-Letter-Reason", "max_deliver");
    h.insert("FastPix-Dead-Letter-Deliveries", "5");
    h.insert(
        "FastPix-Dead-Letter-Last-Error",
        "<script>alert(1)</script>",
    );
    h.insert("FastPix-Dead-Letter-Stream-Seq", "3");
    h.insert("FastPix-Dead-Letter-Subject", "fastpix.video.media.ready");
    js.publish_with_headers("fastpix_dead_letters.media-worker", h, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    let refused = insp.ok("/api/refused").await;
    let records = refused["refused"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{refused}");
    let bad_sig = records
        .iter()
        .find(|r| r["outcome"] == "bad_signature")
        .expect("bad signature listed");
    assert_eq!(bad_sig["status"], 401);
    assert_eq!(bad_sig["path"], "/webhooks/fastpix");
    assert_eq!(bad_sig["body_size"], forged.len());
    assert_eq!(
        bad_sig["body_sha256"],
        hex::encode(sha2::Sha256::digest(forged.as_bytes()))
    );
    assert!(
        bad_sig["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        !refused.to_string().contains("unsigned-secret-body"),
        "never the body"
    );
    let unsigned = records.iter().find(|r| r["outcome"] == "unsigned").unwrap();
    assert_eq!(unsigned["user_agent"], "curious-agent/1.0");
    assert_eq!(records[0]["outcome"], "invalid", "newest first");
    assert_eq!(records[0]["status"], 400);

    let dead = insp.ok("/api/dead_letters").await;
    let invalid = dead["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0]["payload"], not_routable);
    assert!(
        invalid[0]["reason"].as_str().unwrap().contains("type"),
        "{dead}"
    );
    assert_eq!(dead["dead_letter_stream"], "FASTPIX_DEAD_LETTERS");
    let c = &dead["consumer"][0];
    assert_eq!(c["consumer"], "media-worker");
    assert_eq!(c["deliveries"], "5");
    assert_eq!(c["last_error"], "<script>alert(1)</script>");
    assert_eq!(c["stream_seq"], "3");

    let consumers = insp.ok("/api/consumers").await;
    let worker = consumers["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "media-worker")
        .expect("worker listed")
        .clone();
    assert_eq!(worker["num_pending"], 6);
    assert_eq!(worker["filter_subjects"], json!(["fastpix.video.media.>"]));
    assert_eq!(consumers["dead_letters"]["media-worker"], 1);
    let metrics = insp
        .http
        .get(format!("http://{}/metrics", insp.admin_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "fastpix_consumer_pending{stream=\"FASTPIX\",consumer=\"media-worker\"} 6",
        "fastpix_consumer_ack_pending{stream=\"FASTPIX\",consumer=\"media-worker\"} 0",
        "fastpix_consumer_redelivered{stream=\"FASTPIX\",consumer=\"media-worker\"} 0",
        "fastpix_dead_letters{consumer=\"media-worker\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Replay: read everything, then move back to sequence 5.
    let worker: jetstream::consumer::PullConsumer =
        stream.get_consumer("media-worker").await.unwrap();
    let mut batch = worker.fetch().max_messages(10).messages().await.unwrap();
    while let Some(Ok(m)) = batch.next().await {
        m.double_ack().await.unwrap();
    }
    let pending = |insp: &TestInspector| {
        let insp_url = insp.url("/api/consumers");
        let http = insp.http.clone();
        async move {
            let v: Value = http
                .get(insp_url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "media-worker")
                .unwrap()["num_pending"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(pending(&insp).await, 0);
    let (status, _) = insp
        .post(
            "/api/actions/replay",
            json!({"consumer": "media-worker", "start_seq": 5}),
        )
        .await;
    assert_eq!(status, 400, "no confirmation, no replay");
    let (status, body) = insp
        .post(
            "/api/actions/replay",
            json!({"consumer": "media-worker", "start_seq": 5, "confirm": "media-worker"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let want = stream_messages(&client, "FASTPIX")
        .await
        .iter()
        .filter(|m| m.seq >= 5 && m.subject.starts_with("fastpix.video.media."))
        .count() as u64;
    assert!(want > 0);
    assert_eq!(pending(&insp).await, want);
    let (status, _) = insp
        .post(
            "/api/actions/replay",
            json!({"consumer": "nobody", "start_seq": 1, "confirm": "nobody"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_flood_of_forged_requests_is_recorded_within_bounds_while_events_are_stored() {
    use fastpix_nats_bridge::bridge::refused::{BURST, RATE_PER_SEC};
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let client = nats.client().await;
    let started = Instant::now();
    let forged = std::sync::Arc::new(object_event("video.media.ready", "forged", "x"));
    let url = app.webhook_url();
    let http = app.http.clone();
    let flood = futures_util::stream::iter(0..10_000)
        .map(|_| {
            let (http, url, body) = (http.clone(), url.clone(), forged.clone());
            async move {
                http.post(url)
                    .header("FastPix-Signature", "Zm9yZ2Vk")
                    .body(body.to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let signed = async {
        let mut ok = 0;
        for i in 0..40 {
            let r = app
                .post_signed(&object_event(
                    "video.media.ready",
                    &format!("real-{i}"),
                    "m",
                ))
                .await;
            if r.status() == 200 {
                ok += 1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ok
    };
    let (answers, ok) = tokio::join!(flood, signed);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        answers.iter().all(|a| matches!(a, Ok(401))),
        "every forged request refused"
    );
    assert_eq!(ok, 40, "signed events kept being stored during the flood");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = stream_messages(&client, "FASTPIX").await;
    assert_eq!(events.len(), 40);
    let js = jetstream::new(client.clone());
    let mut refused = js.get_stream("FASTPIX_REFUSED").await.unwrap();
    let kept = refused.info().await.unwrap().state.messages;
    let bound = BURST + RATE_PER_SEC * (elapsed + 1.0);
    assert!(
        kept >= 1 && (kept as f64) <= bound,
        "{kept} records in {elapsed:.1}s, bound {bound}"
    );
    let dropped = app
        .scrape()
        .await
        .get("fastpix_bridge_refusal_records_dropped_total");
    assert!(
        dropped as u64 + kept >= 10_000 - 5 && (dropped as u64) < 10_000,
        "dropped {dropped}, kept {kept}"
    );
}

/// Two inspectors take turns on the one index consumer, each holding a batch
/// of its own, so batches are applied out of stream order: the counts and
/// each object's timeline still hold every event exactly once.
#[tokio::test]
async fn two_inspectors_sharing_the_index_count_and_list_every_event_once() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let a = TestInspector::spawn(&nats.url(), Some(&app)).await;
    let b = TestInspector::spawn(&nats.url(), Some(&app)).await;
    let objects = ["m-0", "m-1", "m-2"];
    for i in 0..90 {
        assert_eq!(
            app.post_signed(&object_event(
                "video.media.updated",
                &format!("e{i}"),
                objects[i % 3]
            ))
            .await
            .status(),
            200
        );
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for insp in [&a, &b] {
        insp.wait_indexed().await;
        let month = &insp.ok("/api/overview").await["windows"]["month"];
        assert_eq!(month["types"]["video.media.updated"], 90, "{month}");
        for (k, object) in objects.iter().enumerate() {
            let want: Vec<u64> = (0..30).map(|j| (3 * j + k + 1) as u64).collect();
            assert_eq!(insp.timeline(object).await, want);
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Events held by an inspector that stopped without acking them come back
/// after the consumer's ack wait, behind events indexed meanwhile; here the
/// test holds them itself and hands them back late. They are indexed all the
/// same, and the acks of later events never cover them.
#[tokio::test]
async fn events_handed_back_after_later_ones_were_indexed_are_indexed_too() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let post = |range: std::ops::Range<u32>| {
        let app = &app;
        async move {
            for i in range {
                let event = object_event("video.upload.created", &format!("h{i}"), "up-9");
                assert_eq!(app.post_signed(&event).await.status(), 200);
            }
        }
    };
    post(0..10).await;
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    insp.shutdown().await;

    post(10..15).await;
    let js = jetstream::new(nats.client().await);
    let index_consumer: jetstream::consumer::PullConsumer = js
        .get_stream("FASTPIX")
        .await
        .unwrap()
        .get_consumer("fastpix-inspector-index")
        .await
        .unwrap();
    let held: Vec<jetstream::Message> = index_consumer
        .fetch()
        .max_messages(3)
        .messages()
        .await
        .unwrap()
        .map(|m| m.unwrap())
        .collect()
        .await;
    let held_seqs: Vec<u64> = held
        .iter()
        .map(|m| m.info().unwrap().stream_sequence)
        .collect();
    assert_eq!(held_seqs, [11, 12, 13]);

    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    post(15..20).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            let o = insp.ok("/api/overview").await;
            // The held events count as not yet indexed.
            o["index_pending"] == 3 && o["windows"]["month"]["total"] == 17
        })
        .await,
        "all but the held events indexed"
    );
    for m in held {
        m.ack_with(jetstream::AckKind::Nak(None)).await.unwrap();
    }
    insp.wait_indexed().await;
    assert_eq!(insp.timeline("up-9").await, (1..=20).collect::<Vec<u64>>());
    assert_eq!(insp.seqs_of_id("h11").await, [12]);
    let month = &insp.ok("/api/overview").await["windows"]["month"];
    assert_eq!(month["types"]["video.upload.created"], 20, "{month}");
    insp.shutdown().await;
}

/// An index consumer left by an earlier version acks a batch at once; it is
/// made again to ack each event, from where the old one stood.
#[tokio::test]
async fn an_index_consumer_that_acks_all_is_made_again_from_its_position() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    for i in 0..10 {
        let event = object_event("video.upload.created", &format!("k{i}"), "up-3");
        assert_eq!(app.post_signed(&event).await.status(), 200);
    }
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    insp.shutdown().await;
    let js = jetstream::new(nats.client().await);
    let stream = js.get_stream("FASTPIX").await.unwrap();
    stream
        .delete_consumer("fastpix-inspector-index")
        .await
        .unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("fastpix-inspector-index".to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: 11,
            },
            max_ack_pending: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 10..15 {
        let event = object_event("video.upload.created", &format!("k{i}"), "up-3");
        assert_eq!(app.post_signed(&event).await.status(), 200);
    }
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_consumer("fastpix-inspector-index")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(
        info.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
    // Only the five events past the old position were delivered again.
    assert_eq!(info.delivered.consumer_sequence, 5, "{info:?}");
    assert_eq!(info.ack_floor.stream_sequence, 15, "{info:?}");
    assert_eq!(insp.timeline("up-3").await, (1..=15).collect::<Vec<u64>>());
    insp.shutdown().await;
}

#[tokio::test]
async fn the_index_survives_restarts_and_is_rebuilt_when_deleted() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    for i in 0..10 {
        assert_eq!(
            app.post_signed(&object_event(
                "video.upload.created",
                &format!("a{i}"),
                "up-1"
            ))
            .await
            .status(),
            200
        );
    }
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    // Stored while the inspector stops and after it has gone (40 events back
    // to back, so that some reach the server as it stops): none of them
    // may be left with the stopped one, to come back only after the index
    // consumer's ack wait (60 s, longer than `wait_indexed` waits).
    let stored_meanwhile = async {
        for i in 0..40 {
            assert_eq!(
                app.post_signed(&object_event(
                    "video.upload.ready",
                    &format!("b{i}"),
                    "up-1"
                ))
                .await
                .status(),
                200
            );
        }
    };
    tokio::join!(insp.shutdown(), stored_meanwhile);
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    assert_eq!(insp.timeline("up-1").await, (1..=50).collect::<Vec<u64>>());
    assert_eq!(insp.seqs_of_id("b3").await, [14]);
    let overview = insp.ok("/api/overview").await;
    assert_eq!(
        overview["windows"]["hour"]["families"]["upload"], 50,
        "{overview}"
    );
    insp.shutdown().await;

    // Without its bucket, the index is built again from the stream.
    let js = jetstream::new(nats.client().await);
    js.delete_key_value("FASTPIX_INSPECT").await.unwrap();
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    assert_eq!(insp.timeline("up-1").await, (1..=50).collect::<Vec<u64>>());
    assert_eq!(
        insp.ok("/api/overview").await["windows"]["day"]["types"]["video.upload.created"],
        10
    );
    assert_eq!(insp.seqs_of_id("a0").await, [1]);
}

#[tokio::test]
async fn a_sequence_that_cannot_exist_is_404_and_every_family_of_the_catalog_filters() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    for (t, id) in [
        ("video.media.ready", "m-1"),
        ("video.mediaAI.summary.ready", "ai-1"),
        ("video.live_stream.active", "ls-1"),
    ] {
        assert_eq!(
            app.post_signed(&object_event(t, id, id)).await.status(),
            200
        );
    }
    let insp = TestInspector::spawn(&nats.url(), Some(&app)).await;
    insp.wait_indexed().await;
    for seq in ["0", "99999"] {
        let (status, body) = insp.get(&format!("/api/events/{seq}")).await;
        assert_eq!(status, 404, "{seq}: {body}");
        assert_eq!(body["error"], "no event with this sequence");
    }
    let other = insp.ok("/api/events?family=other").await;
    let ids: Vec<&str> = other["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["ai-1"]);
    let catalog = insp.ok("/api/catalog").await;
    let overview = insp.ok("/api/overview").await;
    let counted: Vec<String> = overview["windows"]["month"]["families"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(counted.contains(&"other".to_owned()), "{overview}");
    // The Overview says how full the stream is against its bound.
    let stream = &overview["stream"];
    assert_eq!(stream["max_bytes"], 8u64 << 30, "{stream}");
    let ratio = stream["fill_ratio"].as_f64().unwrap();
    let expected = stream["bytes"].as_f64().unwrap() / (8u64 << 30) as f64;
    assert!(ratio > 0.0 && (ratio - expected).abs() < 1e-12, "{stream}");
    assert_eq!(stream["full"], false);
    let families = catalog["families"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .chain(counted);
    for family in families {
        let (status, body) = insp.get(&format!("/api/events?family={family}")).await;
        assert_eq!(status, 200, "{family}: {body}");
    }
}
