//! `forward`, the real binary, against a real nats-server, a real bridge
//! (in process) and real HTTP receivers on loopback: filters and signatures
//! per destination, retries of a flaky destination, a destination down for
//! a while, a refused event kept as a dead letter and redriven, the
//! development mode catching up, and a forwarder killed mid-stream.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use fastpix_nats_bridge::consumer::SubjectPrefix;
use fastpix_nats_bridge::consumer::dead_letters;
use tower::ServiceExt as _;

use crate::helpers::*;

const LIMIT: Duration = Duration::from_secs(120);

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub(crate) fn id(&self) -> String {
        self.header("FastPix-Event-Id").to_owned()
    }
}

/// What a receiver answers: status, `Retry-After`, a delay before
/// answering, the answer's body; or, with `reset`, no answer: the request
/// is read and the connection reset (RST, the client's ECONNRESET).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) delay: Duration,
    pub(crate) answer: &'static str,
    pub(crate) reset: bool,
}

impl Reply {
    pub(crate) const OK: Reply = Reply {
        status: 200,
        retry_after: None,
        delay: Duration::ZERO,
        answer: "answer from the receiver",
        reset: false,
    };
    const RESET: Reply = Reply {
        reset: true,
        ..Reply::OK
    };
    pub(crate) fn status(status: u16) -> Self {
        Reply {
            status,
            ..Reply::OK
        }
    }
}

pub(crate) type Behaviour = Arc<dyn Fn(&Got, usize) -> Reply + Send + Sync>;

/// Resets the connection it was given to: dropping the connection's future
/// drops its socket, set to linger 0, so the kernel sends a RST.
#[derive(Clone, Default)]
struct Reset(Arc<tokio::sync::Notify>);

/// An HTTP receiver on loopback: records every request; answers as the
/// behaviour says (given the request and how many times its event id came,
/// this one included).
#[derive(Clone)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Receiver {
    pub(crate) async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, behaviour)
    }

    fn on(listener: tokio::net::TcpListener, behaviour: Behaviour) -> Self {
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let (g, b) = (got.clone(), behaviour.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |Extension(reset): Extension<Reset>, headers: HeaderMap, body: Bytes| {
                    let (g, b) = (g.clone(), b.clone());
                    async move {
                        let req = Got {
                            headers,
                            body,
                            at: Instant::now(),
                        };
                        let reply = {
                            let mut all = g.lock().unwrap();
                            all.push(req.clone());
                            let n = all.iter().filter(|x| x.id() == req.id()).count();
                            let f = b.lock().unwrap().clone();
                            f(&req, n)
                        };
                        if reply.reset {
                            // The request is read whole; no answer comes.
                            reset.0.notify_one();
                            return std::future::pending().await;
                        }
                        if !reply.delay.is_zero() {
                            tokio::time::sleep(reply.delay).await;
                        }
                        let mut h = HeaderMap::new();
                        if let Some(s) = reply.retry_after {
                            h.insert("retry-after", s.to_string().parse().unwrap());
                        }
                        (StatusCode::from_u16(reply.status).unwrap(), h, reply.answer)
                            .into_response()
                    }
                },
            ),
        );
        // One hyper connection per socket, so that a reply can reset its own.
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let app = app.clone();
                tokio::spawn(async move {
                    // Closed without lingering: a drop is a RST. The client
                    // always closes first otherwise (keep-alive), so only a
                    // reset reply drops a socket it still uses.
                    socket.set_zero_linger().unwrap();
                    let reset = Reset::default();
                    let mine = reset.clone();
                    let service = hyper::service::service_fn(
                        move |mut req: hyper::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(mine.clone());
                            app.clone().oneshot(req)
                        },
                    );
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service);
                    tokio::select! {
                        _ = conn => {}
                        () = reset.0.notified() => {}
                    }
                });
            }
        });
        Receiver {
            addr,
            got,
            behaviour,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub(crate) fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Requests answered 2xx by the current rule are not told apart here:
    /// the ids of every request, first-seen order, without repeats (what a
    /// receiver deduplicating on FastPix-Event-Id keeps).
    pub(crate) fn ids(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.got()
            .into_iter()
            .map(|g| g.id())
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }
}

pub(crate) fn always(reply: Reply) -> Behaviour {
    Arc::new(move |_, _| reply)
}

