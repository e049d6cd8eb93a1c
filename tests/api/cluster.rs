//! The 3-node cluster of `deploy/cluster/`, run natively on loopback the way
//! its compose file runs it: the bridge (configured from the same compose
//! file) keeps serving and loses no event when the NATS node it is connected
//! to dies in the middle of a burst of deliveries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::deploy::*;
use crate::helpers::*;
use crate::sender::{assert_each_stored_exactly_once, send_with_retries};

const COMPOSE: &str = "deploy/cluster/docker-compose.yml";
const NODES: [&str; 3] = ["nats-1", "nats-2", "nats-3"];
const EVENTS: usize = 2_000;

/// `n` distinct free loopback ports.
fn distinct_free_ports(n: usize) -> Vec<u16> {
    let mut ports = BTreeSet::new();
    while ports.len() < n {
        ports.insert(free_port());
    }
    ports.into_iter().collect()
}

/// The three nodes, each started from its compose service (command, config
/// file, environment) with host names and ports mapped onto loopback.
fn start_cluster(compose: &Compose) -> Vec<NatsProcess> {
    let ports = distinct_free_ports(NODES.len() * 3);
    let port_map = |offset: usize| -> BTreeMap<String, u16> {
        NODES
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), ports[offset + i]))
            .collect()
    };
    let (client, monitor, route) = (port_map(0), port_map(3), port_map(6));
    NODES
        .iter()
        .map(|node| {
            let service = compose.service(node);
            let routes: BTreeMap<String, String> = service
                .environment()
                .into_iter()
                .filter(|(k, _)| k.starts_with("NATS_ROUTE_"))
                .map(|(k, v)| (k, localize_urls(&v, &route)))
                .collect();
            assert_eq!(routes.len(), 3, "{node} routes to every node");
            let listen = vec![
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{}", route[*node]),
            ];
            NatsProcess::start(&service, client[*node], monitor[*node], &listen, &routes)
        })
        .collect()
}

async fn http_ok(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The node whose `/connz` lists the bridge's connection.
async fn node_serving_the_bridge(http: &reqwest::Client, nodes: &[NatsProcess]) -> Option<usize> {
    for (i, node) in nodes.iter().enumerate() {
        let Ok(resp) = http.get(node.monitor_url("/connz")).send().await else {
            continue;
        };
        let Ok(connz) = resp.json::<serde_json::Value>().await else {
            continue;
        };
        let has_bridge = connz["connections"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "fastpix-nats-bridge"));
        if has_bridge {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_bridges_nats_node_mid_burst_loses_nothing_and_stops_nothing() {
    let compose = Compose::load(COMPOSE);
    let mut nodes = start_cluster(&compose);
    let http = reqwest::Client::new();

    // Compose starts the bridges once every node's healthcheck passes.
    for node in &nodes {
        let check = compose.service(&node.name).healthcheck_test();
        let path = check
            .iter()
            .find_map(|a| a.split_once(":8222").map(|(_, p)| p.to_owned()))
            .expect("the node healthcheck asks the monitoring port");
        let url = node.monitor_url(&path);
        assert!(
            eventually(Duration::from_secs(30), || http_ok(&http, &url)).await,
            "{} never healthy:\n{}",
            node.name,
            node.log_text()
        );
    }

    // The bridge with the compose file's environment, on loopback addresses.
    let client_ports: BTreeMap<String, u16> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.client_port))
        .collect();
    let mut env = compose.service("bridge-1").environment();
    let urls = env
        .get("FASTPIX_BRIDGE__NATS__URL")
        .expect("the bridge is given NATS URLs");
    let local_urls = localize_urls(urls, &client_ports);
    assert_eq!(local_urls.split(',').count(), 3, "all three URLs");
    env.insert("FASTPIX_BRIDGE__NATS__URL".into(), local_urls.clone());
    env.insert(
        "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
        SECRET.into(),
    );
    let env: Vec<(String, String)> = env.into_iter().collect();
    let bridge = BridgeProcess::start(&env);
    bridge.wait_ready().await;

    let started = Instant::now();
    let victim = loop {
        if let Some(i) = node_serving_the_bridge(&http, &nodes).await {
            break i;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no node lists the bridge's connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let survivors: Vec<String> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n.url())
        .collect();
    let observer = async_nats::connect(survivors)
        .await
        .expect("observer client");
    let js = jetstream::new(observer.clone());
    let mut stream = js
        .get_stream("FASTPIX")
        .await
        .expect("the bridge made its stream");
    let info = stream.info().await.expect("stream info").clone();
    assert_eq!(info.config.num_replicas, 3, "the stream is kept on 3 nodes");
    let peers = info.cluster.as_ref().map_or(0, |c| c.replicas.len() + 1);
    assert_eq!(peers, 3, "the stream has 3 peers: {:?}", info.cluster);

    // /healthz polled all along: the bridge must never stop answering.
    let stop = Arc::new(AtomicBool::new(false));
    let (polls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let poller = {
        let (stop, polls, failures) = (stop.clone(), polls.clone(), failures.clone());
        let (http, url) = (http.clone(), bridge.url("/healthz"));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                polls.fetch_add(1, Ordering::Relaxed);
                if !http_ok(&http, &url).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let webhook = bridge.url("/webhooks/fastpix");
    let sending = tokio::spawn(async move {
        send_with_retries(&webhook, 8, EVENTS, Duration::from_secs(90)).await
    });

    // Kill the bridge's node once about a quarter of the events are stored.
    let started = Instant::now();
    let stored_at_kill = loop {
        let stored = stream.info().await.map_or(0, |i| i.state.messages);
        if stored >= EVENTS as u64 / 4 || sending.is_finished() {
            break stored;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the burst never got going:\n{}",
            bridge.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    nodes[victim].kill();
    assert!(
        stored_at_kill < EVENTS as u64 && !sending.is_finished(),
        "the node died only after the burst ({stored_at_kill} stored)"
    );

    let report = sending.await.expect("sender");
    stop.store(true, Ordering::SeqCst);
    poller.await.expect("poller");

    assert_each_stored_exactly_once(&observer, "FASTPIX", &report).await;
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "/healthz failed during the failover ({} polls)",
        polls.load(Ordering::Relaxed)
    );
    assert!(
        polls.load(Ordering::Relaxed) > 10,
        "/healthz was hardly polled"
    );
    let moved = node_serving_the_bridge(&http, &nodes).await;
    assert!(
        moved.is_some_and(|i| i != victim),
        "the bridge did not move to a surviving node"
    );
    let running = nodes
        .iter_mut()
        .filter_map(|n| n.is_running().then_some(()))
        .count();
    assert_eq!(running, 2, "only the killed node is down");
    eprintln!(
        "cluster failover: {} events, {} stored when {} died, {} attempts, {} non-2xx, {} connection errors, {} /healthz polls",
        report.ids.len(),
        stored_at_kill,
        nodes[victim].name,
        report.attempts,
        report.non_2xx,
        report.connection_errors,
        polls.load(Ordering::Relaxed)
    );
}
