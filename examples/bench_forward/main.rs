//! Benchmark of `forward`: the release binary delivering to a minimal
//! loopback receiver (in this process) at a destination concurrency of 64.
//!
//! 1. Throughput: `--events` events published to the stream at once; the
//!    rate is events over the time from the first delivery to the last.
//! 2. Latency: `--rate` events per second for `--seconds`; per event, the
//!    time from the stream's acknowledgement of its publish (stored) to its
//!    arrival at the receiver (delivered): p50, p99, max.
//! 3. The forwarder's peak RSS (VmHWM) over both.
//!
//! `scripts/bench-forward` builds it and writes the figures into
//! BENCHMARKS.md between the `bench-forward` markers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::body::Bytes;
use axum::http::HeaderMap;
use clap::Parser;

/// base64 of "benchmark-signing-secret".
const SECRET: &str = "YmVuY2htYXJrLXNpZ25pbmctc2VjcmV0";
const BEGIN: &str = "<!-- bench-forward:begin -->";
const END: &str = "<!-- bench-forward:end -->";

#[derive(Parser)]
struct Cli {
    #[arg(long)]
    nats_server: PathBuf,
    #[arg(long)]
    forwarder: PathBuf,
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Write the results into this markdown file between the markers.
    #[arg(long)]
    write: Option<PathBuf>,
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver(arrivals: Arrivals) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, _body: Bytes| {
            let arrivals = arrivals.clone();
            async move {
                let now = Instant::now();
                if let Some(id) = headers
                    .get("fastpix-event-id")
                    .and_then(|v| v.to_str().ok())
                {
                    arrivals.lock().unwrap().entry(id.to_owned()).or_insert(now);
                }
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn body(id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"type":"video.media.updated","id":"{id}","object":{{"type":"media","id":"m-{id}"}},"workspace":{{"id":"ws"}},"status":"ready","createdAt":"2026-05-11T20:42:16Z","data":{{}}}}"#
    ))
}

async fn publish(js: &jetstream::Context, id: &str) -> jetstream::context::PublishAckFuture {
    let mut h = async_nats::HeaderMap::new();
    h.insert("FastPix-Event-Id", id);
    h.insert("FastPix-Event-Type", "video.media.updated");
    h.insert("FastPix-Object-Id", format!("m-{id}").as_str());
    h.insert("Nats-Msg-Id", id);
    js.publish_with_headers("fastpix.video.media.updated", h, body(id))
        .await
        .expect("publish")
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn wait_for(arrivals: &Arrivals, n: usize, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if arrivals.lock().unwrap().len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = std::env::temp_dir().join(format!("bench-forward-{}", std::process::id()));
    let port = free_port();
    let _nats = Killed(
        Command::new(&cli.nats_server)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("nats"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server"),
    );
    let url = format!("nats://127.0.0.1:{port}");
    let client = loop {
        if let Ok(c) = async_nats::connect(&url).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "FASTPIX".into(),
        subjects: vec!["fastpix.>".into()],
        ..Default::default()
    })
    .await
    .expect("stream");
    let arrivals: Arrivals = Arc::default();
    let addr = receiver(arrivals.clone()).await;
    let forwarder = Killed(
        Command::new(&cli.forwarder)
            .arg("forward")
            .env_clear()
            .env("FASTPIX_BRIDGE__NATS__URL", &url)
            .env("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:0")
            .env(
                "FASTPIX_BRIDGE__FORWARD__BENCH__URL",
                format!("http://{addr}/hook"),
            )
            .env("FASTPIX_BRIDGE__FORWARD__BENCH__SIGNING_SECRET", SECRET)
            .env(
                "FASTPIX_BRIDGE__FORWARD__BENCH__CONCURRENCY",
                cli.concurrency.to_string(),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the forwarder"),
    );
    let pid = forwarder.0.id();
    // New destinations start at new events: wait for the consumer.
    let stream = js.get_stream("FASTPIX").await.expect("stream");
    while stream.consumer_info("forward-bench").await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Warm-up.
    let _ = publish(&js, "warm").await.await;
    assert!(
        wait_for(&arrivals, 1, Duration::from_secs(30)).await,
        "no delivery"
    );

    // 1. Throughput.
    let n = cli.events;
    let started = Instant::now();
    // In chunks: the client holds at most so many unacknowledged publishes.
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for i in chunk {
            acks.push(publish(&js, &format!("t{i}")).await);
        }
        for a in acks {
            a.await.expect("stored");
        }
    }
    let published_in = started.elapsed();
    if !wait_for(&arrivals, n + 1, Duration::from_secs(300)).await {
        eprintln!("not every event was delivered");
        return ExitCode::FAILURE;
    }
    let (first, last) = {
        let a = arrivals.lock().unwrap();
        let times: Vec<Instant> = (0..n).map(|i| a[&format!("t{i}")]).collect();
        (*times.iter().min().unwrap(), *times.iter().max().unwrap())
    };
    let throughput = n as f64 / (last - first).as_secs_f64();

    // 2. Latency at a steady rate.
    let total = (cli.rate * cli.seconds) as usize;
    let every = Duration::from_secs_f64(1.0 / cli.rate as f64);
    // Each acknowledgement is awaited on its own: the instant it comes is
    // when the event is stored.
    let mut acks = Vec::with_capacity(total);
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + every * i as u32).await;
        let id = format!("l{i}");
        let ack = publish(&js, &id).await;
        acks.push(tokio::spawn(async move {
            ack.await.ok().map(|_| (id, Instant::now()))
        }));
    }
    let mut stored = Vec::with_capacity(total);
    for a in acks {
        if let Ok(Some(s)) = a.await {
            stored.push(s);
        }
    }
    if !wait_for(&arrivals, n + 1 + total, Duration::from_secs(300)).await {
        eprintln!("not every paced event was delivered");
        return ExitCode::FAILURE;
    }
    let mut lat: Vec<f64> = {
        let a = arrivals.lock().unwrap();
        stored
            .iter()
            .map(|(id, at)| a[id].saturating_duration_since(*at).as_secs_f64() * 1000.0)
            .collect()
    };
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let rss = peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let report = format!(
        "{BEGIN}\n\
| measure | target | result |\n|---|---|---|\n\
| deliveries/s ({n} events stored at once, concurrency {c}) | ≥ 5,000 | {throughput:.0} |\n\
| stored → delivered p50 at {r}/s for {s} s | | {p50:.1} ms |\n\
| stored → delivered p99 at {r}/s for {s} s | ≤ 20 ms | {p99:.1} ms |\n\
| stored → delivered max at {r}/s | | {max:.1} ms |\n\
| forwarder peak RSS (VmHWM) | ≤ 32 MiB | {rss:.1} MiB |\n\n\
{cpus} CPUs shared by the forwarder, nats-server and the receiver and publisher (one process); \
the {n} events were published in {pub_s:.2} s. `scripts/bench-forward`.\n{END}",
        c = cli.concurrency,
        r = cli.rate,
        s = cli.seconds,
        p50 = q(0.50),
        p99 = q(0.99),
        max = lat.last().copied().unwrap_or(0.0),
        pub_s = published_in.as_secs_f64(),
    );
    println!("{report}");
    if let Some(path) = cli.write {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let new = match (text.find(BEGIN), text.find(END)) {
            (Some(b), Some(e)) if b < e => {
                format!("{}{report}{}", &text[..b], &text[e + END.len()..])
            }
            _ => format!("{text}\n## Forwarding\n\n{report}\n"),
        };
        std::fs::write(&path, new).expect("write the results");
    }
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}