/// The forwarder binary as a child process, its output kept line by line.
pub(crate) struct Forwarder {
    child: Option<Child>,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Forwarder {
    pub(crate) fn start(nats: &NatsServer, args: &[&str], env: &[(String, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
            .arg("forward")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FASTPIX_BRIDGE__LOG__FORMAT", "json")
            .env("FASTPIX_BRIDGE__NATS__URL", nats.url())
            .env("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the forwarder");
        let keep = |r: Box<dyn std::io::Read + Send>| {
            let lines: Arc<Mutex<Vec<String>>> = Arc::default();
            let sink = lines.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let out = keep(Box::new(child.stdout.take().unwrap()));
        let err = keep(Box::new(child.stderr.take().unwrap()));
        Forwarder {
            child: Some(child),
            out,
            err,
        }
    }

    fn log(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    fn stdout(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// The admin address from the startup log.
    pub(crate) async fn admin(&self) -> SocketAddr {
        let mut found = None;
        let ok = eventually(LIMIT, || {
            found = self.err.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let m = v["message"].as_str().or(v["fields"]["message"].as_str())?;
                if !m.starts_with("admin listening") {
                    return None;
                }
                v["addr"]
                    .as_str()
                    .or(v["fields"]["addr"].as_str())?
                    .parse()
                    .ok()
            });
            std::future::ready(found.is_some())
        })
        .await;
        assert!(ok, "no admin address:\n{}", self.log());
        found.unwrap()
    }

    async fn metric(&self, series: &str) -> f64 {
        let url = format!("http://{}/metrics", self.admin().await);
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        Scrape(text).value(series).unwrap_or(0.0)
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .expect("kill");
        }
    }

    async fn wait_exit(&mut self) {
        let ok = eventually(LIMIT, || {
            let done = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            std::future::ready(done)
        })
        .await;
        assert!(ok, "forwarder still running:\n{}", self.log());
        self.child = None;
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("forwarder log:\n{}", self.log());
        }
    }
}

/// `forward.<name>.*` variables.
pub(crate) fn dest_env(
    name: &str,
    url: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let key = |k: &str| format!("FASTPIX_BRIDGE__FORWARD__{}__{k}", name.to_uppercase());
    let mut env = vec![
        (key("URL"), url.to_owned()),
        (key("SIGNING_SECRET"), secret.to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (key(k), v.to_string())));
    env
}

/// Waits for the durable consumer `name` to exist (new destinations start
/// at new events: events are posted after).
pub(crate) async fn consumer_ready(nats: &NatsServer, name: &str, f: &Forwarder) {
    let js = jetstream::new(nats.client().await);
    let ok = eventually(LIMIT, || {
        let js = js.clone();
        async move {
            let Ok(s) = js.get_stream("FASTPIX").await else {
                return false;
            };
            s.consumer_info(name).await.is_ok()
        }
    })
    .await;
    assert!(ok, "consumer {name} not created:\n{}", f.log());
}

/// A media event `id` about `object`.
pub(crate) fn body(event_type: &str, id: &str, object: &str) -> String {
    serde_json::json!({
        "type": event_type,
        "id": id,
        "object": { "type": "media", "id": object },
        "workspace": { "id": "ws-test" },
        "status": "ready",
        "createdAt": "2026-05-11T20:42:16.361817248Z",
        "data": { "note": format!("event {id}"), "unicode": "é ✓" }
    })
    .to_string()
}

async fn post_all(app: &TestApp, bodies: &[String]) {
    for b in bodies {
        assert_eq!(app.post_signed(b).await.status(), 200, "{b}");
    }
}

async fn wait_ids(r: &Receiver, want: usize, f: &Forwarder) {
    let ok = eventually(LIMIT, || std::future::ready(r.ids().len() >= want)).await;
    assert!(
        ok,
        "{} of {want} events delivered:\n{}",
        r.ids().len(),
        f.log()
    );
}

/// The events of each object, in the order the receiver first got them,
/// must be in the order they were posted.
fn assert_object_order(r: &Receiver, posted: &[(String, String)]) {
    let object_of: HashMap<&str, &str> = posted
        .iter()
        .map(|(id, o)| (id.as_str(), o.as_str()))
        .collect();
    let mut per_object: HashMap<&str, Vec<String>> = HashMap::new();
    for id in r.ids() {
        per_object
            .entry(object_of[id.as_str()])
            .or_default()
            .push(id);
    }
    for (object, got) in per_object {
        let want: Vec<String> = posted
            .iter()
            .filter(|(_, o)| o == object)
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(got, want, "order of {object}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_destinations_get_exactly_their_events_byte_for_byte_and_signed_with_their_secret() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let media = Receiver::start(always(Reply::OK)).await;
    let live = Receiver::start(always(Reply::OK)).await;
    let every = Receiver::start(always(Reply::OK)).await;
    let mut env = dest_env("media", &media.url(), SECRET, &[("FAMILIES", "media")]);
    env.extend(dest_env(
        "live",
        &live.url(),
        SECRET_2,
        &[("TYPES", "video.live_stream.active")],
    ));
    env.extend(dest_env(
        "every",
        &every.url(),
        SECRET,
        &[("HEADERS__X_API_KEY", "k-123")],
    ));
    let f = Forwarder::start(&nats, &[], &env);
    for c in ["forward-media", "forward-live", "forward-every"] {
        consumer_ready(&nats, c, &f).await;
    }
    let bodies = [
        body("video.media.ready", "e1", "m1"),
        body("video.live_stream.active", "e2", "l1"),
        body("video.live_stream.idle", "e3", "l1"),
        body("video.media.failed", "e4", "m2"),
        body("video.upload.created", "e5", "u1"),
    ];
    post_all(&app, &bodies).await;
    wait_ids(&every, 5, &f).await;
    wait_ids(&media, 2, &f).await;
    wait_ids(&live, 1, &f).await;
    // Nothing more comes: the last event stored reached `every`, and each
    // consumer has nothing pending.
    let js = jetstream::new(nats.client().await);
    for c in ["forward-media", "forward-live", "forward-every"] {
        let ok = eventually(LIMIT, || {
            let js = js.clone();
            async move {
                let s = js.get_stream("FASTPIX").await.unwrap();
                let i = s.consumer_info(c).await.unwrap().clone();
                i.num_pending == 0 && i.num_ack_pending == 0
            }
        })
        .await;
        assert!(ok, "{c} still has events");
    }
    let sorted = |r: &Receiver| {
        let mut ids = r.ids();
        ids.sort();
        ids
    };
    assert_eq!(sorted(&media), ["e1", "e4"]);
    assert_eq!(live.ids(), ["e2"]);
    assert_eq!(sorted(&every), ["e1", "e2", "e3", "e4", "e5"]);
    // One object's events in order, the others in parallel.
    let l1: Vec<String> = every
        .ids()
        .into_iter()
        .filter(|i| i == "e2" || i == "e3")
        .collect();
    assert_eq!(l1, ["e2", "e3"]);
    // Each once: nothing was retried.
    assert_eq!(every.got().len(), 5);

    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    for (r, secret, other) in [
        (&media, SECRET, SECRET_2),
        (&live, SECRET_2, SECRET),
        (&every, SECRET, SECRET_2),
    ] {
        for g in r.got() {
            let original = stored
                .iter()
                .find(|m| m.decoded_header("FastPix-Event-Id").as_deref() == Some(&g.id()))
                .expect("stored");
            assert_eq!(
                g.body.as_ref(),
                original.payload.as_slice(),
                "byte for byte"
            );
            assert_eq!(g.header("content-type"), "application/json");
            assert_eq!(g.header("FastPix-Signature"), sign(secret, &g.body));
            assert_ne!(g.header("FastPix-Signature"), sign(other, &g.body));
            let event: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
            assert_eq!(g.header("FastPix-Event-Type"), event["type"]);
            assert_eq!(g.header("FastPix-Webhook"), "default");
            assert_eq!(g.header("FastPix-Delivery-Attempt"), "1");
            assert!(g.header("user-agent").starts_with("fastpix-nats-bridge/"));
        }
    }
    assert!(every.got().iter().all(|g| g.header("x-api-key") == "k-123"));
    assert!(media.got().iter().all(|g| g.header("x-api-key").is_empty()));
    assert!(!f.log().contains("k-123"), "a static header was logged");
    assert_eq!(
        f.metric(r#"fastpix_forward_deliveries_total{destination="every",outcome="delivered"}"#)
            .await,
        5.0
    );
}

/// The flaky destination's back-off.
const FLAKY_BACKOFF: Duration = Duration::from_millis(200);

/// The flaky receiver's answer to try `n` of event `f<i>`: a first try gets
/// a 503 with `Retry-After: 1` (even `i`) or its connection reset (odd `i`);
/// a second try an answer slower than the timeout (`i % 3 == 0`) or its
/// connection reset (`i % 3 == 1`); then 200.
fn flaky_reply(i: usize, n: usize) -> Reply {
    match (n, i % 2, i % 3) {
        (1, 0, _) => Reply {
            status: 503,
            retry_after: Some(1),
            ..Reply::OK
        },
        (1, _, _) | (2, _, 1) => Reply::RESET,
        (2, _, 0) => Reply {
            delay: Duration::from_secs(3),
            ..Reply::OK
        },
        _ => Reply::OK,
    }
}

/// The tries event `f<i>` takes: its last is the first answered 200 at once.
fn flaky_tries(i: usize) -> usize {
    (1..)
        .find(|&n| {
            let r = flaky_reply(i, n);
            r.status == 200 && !r.reset && r.delay.is_zero()
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_destination_gets_everything_in_order_per_object_after_the_waits_it_asked_for() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let index = |g: &Got| g.id().trim_start_matches('f').parse::<usize>().unwrap();
    let r = Receiver::start(Arc::new(move |g: &Got, n| flaky_reply(index(g), n))).await;
    let env = dest_env(
        "flaky",
        &r.url(),
        SECRET,
        &[
            ("TIMEOUT", "1s"),
            ("BACKOFF", "200ms"),
            ("MAX_ATTEMPTS", "10"),
            ("CONCURRENCY", "4"),
        ],
    );
    let f = Forwarder::start(&nats, &[], &env);
    consumer_ready(&nats, "forward-flaky", &f).await;
    let posted: Vec<(String, String)> = (0..12)
        .map(|i| (format!("f{i}"), format!("obj-{}", i % 3)))
        .collect();
    let bodies: Vec<String> = posted
        .iter()
        .map(|(id, o)| body("video.media.updated", id, o))
        .collect();
    post_all(&app, &bodies).await;
    let tries_of = |got: &[Got], id: &str| -> Vec<Got> {
        got.iter().filter(|g| g.id() == id).cloned().collect()
    };
    let ok = eventually(LIMIT, || {
        let got = r.got();
        std::future::ready(
            (0..posted.len()).all(|i| tries_of(&got, &posted[i].0).len() >= flaky_tries(i)),
        )
    })
    .await;
    assert!(ok, "not everything retried to success:\n{}", f.log());
    let got = r.got();
    let mut resets = 0;
    for (i, (id, object)) in posted.iter().enumerate() {
        let tries = tries_of(&got, id);
        let attempts: Vec<&str> = tries
            .iter()
            .map(|g| g.header("FastPix-Delivery-Attempt"))
            .collect();
        let want: Vec<String> = (1..=flaky_tries(i)).map(|n| n.to_string()).collect();
        assert_eq!(attempts, want, "{id}: a try per failure, then success");
        // Each retry waited what the failure before it asked for:
        // Retry-After after the 503, the back-off after a reset or a
        // timeout.
        for (n, pair) in tries.windows(2).enumerate() {
            let failed = flaky_reply(i, n + 1);
            resets += usize::from(failed.reset);
            let asked = failed
                .retry_after
                .map_or(FLAKY_BACKOFF, Duration::from_secs);
            let waited = pair[1].at.duration_since(pair[0].at);
            assert!(
                waited >= asked,
                "{id}: try {} came {waited:?} after a failure that asked for {asked:?}",
                n + 2
            );
        }
        // Per object, the first try of each event came after every try of
        // the object's earlier events: an event is retried before the next
        // is sent.
        for (earlier, _) in posted[..i].iter().filter(|(_, o)| o == object) {
            let last_earlier = tries_of(&got, earlier).iter().map(|g| g.at).max();
            assert!(last_earlier.unwrap() <= tries[0].at, "{earlier} then {id}");
        }
    }
    assert_object_order(&r, &posted);
    // Half the first tries were reset: each reset was a failed try to be
    // retried (not an answer), counted as the destination unreachable.
    assert_eq!(resets, 10);
    assert_eq!(
        f.metric(r#"fastpix_forward_deliveries_total{destination="flaky",outcome="unreachable"}"#)
            .await,
        resets as f64,
        "{}",
        f.log()
    );
    // What the forwarder saw was a reset (ECONNRESET), not a closed
    // connection or a timeout.
    let reset_seen = f
        .log()
        .lines()
        .filter(|l| l.contains("delivery failed") && l.contains("reset by peer"))
        .count();
    assert_eq!(reset_seen, resets, "{}", f.log());
    let dead = dead_letters::list(
        &jetstream::new(nats.client().await),
        "FASTPIX",
        &SubjectPrefix::default(),
        Some("forward-flaky"),
    )
    .await
    .unwrap();
    assert!(dead.is_empty(), "{dead:?}");
}

pub(crate) async fn dead_of(nats: &NatsServer, consumer: &str) -> Vec<dead_letters::DeadLetter> {
    dead_letters::list(
        &jetstream::new(nats.client().await),
        "FASTPIX",
        &SubjectPrefix::default(),
        Some(consumer),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_a_while_gets_everything_after_and_dead_letters_nothing() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    // Nothing listens on the destination's port until it comes back.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let env = dest_env(
        "down",
        &url,
        SECRET,
        &[
            ("MAX_ATTEMPTS", "3"),
            ("BACKOFF", "100ms, 200ms"),
            ("PROBE_INTERVAL", "1s"),
            ("CONCURRENCY", "4"),
        ],
    );
    let f = Forwarder::start(&nats, &[], &env);
    consumer_ready(&nats, "forward-down", &f).await;
    let posted: Vec<(String, String)> = (0..20)
        .map(|i| (format!("d{i}"), format!("obj-{}", i % 4)))
        .collect();
    let bodies: Vec<String> = posted
        .iter()
        .map(|(id, o)| body("video.media.updated", id, o))
        .collect();
    post_all(&app, &bodies).await;
    // Down for as long as it takes the forwarder to pause and then make
    // many times max_attempts tries (the issue's hour, shortened: what
    // matters is that the tries during the outage far exceed max_attempts).
    let paused = r#"fastpix_forward_paused{destination="down"}"#;
    let refused = r#"fastpix_forward_deliveries_total{destination="down",outcome="unreachable"}"#;
    let ok = eventually(LIMIT, || async {
        f.metric(paused).await == 1.0 && f.metric(refused).await >= 12.0
    })
    .await;
    assert!(ok, "not paused after failures:\n{}", f.log());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let r = Receiver::on(listener, always(Reply::OK));
    wait_ids(&r, posted.len(), &f).await;
    assert_object_order(&r, &posted);
    let ok = eventually(LIMIT, || async { f.metric(paused).await == 0.0 }).await;
    assert!(ok, "still paused");
    assert!(dead_of(&nats, "forward-down").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_refused_with_422_is_a_dead_letter_with_its_status_and_a_redrive_delivers_it() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let r = Receiver::start(Arc::new(|g: &Got, _| {
        if g.id() == "bad" {
            Reply::status(422)
        } else {
            Reply::OK
        }
    }))
    .await;
    let env = dest_env(
        "strict",
        &r.url(),
        SECRET,
        &[("MAX_ATTEMPTS", "3"), ("BACKOFF", "100ms")],
    );
    let f = Forwarder::start(&nats, &[], &env);
    consumer_ready(&nats, "forward-strict", &f).await;
    let bodies = [
        body("video.media.ready", "a", "m1"),
        body("video.media.ready", "bad", "m2"),
        body("video.media.ready", "c", "m3"),
    ];
    post_all(&app, &bodies).await;
    let ok = eventually(LIMIT, || async {
        !dead_of(&nats, "forward-strict").await.is_empty()
    })
    .await;
    assert!(ok, "no dead letter:\n{}", f.log());
    let dead = dead_of(&nats, "forward-strict").await;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.header("FastPix-Forward-Status"), Some("422"));
    assert_eq!(
        letter.header("FastPix-Forward-Answer"),
        Some("answer from the receiver")
    );
    assert!(letter.last_error.contains("422"), "{}", letter.last_error);
    assert_eq!(r.got().iter().filter(|g| g.id() == "bad").count(), 3);
    wait_ids(&r, 3, &f).await;
    assert_eq!(
        f.metric(r#"fastpix_forward_dead_letters_total{destination="strict"}"#)
            .await,
        1.0
    );

    // The destination is fixed; the dead letter is redriven with the CLI.
    r.set(always(Reply::OK));
    let out = Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
        .args([
            "dead-letters",
            "redrive",
            "--consumer",
            "forward-strict",
            "--all",
        ])
        .env_clear()
        .env("FASTPIX_BRIDGE__NATS__URL", nats.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = eventually(LIMIT, || {
        let ok = r.got().iter().filter(|g| g.id() == "bad").count() == 4;
        std::future::ready(ok)
    })
    .await;
    assert!(ok, "redriven event not delivered:\n{}", f.log());
    let last = r.got().into_iter().rfind(|g| g.id() == "bad").unwrap();
    assert_eq!(last.header("FastPix-Signature"), sign(SECRET, &last.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_with_durable_catches_up_after_a_restart_in_order() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let r = Receiver::start(always(Reply::OK)).await;
    let url = r.url();
    let args = [
        "--to",
        url.as_str(),
        "--secret",
        SECRET,
        "--durable",
        "laptop",
    ];
    let mut f = Forwarder::start(&nats, &args, &[]);
    consumer_ready(&nats, "laptop", &f).await;
    let first: Vec<String> = (0..5)
        .map(|i| body("video.media.updated", &format!("v{i}"), "m1"))
        .collect();
    post_all(&app, &first).await;
    wait_ids(&r, 5, &f).await;
    let ok = eventually(LIMIT, || std::future::ready(f.stdout().len() >= 5)).await;
    assert!(ok, "no lines:\n{}", f.log());
    let line = &f.stdout()[0];
    assert!(
        line.contains("video.media.updated v0 200") && line.contains("attempt 1"),
        "{line}"
    );
    f.signal("-TERM");
    f.wait_exit().await;

    // Sent while it is away.
    let second: Vec<String> = (5..10)
        .map(|i| body("video.media.updated", &format!("v{i}"), "m1"))
        .collect();
    post_all(&app, &second).await;
    let f = Forwarder::start(&nats, &args, &[]);
    wait_ids(&r, 10, &f).await;
    let want: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    assert_eq!(r.ids(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_without_durable_leaves_no_consumer_behind() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let r = Receiver::start(always(Reply::OK)).await;
    let url = r.url();
    let mut f = Forwarder::start(
        &nats,
        &[
            "--to",
            url.as_str(),
            "--secret",
            SECRET,
            "--family",
            "media",
        ],
        &[],
    );
    let js = jetstream::new(nats.client().await);
    let ok = eventually(LIMIT, || {
        let js = js.clone();
        async move {
            let mut s = js.get_stream("FASTPIX").await.unwrap();
            s.info().await.unwrap().state.consumer_count == 1
        }
    })
    .await;
    assert!(ok, "{}", f.log());
    post_all(
        &app,
        &[
            body("video.upload.created", "u", "u1"),
            body("video.media.ready", "m", "m1"),
        ],
    )
    .await;
    wait_ids(&r, 1, &f).await;
    assert_eq!(r.ids(), ["m"]);
    f.signal("-TERM");
    f.wait_exit().await;
    let mut s = js.get_stream("FASTPIX").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.consumer_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_killed_mid_stream_loses_nothing_after_its_restart() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let r = Receiver::start(always(Reply {
        delay: Duration::from_millis(20),
        ..Reply::OK
    }))
    .await;
    let env = dest_env("crash", &r.url(), SECRET, &[("CONCURRENCY", "4")]);
    let mut f = Forwarder::start(&nats, &[], &env);
    consumer_ready(&nats, "forward-crash", &f).await;
    let posted: Vec<(String, String)> = (0..200)
        .map(|i| (format!("k{i}"), format!("obj-{}", i % 8)))
        .collect();
    let bodies: Vec<String> = posted
        .iter()
        .map(|(id, o)| body("video.media.updated", id, o))
        .collect();
    post_all(&app, &bodies).await;
    let ok = eventually(LIMIT, || std::future::ready(r.ids().len() >= 20)).await;
    assert!(ok, "{}", f.log());
    f.signal("-KILL");
    f.wait_exit().await;
    let before = r.ids().len();
    assert!(
        before < posted.len(),
        "all delivered before the kill: make the receiver slower"
    );
    let f = Forwarder::start(&nats, &[], &env);
    wait_ids(&r, posted.len(), &f).await;
    let got: HashSet<String> = r.ids().into_iter().collect();
    for (id, _) in &posted {
        assert!(got.contains(id), "{id} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_forwarders_on_one_destination_deliver_each_event_once_in_order_and_fail_over() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let r = Receiver::start(always(Reply {
        delay: Duration::from_millis(10),
        ..Reply::OK
    }))
    .await;
    let env = dest_env("pair", &r.url(), SECRET, &[("CONCURRENCY", "4")]);
    let mut a = Forwarder::start(&nats, &[], &env);
    let mut b = Forwarder::start(&nats, &[], &env);
    consumer_ready(&nats, "forward-pair", &a).await;
    let holds = |f: &Forwarder| f.log().contains("lease taken");
    let ok = eventually(LIMIT, || std::future::ready(holds(&a) || holds(&b))).await;
    assert!(ok, "no forwarder took the lease:\n{}\n{}", a.log(), b.log());
    assert!(!(holds(&a) && holds(&b)), "both hold the lease");
    let posted: Vec<(String, String)> = (0..120)
        .map(|i| (format!("p{i}"), format!("obj-{}", i % 6)))
        .collect();
    let bodies: Vec<String> = posted
        .iter()
        .map(|(id, o)| body("video.media.updated", id, o))
        .collect();
    post_all(&app, &bodies[..60]).await;
    let ok = eventually(LIMIT, || std::future::ready(r.ids().len() >= 20)).await;
    assert!(ok, "{}\n{}", a.log(), b.log());
    // The holder stops; the other takes over and delivers the rest.
    let (holder, standby) = if holds(&a) {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    holder.signal("-TERM");
    holder.wait_exit().await;
    post_all(&app, &bodies[60..]).await;
    wait_ids(&r, posted.len(), standby).await;
    assert!(holds(standby), "{}", standby.log());
    assert_object_order(&r, &posted);
    // Once each, but for what the stopping one handed back mid-request.
    let extra = r.got().len() - posted.len();
    assert!(extra <= 4, "{extra} events delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_shows_each_destination_and_where_each_event_stands_for_it() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let r = Receiver::start(Arc::new(|g: &Got, _| {
        if g.id() == "no" {
            Reply::status(400)
        } else {
            Reply::OK
        }
    }))
    .await;
    let env = dest_env(
        "shown",
        &r.url(),
        SECRET,
        &[("MAX_ATTEMPTS", "1"), ("TYPES", "video.media.*")],
    );
    let f = Forwarder::start(&nats, &[], &env);
    consumer_ready(&nats, "forward-shown", &f).await;
    post_all(
        &app,
        &[
            body("video.media.ready", "yes", "m1"),
            body("video.media.ready", "no", "m2"),
            body("video.upload.created", "other", "u1"),
        ],
    )
    .await;
    let ok = eventually(LIMIT, || async {
        !dead_of(&nats, "forward-shown").await.is_empty()
    })
    .await;
    assert!(ok, "{}", f.log());
    wait_ids(&r, 2, &f).await;

    let inspector = crate::inspector::TestInspector::spawn(&nats.url(), None).await;
    let destination_of = |c: serde_json::Value| {
        c["destinations"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["consumer"] == "forward-shown").cloned())
            .unwrap_or_default()
    };
    let ok = eventually(LIMIT, || async {
        let d = destination_of(inspector.ok("/api/consumers").await);
        d["state"] == "delivering" && d["pending"] == 0 && d["last_status"] != ""
    })
    .await;
    let destination = destination_of(inspector.ok("/api/consumers").await);
    assert!(ok, "{destination}");
    assert_eq!(destination["destination"], "shown");
    // The last answer it got (the two events go in parallel).
    assert!(
        ["200", "400"].contains(&destination["last_status"].as_str().unwrap()),
        "{destination}"
    );

    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    let seq_of = |id: &str| {
        stored
            .iter()
            .find(|m| m.decoded_header("FastPix-Event-Id").as_deref() == Some(id))
            .unwrap()
            .seq
    };
    let status_of = |detail: &serde_json::Value| {
        detail["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["consumer"] == "forward-shown")
            .map(|c| c["status"].as_str().unwrap().to_owned())
    };
    let yes = inspector
        .ok(&format!("/api/events/{}", seq_of("yes")))
        .await;
    assert_eq!(status_of(&yes).as_deref(), Some("delivered"), "{yes}");
    let no = inspector.ok(&format!("/api/events/{}", seq_of("no"))).await;
    assert_eq!(status_of(&no).as_deref(), Some("dead-lettered"), "{no}");
    // Not among its types: the destination is not listed for it.
    let other = inspector
        .ok(&format!("/api/events/{}", seq_of("other")))
        .await;
    assert_eq!(status_of(&other), None, "{other}");
    inspector.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_destination_never_gets_more_than_its_rate() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let r = Receiver::start(always(Reply::OK)).await;
    let env = dest_env(
        "slow",
        &r.url(),
        SECRET,
        &[("RATE_LIMIT", "20"), ("CONCURRENCY", "8")],
    );
    let f = Forwarder::start(&nats, &[], &env);
    consumer_ready(&nats, "forward-slow", &f).await;
    let bodies: Vec<String> = (0..30)
        .map(|i| body("video.media.ready", &format!("s{i}"), &format!("m{i}")))
        .collect();
    post_all(&app, &bodies).await;
    wait_ids(&r, 30, &f).await;
    // 30 requests at 20/s at most: the last leaves 29/20 s after the first
    // however fast the machine is (1 s leaves room for a first request
    // slowed by connecting; without the limit they take milliseconds).
    let got = r.got();
    let first = got.iter().map(|g| g.at).min().unwrap();
    let last = got.iter().map(|g| g.at).max().unwrap();
    assert!(
        last.duration_since(first) >= Duration::from_secs(1),
        "30 requests in {:?}",
        last.duration_since(first)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_destinations_signing_secret_file_and_a_bad_file_keeps_the_secret_in_force()
 {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let r = Receiver::start(always(Reply::OK)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rotated-secret");
    std::fs::write(
        &file,
        format!("# the secret deliveries are signed with\n{SECRET}\n"),
    )
    .unwrap();
    let key = |k: &str| format!("FASTPIX_BRIDGE__FORWARD__ROTATED__{k}");
    let env = vec![
        (key("URL"), r.url()),
        (key("SIGNING_SECRET_FILE"), file.display().to_string()),
        // The check for a changed file comes once at the start, then not
        // again within the test: only SIGHUP can reload.
        (
            "FASTPIX_BRIDGE__SECRETS__CHECK_INTERVAL".to_owned(),
            "24h".to_owned(),
        ),
    ];
    let f = Forwarder::start(&nats, &[], &env);
    consumer_ready(&nats, "forward-rotated", &f).await;
    let signed_with = |id: &str| {
        let g = r.got().into_iter().find(|g| g.id() == id).unwrap();
        match g.header("FastPix-Signature") {
            s if s == sign(SECRET, &g.body) => "A",
            s if s == sign(SECRET_2, &g.body) => "B",
            _ => "neither",
        }
    };
    let log_has = |what: &str| {
        f.log()
            .lines()
            .any(|l| l.contains(what) && l.contains("SIGHUP") && l.contains("rotated-secret"))
    };

    post_all(&app, &[body("video.media.ready", "r1", "m1")]).await;
    wait_ids(&r, 1, &f).await;
    assert_eq!(signed_with("r1"), "A");

    // Rotated: the file now holds B. Without SIGHUP (and no check due),
    // deliveries are still signed with A.
    std::fs::write(&file, format!("{SECRET_2}\n")).unwrap();
    post_all(&app, &[body("video.media.ready", "r2", "m2")]).await;
    wait_ids(&r, 2, &f).await;
    assert_eq!(signed_with("r2"), "A");

    f.signal("-HUP");
    let ok = eventually(LIMIT, || {
        std::future::ready(log_has("signing secret reloaded"))
    })
    .await;
    assert!(ok, "no reload on SIGHUP:\n{}", f.log());
    post_all(&app, &[body("video.media.ready", "r3", "m3")]).await;
    wait_ids(&r, 3, &f).await;
    assert_eq!(signed_with("r3"), "B");

    // A file that does not parse: B stays in force, and the log says so.
    std::fs::write(&file, "%%% not base64 %%%\n").unwrap();
    f.signal("-HUP");
    let ok = eventually(LIMIT, || {
        std::future::ready(log_has(
            "signing secret not reloaded; the one in force stays",
        ))
    })
    .await;
    assert!(ok, "a failed reload is not logged:\n{}", f.log());
    post_all(&app, &[body("video.media.ready", "r4", "m4")]).await;
    wait_ids(&r, 4, &f).await;
    assert_eq!(signed_with("r4"), "B");
    assert!(
        !f.log().contains(SECRET) && !f.log().contains(SECRET_2),
        "a secret was logged"
    );
}
