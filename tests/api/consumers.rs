//! Consuming: the real `subscribe` and `send` commands and the examples, run
//! as processes against a real nats-server and a real bridge.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use fastpix_nats_bridge::consumer::{Event, Family, seed_types};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::helpers::*;

const LIMIT: Duration = Duration::from_secs(30);

pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
}

/// An example binary; `cargo test` builds examples next to the test binary.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// A command with a clean `FASTPIX_BRIDGE*` environment plus `env`.
pub(crate) fn command(program: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FASTPIX_BRIDGE") {
            cmd.env_remove(key);
        }
    }
    cmd.env("FASTPIX_BRIDGE__NATS__CONNECT_TIMEOUT", "5s")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A running process whose stdout and stderr are collected as they come.
pub(crate) struct Proc {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

pub(crate) fn collect<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut from: R,
    into: Arc<Mutex<Vec<u8>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("start process");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), err.clone()),
        ];
        Proc {
            child,
            out,
            err,
            readers,
        }
    }

    /// `subscribe …` against `nats`, returned once it says it is ready.
    pub(crate) async fn subscribe(nats: &NatsServer, args: &[&str]) -> Self {
        let mut full = vec!["subscribe"];
        full.extend_from_slice(args);
        let mut p = Proc::spawn(command(
            bin(),
            &full,
            &[("FASTPIX_BRIDGE__NATS__URL", &nats.url())],
        ));
        p.wait_ready().await;
        p
    }

    pub(crate) fn stdout(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.stdout())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub(crate) async fn wait_ready(&mut self) {
        let ready = eventually(LIMIT, || {
            let err = self.stderr();
            let exited = self.child.try_wait().ok().flatten().is_some();
            async move { err.contains("ready:") || exited }
        })
        .await;
        assert!(
            ready && self.stderr().contains("ready:"),
            "never ready; stderr:\n{}",
            self.stderr()
        );
    }

    pub(crate) async fn wait_lines(&self, n: usize) -> Vec<String> {
        let ok = eventually(LIMIT, || {
            let count = self.lines().len();
            async move { count >= n }
        })
        .await;
        assert!(
            ok,
            "expected {n} lines, got {:?}\nstderr:\n{}",
            self.lines(),
            self.stderr()
        );
        self.lines()
    }

    /// Waits for the exit (it must come by itself) and returns status, stdout, stderr.
    pub(crate) async fn finish(mut self) -> (ExitStatus, Vec<u8>, String) {
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit; stderr:\n{}", self.stderr()))
            .expect("wait for process");
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        (status, self.stdout(), self.stderr())
    }

    pub(crate) fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running");
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }
}

/// Runs the CLI to completion.
pub(crate) async fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let (status, out, err) = Proc::spawn(command(bin(), args, env)).finish().await;
    (status, String::from_utf8_lossy(&out).into_owned(), err)
}

/// Posts `bodies` in order, each must be stored.
pub(crate) async fn post_all(app: &TestApp, bodies: &[String]) {
    for body in bodies {
        let resp = app.post_signed(body).await;
        assert_eq!(resp.status(), 200, "{body}");
    }
}

/// `n` events cycling through the seed types, ids `{tag}-0`, `{tag}-1`, …
fn bodies(tag: &str, n: usize) -> Vec<String> {
    let types: Vec<&str> = seed_types().collect();
    (0..n)
        .map(|i| event_body(types[i % types.len()], &format!("{tag}-{i}")))
        .collect()
}

fn id_of(line: &str) -> String {
    Event::from_json(line.as_bytes())
        .unwrap_or_else(|e| panic!("not an event ({e}): {line}"))
        .id
        .expect("event id")
}

async fn consumer_info(nats: &NatsServer, name: &str) -> jetstream::consumer::Info {
    let js = jetstream::new(nats.client().await);
    let stream = js.get_stream("FASTPIX").await.expect("stream");
    stream.consumer_info(name).await.expect("consumer info")
}

