//! Credentials inside payloads (live streams' keys and SRT secrets,
//! simulcast targets' keys) never leave the inspector unless
//! `inspect.reveal_secrets` is on: not in its page, its JSON, its live
//! stream or its log. The stored bytes keep them.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::inspector::{TOKEN, TestInspector};

/// The values that must never be shown, each unlike any other text.
const SECRETS: [&str; 6] = [
    "sk-top-9f3a1c",
    "sk-deep-77b2e0",
    "srt-secret-4d1e",
    "srt-secert-c0ffee",
    "sk-simulcast-target-5a5a",
    "sk-invalid-body-1b1b",
];

/// A live stream with its key at two depths and an SRT secret (both
/// spellings), and a simulcast target with its own key.
fn events(n: usize) -> [String; 2] {
    [
        json!({
            "type": "video.live_stream.created",
            "id": format!("ls-created-{n}"),
            "object": { "type": "live_stream", "id": "ls-secret-1" },
            "workspace": { "id": "ws-1" },
            "data": {
                "id": "ls-secret-1",
                "streamKey": SECRETS[0],
                "srtSecret": SECRETS[2],
                "srtSecert": SECRETS[3],
                "ingest": { "rtmp": { "url": "rtmps://live.fastpix.io:443/live", "streamKey": SECRETS[1] } },
                "playbackIds": [{ "id": "pb-1", "accessPolicy": "public" }]
            },
            "createdAt": "2026-05-11T20:42:16.361817248Z"
        })
        .to_string(),
        json!({
            "type": "video.live_stream.simulcast.created",
            "id": format!("sim-created-{n}"),
            "object": { "type": "live_stream", "id": "ls-secret-1" },
            "data": {
                "simulcastId": "sim-1",
                "url": "rtmp://a.rtmp.youtube.com/live2",
                "streamKey": SECRETS[4],
                "isEnabled": true
            },
            "createdAt": "2026-05-11T20:43:16.361817248Z"
        })
        .to_string(),
    ]
}

/// The inspector as a process (`fastpix-nats-bridge inspect`), with every
/// log line at `debug` kept.
struct InspectorProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    url: String,
}

