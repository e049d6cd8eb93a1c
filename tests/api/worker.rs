//! The consumer worker against a real nats-server and a real bridge: retries
//! on the back-off schedule, a consumer killed mid-batch, per-object order
//! under concurrency, dead letters and their redrive to one consumer.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use fastpix_nats_bridge::consumer::dead_letters::{
    self, HEADER_CONSUMER, HEADER_DELIVERIES, HEADER_LAST_ERROR, HEADER_REASON, HEADER_STREAM_SEQ,
    HEADER_SUBJECT,
};
use fastpix_nats_bridge::consumer::{Delivery, Outcome, SubjectPrefix, Worker};
use futures_util::StreamExt as _;

use crate::consumers::{Proc, run};
use crate::helpers::*;

/// A media event about `object`.
fn media_body(id: &str, object: &str) -> String {
    serde_json::json!({
        "type": "video.media.updated",
        "id": id,
        "object": { "type": "media", "id": object },
        "workspace": { "id": "ws-test" },
        "status": "ready",
        "createdAt": "2026-05-11T20:42:16.361817248Z",
        "data": { "note": format!("event {id}") }
    })
    .to_string()
}

/// Posts every body, `parallel` at a time; each must be stored.
async fn post(app: &TestApp, bodies: &[String], parallel: usize) {
    futures_util::stream::iter(bodies)
        .for_each_concurrent(parallel, |body| async move {
            let resp = app.post_signed(body).await;
            assert_eq!(resp.status(), 200, "{body}");
        })
        .await;
}

fn worker(durable: &str) -> Worker {
    let prefix = SubjectPrefix::default();
    let all = prefix.all();
    Worker::new("FASTPIX", prefix, durable, vec![all])
}

/// A worker running in this process until the returned sender fires.
fn start<F, Fut>(
    js: &jetstream::Context,
    worker: Worker,
    handler: F,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let js = js.clone();
    let handle = tokio::spawn(async move {
        worker
            .run(
                &js,
                async {
                    let _ = rx.await;
                },
                handler,
            )
            .await
            .expect("worker runs");
    });
    (tx, handle)
}