#[tokio::test]
async fn send_posts_events_the_bridge_accepts() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let url = app.webhook_url();
    let env = [
        ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
        ("FASTPIX_BRIDGE__NATS__URL", "nats://127.0.0.1:1"),
    ];
    let (status, out, err) = run(&["send", "--all", "--url", &url], &env).await;
    assert!(status.success(), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    let types: Vec<&str> = seed_types().collect();
    assert_eq!(lines.len(), types.len(), "{out}");
    for (line, t) in lines.iter().zip(&types) {
        assert!(line.starts_with("200 OK"), "{line}");
        assert!(
            line.contains(&format!("\"subject\":\"fastpix.{t}\"")),
            "{line}"
        );
    }

    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    assert_eq!(stored.len(), types.len());
    let mut ids = HashSet::new();
    for (m, t) in stored.iter().zip(&types) {
        assert_eq!(m.subject, format!("fastpix.{t}"));
        let raw: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let e = Event::from_json(&m.payload).unwrap();
        assert_eq!(e.event_type, *t);
        let id = e.id.clone().unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(&id).unwrap().get_version_num(),
            4,
            "{id}"
        );
        assert!(ids.insert(id.clone()), "ids are fresh: {id}");
        assert_eq!(m.header("Nats-Msg-Id"), Some(id.as_str()));
        let created = e.created_at.clone().unwrap();
        let fraction = created
            .split('.')
            .nth(1)
            .and_then(|f| f.strip_suffix('Z'))
            .unwrap_or_default();
        assert_eq!(fraction.len(), 9, "nanoseconds in {created}");
        let age = OffsetDateTime::now_utc() - e.created_at_time().unwrap();
        assert!(
            age < time::Duration::minutes(10),
            "fresh createdAt: {created}"
        );
        assert!(e.object_id().is_some() && e.workspace_id().is_some(), "{t}");
        assert!(
            raw["object"]["type"].is_string() && raw["data"].is_object(),
            "{t}"
        );
        assert_eq!(raw["attempts"], serde_json::json!([]));
        let family = Family::of_type(t).unwrap();
        let want_object = match family {
            Family::Media => "media",
            Family::Upload if t.contains("live_stream") => "live_stream",
            Family::Upload => "upload",
            Family::LiveStream if *t == "video.asset.created" => "media",
            Family::LiveStream => "live_stream",
            Family::Simulcast => "simulcast",
        };
        assert_eq!(raw["object"]["type"], want_object, "{t}");
    }

    // --repeat with a fixed --id exercises deduplication: stored once, all 2xx.
    let (status, out, err) = run(
        &[
            "send",
            "--repeat",
            "3",
            "--id",
            "dup-1",
            "video.media.ready",
        ],
        &[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE_URL", &url),
        ],
    )
    .await;
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(out.matches("\"duplicate\":true").count(), 2, "{out}");
    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    assert_eq!(stored.len(), types.len() + 1);
    assert_eq!(stored.last().unwrap().header("Nats-Msg-Id"), Some("dup-1"));
}

#[tokio::test]
async fn send_reports_a_wrong_secret_and_other_failures_clearly() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let url = app.webhook_url();

    let (status, out, err) = run(
        &[
            "send",
            "--secret",
            SECRET_2,
            "--url",
            &url,
            "video.live_stream.active",
        ],
        &[],
    )
    .await;
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(out.starts_with("401 Unauthorized"), "{out}");
    assert!(out.contains("invalid FastPix-Signature"), "{out}");
    assert!(
        err.contains("401") && err.contains("signing secret"),
        "{err}"
    );
    assert!(
        stream_messages(&nats.client().await, "FASTPIX")
            .await
            .is_empty()
    );

    // No secret anywhere: refused before sending, naming the setting.
    let (status, _, err) = run(&["send", "--url", &url], &[]).await;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS"),
        "{err}"
    );

    // Nothing listening: says so and where it tried.
    let closed = format!("http://127.0.0.1:{}/webhooks/fastpix", free_port());
    let (status, _, err) = run(&["send", "--secret", SECRET, "--url", &closed], &[]).await;
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the bridge") && err.contains(&closed),
        "{err}"
    );
}