impl InspectorProcess {
    fn start(nats: &NatsServer) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
            .arg("inspect")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug")
            .env("FASTPIX_BRIDGE__LOG__FORMAT", "json")
            .env("FASTPIX_BRIDGE__NATS__URL", nats.url())
            .env("FASTPIX_BRIDGE__INSPECT__LISTEN", "127.0.0.1:0")
            .env("FASTPIX_BRIDGE__INSPECT__ADMIN_LISTEN", "127.0.0.1:0")
            .env("FASTPIX_BRIDGE__INSPECT__TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the inspector");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = lines.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let started = Instant::now();
        let url = loop {
            let found = lines.lock().unwrap().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["message"] == "inspector listening")
                    .then(|| v["addr"].as_str().map(str::to_owned))?
            });
            if let Some(addr) = found {
                break format!("http://{addr}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the inspector did not start:\n{}",
                lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        InspectorProcess { child, lines, url }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for InspectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_hidden(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows {s}:\n{text}");
    }
}

#[tokio::test]
async fn credentials_in_payloads_are_hidden_everywhere_the_inspector_shows_them() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let insp = InspectorProcess::start(&nats);
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}{path}", insp.url))
            .bearer_auth(TOKEN)
            .send()
    };
    let ready = eventually(Duration::from_secs(60), || async {
        get("/api/overview").await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "inspector ready:\n{}", insp.log());

    // Live first: the stream starts at the newest event, so send until one shows.
    let live = get("/api/live").await.unwrap();
    assert_eq!(live.status(), 200);
    let mut live = live.bytes_stream();
    let mut sse = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while !sse.contains("sim-created-") {
        assert!(Instant::now() < deadline, "no event on /api/live: {sse}");
        for body in events(n) {
            assert_eq!(app.post_signed(&body).await.status(), 200);
        }
        n += 1;
        while let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), live.next()).await
        {
            sse.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    // A signed body that is not an event, carrying a key: kept, and shown as a dead letter.
    let invalid = json!([{ "streamKey": SECRETS[5] }]).to_string();
    assert_eq!(app.post_signed(&invalid).await.status(), 400);

    // The stored bytes are as FastPix sent them.
    let client = nats.client().await;
    let stored = stream_messages(&client, "FASTPIX").await;
    let invalid_kept = stream_messages(&client, "FASTPIX_INVALID").await;
    let all: String = stored
        .iter()
        .chain(&invalid_kept)
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    for s in SECRETS {
        assert!(all.contains(s), "{s} is stored");
    }

    let indexed = eventually(Duration::from_secs(60), || async {
        let Ok(r) = get("/api/overview").await else {
            return false;
        };
        let o: Value = r.json().await.unwrap_or_default();
        o["index_pending"] == 0
    })
    .await;
    assert!(indexed);
    let mut shown = Vec::new();
    for path in [
        "/",
        "/assets/app.js",
        "/api/events?limit=500",
        "/api/objects/ls-secret-1/events",
        "/api/dead_letters",
        "/api/overview",
        "/api/refused",
        "/api/catalog",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        shown.push((path.to_owned(), r.text().await.unwrap()));
    }
    let mut details = 0;
    for m in &stored {
        let r = get(&format!("/api/events/{}", m.seq)).await.unwrap();
        assert_eq!(r.status(), 200);
        let detail: Value = r.json().await.unwrap();
        let is_live = m.subject.starts_with("fastpix.video.live_stream");
        if is_live {
            details += 1;
            assert_eq!(detail["payload_as_stored"], false, "{detail}");
            assert_eq!(detail["reveal_secrets"], false, "{detail}");
            let hidden = detail["hidden_values"].as_u64().unwrap();
            assert!(hidden == 4 || hidden == 1, "{detail}");
            let payload: Value = serde_json::from_str(detail["payload"].as_str().unwrap()).unwrap();
            assert!(payload["data"]["streamKey"] == "•••• (hidden)", "{payload}");
            // Everything else is still there.
            assert_eq!(payload["object"]["id"], "ls-secret-1");
        }
        shown.push((format!("/api/events/{}", m.seq), detail.to_string()));
    }
    assert!(details >= 2);
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_millis(200), live.next()).await
    {
        sse.push_str(&String::from_utf8_lossy(&chunk));
    }
    shown.push(("/api/live".to_owned(), sse));
    for (what, text) in &shown {
        assert_hidden(what, text);
    }
    let dead: Value = serde_json::from_str(&shown[4].1).unwrap();
    assert!(
        dead["invalid"][0]["payload"]
            .as_str()
            .is_some_and(|p| p.contains("•••• (hidden)")),
        "{dead}"
    );
    assert_hidden("the inspector's log", &insp.log());
    assert!(insp.log().contains("inspector listening"));

    // Revealing: the same routes show them, as stored.
    let revealing = TestInspector::spawn_with(
        &nats.url(),
        None,
        &[("FASTPIX_BRIDGE__INSPECT__REVEAL_SECRETS", "true")],
    )
    .await;
    let mut text = String::new();
    for m in &stored {
        let detail = revealing.ok(&format!("/api/events/{}", m.seq)).await;
        assert_eq!(detail["payload_as_stored"], true);
        assert_eq!(detail["hidden_values"], 0);
        assert_eq!(
            detail["payload"].as_str().unwrap().as_bytes(),
            m.payload.as_slice()
        );
        text.push_str(&detail.to_string());
    }
    text.push_str(&revealing.ok("/api/dead_letters").await.to_string());
    for s in SECRETS {
        assert!(text.contains(s), "{s} is shown when revealing");
    }
}