async fn stop(
    worker: (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
) {
    let _ = worker.0.send(());
    tokio::time::timeout(Duration::from_secs(30), worker.1)
        .await
        .expect("worker stops within its grace")
        .expect("worker task");
}

#[derive(Debug, Clone)]
struct Attempt {
    delivered: u64,
    started: Instant,
    ended: Instant,
    ok: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_failing_twice_for_one_event_in_ten_ends_with_each_handled_once_after_the_backoff()
 {
    const N: usize = 1000;
    let backoff = [Duration::from_millis(200), Duration::from_millis(400)];
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let js = jetstream::new(nats.client().await);
    let bodies: Vec<String> = (0..N)
        .map(|i| media_body(&format!("r-{i}"), &format!("m-{i}")))
        .collect();
    let posting = Instant::now();
    post(&app, &bodies, 16).await;
    let posted_in = posting.elapsed();

    let log: Arc<Mutex<HashMap<String, Vec<Attempt>>>> = Arc::default();
    let successes = Arc::new(AtomicUsize::new(0));
    let mut w = worker("retry-test");
    w.concurrency = 8;
    w.backoff = backoff.to_vec();
    w.max_deliveries = 5;
    let started = Instant::now();
    let running = {
        let (log, successes) = (log.clone(), successes.clone());
        start(&js, w, move |d: Delivery| {
            let (log, successes) = (log.clone(), successes.clone());
            async move {
                let began = Instant::now();
                let id = d.event_id().expect("event id").to_owned();
                let n: usize = id.trim_start_matches("r-").parse().expect("id number");
                let fails = n.is_multiple_of(10) && d.delivered <= 2;
                tokio::time::sleep(Duration::from_millis(1)).await;
                log.lock().unwrap().entry(id).or_default().push(Attempt {
                    delivered: d.delivered,
                    started: began,
                    ended: Instant::now(),
                    ok: !fails,
                });
                if fails {
                    Outcome::retry("simulated failure")
                } else {
                    successes.fetch_add(1, Ordering::SeqCst);
                    Outcome::Success
                }
            }
        })
    };
    let all = eventually(Duration::from_secs(180), || {
        let done = successes.load(Ordering::SeqCst);
        async move { done >= N }
    })
    .await;
    let took = started.elapsed();
    // Time for a stray second delivery to show before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(running).await;
    let log = log.lock().unwrap().clone();
    assert!(
        all,
        "only {} of {N} handled",
        successes.load(Ordering::SeqCst)
    );
    assert_eq!(log.len(), N, "every event reached the handler");
    let mut retries = 0;
    let mut shortest = [Duration::MAX; 2];
    for (id, attempts) in &log {
        let n: usize = id.trim_start_matches("r-").parse().unwrap();
        let wins = attempts.iter().filter(|a| a.ok).count();
        assert_eq!(
            wins, 1,
            "{id} handled successfully {wins} times: {attempts:?}"
        );
        let expected = if n.is_multiple_of(10) { 3 } else { 1 };
        assert_eq!(attempts.len(), expected, "{id}: {attempts:?}");
        for (i, pair) in attempts.windows(2).enumerate() {
            assert_eq!(pair[0].delivered, i as u64 + 1, "{id}");
            assert_eq!(pair[1].delivered, i as u64 + 2, "{id}");
            let waited = pair[1].started.duration_since(pair[0].ended);
            // Lower bound only: a slow machine makes it longer, never shorter.
            assert!(
                waited + Duration::from_millis(10) >= backoff[i],
                "{id}: delivery {} came {waited:?} after a retry asking {:?}",
                i + 2,
                backoff[i]
            );
            shortest[i] = shortest[i].min(waited);
            retries += 1;
        }
    }
    assert_eq!(retries, 2 * N / 10);
    println!(
        "figures: {N} events posted in {posted_in:?}; {retries} retries ({} events failing twice); all handled once in {took:?} at concurrency 8; shortest waits {:?} (back-off 200ms) and {:?} (back-off 400ms)",
        N / 10,
        shortest[0],
        shortest[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_concurrency_8_one_objects_events_run_one_at_a_time_in_stream_order() {
    const OBJECTS: usize = 16;
    const EACH: usize = 25;
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let js = jetstream::new(nats.client().await);
    let bodies: Vec<String> = (0..EACH)
        .flat_map(|k| {
            (0..OBJECTS).map(move |o| media_body(&format!("o{o}-{k}"), &format!("obj-{o}")))
        })
        .collect();
    // One at a time: stream order is this order.
    post(&app, &bodies, 1).await;

    /// Per object: (stream sequence, index among the object's events), as handled.
    type Seen = Arc<Mutex<HashMap<String, Vec<(u64, usize)>>>>;
    let seen: Seen = Arc::default();
    let active: Arc<Mutex<HashSet<String>>> = Arc::default();
    let clashes: Arc<Mutex<Vec<String>>> = Arc::default();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut w = worker("order-test");
    w.concurrency = 8;
    let started = Instant::now();
    let handle = {
        let (seen, active, clashes, running, most, done) = (
            seen.clone(),
            active.clone(),
            clashes.clone(),
            running.clone(),
            most.clone(),
            done.clone(),
        );
        start(&js, w, move |d: Delivery| {
            let (seen, active, clashes, running, most, done) = (
                seen.clone(),
                active.clone(),
                clashes.clone(),
                running.clone(),
                most.clone(),
                done.clone(),
            );
            async move {
                let object = d.object_id().expect("object id").to_owned();
                let id = d.event_id().expect("event id").to_owned();
                let k: usize = id.rsplit('-').next().unwrap().parse().unwrap();
                if !active.lock().unwrap().insert(object.clone()) {
                    clashes
                        .lock()
                        .unwrap()
                        .push(format!("{object} twice at once ({id})"));
                }
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                seen.lock()
                    .unwrap()
                    .entry(object.clone())
                    .or_default()
                    .push((d.stream_sequence, k));
                tokio::time::sleep(Duration::from_millis(2 + (k as u64 * 7) % 9)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                active.lock().unwrap().remove(&object);
                done.fetch_add(1, Ordering::SeqCst);
                Outcome::Success
            }
        })
    };
    let all = eventually(Duration::from_secs(120), || {
        let n = done.load(Ordering::SeqCst);
        async move { n >= OBJECTS * EACH }
    })
    .await;
    let took = started.elapsed();
    stop(handle).await;
    assert!(
        all,
        "handled {} of {}",
        done.load(Ordering::SeqCst),
        OBJECTS * EACH
    );
    assert!(
        clashes.lock().unwrap().is_empty(),
        "{:?}",
        clashes.lock().unwrap()
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), OBJECTS);
    for (object, order) in seen.iter() {
        let ks: Vec<usize> = order.iter().map(|(_, k)| *k).collect();
        assert_eq!(ks, (0..EACH).collect::<Vec<_>>(), "{object} out of order");
        assert!(
            order.windows(2).all(|p| p[0].0 < p[1].0),
            "{object}: {order:?}"
        );
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (2..=8).contains(&most),
        "different objects should overlap, at most 8 at once: {most}"
    );
    println!(
        "figures: {} events of {OBJECTS} objects at concurrency 8 in {took:?}; at most {most} handlers at once, never two of one object",
        OBJECTS * EACH
    );
}

fn header<'a>(m: &'a StoredMessage, name: &str) -> &'a str {
    m.header(name)
        .unwrap_or_else(|| panic!("{name} missing: {m:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_exhausted_events_become_dead_letters_redriven_to_that_consumer_only() {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let bodies = vec![
        media_body("ok-1", "m-1"),
        media_body("bad", "m-2"),
        media_body("flaky", "m-3"),
        media_body("ok-2", "m-4"),
    ];
    post(&app, &bodies, 1).await;
    let stored = stream_messages(&client, "FASTPIX").await;
    let seq_of = |id: &str| {
        stored
            .iter()
            .find(|m| m.header("FastPix-Event-Id") == Some(id))
            .map(|m| m.seq)
            .unwrap()
    };

    // billing rejects `bad` and fails `flaky` until healed; search handles all.
    let healed = Arc::new(AtomicBool::new(false));
    type Handled = Arc<Mutex<Vec<(String, u64, bool, u64)>>>;
    let billing_got: Handled = Arc::default();
    let search_got: Handled = Arc::default();
    let billing_handler = {
        let (healed, got) = (healed.clone(), billing_got.clone());
        move |d: Delivery| {
            let (healed, got) = (healed.clone(), got.clone());
            async move {
                let id = d.event_id().unwrap().to_owned();
                if !healed.load(Ordering::SeqCst) {
                    match id.as_str() {
                        "bad" => return Outcome::reject("unknown media"),
                        "flaky" => return Outcome::retry("database down"),
                        _ => {}
                    }
                }
                got.lock()
                    .unwrap()
                    .push((id, d.delivered, d.redriven, d.stream_sequence));
                Outcome::Success
            }
        }
    };
    let billing = |handler| {
        let mut w = worker("billing");
        w.backoff = vec![Duration::from_millis(100)];
        w.max_deliveries = 3;
        start(&js, w, handler)
    };
    let b = billing(billing_handler.clone());
    let search = {
        let got = search_got.clone();
        start(&js, worker("search"), move |d: Delivery| {
            let got = got.clone();
            async move {
                got.lock().unwrap().push((
                    d.event_id().unwrap().to_owned(),
                    d.delivered,
                    d.redriven,
                    d.stream_sequence,
                ));
                Outcome::Success
            }
        })
    };
    let prefix = SubjectPrefix::default();
    let letters_ready = eventually(Duration::from_secs(30), || {
        let js = js.clone();
        let prefix = prefix.clone();
        async move {
            dead_letters::list(&js, "FASTPIX", &prefix, Some("billing"))
                .await
                .is_ok_and(|l| l.len() == 2)
        }
    })
    .await;
    assert!(letters_ready, "two dead letters for billing");
    let search_done = eventually(Duration::from_secs(30), || {
        let n = search_got.lock().unwrap().len();
        async move { n == 4 }
    })
    .await;
    assert!(search_done);
    stop(b).await;

    // What the dead letters hold: the original bytes and headers, and why.
    let dead = stream_messages(&client, "FASTPIX_DEAD_LETTERS").await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for m in &dead {
        assert_eq!(m.subject, "fastpix_dead_letters.billing");
        let id = header(m, "FastPix-Event-Id");
        let original = stored
            .iter()
            .find(|s| s.header("FastPix-Event-Id") == Some(id))
            .unwrap();
        assert_eq!(m.payload, original.payload, "payload byte for byte");
        for (name, value) in &original.headers {
            if !name.eq_ignore_ascii_case("Nats-Msg-Id") {
                assert_eq!(m.header(name), Some(value.as_str()), "{name}");
            }
        }
        assert_eq!(header(m, HEADER_CONSUMER), "billing");
        assert_eq!(header(m, HEADER_SUBJECT), "fastpix.video.media.updated");
        assert_eq!(header(m, HEADER_STREAM_SEQ), seq_of(id).to_string());
        match id {
            "bad" => {
                assert_eq!(header(m, HEADER_REASON), "rejected: unknown media");
                assert_eq!(header(m, HEADER_DELIVERIES), "1");
            }
            "flaky" => {
                assert!(
                    header(m, HEADER_REASON).contains("retries exhausted"),
                    "{m:?}"
                );
                assert_eq!(header(m, HEADER_DELIVERIES), "3");
                assert_eq!(header(m, HEADER_LAST_ERROR), "database down");
            }
            other => panic!("unexpected dead letter {other}"),
        }
    }
    // Never in the events stream, and search has none.
    assert_eq!(stream_messages(&client, "FASTPIX").await.len(), 4);
    let env = [("FASTPIX_BRIDGE__NATS__URL", nats.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, out, err) = run(&["dead-letters", "list"], &env).await;
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("consumer=billing") && out.contains("reason=\"rejected: unknown media\""),
        "{out}"
    );
    let (_, out, _) = run(&["dead-letters", "list", "--consumer", "search"], &env).await;
    assert_eq!(out, "");

    // Redrive while billing is down, twice: the second finds nothing.
    billing_got.lock().unwrap().clear();
    healed.store(true, Ordering::SeqCst);
    let (status, out, err) = run(
        &["dead-letters", "redrive", "--consumer", "billing", "--all"],
        &env,
    )
    .await;
    assert!(status.success(), "{out}{err}");
    assert!(
        out.starts_with("redriven 2 dead letter(s) to `billing`"),
        "{out}"
    );
    let (status, out, err) = run(
        &["dead-letters", "redrive", "--consumer", "billing", "--all"],
        &env,
    )
    .await;
    assert!(status.success(), "{err}");
    assert!(out.starts_with("redriven 0"), "{out}");
    let first = dead[0].seq.to_string();
    let (status, out, err) = run(
        &["dead-letters", "redrive", "--consumer", "billing", &first],
        &env,
    )
    .await;
    assert!(
        status.success() && out.starts_with("redriven 0"),
        "{out}{err}"
    );
    assert!(err.contains("not a dead letter of `billing`"), "{err}");
    let (status, _, err) = run(&["dead-letters", "redrive", "--consumer", "billing"], &env).await;
    assert_eq!(status.code(), Some(2), "{err}");

    let b = billing(billing_handler);
    let redriven = eventually(Duration::from_secs(30), || {
        let n = billing_got.lock().unwrap().len();
        async move { n >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(b).await;
    assert!(redriven);
    let mut got = billing_got.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("bad".to_owned(), 1, true, seq_of("bad")),
            ("flaky".to_owned(), 1, true, seq_of("flaky"))
        ],
        "each redriven event once, with its original sequence"
    );
    assert_eq!(
        search_got.lock().unwrap().len(),
        4,
        "search gets nothing again"
    );
    stop(search).await;
    assert!(
        dead_letters::list(&js, "FASTPIX", &prefix, None)
            .await
            .unwrap()
            .is_empty()
    );

    // `consumers` lists both with their counts.
    let (status, out, err) = run(&["consumers"], &env).await;
    assert!(status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("ACK-PENDING"),
        "{out}"
    );
    for name in ["billing", "search"] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[1..3], ["0", "0"], "nothing pending: {row}");
        assert!(row.ends_with("fastpix.>"), "{row}");
    }
    let (status, out, _) = run(&["consumers", "--json"], &env).await;
    assert!(status.success());
    assert_eq!(out.lines().count(), 2);
    let bad_nats = [("FASTPIX_BRIDGE__NATS__URL", "nats://127.0.0.1:1")];
    let (status, _, err) = run(&["consumers"], &bad_nats).await;
    assert_eq!(status.code(), Some(1), "{err}");
    let (status, _, err) = run(&["consumers", "--bogus"], &env).await;
    assert_eq!(status.code(), Some(2), "{err}");
}

/// The consumer process of the next test: the test binary itself, running
/// only this test with the environment that test gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a_consumer_killed_mid_batch_loses_nothing_after_a_restart"]
async fn worker_child_process() {
    let Ok(url) = std::env::var("WORKER_CHILD_NATS_URL") else {
        return;
    };
    let client = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(client);
    let mut w = worker("killed");
    w.concurrency = 4;
    w.ack_wait = Duration::from_secs(2);
    w.run(
        &js,
        std::future::pending::<()>(),
        |d: Delivery| async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            println!("handled {} {}", d.event_id().unwrap_or("-"), d.delivered);
            Outcome::Success
        },
    )
    .await
    .expect("worker runs");
}

fn handled_ids(procs: &[&Proc]) -> Vec<String> {
    procs
        .iter()
        .flat_map(|p| p.lines())
        // The harness starts the first line with `test … ... `.
        .filter_map(|l| {
            l.split("handled ")
                .nth(1)
                .map(|r| r.split(' ').next().unwrap_or("").to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_batch_loses_nothing_after_a_restart() {
    const N: usize = 300;
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let bodies: Vec<String> = (0..N)
        .map(|i| media_body(&format!("k-{i}"), &format!("m-{i}")))
        .collect();
    post(&app, &bodies, 8).await;
    let child = || {
        let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "worker::worker_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WORKER_CHILD_NATS_URL", nats.url())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        Proc::spawn(cmd)
    };
    let started = Instant::now();
    let first = child();
    let some = eventually(Duration::from_secs(60), || {
        let n = handled_ids(&[&first]).len();
        async move { n >= 40 }
    })
    .await;
    assert!(some, "the consumer never got going: {}", first.stderr());
    first.signal("KILL");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = handled_ids(&[&first]);
    assert!(
        before.len() < N,
        "killed after the batch, not in it ({} handled)",
        before.len()
    );

    let second = child();
    let want: HashSet<String> = (0..N).map(|i| format!("k-{i}")).collect();
    let all = eventually(Duration::from_secs(90), || {
        let got: HashSet<String> = handled_ids(&[&first, &second]).into_iter().collect();
        let done = want.is_subset(&got);
        async move { done }
    })
    .await;
    let took = started.elapsed();
    let ids = handled_ids(&[&first, &second]);
    let got: HashSet<&String> = ids.iter().collect();
    let missing: Vec<&String> = want.iter().filter(|id| !got.contains(id)).collect();
    assert!(
        all && missing.is_empty(),
        "lost: {missing:?}\nfirst:\n{}\n{}\nsecond:\n{}\n{}",
        first.lines().join("\n"),
        first.stderr(),
        second.lines().join("\n"),
        second.stderr()
    );
    let twice = ids.len() - got.len();
    // Only what the killed copy held (at most 4 x concurrency) can come twice.
    assert!(twice <= 16, "{twice} events handled twice");
    println!(
        "figures: {N} events; killed after {} handled; the restarted copy finished the rest, {twice} in flight at the kill handled again; {took:?} in all",
        before.len()
    );
}