#[tokio::test]
async fn three_durable_consumers_each_get_every_event_once_in_stream_order() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let sent = bodies("fan", 30);
    let n = sent.len().to_string();
    let mut subscribers = Vec::new();
    for name in ["billing", "search", "audit"] {
        subscribers
            .push(Proc::subscribe(&nats, &["--durable", name, "--json", "--count", &n]).await);
    }
    post_all(&app, &sent).await;
    for (p, name) in subscribers.into_iter().zip(["billing", "search", "audit"]) {
        let (status, out, err) = p.finish().await;
        assert!(status.success(), "{name}: {err}");
        let got: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(got, sent, "{name} gets all, in order");
        let info = consumer_info(&nats, name).await;
        assert_eq!(
            (info.num_pending, info.num_ack_pending, info.num_redelivered),
            (0, 0, 0),
            "{name}: every event acknowledged, none delivered twice"
        );
        assert_eq!(info.ack_floor.stream_sequence, sent.len() as u64);
    }
}

#[tokio::test]
async fn filters_deliver_only_matching_subjects() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let mut types: Vec<&str> = seed_types().collect();
    types.extend([
        "video.media.track.ready",
        "video.live_stream.simulcast_target.created",
        "video.mediaAI.summary.ready",
    ]);
    let sent: Vec<(String, String)> = types
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), event_body(t, &format!("f-{i}"))))
        .collect();
    post_all(
        &app,
        &sent.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
    )
    .await;

    let expect = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        sent.iter()
            .filter(|(t, _)| pred(t))
            .map(|(_, b)| b.clone())
            .collect()
    };
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["live_stream"],
            expect(&|t| {
                t == "video.asset.created"
                    || (t.starts_with("video.live_stream.") && t.matches('.').count() == 2)
            }),
        ),
        (
            vec!["video.live_stream.*"],
            expect(&|t| t.starts_with("video.live_stream.") && t.matches('.').count() == 2),
        ),
        (
            vec![
                "video.media.ready",
                "fastpix.video.upload.*",
                "simulcast",
                "Video.media.live_stream.created",
            ],
            expect(&|t| {
                t == "video.media.ready"
                    || t.starts_with("video.upload.")
                    || t.starts_with("video.live_stream.simulcast")
                    || t == "Video.media.live_stream.created"
            }),
        ),
        (vec!["media"], expect(&|t| t.starts_with("video.media."))),
    ];
    for (filters, want) in cases {
        assert!(!want.is_empty());
        let count = want.len().to_string();
        // Replays see the whole stream in order, so a stray event would show in the first `count`.
        let mut args = vec!["subscribe", "--all", "--json", "--count", &count];
        args.extend(filters.iter().copied());
        let (status, out, err) = run(&args, &[("FASTPIX_BRIDGE__NATS__URL", &nats.url())]).await;
        assert!(status.success(), "{filters:?}: {err}");
        let got: Vec<String> = out.lines().map(str::to_owned).collect();
        assert_eq!(got, want, "{filters:?}");
    }

    // A durable consumer with a filter: exactly the media family, then nothing left.
    let want = expect(&|t| t.starts_with("video.media."));
    let count = want.len().to_string();
    let (status, out, err) = run(
        &[
            "subscribe",
            "--durable",
            "media-only",
            "--all",
            "--json",
            "--count",
            &count,
            "media",
        ],
        &[("FASTPIX_BRIDGE__NATS__URL", &nats.url())],
    )
    .await;
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().map(str::to_owned).collect::<Vec<_>>(), want);
    let info = consumer_info(&nats, "media-only").await;
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));

    // Bound again with another filter: it keeps its place and delivers only the new filter.
    let url = nats.url();
    let rebound = Proc::spawn(command(
        bin(),
        &[
            "subscribe",
            "--durable",
            "media-only",
            "--json",
            "--count",
            "1",
            "live_stream",
        ],
        &[("FASTPIX_BRIDGE__NATS__URL", url.as_str())],
    ));
    let media = event_body("video.media.ready", "rebound-0");
    let live = event_body("video.live_stream.idle", "rebound-1");
    post_all(&app, &[media, live.clone()]).await;
    let (status, out, err) = rebound.finish().await;
    assert!(status.success(), "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), format!("{live}\n"));
    assert!(
        err.contains("had the filters fastpix.video.media.>"),
        "{err}"
    );

    // A live subscription with a filter: the non-matching event posted first never shows.
    let live = Proc::subscribe(
        &nats,
        &["--json", "--count", "1", "video.live_stream.active"],
    )
    .await;
    let other = event_body("video.live_stream.idle", "live-0");
    let wanted = event_body("video.live_stream.active", "live-1");
    post_all(&app, &[other, wanted.clone()]).await;
    let (status, out, err) = live.finish().await;
    assert!(status.success(), "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), format!("{wanted}\n"));
}

#[tokio::test]
async fn a_queue_group_of_three_shares_events_with_none_twice_and_none_lost() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(Proc::subscribe(&nats, &["--queue", "workers", "--json"]).await);
    }
    let sent = bodies("q", 60);
    post_all(&app, &sent).await;
    let total = |members: &[Proc]| members.iter().map(|m| m.lines().len()).sum::<usize>();
    let want = sent.len();
    let all_in = eventually(LIMIT, || {
        let n = total(&members);
        async move { n >= want }
    })
    .await;
    assert!(all_in, "got {} of {}", total(&members), sent.len());
    // Give a stray second delivery the time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<String> = members.iter().flat_map(|m| m.lines()).collect();
    assert_eq!(got.len(), sent.len(), "none twice");
    let got_ids: HashSet<String> = got.iter().map(|l| id_of(l)).collect();
    let sent_ids: HashSet<String> = sent.iter().map(|b| id_of(b)).collect();
    assert_eq!(got_ids, sent_ids, "none lost");
    let busy = members.iter().filter(|m| !m.lines().is_empty()).count();
    assert!(busy >= 2, "the work is shared: {busy} member(s) got events");
}

