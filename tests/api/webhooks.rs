//! Several webhooks on one bridge (one per FastPix workspace): each its own
//! path, secrets, subject prefix and stream; secrets from files, reloaded on
//! SIGHUP and on change, under load; CloudEvents headers read back by the
//! official CloudEvents SDK.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fastpix_nats_bridge::settings::Settings;
use futures_util::StreamExt;

use crate::helpers::*;
use crate::sender::{SendReport, assert_each_stored_exactly_once};

/// Settings from these variables only (no single `[webhook]` section), with
/// loopback listeners and `nats`.
fn named_settings(nats: &NatsServer, pairs: &[(&str, &str)]) -> Settings {
    let mut env: config::Map<String, String> = [
        ("FASTPIX_BRIDGE__HTTP__LISTEN", "127.0.0.1:0"),
        ("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:0"),
        ("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "2s"),
        ("FASTPIX_BRIDGE__NATS__CONNECT_TIMEOUT", "2s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("FASTPIX_BRIDGE__NATS__URL".to_owned(), nats.url());
    for (k, v) in pairs {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::load_from(None, Some(env)).expect("valid settings")
}

async fn post_to(http: &reqwest::Client, url: &str, body: &str, secret: &str) -> u16 {
    http.post(url)
        .header("content-type", "application/json")
        .header("FastPix-Signature", sign(secret, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .expect("request reaches the bridge")
        .status()
        .as_u16()
}

#[tokio::test]
async fn two_webhooks_store_apart_and_neither_accepts_the_others_secret() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_settings(named_settings(
        &nats,
        &[
            ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
            (
                "FASTPIX_BRIDGE__WEBHOOKS__STAGING__SIGNING_SECRETS",
                SECRET_2,
            ),
            (
                "FASTPIX_BRIDGE__WEBHOOKS__STAGING__STREAM",
                "FASTPIX_STAGING",
            ),
        ],
    ))
    .await;
    let client = nats.client().await;
    // A consumer of both workspaces, as docs/webhooks.md shows.
    let mut both = client
        .subscribe("fastpix.*.video.media.ready")
        .await
        .unwrap();
    client.flush().await.unwrap();
    let (prod_url, staging_url) = (app.url("/webhooks/prod"), app.url("/webhooks/staging"));
    let prod_body = event_body("video.media.ready", "prod-1");
    let staging_body = event_body("video.media.ready", "staging-1");

    // Each secret is valid on its own webhook only.
    assert_eq!(
        post_to(&app.http, &prod_url, &staging_body, SECRET_2).await,
        401
    );
    assert_eq!(
        post_to(&app.http, &staging_url, &prod_body, SECRET).await,
        401
    );
    assert_eq!(post_to(&app.http, &prod_url, &prod_body, SECRET).await, 200);
    assert_eq!(
        post_to(&app.http, &staging_url, &staging_body, SECRET_2).await,
        200
    );
    let single = app.url("/webhooks/fastpix");
    assert_eq!(post_to(&app.http, &single, &prod_body, SECRET).await, 404);

    for (stream, name, body) in [
        ("FASTPIX", "prod", &prod_body),
        ("FASTPIX_STAGING", "staging", &staging_body),
    ] {
        let stored = stream_messages(&client, stream).await;
        assert_eq!(stored.len(), 1, "{stream}: {stored:?}");
        let m = &stored[0];
        assert_eq!(m.subject, format!("fastpix.{name}.video.media.ready"));
        assert_eq!(m.header("FastPix-Webhook"), Some(name));
        assert_eq!(m.header("Nats-Msg-Id"), Some(format!("{name}-1").as_str()));
        assert_eq!(m.payload, body.as_bytes());
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(10), both.next())
            .await
            .expect("both events reach a subscriber of fastpix.*.video.media.ready")
            .expect("subscription open");
        let webhook = m
            .headers
            .as_ref()
            .and_then(|h| h.get("FastPix-Webhook"))
            .map(|v| v.as_str().to_owned());
        seen.push((m.subject.to_string(), webhook));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "fastpix.prod.video.media.ready".to_owned(),
                Some("prod".to_owned())
            ),
            (
                "fastpix.staging.video.media.ready".to_owned(),
                Some("staging".to_owned())
            ),
        ]
    );

    let scrape = app.scrape().await;
    for (series, want) in [
        (r#"requests_total{webhook="prod",outcome="published"}"#, 1.0),
        (
            r#"requests_total{webhook="prod",outcome="bad_signature"}"#,
            1.0,
        ),
        (
            r#"requests_total{webhook="staging",outcome="published"}"#,
            1.0,
        ),
        (
            r#"requests_total{webhook="staging",outcome="bad_signature"}"#,
            1.0,
        ),
        (
            r#"events_published_total{webhook="prod",family="media"}"#,
            1.0,
        ),
        (
            r#"events_published_total{webhook="staging",family="media"}"#,
            1.0,
        ),
        (r#"request_duration_seconds_count{webhook="staging"}"#, 2.0),
    ] {
        assert_eq!(
            scrape.get(&format!("fastpix_bridge_{series}")),
            want,
            "{series}"
        );
    }
    assert!(!scrape.0.contains("webhook=\"default\""), "{}", scrape.0);
}

/// Runs the real binary with exactly `env` and returns its exit code and
/// stderr; kills it if it is still running after 30 s.
async fn run_binary(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FASTPIX_BRIDGE__HTTP__LISTEN", "127.0.0.1:0")
        .env("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:0")
        .env("FASTPIX_BRIDGE__NATS__CONNECT_TIMEOUT", "100ms")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the bridge binary");
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

/// Variables set, and the texts the refusal must hold.
type RefusalCase<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

#[tokio::test]
async fn the_binary_refuses_bad_webhook_settings_with_exit_2_naming_webhook_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.secrets");
    let missing = missing.to_str().unwrap();
    let cases: &[RefusalCase] = &[
        (
            &[
                ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
                ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET_2),
            ],
            &["[webhook]", "prod", "one or the other"],
        ),
        (
            &[
                ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
                (
                    "FASTPIX_BRIDGE__WEBHOOKS__STAGING__SIGNING_SECRETS",
                    SECRET_2,
                ),
                ("FASTPIX_BRIDGE__WEBHOOKS__STAGING__PATH", "/webhooks/prod"),
            ],
            &[
                "webhooks.staging.path",
                "FASTPIX_BRIDGE__WEBHOOKS__STAGING__PATH",
                "`prod`",
            ],
        ),
        (
            &[
                ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
                ("FASTPIX_BRIDGE__WEBHOOKS__PROD__PREFIX", "fastpix"),
                (
                    "FASTPIX_BRIDGE__WEBHOOKS__STAGING__SIGNING_SECRETS",
                    SECRET_2,
                ),
            ],
            &[
                "webhooks.staging.prefix",
                "webhooks.prod.prefix",
                "fastpix.staging overlaps",
            ],
        ),
        (
            &[
                ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
                ("FASTPIX_BRIDGE__WEBHOOKS__STAGING__PATH", "/staging"),
            ],
            &[
                "webhooks.staging.signing_secrets",
                "`staging`",
                "FASTPIX_BRIDGE__WEBHOOKS__STAGING__ALLOW_UNSIGNED",
            ],
        ),
        (
            &[(
                "FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS_FILE",
                missing,
            )],
            &["webhooks.prod.signing_secrets_file", missing],
        ),
    ];
    for (env, wanted) in cases {
        let (code, stderr) = run_binary(env).await;
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        for w in *wanted {
            assert!(stderr.contains(w), "{env:?}: {w:?} not in {stderr}");
        }
        assert!(
            !stderr.contains(SECRET) && !stderr.contains(SECRET_2),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Replaces `path` at once, as Kubernetes and Docker update mounted secrets,
/// so the bridge never reads a half-written file.
fn replace_file(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn sighup_reloads_secrets_files_and_a_bad_file_keeps_the_secrets_in_force() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prod.secrets");
    replace_file(&file, &format!("{SECRET}\n"));
    let env: Vec<(String, String)> = [
        ("FASTPIX_BRIDGE__NATS__URL", nats.url().as_str()),
        (
            "FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS_FILE",
            file.to_str().unwrap(),
        ),
        // Only SIGHUP can reload within this test.
        ("FASTPIX_BRIDGE__SECRETS__CHECK_INTERVAL", "1h"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let bridge = BridgeProcess::start(&env);
    let admin = bridge.admin_addr;
    let pid = bridge.pid().unwrap().to_string();
    let http = reqwest::Client::new();
    let url = bridge.url("/webhooks/prod");
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let body = |n: u32| event_body("video.media.ready", &format!("hup-{n}"));
    assert!(
        eventually(Duration::from_secs(10), || async {
            post_to(&http, &url, &body(0), SECRET).await == 200
        })
        .await,
        "{}",
        bridge.log_text()
    );
    assert_eq!(post_to(&http, &url, &body(1), SECRET_2).await, 401);

    replace_file(&file, "not*base64\n");
    hup();
    assert!(
        eventually(Duration::from_secs(10), || async {
            bridge.log_text().contains("signing secrets not reloaded")
        })
        .await,
        "{}",
        bridge.log_text()
    );
    let log = bridge.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("signing secrets not reloaded"))
        .unwrap();
    assert!(
        line.contains(file.to_str().unwrap()) && line.contains("line 1"),
        "{line}"
    );
    assert!(!log.contains("not*base64"), "{log}");
    assert_eq!(post_to(&http, &url, &body(2), SECRET).await, 200);

    replace_file(&file, &format!("{SECRET_2}\n"));
    hup();
    assert!(
        eventually(Duration::from_secs(10), || async {
            post_to(&http, &url, &body(3), SECRET_2).await == 200
        })
        .await,
        "{}",
        bridge.log_text()
    );
    assert_eq!(post_to(&http, &url, &body(4), SECRET).await, 401);

    let metrics = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = Scrape(metrics);
    let reloads = "fastpix_bridge_secrets_reloads_total";
    assert_eq!(
        scrape.get(&format!("{reloads}{{webhook=\"prod\",result=\"failed\"}}")),
        1.0
    );
    assert_eq!(
        scrape.get(&format!("{reloads}{{webhook=\"prod\",result=\"ok\"}}")),
        1.0
    );
    let log = bridge.log_text();
    assert!(!log.contains(SECRET) && !log.contains(SECRET_2), "{log}");
}

/// Senders that behave like FastPix during a rotation: each delivery is
/// signed with the secret FastPix uses at the moment of the attempt, and
/// retried until a 2xx.
struct RotatingSenders {
    /// The secret signing new attempts, and how many attempts signed with
    /// the first secret are in flight (both behind one lock, so a switch
    /// cannot miss an attempt that read the old secret).
    signing: Arc<std::sync::Mutex<(&'static str, u64)>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<String>, Vec<String>)>>,
}

impl RotatingSenders {
    fn start(url: &str, senders: usize, first: &'static str) -> Self {
        let signing = Arc::new(std::sync::Mutex::new((first, 0u64)));
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let next = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let tasks = (0..senders)
            .map(|_| {
                let (signing, stop, sent, refused, next, http, url) = (
                    signing.clone(),
                    stop.clone(),
                    sent.clone(),
                    refused.clone(),
                    next.clone(),
                    http.clone(),
                    url.to_owned(),
                );
                tokio::spawn(async move {
                    let (mut ids, mut gave_up) = (Vec::new(), Vec::new());
                    let until = tokio::time::Instant::now() + Duration::from_secs(120);
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("rot-{}", next.fetch_add(1, Ordering::SeqCst));
                        let body = event_body("video.media.ready", &id);
                        let attempt = || {
                            let secret = {
                                let mut s = signing.lock().unwrap();
                                if s.0 == first {
                                    s.1 += 1;
                                }
                                s.0
                            };
                            let req = http
                                .post(&url)
                                .header("content-type", "application/json")
                                .header("FastPix-Signature", sign(secret, body.as_bytes()))
                                .body(body.clone());
                            let (signing, refused) = (&signing, &refused);
                            async move {
                                let answer = req.send().await;
                                if secret == first {
                                    signing.lock().unwrap().1 -= 1;
                                }
                                match answer {
                                    Ok(r) if r.status().is_success() => Ok(()),
                                    Ok(r) => {
                                        if r.status() == 401 {
                                            refused.fetch_add(1, Ordering::SeqCst);
                                        }
                                        Err(format!("status {}", r.status()))
                                    }
                                    Err(e) => Err(e.to_string()),
                                }
                            }
                        };
                        let retried = tryhard::retry_fn(attempt)
                            .retries(u32::MAX)
                            .exponential_backoff(Duration::from_millis(50))
                            .max_delay(Duration::from_secs(1));
                        if tokio::time::timeout_at(until, retried).await.is_err() {
                            gave_up.push(id.clone());
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                        ids.push(id);
                    }
                    (ids, gave_up)
                })
            })
            .collect();
        RotatingSenders {
            signing,
            stop,
            sent,
            refused,
            tasks,
        }
    }

    async fn wait_for_more(&self, n: u64) {
        let target = self.sent.load(Ordering::SeqCst) + n;
        assert!(
            eventually(Duration::from_secs(60), || async {
                self.sent.load(Ordering::SeqCst) >= target
            })
            .await,
            "the senders stalled"
        );
    }

    /// FastPix signs with `secret` from now on; returns once no attempt
    /// signed with the first secret is still in flight.
    async fn switch_to(&self, secret: &'static str) {
        self.signing.lock().unwrap().0 = secret;
        assert!(
            eventually(Duration::from_secs(30), || async {
                self.signing.lock().unwrap().1 == 0
            })
            .await
        );
    }

    async fn stop(self) -> (SendReport, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = SendReport::default();
        for t in self.tasks {
            let (ids, gave_up) = t.await.unwrap();
            report.ids.extend(ids);
            report.gave_up.extend(gave_up);
        }
        (report, self.refused.load(Ordering::SeqCst))
    }
}

async fn reloads_done(app: &TestApp) -> f64 {
    app.scrape()
        .await
        .get(r#"fastpix_bridge_secrets_reloads_total{webhook="prod",result="ok"}"#)
}

#[tokio::test]
async fn rotating_the_secret_through_its_file_under_load_refuses_no_valid_delivery() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prod.secrets");
    replace_file(&file, &format!("{SECRET}\n"));
    let app = TestApp::spawn_settings(named_settings(
        &nats,
        &[
            (
                "FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS_FILE",
                file.to_str().unwrap(),
            ),
            ("FASTPIX_BRIDGE__SECRETS__CHECK_INTERVAL", "100ms"),
        ],
    ))
    .await;
    let url = app.url("/webhooks/prod");
    let senders = RotatingSenders::start(&url, 4, SECRET);
    senders.wait_for_more(40).await;

    // 1. Add the new secret beside the old one; the bridge sees the change.
    replace_file(&file, &format!("{SECRET}\n{SECRET_2}\n"));
    assert!(
        eventually(Duration::from_secs(30), || async {
            reloads_done(&app).await >= 1.0
        })
        .await
    );
    senders.wait_for_more(40).await;
    // 2. FastPix rolls to the new secret.
    senders.switch_to(SECRET_2).await;
    senders.wait_for_more(40).await;
    // 3. Remove the old secret.
    replace_file(&file, &format!("{SECRET_2}\n"));
    assert!(
        eventually(Duration::from_secs(30), || async {
            reloads_done(&app).await >= 2.0
        })
        .await
    );
    // From here a delivery signed with the removed secret is refused.
    for i in 0..20 {
        let body = event_body("video.media.ready", &format!("removed-{i}"));
        assert_eq!(post_to(&app.http, &url, &body, SECRET).await, 401, "{i}");
    }
    senders.wait_for_more(40).await;
    let (report, refused) = senders.stop().await;

    assert_eq!(
        refused, 0,
        "deliveries signed with a secret valid when sent were refused"
    );
    assert_eq!(
        app.scrape()
            .await
            .get(r#"fastpix_bridge_secrets_reloads_total{webhook="prod",result="failed"}"#),
        0.0
    );
    assert!(report.ids.len() >= 160, "{}", report.ids.len());
    // Every delivery stored once, and none of those signed with the removed secret.
    assert_each_stored_exactly_once(&nats.client().await, "FASTPIX", &report).await;
}

#[tokio::test]
async fn cloudevents_headers_read_back_through_the_official_sdk() {
    let Some(python) = external_tool("TEST_PYTHON") else {
        return;
    };
    let nats = NatsServer::start();
    let configured_source = "urn:fastpix:Acme Studio/é";
    let app = TestApp::spawn_settings(named_settings(
        &nats,
        &[
            ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__CLOUDEVENTS__ENABLED", "true"),
            ("FASTPIX_BRIDGE__CLOUDEVENTS__TYPE_PREFIX", "io.fastpix."),
            ("FASTPIX_BRIDGE__CLOUDEVENTS__SOURCE", configured_source),
        ],
    ))
    .await;
    let url = app.url("/webhooks/prod");
    let created_at = "2026-05-11T20:42:16.361817248Z";
    // Every attribute that can carry text has something that needs encoding.
    let with_workspace = serde_json::json!({
        "type": "video.media.ready \"tést\" 100%",
        "id": "evt 1/ä%",
        "object": { "type": "media", "id": "obj \"x\" ü" },
        "workspace": { "id": "ws 1/ø%2F", "name": "Prod" },
        "data": { "id": "obj", "title": "naïve" },
        "createdAt": created_at,
    })
    .to_string();
    let without_workspace = serde_json::json!({
        "type": "video.live_stream.active",
        "id": "evt-2",
        "object": { "type": "live_stream", "id": "ls1" },
        "createdAt": created_at,
    })
    .to_string();
    for body in [&with_workspace, &without_workspace] {
        assert_eq!(post_to(&app.http, &url, body, SECRET).await, 200);
    }

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/cloudevents_roundtrip.py"
    );
    let read = |seq: u64| {
        let out = Command::new(&python)
            .args([script, &nats.url(), "FASTPIX", &seq.to_string()])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json from the script")
    };
    let expected_time = "2026-05-11T20:42:16.361817+00:00";
    for (seq, body, source, event_type, id, subject) in [
        (
            1,
            &with_workspace,
            "/fastpix/workspaces/ws 1/ø%2F",
            "io.fastpix.video.media.ready \"tést\" 100%",
            "evt 1/ä%",
            "obj \"x\" ü",
        ),
        (
            2,
            &without_workspace,
            configured_source,
            "io.fastpix.video.live_stream.active",
            "evt-2",
            "ls1",
        ),
    ] {
        let got = read(seq);
        let a = &got["attributes"];
        assert_eq!(a["specversion"], "1.0", "{got}");
        assert_eq!(a["id"], id, "{got}");
        assert_eq!(a["source"], source, "{got}");
        assert_eq!(a["type"], event_type, "{got}");
        assert_eq!(a["subject"], subject, "{got}");
        assert_eq!(a["datacontenttype"], "application/json", "{got}");
        assert_eq!(a["time"], expected_time, "{got}");
        assert_eq!(got["raw_time"], created_at, "{got}");
        // The payload is the FastPix body, untouched.
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(got["data"], body, "{got}");
    }
    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    assert_eq!(stored[0].payload, with_workspace.as_bytes());
    for m in &stored {
        for (name, value) in &m.headers {
            if name.starts_with("ce-") {
                assert!(
                    value
                        .bytes()
                        .all(|b| (0x21..0x7f).contains(&b) && b != b'"'),
                    "{name}: {value:?}"
                );
            }
        }
    }
}

/// Runs a client command of the real binary with exactly `env`.
async fn client_command(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the command ends")
        .expect("run the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn send_and_subscribe_pick_the_webhook_by_name_or_prefix() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let staging_file = dir.path().join("staging.secrets");
    replace_file(&staging_file, &format!("{SECRET_2}\n"));
    let staging_file = staging_file.to_str().unwrap();
    let named = [
        ("FASTPIX_BRIDGE__WEBHOOKS__PROD__SIGNING_SECRETS", SECRET),
        (
            "FASTPIX_BRIDGE__WEBHOOKS__STAGING__SIGNING_SECRETS_FILE",
            staging_file,
        ),
        (
            "FASTPIX_BRIDGE__WEBHOOKS__STAGING__STREAM",
            "FASTPIX_STAGING",
        ),
    ];
    let app = TestApp::spawn_settings(named_settings(&nats, &named)).await;
    let listen = app.addr.to_string();
    let nats_url = nats.url();
    let mut env = named.to_vec();
    env.push(("FASTPIX_BRIDGE__HTTP__LISTEN", &listen));
    env.push(("FASTPIX_BRIDGE__NATS__URL", &nats_url));

    let (code, _, err) = client_command(&["send"], &env).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--webhook") && err.contains("prod") && err.contains("staging"),
        "{err}"
    );
    // By name: staging's path, signed with the secret from its file.
    let (code, out, err) =
        client_command(&["send", "--webhook", "staging", "--id", "via-send"], &env).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("200"), "{out}");
    // By prefix, from its own stream.
    let (code, out, err) = client_command(
        &[
            "subscribe",
            "--webhook",
            "fastpix.staging",
            "--all",
            "--json",
            "--count",
            "1",
        ],
        &env,
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let event: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON event");
    assert_eq!(event["id"], "via-send", "{out}");
    assert!(err.contains("FASTPIX_STAGING"), "{err}");
    assert!(
        stream_messages(&nats.client().await, "FASTPIX")
            .await
            .is_empty(),
        "nothing reaches prod's stream"
    );
}
