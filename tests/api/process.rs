//! The real binary: signals, exit codes, startup refusals.

use std::time::Duration;

use crate::helpers::*;
use crate::sender::{assert_each_stored_exactly_once, send_with_retries};

#[tokio::test]
async fn sigterm_during_requests_exits_0_and_every_2xx_event_is_stored() {
    let nats = NatsServer::start();
    let mut bridge = BridgeProcess::start(&bridge_env(&nats));
    bridge.wait_ready().await;
    let url = bridge.url("/webhooks/fastpix");
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            // Spread the posts so some are in flight when SIGTERM lands.
            tokio::time::sleep(Duration::from_millis(i as u64 * 2)).await;
            let body = event_body("video.media.ready", &format!("term-{i}"));
            let sig = sign(SECRET, body.as_bytes());
            let status = http
                .post(url)
                .header("FastPix-Signature", sig)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16());
            (i, status)
        }));
    }
    // SIGTERM once events are being stored, so it lands among requests in
    // flight however slow the machine.
    let client = nats.client().await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            !stream_messages(&client, "FASTPIX").await.is_empty()
        })
        .await,
        "no event stored:\n{}",
        bridge.log_text()
    );
    bridge.terminate();
    let code = bridge.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "exit code; log:\n{}", bridge.log_text());

    let stored: std::collections::HashSet<String> = stream_messages(&client, "FASTPIX")
        .await
        .iter()
        .filter_map(|m| m.header("Nats-Msg-Id").map(str::to_owned))
        .collect();
    let mut answered = 0;
    for t in tasks {
        let (i, status) = t.await.unwrap();
        if let Ok(s) = status {
            assert!(s == 200 || s == 503, "event {i}: status {s}");
            if s == 200 {
                answered += 1;
                assert!(
                    stored.contains(&format!("term-{i}")),
                    "2xx'd event {i} is not in the stream"
                );
            }
        }
    }
    assert!(answered > 0, "no request was answered before SIGTERM");
    assert!(bridge.log_text().contains("shutting down"));
}

#[tokio::test]
async fn sigint_also_stops_cleanly() {
    let nats = NatsServer::start();
    let mut bridge = BridgeProcess::start(&bridge_env(&nats));
    bridge.wait_ready().await;
    let pid = bridge_pid(&bridge);
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert_eq!(bridge.wait_exit(Duration::from_secs(30)).await, Some(0));
}

fn bridge_pid(b: &BridgeProcess) -> String {
    b.pid().expect("running").to_string()
}

#[tokio::test]
async fn bad_settings_stop_the_process_with_the_setting_named() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "webhook.signing_secrets"),
        (
            &[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", "%%%")],
            "webhook.signing_secrets",
        ),
        (
            &[
                ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
                ("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "never"),
            ],
            "nats.publish_timeout",
        ),
    ];
    for (env, key) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(key) && stderr.lines().count() == 1,
            "{env:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
}

#[tokio::test]
async fn a_retrying_sender_gets_every_event_stored_exactly_once() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env(&nats));
    let report = send_with_retries(
        &bridge.url("/webhooks/fastpix"),
        4,
        200,
        Duration::from_secs(60),
    )
    .await;
    assert_each_stored_exactly_once(&nats.client().await, "FASTPIX", &report).await;
}

/// `fastpix-nats-bridge healthcheck`, as the container healthcheck runs it.
fn healthcheck(url: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
        .env_clear()
        .args(["healthcheck", "--url", url, "--timeout", "5s"])
        .output()
        .expect("run healthcheck");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_healthcheck_command_follows_readiness() {
    let mut nats = NatsServer::start();
    let bridge = BridgeProcess::start(&bridge_env(&nats));
    let readyz = bridge.url("/readyz");
    assert!(
        eventually(Duration::from_secs(20), || async {
            healthcheck(&readyz).0 == Some(0)
        })
        .await,
        "healthy bridge: {:?}",
        healthcheck(&readyz)
    );
    nats.stop();
    assert!(
        eventually(Duration::from_secs(20), || async {
            let (code, stderr) = healthcheck(&readyz);
            code == Some(1) && stderr.contains("503")
        })
        .await,
        "bridge without NATS: {:?}",
        healthcheck(&readyz)
    );
    // Liveness is not readiness: the process itself still answers.
    assert_eq!(healthcheck(&bridge.url("/healthz")).0, Some(0));

    let (code, stderr) = healthcheck(&format!("http://127.0.0.1:{}/readyz", free_port()));
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("unhealthy: cannot reach"), "{stderr}");
    let (code, stderr) = healthcheck("ftp://x/readyz");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not an http:// URL"), "{stderr}");
}

