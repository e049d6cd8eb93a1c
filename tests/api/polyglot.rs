//! The Python (nats-py) and Node (@nats-io/jetstream) example consumers, run
//! as processes against a real nats-server and a real bridge: each receives
//! only its family's events, acknowledges them, gets a failed one again
//! after its nak delay, and stops cleanly on SIGTERM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use fastpix_nats_bridge::consumer::{Family, seed_types};

use crate::consumers::{Proc, command};
use crate::helpers::*;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

async fn example_reads_its_family_acks_and_retries(
    interpreter: PathBuf,
    script: &str,
    extra_env: &[(&str, &str)],
    family: Family,
    durable: &str,
) {
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    // Every seed type once; the family's first event fails its first delivery.
    let events: Vec<(String, String)> = seed_types()
        .enumerate()
        .map(|(i, t)| (t.to_owned(), format!("poly-{i}")))
        .collect();
    let mine: Vec<&(String, String)> = events
        .iter()
        .filter(|(t, _)| Family::of_type(t) == Some(family))
        .collect();
    assert!(mine.len() >= 2);
    let failing = mine[0].1.clone();

    let url = nats.url();
    let mut env = vec![("FASTPIX_BRIDGE__NATS__URL", url.as_str())];
    env.extend_from_slice(extra_env);
    let script = repo_file(script);
    let script = script.to_str().expect("utf-8 path");
    let mut proc = Proc::spawn(command(
        interpreter,
        &[script, "--fail-once", &failing],
        &env,
    ));
    proc.wait_ready().await;
    for (t, id) in &events {
        let resp = app.post_signed(&event_body(t, id)).await;
        assert_eq!(resp.status(), 200);
    }

    let parse = |p: &Proc| -> Vec<serde_json::Value> {
        p.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let handled = |lines: &[serde_json::Value], id: &str| {
        lines
            .iter()
            .filter(|l| l["event_id"] == id && l["outcome"] == "handled")
            .count()
    };
    let all = eventually(Duration::from_secs(60), || {
        let lines = parse(&proc);
        let done = mine.iter().all(|(_, id)| handled(&lines, id) == 1);
        async move { done }
    })
    .await;
    // Room for a stray extra delivery before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = parse(&proc);
    assert!(
        all,
        "not every {family:?} event handled: {lines:#?}\n{}",
        proc.stderr()
    );
    for (t, id) in &mine {
        assert_eq!(
            handled(&lines, id),
            1,
            "{id} ({t}) handled once: {lines:#?}"
        );
        let line = lines
            .iter()
            .find(|l| l["event_id"] == id.as_str() && l["outcome"] == "handled")
            .unwrap();
        assert_eq!(line["type"], t.as_str(), "FastPix-Event-Type read: {line}");
        assert_eq!(
            line["object_id"],
            format!("obj-{id}"),
            "FastPix-Object-Id read: {line}"
        );
        assert_eq!(
            line["created_at"], "2026-05-11T20:42:16.361817248Z",
            "payload read: {line}"
        );
        assert!(line["seq"].as_u64().is_some_and(|s| s > 0), "{line}");
    }
    let strays: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| !mine.iter().any(|(_, id)| l["event_id"] == id.as_str()))
        .collect();
    assert!(strays.is_empty(), "events of other families: {strays:#?}");
    let tries: Vec<(&str, u64)> = lines
        .iter()
        .filter(|l| l["event_id"] == failing.as_str())
        .map(|l| {
            (
                l["outcome"].as_str().unwrap(),
                l["delivered"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tries,
        [("retry", 1), ("handled", 2)],
        "the failed event came again"
    );

    // The acknowledgements reached the server: nothing pending.
    let js = jetstream::new(nats.client().await);
    let settled = eventually(Duration::from_secs(15), || {
        let js = js.clone();
        async move {
            let stream = js.get_stream("FASTPIX").await.unwrap();
            stream
                .consumer_info(durable)
                .await
                .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
        }
    })
    .await;
    assert!(
        settled,
        "{durable} still has events pending or unacknowledged"
    );
    let info = js
        .get_stream("FASTPIX")
        .await
        .unwrap()
        .consumer_info(durable)
        .await
        .unwrap();
    let mut filters = info.config.filter_subjects.clone();
    if !info.config.filter_subject.is_empty() {
        filters.push(info.config.filter_subject.clone());
    }
    let want: Vec<String> = family
        .filters(&Default::default())
        .iter()
        .map(|f| f.to_string())
        .collect();
    filters.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(filters, want_sorted, "bound to its family only");

    proc.signal("TERM");
    let (status, _, err) = proc.finish().await;
    assert!(
        status.success(),
        "stops cleanly on SIGTERM: {status:?}\n{err}"
    );
    assert!(err.contains("stopping"), "{err}");
    let by_outcome: HashMap<String, usize> = lines.iter().fold(HashMap::new(), |mut m, l| {
        *m.entry(l["outcome"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        m
    });
    println!(
        "figures: {script}: {} events posted, {} of its family, deliveries {by_outcome:?}",
        events.len(),
        mine.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_reads_media_acks_and_gets_a_failed_event_again() {
    let Some(python) = external_tool("TEST_PYTHON") else {
        return;
    };
    example_reads_its_family_acks_and_retries(
        python,
        "examples/python/media_consumer.py",
        &[("RETRY_DELAY", "0.3")],
        Family::Media,
        "media-consumer-py",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_example_reads_live_streams_acks_and_gets_a_failed_event_again() {
    let Some(node) = external_tool("TEST_NODE") else {
        return;
    };
    example_reads_its_family_acks_and_retries(
        node,
        "examples/node/live_stream_consumer.mjs",
        &[("RETRY_DELAY_MS", "300")],
        Family::LiveStream,
        "live-stream-consumer-node",
    )
    .await;
}
