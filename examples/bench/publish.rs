//! `bench publish`: the JetStream publish path alone, without HTTP. The
//! same messages (~1 KB, the bridge's eight headers, a unique `Nats-Msg-Id`)
//! are published with a bound of messages in flight, by async-nats's
//! JetStream context (what the floor uses) and by the bridge's
//! [`AckRouter`], in rounds that alternate, each into a fresh stream of one
//! nats-server. Reported per message: this process's CPU (the client side),
//! nats-server's, and the rate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use fastpix_nats_bridge::nats::acks::AckRouter;
use fastpix_nats_bridge::nats::headers::names;
use tokio::sync::Semaphore;

use crate::{Nats, cpu_time, median};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    AsyncNats,
    /// The core client's own request (its one wildcard subscription, with
    /// a new inbox string per message), read with the router's parser.
    Request,
    Router,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::AsyncNats => "async-nats JetStream publish",
            Way::Request => "async-nats core request",
            Way::Router => "the bridge's ack router",
        }
    }
}

struct Run {
    rate: f64,
    client_us: f64,
    server_us: f64,
}

pub async fn run(
    nats_server: &Path,
    messages: usize,
    in_flight: usize,
    rounds: usize,
) -> Result<(), String> {
    let dir = tempfile_dir()?;
    let nats = Nats::start(nats_server, &dir)?;
    let server_pid = nats.server.child.id();
    let client = async_nats::connect(nats.url())
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client.clone());
    let router = AckRouter::start(client.clone())
        .await
        .map_err(|e| e.to_string())?;
    let payload = Bytes::from(vec![b'x'; 1000]);
    let mut results: Vec<(Way, Run)> = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Way::AsyncNats, Way::Request, Way::Router]
        } else {
            [Way::Router, Way::Request, Way::AsyncNats]
        };
        for path in order {
            let name = format!("PUBBENCH_{round}_{path:?}");
            js.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("pubbench.{round}.{path:?}.>")],
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
            let subject = Subject::from(format!("pubbench.{round}.{path:?}.video.media.created"));
            // A warm-up of a tenth, then the measured run.
            let tag = format!("{round}-{path:?}");
            publish_all(
                path,
                &js,
                &router,
                &subject,
                &payload,
                &format!("warm-{tag}"),
                messages / 10,
                in_flight,
            )
            .await?;
            let (c0, s0, t0) = (
                cpu_time(std::process::id()),
                cpu_time(server_pid),
                Instant::now(),
            );
            publish_all(
                path, &js, &router, &subject, &payload, &tag, messages, in_flight,
            )
            .await?;
            let wall = t0.elapsed();
            let (c1, s1) = (cpu_time(std::process::id()), cpu_time(server_pid));
            let per = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
                (Some(a), Some(b)) => (b - a).as_secs_f64() * 1e6 / messages as f64,
                _ => f64::NAN,
            };
            let run = Run {
                rate: messages as f64 / wall.as_secs_f64(),
                client_us: per(c0, c1),
                server_us: per(s0, s1),
            };
            println!(
                "round {} {:<30} {:>8.0} msg/s  client {:>5.2} µs/msg  nats-server {:>5.2} µs/msg",
                round + 1,
                path.name(),
                run.rate,
                run.client_us,
                run.server_us
            );
            let info = js
                .get_stream(&name)
                .await
                .map_err(|e| e.to_string())?
                .cached_info()
                .state
                .messages;
            let want = (messages + messages / 10) as u64;
            if info != want {
                return Err(format!("{name}: {info} stored, {want} acknowledged"));
            }
            js.delete_stream(&name).await.map_err(|e| e.to_string())?;
            results.push((path, run));
        }
    }
    println!(
        "\nmedians over {rounds} rounds of {messages} messages, {in_flight} in flight, ~1 KB with eight headers:"
    );
    for path in [Way::AsyncNats, Way::Request, Way::Router] {
        let of = |f: fn(&Run) -> f64| {
            median(
                results
                    .iter()
                    .filter(|(p, _)| *p == path)
                    .map(|(_, r)| f(r))
                    .collect(),
            )
        };
        println!(
            "{:<30} {:>8.0} msg/s  client {:>5.2} µs/msg  nats-server {:>5.2} µs/msg",
            path.name(),
            of(|r| r.rate),
            of(|r| r.client_us),
            of(|r| r.server_us)
        );
    }
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The eight headers the bridge writes on an event.
fn headers(id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(names::MSG_ID, id);
    h.insert(names::EVENT_ID, id);
    h.insert(names::WEBHOOK, "default");
    h.insert(names::EVENT_TYPE, "video.media.created");
    h.insert(names::OBJECT_TYPE, "media");
    h.insert(names::OBJECT_ID, "5f1c4a2e-8a9b-4c1d-9e2f-3a4b5c6d7e8f");
    h.insert(names::WORKSPACE_ID, "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e");
    h.insert(names::CONTENT_TYPE, "application/json");
    h
}

#[allow(clippy::too_many_arguments)]
async fn publish_all(
    path: Way,
    js: &jetstream::Context,
    router: &AckRouter,
    subject: &Subject,
    payload: &Bytes,
    tag: &str,
    messages: usize,
    in_flight: usize,
) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..messages {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (js, router, subject, payload) =
            (js.clone(), router.clone(), subject.clone(), payload.clone());
        let id = format!("{tag}-{n}");
        tasks.spawn(async move {
            let _permit = permit;
            let h = headers(&id);
            match path {
                Way::AsyncNats => js
                    .publish_with_headers(subject, h, payload)
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Way::Request => {
                    let m = js
                        .client()
                        .request_with_headers(subject, h, payload)
                        .await
                        .map_err(|e| e.to_string())?;
                    fastpix_nats_bridge::nats::acks::parse(&m.payload)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                Way::Router => router
                    .publish(subject, h, payload)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            }
        });
        while let Some(done) = tasks.try_join_next() {
            done.map_err(|e| e.to_string())??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("bench-publish-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
