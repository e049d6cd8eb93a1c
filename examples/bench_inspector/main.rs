//! Inspector benchmark (not a test): stores N events straight into JetStream
//! (as the bridge would, headers included), runs the release inspector on
//! them, and measures how long the index takes to build, lookup latency by
//! event id and by object, the inspector's RSS, and the page's first paint.
//!
//!   scripts/bench-inspector [--events 1000000] [--write BENCHMARKS.md]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::context::PublishAckFuture;

const TOKEN: &str = "bench-inspector-token-0123456789";

struct Args {
    events: u64,
    nats_server: PathBuf,
    inspector: PathBuf,
    python: Option<String>,
    chromium: Option<String>,
    write: Option<PathBuf>,
    command: String,
}

fn args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        nats_server: PathBuf::from("nats-server"),
        inspector: PathBuf::from("target/release/fastpix-nats-bridge"),
        python: std::env::var("TEST_PYTHON").ok(),
        chromium: std::env::var("CHROMIUM_BIN").ok(),
        write: None,
        command: "scripts/bench-inspector".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => a.events = value().parse().expect("--events N"),
            "--nats-server" => a.nats_server = value().into(),
            "--inspector" => a.inspector = value().into(),
            "--write" => a.write = Some(value().into()),
            "--command" => a.command = value(),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args = args();
    let store = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut nats = Command::new(&args.nats_server)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let url = format!("nats://127.0.0.1:{port}");
    let client = loop {
        if let Ok(c) = async_nats::connect(&url).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "FASTPIX".into(),
        subjects: vec!["fastpix.>".into()],
        max_age: Duration::from_secs(30 * 86400),
        duplicate_window: Duration::from_secs(120),
        // As the bridge creates its streams.
        allow_direct: true,
        ..Default::default()
    })
    .await
    .expect("stream");

    // Store the events: pipelined publishes, acks awaited a window at a time.
    let types = [
        ("video.media.created", "media"),
        ("video.media.ready", "media"),
        ("video.upload.created", "upload"),
        ("video.live_stream.active", "live_stream"),
        ("video.live_stream.idle", "live_stream"),
        ("video.media.updated", "media"),
    ];
    let objects = (args.events / 10).max(1);
    let started = Instant::now();
    let mut window: Vec<PublishAckFuture> = Vec::with_capacity(2000);
    for i in 0..args.events {
        let (t, object_type) = types[(i % types.len() as u64) as usize];
        let id = format!("evt-{i:08}");
        let object = format!("obj-{:07}", i % objects);
        let body = format!(
            "{{\"type\":\"{t}\",\"id\":\"{id}\",\"object\":{{\"type\":\"{object_type}\",\"id\":\"{object}\"}},\"workspace\":{{\"id\":\"ws-bench\"}},\"status\":\"ready\",\"data\":{{\"id\":\"{object}\",\"playbackIds\":[{{\"id\":\"pb-{i}\",\"accessPolicy\":\"public\"}}]}},\"createdAt\":\"2026-05-11T20:42:16.361817248Z\"}}"
        );
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", id.as_str());
        h.insert("FastPix-Event-Id", id.as_str());
        h.insert("FastPix-Event-Type", t);
        h.insert("FastPix-Object-Type", object_type);
        h.insert("FastPix-Object-Id", object.as_str());
        h.insert("FastPix-Workspace-Id", "ws-bench");
        h.insert("Content-Type", "application/json");
        let subject = format!("fastpix.{t}");
        window.push(
            js.publish_with_headers(subject, h, body.into())
                .await
                .expect("publish"),
        );
        if window.len() == 2000 {
            for ack in window.drain(..) {
                ack.await.expect("stored");
            }
        }
    }
    for ack in window.drain(..) {
        ack.await.expect("stored");
    }
    let store_secs = started.elapsed().as_secs_f64();
    println!(
        "stored {} events in {store_secs:.1}s ({:.0}/s)",
        args.events,
        args.events as f64 / store_secs
    );

    // The inspector, as released.
    let http_port = free_port();
    let admin_port = free_port();
    let started = Instant::now();
    let mut inspector = Command::new(&args.inspector)
        .arg("inspect")
        .env("FASTPIX_BRIDGE__NATS__URL", &url)
        .env(
            "FASTPIX_BRIDGE__INSPECT__LISTEN",
            format!("127.0.0.1:{http_port}"),
        )
        .env(
            "FASTPIX_BRIDGE__INSPECT__ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        )
        .env("FASTPIX_BRIDGE__INSPECT__TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("inspector starts");
    let pid = inspector.id();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            http.get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
        }
    };
    loop {
        if let Some(o) = get("/api/overview".into()).await
            && o["index_pending"] == 0
            && o["windows"]["month"]["total"].as_u64() == Some(args.events)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let index_secs = started.elapsed().as_secs_f64();
    println!(
        "index built in {index_secs:.1}s ({:.0} events/s)",
        args.events as f64 / index_secs
    );

    // Lookups spread over the whole stream, one at a time.
    let mut by_id = Vec::new();
    let mut by_object = Vec::new();
    for k in 0..200u64 {
        let i = (k * 7919 * 127) % args.events;
        let t = Instant::now();
        let r = get(format!("/api/events?id=evt-{i:08}"))
            .await
            .expect("answer");
        by_id.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r["events"][0]["seq"], i + 1, "event {i} found");
        let o = (k * 104_729) % objects;
        let t = Instant::now();
        let r = get(format!("/api/objects/obj-{o:07}/events"))
            .await
            .expect("answer");
        by_object.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(
            !r["events"].as_array().expect("events").is_empty(),
            "object {o} found"
        );
    }
    by_id.sort_by(f64::total_cmp);
    by_object.sort_by(f64::total_cmp);
    let t = Instant::now();
    let page = get("/api/events?limit=50".into()).await.expect("answer");
    let newest_page_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(50));
    let t = Instant::now();
    get("/api/events?family=upload&limit=50".into())
        .await
        .expect("answer");
    let family_page_ms = t.elapsed().as_secs_f64() * 1000.0;
    let rss = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");

    // First paint of the page, in headless Chromium, when it is installed.
    let paint = match (&args.python, &args.chromium) {
        (Some(py), Some(chromium)) => {
            let out = Command::new(py)
                .arg("tests/python/first_paint.py")
                .env("INSPECTOR_URL", format!("{base}/"))
                .env("TOKEN", TOKEN)
                .env("CHROMIUM_BIN", chromium)
                .output()
                .expect("python runs");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        }
        _ => None,
    };
    let _ = inspector.kill();
    let _ = inspector.wait();
    let _ = nats.kill();
    let _ = nats.wait();

    let paint_text = paint.map_or(
        "not measured (no TEST_PYTHON/CHROMIUM_BIN)".to_owned(),
        |p| format!("{p:.0} ms"),
    );
    let report = format!(
        "## Inspector\n\n\
         Command: `{}` ({} events stored straight into JetStream, {} objects; {} build; this 2-core machine, shared).\n\n\
         | what | result | target |\n| --- | --- | --- |\n\
         | lookup by event id (`/api/events?id=`), 200 lookups | p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms | ≤ 200 ms |\n\
         | object timeline (`/api/objects/{{id}}/events`), 200 lookups | p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms | ≤ 200 ms |\n\
         | newest page, 50 events | {:.1} ms | |\n\
         | page filtered by family, 50 events | {:.1} ms | |\n\
         | inspector RSS after the lookups (peak) | {:.1} MiB ({:.1} MiB) | ≤ 64 MiB |\n\
         | first contentful paint of the page, loopback | {} | ≤ 1 s |\n\
         | storing the events (not the inspector) | {:.1} s | |\n\
         | building the index from the stream | {:.1} s ({:.0} events/s) | |\n",
        args.command,
        args.events,
        objects,
        if args.inspector.to_string_lossy().contains("/debug/") {
            "debug"
        } else {
            "release"
        },
        percentile(&by_id, 0.5),
        percentile(&by_id, 0.95),
        by_id[by_id.len() - 1],
        percentile(&by_object, 0.5),
        percentile(&by_object, 0.95),
        by_object[by_object.len() - 1],
        newest_page_ms,
        family_page_ms,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        paint_text,
        store_secs,
        index_secs,
        args.events as f64 / index_secs,
    );
    println!("{report}");
    if let Some(path) = args.write {
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let kept = match old.find("## Inspector\n") {
            Some(start) => {
                let rest = &old[start + 1..];
                let end = rest.find("\n## ").map_or(old.len(), |e| start + 1 + e + 1);
                format!("{}{}", &old[..start], &old[end..])
            }
            None => old,
        };
        std::fs::write(
            &path,
            format!(
                "{}\n{report}",
                kept.trim_end_matches('\n').to_owned() + "\n"
            ),
        )
        .expect("write results");
    }
}