#[tokio::test]
async fn copies_of_one_durable_consumer_share_events_with_none_twice_and_none_lost() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let mut copies = Vec::new();
    for _ in 0..3 {
        copies.push(Proc::subscribe(&nats, &["--durable", "shared", "--json"]).await);
    }
    let sent = bodies("s", 60);
    post_all(&app, &sent).await;
    let want = sent.len();
    let all_in = eventually(LIMIT, || {
        let n: usize = copies.iter().map(|c| c.lines().len()).sum();
        async move { n >= want }
    })
    .await;
    assert!(all_in);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<String> = copies.iter().flat_map(|c| c.lines()).collect();
    assert_eq!(got.len(), sent.len(), "none twice");
    let got_ids: HashSet<String> = got.iter().map(|l| id_of(l)).collect();
    assert_eq!(got_ids, sent.iter().map(|b| id_of(b)).collect());
    let info = consumer_info(&nats, "shared").await;
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
}

#[tokio::test]
async fn a_durable_consumer_resumes_after_k_of_n_with_nothing_twice() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let sent = bodies("r", 12);
    post_all(&app, &sent).await;
    let url = nats.url();
    let env = [("FASTPIX_BRIDGE__NATS__URL", url.as_str())];
    let k = 5;

    let (status, out, err) = run(
        &[
            "subscribe",
            "--durable",
            "resume",
            "--all",
            "--json",
            "--count",
            "5",
        ],
        &env,
    )
    .await;
    assert!(status.success(), "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        sent[..k].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let info = consumer_info(&nats, "resume").await;
    assert_eq!(
        (info.num_ack_pending, info.num_pending),
        (0, (sent.len() - k) as u64),
        "a stopped reader holds nothing back"
    );

    let rest = (sent.len() - k).to_string();
    let (status, out, err) = run(
        &[
            "subscribe",
            "--durable",
            "resume",
            "--json",
            "--count",
            &rest,
        ],
        &env,
    )
    .await;
    assert!(status.success(), "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        sent[k..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let info = consumer_info(&nats, "resume").await;
    assert_eq!(
        (info.num_pending, info.num_ack_pending, info.num_redelivered),
        (0, 0, 0)
    );

    // A third start gets only what is new: --all does not rewind an existing consumer.
    let fresh = event_body("video.media.ready", "r-new");
    post_all(&app, std::slice::from_ref(&fresh)).await;
    let (status, out, err) = run(
        &[
            "subscribe",
            "--durable",
            "resume",
            "--all",
            "--json",
            "--count",
            "1",
        ],
        &env,
    )
    .await;
    assert!(status.success(), "{err}");
    assert_eq!(out, format!("{fresh}\n"));
    assert!(
        err.contains("already exists and resumes where it left off") && err.contains("(resumed)"),
        "{err}"
    );
}

/// Stores `bodies` on their subjects straight through JetStream (faster than
/// HTTP when a test needs many events), each with its id as message id.
async fn store_directly(nats: &NatsServer, bodies: &[String]) {
    let js = jetstream::new(nats.client().await);
    let mut acks = Vec::with_capacity(bodies.len());
    for body in bodies {
        let event = Event::from_json(body.as_bytes()).unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.unwrap().as_str());
        let subject = format!("fastpix.{}", event.event_type);
        acks.push(
            js.publish_with_headers(subject, headers, body.clone().into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

#[tokio::test]
async fn a_durable_consumer_stopped_by_a_signal_resumes_with_nothing_twice_or_lost() {
    let nats = NatsServer::start();
    let _app = TestApp::spawn(&nats).await;
    let sent = bodies("g", 2000);
    store_directly(&nats, &sent).await;
    // An hour of ack wait: an event left pulled-but-unacknowledged would hold
    // up the restart far beyond the test's limit, so only handing it back passes.
    let js = jetstream::new(nats.client().await);
    js.get_stream("FASTPIX")
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("sig".to_owned()),
            filter_subject: "fastpix.>".to_owned(),
            ack_wait: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    // Stopped while working through the backlog, with events pulled but not yet written.
    let first = Proc::subscribe(&nats, &["--durable", "sig", "--json"]).await;
    first.wait_lines(50).await;
    first.signal("INT");
    let (status, out, err) = first.finish().await;
    assert!(status.success(), "{err}");
    let seen: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(seen.len() < sent.len(), "stopped before the end");

    let rest = (sent.len() - seen.len()).to_string();
    let (status, out, err) = run(
        &["subscribe", "--durable", "sig", "--json", "--count", &rest],
        &[("FASTPIX_BRIDGE__NATS__URL", &nats.url())],
    )
    .await;
    assert!(status.success(), "{err}");
    let mut all = seen;
    all.extend(out.lines().map(str::to_owned));
    assert!(all == sent, "each event once, in order, across the restart");
}

#[tokio::test]
async fn since_replays_exactly_the_events_stored_after_that_time() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let before = bodies("before", 6);
    let after = bodies("after", 7);
    post_all(&app, &before).await;
    let cut = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(20)).await;
    post_all(&app, &after).await;

    // The premise, checked on the stored timestamps themselves.
    let js = jetstream::new(nats.client().await);
    let stream = js.get_stream("FASTPIX").await.unwrap();
    for seq in 1..=(before.len() + after.len()) as u64 {
        let stored_at = stream.get_raw_message(seq).await.unwrap().time;
        assert_eq!(stored_at < cut, seq <= before.len() as u64, "seq {seq}");
    }

    let since = cut
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let env = [("FASTPIX_BRIDGE__NATS__URL", nats.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let n_after = after.len().to_string();
    let (status, out, err) = run(
        &[
            "subscribe",
            "--since",
            &since,
            "--json",
            "--count",
            &n_after,
        ],
        &env,
    )
    .await;
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().map(str::to_owned).collect::<Vec<_>>(), after);

    let mut everything = before.clone();
    everything.extend(after.iter().cloned());
    let n_all = everything.len().to_string();
    for args in [
        vec!["subscribe", "--since", "1h", "--json", "--count", &n_all],
        vec!["subscribe", "--all", "--json", "--count", &n_all],
    ] {
        let (status, out, err) = run(&args, &env).await;
        assert!(status.success(), "{args:?}: {err}");
        assert_eq!(
            out.lines().map(str::to_owned).collect::<Vec<_>>(),
            everything,
            "{args:?}"
        );
    }

    // A new durable consumer can start at the same point.
    let (status, out, err) = run(
        &[
            "subscribe",
            "--durable",
            "late",
            "--since",
            &since,
            "--json",
            "--count",
            &n_after,
        ],
        &env,
    )
    .await;
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().map(str::to_owned).collect::<Vec<_>>(), after);
}

#[tokio::test]
async fn subscribe_json_prints_payloads_byte_identical_to_what_was_posted() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let big = "x".repeat(200_000);
    let sent = vec![
        r#"{ "type" : "video.media.ready",  "id":"j1", "data":{"title":"caf\u00e9 \"quoted\" ☕ \/","n":1.50e0}}"#.to_owned(),
        r#"{"data":{"z":null,"a":[1,2,{}]},"id":"j2","createdAt":"2026-05-11T20:42:16.361817248Z","type":"video.live_stream.active","extra":true}"#.to_owned(),
        format!(r#"{{"type":"video.media.updated","id":"j3","data":{{"blob":"{big}"}}}}"#),
        r#"{"type":"video.mediaAI.summary.ready","id":"j4","environment":{"id":"env"},"webhookId":7}"#.to_owned(),
    ];
    let expected: Vec<u8> = sent
        .iter()
        .flat_map(|b| b.bytes().chain(std::iter::once(b'\n')))
        .collect();
    let n = sent.len().to_string();

    let live = Proc::subscribe(&nats, &["--json", "--count", &n]).await;
    post_all(&app, &sent).await;
    let (status, out, err) = live.finish().await;
    assert!(status.success(), "{err}");
    assert!(out == expected, "live output differs from the posted bytes");

    for args in [
        vec!["subscribe", "--all", "--json", "--count", &n],
        vec![
            "subscribe",
            "--durable",
            "bytes",
            "--all",
            "--json",
            "--count",
            &n,
        ],
    ] {
        let (status, out, err) = Proc::spawn(command(
            bin(),
            &args,
            &[("FASTPIX_BRIDGE__NATS__URL", &nats.url())],
        ))
        .finish()
        .await;
        assert!(status.success(), "{args:?}: {err}");
        assert!(
            out == expected,
            "{args:?}: output differs from the posted bytes"
        );
    }
}

#[tokio::test]
async fn subscribe_prints_one_readable_line_per_event() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    post_all(&app, &[event_body("video.live_stream.active", "h-1")]).await;
    let (status, out, err) = run(
        &["subscribe", "--all", "--count", "1"],
        &[("FASTPIX_BRIDGE__NATS__URL", &nats.url())],
    )
    .await;
    assert!(status.success(), "{err}");
    assert_eq!(
        out,
        "2026-05-11T20:42:16.361817248Z  fastpix.video.live_stream.active  id=h-1  object=media/obj-h-1  workspace=ws-test  seq=1\n"
    );
}

#[tokio::test]
async fn subscribe_explains_bad_filters_missing_streams_and_unreachable_nats() {
    let nats = NatsServer::start();
    let url = nats.url();
    let env = [("FASTPIX_BRIDGE__NATS__URL", url.as_str())];

    let (status, _, err) = run(&["subscribe", "fastpix.video..ready"], &env).await;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad filter") && err.contains("fastpix.video..ready"),
        "{err}"
    );
    let (status, _, err) = run(&["subscribe", "video.>.ready"], &env).await;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("`>`"), "{err}");

    // No bridge has run against this server: the stream does not exist yet.
    for args in [
        vec!["subscribe", "--durable", "early"],
        vec!["subscribe", "--all"],
    ] {
        let (status, _, err) = run(&args, &env).await;
        assert_eq!(status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("stream `FASTPIX` does not exist")
                && err.contains("FASTPIX_BRIDGE__JETSTREAM__STREAM"),
            "{args:?}: {err}"
        );
    }

    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let (status, _, err) = run(
        &["subscribe"],
        &[
            ("FASTPIX_BRIDGE__NATS__URL", nowhere.as_str()),
            ("FASTPIX_BRIDGE__NATS__CONNECT_TIMEOUT", "1s"),
        ],
    )
    .await;
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach NATS")
            && err.contains(&nowhere)
            && err.contains("FASTPIX_BRIDGE__NATS__URL"),
        "{err}"
    );

    // The client commands need no signing secret, but keep every other rule.
    let (status, _, err) = run(
        &["subscribe"],
        &[("FASTPIX_BRIDGE__JETSTREAM__STREAM", "a.b")],
    )
    .await;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("jetstream.stream"), "{err}");
    let (status, _, err) = run(&["serve"], &env).await;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("webhook.signing_secrets"), "{err}");
}