/// `fastpix-nats-bridge healthcheck --durable NAME`, as a consumer's
/// container healthcheck runs it: the consumer's environment, nothing else.
fn durable_healthcheck(name: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    durable_healthcheck_with(name, env, &[])
}

/// As [`durable_healthcheck`], with more arguments.
fn durable_healthcheck_with(
    name: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
        .env_clear()
        .envs(env.iter().copied())
        .args(["healthcheck", "--durable", name, "--timeout", "5s"])
        .args(args)
        .output()
        .expect("run healthcheck");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_durable_healthcheck_passes_only_while_the_consumer_exists() {
    use async_nats::jetstream;
    use fastpix_nats_bridge::consumer::{self, Family, Start, SubjectPrefix};

    let mut nats = NatsServer::start();
    let url = nats.url();
    let env = [("FASTPIX_BRIDGE__NATS__URL", url.as_str())];

    let (code, stderr) = durable_healthcheck("worker", &env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("unhealthy: stream `FASTPIX` does not exist"),
        "{stderr}"
    );

    // The stream as the bridge creates it, then the consumer as a worker binds it.
    let bridge = TestApp::spawn(&nats).await;
    let (code, stderr) = durable_healthcheck("worker", &env);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "unhealthy: durable consumer `worker` does not exist on stream `FASTPIX`"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");

    let js = jetstream::new(nats.client().await);
    let filters = Family::Media.filters(&SubjectPrefix::default());
    consumer::durable(&js, "FASTPIX", "worker", &filters, Start::New)
        .await
        .expect("bind the durable consumer");
    let (code, stderr) = durable_healthcheck("worker", &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");

    // The consumer's own stream setting is the one looked in.
    let (code, stderr) = durable_healthcheck(
        "worker",
        &[env[0], ("FASTPIX_BRIDGE__JETSTREAM__STREAM", "OTHER")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("stream `OTHER` does not exist"), "{stderr}");

    // With several webhooks, the stream of the one picked, by --webhook or
    // by FASTPIX_BRIDGE_WEBHOOK as the consumer library reads it.
    let two = [
        env[0],
        ("FASTPIX_BRIDGE__WEBHOOKS__PROD__PREFIX", "fastpix"),
        ("FASTPIX_BRIDGE__WEBHOOKS__STAGING__PREFIX", "staging"),
        (
            "FASTPIX_BRIDGE__WEBHOOKS__STAGING__STREAM",
            "FASTPIX_STAGING",
        ),
    ];
    let (code, stderr) = durable_healthcheck_with("worker", &two, &["--webhook", "prod"]);
    assert_eq!(code, Some(0), "prod's stream holds it: {stderr}");
    let (code, stderr) = durable_healthcheck_with("worker", &two, &["--webhook", "staging"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("stream `FASTPIX_STAGING` does not exist"),
        "{stderr}"
    );
    let mut by_env = two.to_vec();
    by_env.push(("FASTPIX_BRIDGE_WEBHOOK", "staging"));
    let (code, stderr) = durable_healthcheck("worker", &by_env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("stream `FASTPIX_STAGING` does not exist"),
        "{stderr}"
    );
    let (code, stderr) = durable_healthcheck("worker", &two);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("unhealthy: ") && stderr.contains("several webhooks"),
        "{stderr}"
    );

    js.get_stream("FASTPIX")
        .await
        .expect("stream")
        .delete_consumer("worker")
        .await
        .expect("delete the consumer");
    let (code, stderr) = durable_healthcheck("worker", &env);
    assert_eq!(code, Some(1), "a deleted consumer: {stderr}");

    // Bad settings are unhealthy too, never another exit code.
    let (code, stderr) = durable_healthcheck(
        "worker",
        &[env[0], ("FASTPIX_BRIDGE__NATS__CONNECT_TIMEOUT", "soon")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("nats.connect_timeout"), "{stderr}");

    // A server that accepts the connection but answers nothing, then none at all.
    nats.freeze();
    let (code, stderr) = durable_healthcheck("worker", &env);
    assert_eq!(code, Some(1), "frozen NATS: {stderr}");
    assert!(stderr.starts_with("unhealthy: "), "{stderr}");
    nats.thaw();
    drop(bridge);
    nats.stop();
    let (code, stderr) = durable_healthcheck("worker", &env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("unhealthy: cannot reach NATS at {url}")),
        "{stderr}"
    );
}