#[tokio::test]
async fn the_examples_wait_for_nats_then_log_each_event() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let env = [("FASTPIX_BRIDGE__NATS__URL", url.as_str())];
    let worker = Proc::spawn(command(example("live_stream_worker"), &[], &env));
    let catalog = Proc::spawn(command(example("media_catalog"), &[], &env));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // NATS first, then the bridge (which creates the stream): the examples must catch up.
    let nats = NatsServer::start_on_port(port);
    let app = TestApp::spawn(&nats).await;
    let (status, out, err) = run(
        &[
            "send",
            "video.live_stream.connected",
            "video.live_stream.active",
            "video.media.created",
            "video.media.ready",
            "video.upload.created",
            "video.live_stream.idle",
        ],
        &[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE_URL", &app.webhook_url()),
        ],
    )
    .await;
    assert!(status.success(), "{out}\n{err}");
    let id_of_type = |t: &str| -> String {
        out.lines()
            .find(|l| l.contains(&format!("  {t}  ")))
            .and_then(|l| l.split("id=").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("{t} in {out}"))
            .to_owned()
    };

    let lines = worker.wait_lines(3).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, (t, words)) in lines.iter().zip([
        ("video.live_stream.connected", "preparing"),
        ("video.live_stream.active", "preparing -> active"),
        ("video.live_stream.idle", "active -> idle"),
    ]) {
        assert!(
            line.starts_with("[live-stream-worker] live stream "),
            "{line}"
        );
        assert!(line.contains(words), "{line}");
        assert!(line.contains(&format!("event={}", id_of_type(t))), "{line}");
    }
    let lines = catalog.wait_lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("added (created)"), "{}", lines[0]);
    assert!(
        lines[1].contains("created -> ready, playable as"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains(&id_of_type("video.media.ready")),
        "{}",
        lines[1]
    );

    // A repeated delivery of the same event changes nothing and says so.
    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    let active = stored
        .iter()
        .find(|m| m.subject == "fastpix.video.live_stream.active")
        .unwrap();
    let js = jetstream::new(nats.client().await);
    // Published under a new message id so the stream keeps it: a FastPix retry after the window.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "redelivery-1");
    js.publish_with_headers(
        "fastpix.video.live_stream.active",
        headers,
        active.payload.clone().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let lines = worker.wait_lines(4).await;
    assert!(
        lines[3].contains("older than the last event applied, ignored"),
        "{}",
        lines[3]
    );

    let counts: HashMap<&str, usize> = [
        ("worker", worker.lines().len()),
        ("catalog", catalog.lines().len()),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        counts["catalog"], 2,
        "the upload event is not the catalogue's"
    );
    drop(app);
}

#[tokio::test]
async fn a_server_without_jetstream_is_named_as_such_not_as_a_missing_stream() {
    use fastpix_nats_bridge::consumer::{self, BindError, Start, SubjectPrefix};
    // `-js=false` after the helper's `-js`: the same server, JetStream off.
    let nats = NatsServer::start_with(&["-js=false"]);
    let js = jetstream::new(nats.client().await);
    let filters = Family::Media.filters(&SubjectPrefix::default());
    let err = consumer::durable(&js, "FASTPIX", "no-js", &filters, Start::All)
        .await
        .expect_err("there is no JetStream to bind to");
    assert!(matches!(err, BindError::NoJetStream), "{err:?}");
    assert!(err.is_transient());
}
