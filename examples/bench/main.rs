//! Load benchmark of the bridge against two references on the same NATS.
//!
//! `bench run` starts a nats-server (JetStream, file storage), then, for each
//! round, the HTTP ceiling, the floor and the release bridge in turn (the order
//! rotates every round), drives each with the same generator, checks the
//! stream holds exactly the acknowledged events, and reports medians.
//! `bench run --burst` drives the bridge alone, with its defaults, at 1x,
//! 2x and 4x `http.max_in_flight` connections (a burst).
//! `scripts/bench` builds and runs it. `bench load` drives any URL;
//! `bench ceiling` and `bench floor` are the reference servers.

mod load;
mod publish;
mod reference;

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use load::{LoadConfig, LoadResult};

/// The references use the bridge's allocator, so the comparison measures
/// the work done, not the allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Secret the bridge is started with; base64 of "benchmark-signing-secret".
const SECRET: &str = "YmVuY2htYXJrLXNpZ25pbmctc2VjcmV0";
const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";
const BURST_BEGIN: &str = "<!-- bench-burst:begin -->";
const BURST_END: &str = "<!-- bench-burst:end -->";
/// The bridge's `jetstream.max_bytes` in the bench: 64 GiB, past any run.
const BENCH_STREAM_MAX_BYTES: &str = "68719476736";

#[derive(Parser)]
#[command(about = "Load benchmark: the bridge against an HTTP ceiling and a JetStream floor")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// The whole benchmark (the default).
    Run(RunArgs),
    /// Drive one URL and print the result as JSON.
    Load {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = reference::PATH)]
        path: String,
        #[arg(long, default_value = SECRET)]
        secret: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// The JetStream publish path alone: async-nats's JetStream publish
    /// against the bridge's ack router, client and server CPU per message.
    Publish {
        #[arg(long, env = "NATS_SERVER_BIN", default_value = "nats-server")]
        nats_server: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        #[arg(long, default_value_t = 6)]
        rounds: usize,
    },
    /// Reference server: read the body, answer 200.
    Ceiling {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Reference server: parse type and id, publish with Nats-Msg-Id, answer after the ack.
    Floor {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        nats: String,
        #[arg(long)]
        stream: String,
        #[arg(long)]
        prefix: String,
    },
}

#[derive(Parser, Clone, Default)]
struct RunArgs {
    /// A few seconds, one round, no file written: checks that everything runs
    /// and that stored == acknowledged, not how fast.
    #[arg(long)]
    quick: bool,
    /// The burst scenario instead: the bridge alone at 1x, 2x and 4x its
    /// `http.max_in_flight` connections [rounds default: 3].
    #[arg(long)]
    burst: bool,
    /// Seconds measured per run [default: 10; quick: 2].
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of load before measuring [default: 1; quick: 0].
    #[arg(long)]
    warmup: Option<f64>,
    /// Rounds of ceiling, floor and bridge [default: 5; quick: 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Keep-alive connections [default: 64; quick: 16].
    #[arg(long)]
    connections: Option<usize>,
    /// The bridge binary [default: fastpix-nats-bridge next to this example's folder].
    #[arg(long)]
    bridge: Option<PathBuf>,
    /// A bridge binary built from another commit, measured in every round
    /// next to the others: "bridge/floor no lower than before a change".
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// How the results name the baseline (its commit) [default: its path].
    #[arg(long)]
    baseline_label: Option<String>,
    /// nats-server binary.
    #[arg(long, env = "NATS_SERVER_BIN", default_value = "nats-server")]
    nats_server: PathBuf,
    /// Markdown file whose `bench:begin`/`bench:end` section receives the results.
    #[arg(long)]
    write: Option<PathBuf>,
    /// The command line to record in the results [default: this one].
    #[arg(long)]
    command: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Cmd::Run(RunArgs::default()));
    // The servers get tokio's default runtime, as the bridge does; the
    // generator gets one thread so it takes as little CPU as it can.
    let runtime = match command {
        Cmd::Ceiling { .. } | Cmd::Floor { .. } | Cmd::Publish { .. } => {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
        }
        Cmd::Run(_) | Cmd::Load { .. } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Cmd::Run(args) => run(args).await,
            Cmd::Load {
                addr,
                path,
                secret,
                connections,
                duration,
                warmup,
            } => {
                let result = load::run(LoadConfig {
                    addr,
                    path,
                    secret_b64: secret,
                    connections,
                    warmup: Duration::from_secs_f64(warmup),
                    duration: Duration::from_secs_f64(duration),
                    tag: std::process::id(),
                })
                .await?;
                println!(
                    "{}",
                    serde_json::to_string(&result).map_err(|e| e.to_string())?
                );
                Ok(())
            }
            Cmd::Ceiling { listen } => reference::ceiling(listen).await,
            Cmd::Publish {
                nats_server,
                messages,
                in_flight,
                rounds,
            } => publish::run(&nats_server, messages, in_flight, rounds).await,
            Cmd::Floor {
                listen,
                nats,
                stream,
                prefix,
            } => reference::floor(listen, &nats, &stream, &prefix).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ceiling,
    Floor,
    Bridge,
    /// The bridge built from another commit (`--baseline`), run the same way.
    Baseline,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Ceiling => "ceiling",
            Mode::Floor => "floor",
            Mode::Bridge => "bridge",
            Mode::Baseline => "baseline",
        }
    }

    fn stores(self) -> bool {
        self != Mode::Ceiling
    }

    /// A build of the bridge (this one or the baseline).
    fn is_bridge(self) -> bool {
        matches!(self, Mode::Bridge | Mode::Baseline)
    }
}

/// One server under one load.
#[derive(Debug, Clone)]
struct Sample {
    round: usize,
    mode: Mode,
    load: LoadResult,
    /// Messages in the stream afterwards (None for the ceiling).
    stored: Option<u64>,
    peak_rss_kib: u64,
    /// Bridge only: RSS once ready, before any request.
    idle_rss_kib: Option<u64>,
    /// Bridge only: process start to the first `/readyz` 200.
    ready_after: Option<Duration>,
    /// CPU time (user + system) per answered request, in microseconds: of
    /// the server, and of nats-server. Steadier than req/s on a shared machine.
    server_cpu_us: f64,
    nats_cpu_us: f64,
    /// The generator's own CPU per request, and how busy the whole machine
    /// was (0 to 1): with all three on two cores, these say whether a server
    /// was limited by CPU or by something else.
    load_cpu_us: f64,
    machine_busy: f64,
}

impl Sample {
    fn consistent(&self) -> bool {
        self.stored.is_none_or(|s| s == self.load.acknowledged)
    }
}

#[derive(Clone)]
struct Plan {
    duration: f64,
    warmup: f64,
    rounds: usize,
    connections: usize,
    quick: bool,
    bridge: PathBuf,
    nats_server: PathBuf,
    command: String,
    /// Settings given to the bridge on top of its defaults.
    bridge_env: Vec<(String, String)>,
    /// `--baseline`: its binary and how to name it.
    baseline: Option<(PathBuf, String)>,
}

impl Plan {
    /// The servers of one round, the baseline last when there is one.
    fn modes(&self) -> Vec<Mode> {
        let mut modes = vec![Mode::Ceiling, Mode::Floor, Mode::Bridge];
        if self.baseline.is_some() {
            modes.push(Mode::Baseline);
        }
        modes
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let quick = args.quick;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bridge = match args.bridge {
        Some(b) => b,
        None => exe
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("fastpix-nats-bridge"))
            .ok_or("cannot locate the bridge binary; pass --bridge")?,
    };
    if !bridge.is_file() {
        return Err(format!(
            "bridge binary {} not found; build it (cargo build --release) or pass --bridge",
            bridge.display()
        ));
    }
    if let Some(b) = &args.baseline
        && !b.is_file()
    {
        return Err(format!("baseline binary {} not found", b.display()));
    }
    let baseline = args.baseline.map(|b| {
        let label = args
            .baseline_label
            .unwrap_or_else(|| b.display().to_string());
        (b, label)
    });
    let plan = Plan {
        duration: args.duration.unwrap_or(if quick { 2.0 } else { 10.0 }),
        warmup: args.warmup.unwrap_or(if quick { 0.0 } else { 1.0 }),
        rounds: args
            .rounds
            .unwrap_or(match (quick, args.burst) {
                (true, _) => 1,
                (false, true) => 3,
                (false, false) => 5,
            })
            .max(1),
        connections: args
            .connections
            .unwrap_or(if quick { 16 } else { 64 })
            .max(1),
        quick,
        bridge,
        nats_server: args.nats_server,
        command: args
            .command
            .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" ")),
        bridge_env: Vec::new(),
        baseline,
    };

    let store = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let nats = Nats::start(&plan.nats_server, store.path())?;
    let client = async_nats::connect(nats.url())
        .await
        .map_err(|e| format!("cannot connect to the benchmark nats-server: {e}"))?;
    let js = async_nats::jetstream::new(client);
    if args.burst {
        return burst(&plan, &nats, &js, store.path(), args.write.as_deref()).await;
    }
    let modes = plan.modes();
    eprintln!(
        "==> {} round(s) x ({}): {} connections, {}s warm-up + {}s each",
        plan.rounds,
        modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        plan.connections,
        plan.warmup,
        plan.duration
    );

    let mut samples = Vec::new();
    for round in 1..=plan.rounds {
        // The order rotates every round; with a baseline, it and the bridge
        // also trade places every other round, so that neither always runs
        // right after the other (a run can feel its predecessor's stream
        // being deleted).
        let mut order: Vec<Mode> = (0..modes.len())
            .map(|i| modes[(i + round - 1) % modes.len()])
            .collect();
        if plan.baseline.is_some() && round % 2 == 0 {
            for mode in &mut order {
                *mode = match *mode {
                    Mode::Bridge => Mode::Baseline,
                    Mode::Baseline => Mode::Bridge,
                    other => other,
                };
            }
        }
        for mode in order {
            let sample = measure(&plan, &nats, &js, store.path(), round, mode).await?;
            eprintln!(
                "    round {round} {:<7} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  non-2xx {}  errors {}  peak RSS {:.1} MiB  CPU {:.1} µs/req  stored {}",
                mode.name(),
                sample.load.rps,
                sample.load.p50_ms,
                sample.load.p99_ms,
                sample.load.p999_ms,
                sample.load.non_2xx,
                sample.load.errors,
                mib(sample.peak_rss_kib),
                sample.server_cpu_us,
                match sample.stored {
                    Some(s) => format!("{s} of {} acknowledged", sample.load.acknowledged),
                    None => "-".to_owned(),
                },
            );
            samples.push(sample);
        }
    }

    let report = report(&plan, &samples);
    println!("{report}");
    if let Some(path) = &args.write {
        write_section(path, &report)?;
        eprintln!("==> results written to {}", path.display());
    }
    let inconsistent: Vec<_> = samples.iter().filter(|s| !s.consistent()).collect();
    if !inconsistent.is_empty() {
        return Err(format!(
            "stored != acknowledged in {} run(s): {:?}",
            inconsistent.len(),
            inconsistent
                .iter()
                .map(|s| (s.round, s.mode.name(), s.stored, s.load.acknowledged))
                .collect::<Vec<_>>()
        ));
    }
    if let Some(s) = samples.iter().find(|s| s.load.acknowledged == 0) {
        return Err(format!(
            "{} answered no request with 2xx in round {}",
            s.mode.name(),
            s.round
        ));
    }
    Ok(())
}

async fn measure(
    plan: &Plan,
    nats: &Nats,
    js: &async_nats::jetstream::Context,
    dir: &Path,
    round: usize,
    mode: Mode,
) -> Result<Sample, String> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = format!("BENCH_{}_{round}", mode.name().to_uppercase());
    let prefix = format!("bench.r{round}.{}", mode.name());
    let log_path = dir.join(format!("{}-{round}.log", mode.name()));
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let port_s = addr.to_string();
    let (mut command, ready_addr) = match mode {
        Mode::Ceiling => {
            let mut c = Command::new(&exe);
            c.args(["ceiling", "--listen", &port_s]);
            (c, addr)
        }
        Mode::Floor => {
            let mut c = Command::new(&exe);
            c.args(["floor", "--listen", &port_s, "--nats", &nats.url()])
                .args(["--stream", &stream, "--prefix", &prefix]);
            (c, addr)
        }
        Mode::Bridge | Mode::Baseline => {
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let binary = match (&plan.baseline, mode) {
                (Some((baseline, _)), Mode::Baseline) => baseline,
                _ => &plan.bridge,
            };
            let mut c = Command::new(binary);
            c.env_clear();
            if mode == Mode::Bridge {
                // A soak writes more than the default 8 GiB bound: the bench
                // measures speed, never a full stream. (A baseline built
                // before the bound would refuse the unknown setting.)
                c.env(
                    "FASTPIX_BRIDGE__JETSTREAM__MAX_BYTES",
                    BENCH_STREAM_MAX_BYTES,
                );
            }
            c.env("FASTPIX_BRIDGE__HTTP__LISTEN", &port_s)
                .env("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", admin.to_string())
                .env("FASTPIX_BRIDGE__NATS__URL", nats.url())
                .env("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)
                .env("FASTPIX_BRIDGE__JETSTREAM__STREAM", &stream)
                .env("FASTPIX_BRIDGE__SUBJECT__PREFIX", &prefix)
                .envs(plan.bridge_env.iter().cloned());
            (c, admin)
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start the {}: {e}", mode.name()))?;
    let mut server = Server { child };
    let ready = wait_ready(&mut server, ready_addr, Duration::from_secs(30)).await;
    let ready_after = started.elapsed();
    if let Err(e) = ready {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(format!(
            "the {} did not become ready: {e}\n{log}",
            mode.name()
        ));
    }
    let pid = server.child.id();
    let idle_rss_kib = if mode.is_bridge() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some(proc_status(pid, "VmRSS:").unwrap_or(0))
    } else {
        None
    };

    let cpu_before = (
        cpu_time(pid),
        cpu_time(nats.server.child.id()),
        cpu_time(std::process::id()),
        machine_ticks(),
    );
    let load = load::run(LoadConfig {
        addr,
        path: reference::PATH.to_owned(),
        secret_b64: SECRET.to_owned(),
        connections: plan.connections,
        warmup: Duration::from_secs_f64(plan.warmup),
        duration: Duration::from_secs_f64(plan.duration),
        tag: (round as u32) << 8 | mode as u32,
    })
    .await?;
    let peak_rss_kib = proc_status(pid, "VmHWM:").unwrap_or(0);
    let answered = (load.acknowledged + load.non_2xx).max(1) as f64;
    let per_request = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64() * 1e6 / answered,
        _ => 0.0,
    };
    let server_cpu_us = per_request(cpu_before.0, cpu_time(pid));
    let nats_cpu_us = per_request(cpu_before.1, cpu_time(nats.server.child.id()));
    let load_cpu_us = per_request(cpu_before.2, cpu_time(std::process::id()));
    let machine_busy = match (cpu_before.3, machine_ticks()) {
        (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
            (busy1 - busy0) as f64 / (all1 - all0) as f64
        }
        _ => 0.0,
    };
    let stored = if mode.stores() {
        let mut s = js
            .get_stream(&stream)
            .await
            .map_err(|e| format!("stream {stream}: {e}"))?;
        let messages = s
            .info()
            .await
            .map_err(|e| format!("stream {stream}: {e}"))?
            .state
            .messages;
        Some(messages)
    } else {
        None
    };
    server.stop(mode.is_bridge());
    if mode.stores() {
        // Each run starts from an empty server, so rounds stay comparable.
        let _ = js.delete_stream(&stream).await;
    }
    Ok(Sample {
        round,
        mode,
        load,
        stored,
        peak_rss_kib,
        idle_rss_kib,
        ready_after: mode.is_bridge().then_some(ready_after),
        server_cpu_us,
        nats_cpu_us,
        load_cpu_us,
        machine_busy,
    })
}

/// A child process, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    /// SIGTERM first when `graceful` (the bridge drains), then SIGKILL.
    fn stop(&mut self, graceful: bool) {
        if graceful {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop(false);
        }
    }
}

struct Nats {
    server: Server,
    port: u16,
}

impl Nats {
    fn start(bin: &Path, store: &Path) -> Result<Self, String> {
        let port = free_port()?;
        let log =
            std::fs::File::create(store.join("nats-server.log")).map_err(|e| e.to_string())?;
        // JetStream reserves each stream's max_bytes against max_file_store,
        // which defaults to 75% of the free disk: a fixed, large one keeps the
        // runs (a stream each, BENCH_STREAM_MAX_BYTES for the bridge's) from
        // depending on how full the disk is.
        let config = store.join("nats.conf");
        std::fs::write(
            &config,
            "jetstream {\n  max_file_store: 1125899906842624\n}\n",
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.join("jetstream"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || matches!(server.child.try_wait(), Ok(Some(_))) {
                server.stop(false);
                let log =
                    std::fs::read_to_string(store.join("nats-server.log")).unwrap_or_default();
                return Err(format!("nats-server did not start:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Nats { server, port })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.server.stop(false);
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Polls `GET /readyz` every millisecond until it answers 200.
async fn wait_ready(server: &mut Server, addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if get_status(addr, "/readyz").await == Some(200) {
            return Ok(());
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if start.elapsed() > limit {
            return Err(format!("/readyz not 200 after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The status of a `GET`, or None when nothing answers.
async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await.ok()?;
        if n == 0 {
            return None;
        }
        read += n;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A `VmRSS:`/`VmHWM:` figure from /proc/<pid>/status, in KiB.
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU time of a process so far, from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let all: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    Some((all - idle, all))
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        first_line_of("getconf", &["CLK_TCK"])
            .parse()
            .unwrap_or(100.0)
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn first_line_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::trim).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    non_2xx: u64,
    errors: u64,
    peak_rss_kib: u64,
    consistent: bool,
    server_cpu_us: f64,
    nats_cpu_us: f64,
    load_cpu_us: f64,
    machine_busy: f64,
}

fn summarize(samples: &[Sample], mode: Mode) -> Summary {
    let of: Vec<&Sample> = samples.iter().filter(|s| s.mode == mode).collect();
    let med = |f: fn(&LoadResult) -> f64| median(of.iter().map(|s| f(&s.load)).collect());
    Summary {
        rps: med(|l| l.rps),
        p50: med(|l| l.p50_ms),
        p99: med(|l| l.p99_ms),
        p999: med(|l| l.p999_ms),
        non_2xx: of.iter().map(|s| s.load.non_2xx).sum(),
        errors: of.iter().map(|s| s.load.errors).sum(),
        peak_rss_kib: of.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0),
        consistent: of.iter().all(|s| s.consistent()),
        server_cpu_us: median(of.iter().map(|s| s.server_cpu_us).collect()),
        nats_cpu_us: median(of.iter().map(|s| s.nats_cpu_us).collect()),
        load_cpu_us: median(of.iter().map(|s| s.load_cpu_us).collect()),
        machine_busy: median(of.iter().map(|s| s.machine_busy).collect()),
    }
}

fn report(plan: &Plan, samples: &[Sample]) -> String {
    let mut out = String::new();
    let ceiling = summarize(samples, Mode::Ceiling);
    let floor = summarize(samples, Mode::Floor);
    let bridge = summarize(samples, Mode::Bridge);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let bridge_floor = ratio(bridge.rps, floor.rps);
    let bridge_ceiling = ratio(bridge.rps, ceiling.rps);
    let bridges: Vec<&Sample> = samples.iter().filter(|s| s.mode == Mode::Bridge).collect();
    let idle = median(
        bridges
            .iter()
            .filter_map(|s| s.idle_rss_kib)
            .map(mib)
            .collect(),
    );
    let ready_ms = median(
        bridges
            .iter()
            .filter_map(|s| s.ready_after)
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect(),
    );
    let stored_ok = samples.iter().all(Sample::consistent);

    let _ = writeln!(out, "### Run\n");
    let _ = writeln!(out, "- Command: `{}`", plan.command);
    let _ = writeln!(
        out,
        "- Machine: `nproc` = {}, CPU: {}, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        first_line_of("uname", &["-r"])
    );
    let _ = writeln!(
        out,
        "- Build: {}, commit {}",
        first_line_of("rustc", &["-V"]),
        first_line_of("git", &["describe", "--always", "--dirty"])
    );
    let _ = writeln!(
        out,
        "- Load: {} keep-alive connections, {} s warm-up then {} s measured per run, ~1 KB signed FastPix events with unique ids; {} round(s) of {} (order rotating); medians over rounds.{}",
        plan.connections,
        plan.warmup,
        plan.duration,
        plan.rounds,
        plan.modes()
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        if plan.quick {
            " Quick mode: not a measurement."
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- NATS: {} (JetStream, file storage), fresh stream per run.\n",
        first_line_of(&plan.nats_server.to_string_lossy(), &["--version"])
    );

    let _ = writeln!(out, "### Medians\n");
    let _ = writeln!(
        out,
        "| server | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | errors | peak RSS MiB | CPU µs/req | nats-server CPU µs/req | generator CPU µs/req | machine busy | stored == 2xx |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let baseline = plan
        .baseline
        .as_ref()
        .map(|_| summarize(samples, Mode::Baseline));
    let mut rows = vec![
        (Mode::Ceiling, &ceiling),
        (Mode::Floor, &floor),
        (Mode::Bridge, &bridge),
    ];
    if let Some(b) = &baseline {
        rows.push((Mode::Baseline, b));
    }
    for (mode, s) in rows {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}% | {} |",
            mode.name(),
            s.rps,
            s.p50,
            s.p99,
            s.p999,
            s.non_2xx,
            s.errors,
            mib(s.peak_rss_kib),
            s.server_cpu_us,
            s.nats_cpu_us,
            s.load_cpu_us,
            s.machine_busy * 100.0,
            if mode.stores() {
                if s.consistent { "yes" } else { "NO" }
            } else {
                "n/a"
            }
        );
    }
    let _ = writeln!(
        out,
        "\nbridge/floor = **{bridge_floor:.3}**, bridge/ceiling = **{bridge_ceiling:.3}**; bridge idle RSS {idle:.1} MiB; bridge start → `/readyz` 200 in {ready_ms:.1} ms (medians).",
    );
    let _ = writeln!(
        out,
        "CPU per request: the bridge spends {:.1} µs more than the floor ({:.2}x); the floor {:.1} µs more than the ceiling.\n",
        bridge.server_cpu_us - floor.server_cpu_us,
        ratio(bridge.server_cpu_us, floor.server_cpu_us),
        floor.server_cpu_us - ceiling.server_cpu_us,
    );
    let against_baseline = baseline.as_ref().zip(plan.baseline.as_ref()).map(|(b, (_, label))| {
        let baseline_floor = ratio(b.rps, floor.rps);
        // Each round's bridge and baseline ran next to each other, on the
        // same nats-server: their ratio is steadier than either figure.
        let paired: Vec<String> = (1..=plan.rounds)
            .filter_map(|round| {
                let rps = |mode| {
                    samples
                        .iter()
                        .find(|s| s.round == round && s.mode == mode)
                        .map(|s| s.load.rps)
                };
                Some(format!("{:.2}", ratio(rps(Mode::Bridge)?, rps(Mode::Baseline)?)))
            })
            .collect();
        let _ = writeln!(
            out,
            "Baseline: the bridge built from `{label}`, measured in the same rounds. baseline/floor = **{baseline_floor:.3}**, bridge/baseline = **{:.3}** (by round: {}); CPU per request: bridge {:.1} µs, baseline {:.1} µs ({:.2}x).\n",
            ratio(bridge.rps, b.rps),
            paired.join(", "),
            bridge.server_cpu_us,
            b.server_cpu_us,
            ratio(bridge.server_cpu_us, b.server_cpu_us),
        );
        (label.clone(), baseline_floor)
    });

    if plan.quick {
        let _ = writeln!(
            out,
            "Quick mode (a smoke run, usually of a debug build): targets not evaluated.\n"
        );
        return out;
    }
    let yes = |ok: bool| if ok { "met" } else { "**missed**" };
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(out, "| target | figure | |");
    let _ = writeln!(out, "|---|---|---|");
    let mut rows = vec![
        (
            "bridge/floor ≥ 1.0".to_owned(),
            format!("{bridge_floor:.3}"),
            bridge_floor >= 1.0,
        ),
        (
            "p99 ≤ the floor's p99".to_owned(),
            format!("{:.2} vs {:.2} ms", bridge.p99, floor.p99),
            bridge.p99 <= floor.p99,
        ),
        (
            "CPU per stored event (server + nats-server) ≤ the floor's".to_owned(),
            format!(
                "{:.1} vs {:.1} µs",
                bridge.server_cpu_us + bridge.nats_cpu_us,
                floor.server_cpu_us + floor.nats_cpu_us
            ),
            bridge.server_cpu_us + bridge.nats_cpu_us <= floor.server_cpu_us + floor.nats_cpu_us,
        ),
        (
            "p99 ≤ 10 ms at 64 connections".to_owned(),
            format!("{:.2} ms at {}", bridge.p99, plan.connections),
            bridge.p99 <= 10.0 && plan.connections >= 64,
        ),
        (
            "zero non-2xx".to_owned(),
            format!("{}", bridge.non_2xx),
            bridge.non_2xx == 0 && bridge.errors == 0,
        ),
        (
            "stored == acknowledged".to_owned(),
            if stored_ok {
                "every run"
            } else {
                "NOT in every run"
            }
            .to_owned(),
            stored_ok,
        ),
        (
            "peak RSS ≤ 48 MiB".to_owned(),
            format!("{:.1} MiB", mib(bridge.peak_rss_kib)),
            mib(bridge.peak_rss_kib) <= 48.0,
        ),
        (
            "idle RSS ≤ 16 MiB".to_owned(),
            format!("{idle:.1} MiB"),
            idle <= 16.0,
        ),
        (
            "start → /readyz 200 ≤ 100 ms".to_owned(),
            format!("{ready_ms:.1} ms"),
            ready_ms <= 100.0,
        ),
    ];
    if let Some((label, baseline_floor)) = &against_baseline {
        rows.insert(
            1,
            (
                format!("bridge/floor ≥ baseline/floor (`{label}`)"),
                format!("{bridge_floor:.3} vs {baseline_floor:.3}"),
                bridge_floor >= *baseline_floor,
            ),
        );
    }
    for (target, figure, ok) in rows {
        let _ = writeln!(out, "| {target} | {figure} | {} |", yes(ok));
    }

    let _ = writeln!(out, "\n### Every run\n");
    let _ = writeln!(
        out,
        "| round | server | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx | errors | peak RSS MiB | idle RSS MiB | ready ms | CPU µs/req | stored / 2xx |"
    );
    let _ = writeln!(
        out,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for s in samples {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {} | {} | {:.1} | {} |",
            s.round,
            s.mode.name(),
            s.load.rps,
            s.load.p50_ms,
            s.load.p99_ms,
            s.load.p999_ms,
            s.load.max_ms,
            s.load.non_2xx,
            s.load.errors,
            mib(s.peak_rss_kib),
            s.idle_rss_kib
                .map_or("".to_owned(), |k| format!("{:.1}", mib(k))),
            s.ready_after.map_or("".to_owned(), |d| format!(
                "{:.1}",
                d.as_secs_f64() * 1000.0
            )),
            s.server_cpu_us,
            match s.stored {
                Some(n) => format!("{n} / {}", s.load.acknowledged),
                None => format!("- / {}", s.load.acknowledged),
            }
        );
    }
    out
}

/// The burst scenario: the bridge with its defaults, driven by 1x, 2x and
/// 4x `http.max_in_flight` connections, each level `plan.rounds` times.
async fn burst(
    plan: &Plan,
    nats: &Nats,
    js: &async_nats::jetstream::Context,
    dir: &Path,
    write: Option<&Path>,
) -> Result<(), String> {
    let defaults = fastpix_nats_bridge::settings::HttpSettings::default();
    let bound = if plan.quick {
        16
    } else {
        defaults.max_in_flight
    };
    let levels = [1, 2, 4];
    eprintln!(
        "==> burst: bridge at {:?} x {bound} connections, {} round(s), {}s warm-up + {}s each",
        levels, plan.rounds, plan.warmup, plan.duration
    );
    let mut samples: Vec<(usize, Sample)> = Vec::new();
    for round in 1..=plan.rounds {
        // The order of the levels rotates too, so no level always follows
        // the same one.
        let order: Vec<usize> = (0..levels.len())
            .map(|i| levels[(i + round - 1) % levels.len()])
            .collect();
        for level in order {
            let mut at = plan.clone();
            at.connections = bound * level;
            if plan.quick {
                // A small bound, so that a few seconds of a debug build
                // still make requests wait.
                at.bridge_env.push((
                    "FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT".into(),
                    bound.to_string(),
                ));
            }
            // Rounds of different levels must not share a stream name.
            let sample = measure(&at, nats, js, dir, round * 10 + level, Mode::Bridge).await?;
            eprintln!(
                "    round {round} {level}x ({} conn) {:>8.0} stored/s  p50 {:>7.2} ms  p99 {:>7.2} ms  non-2xx {}  errors {}  peak RSS {:.1} MiB  CPU µs/req bridge {:.1} nats {:.1} generator {:.1}  stored {} of {}",
                at.connections,
                sample.load.stored_rps,
                sample.load.p50_ms,
                sample.load.p99_ms,
                sample.load.non_2xx,
                sample.load.errors,
                mib(sample.peak_rss_kib),
                sample.server_cpu_us,
                sample.nats_cpu_us,
                sample.load_cpu_us,
                sample.stored.unwrap_or(0),
                sample.load.acknowledged,
            );
            samples.push((level, sample));
        }
    }
    let report = burst_report(plan, bound, &defaults, &levels, &samples);
    println!("{report}");
    if let Some(path) = write {
        write_marked(path, BURST_BEGIN, BURST_END, &report)?;
        eprintln!("==> results written to {}", path.display());
    }
    if let Some((_, s)) = samples.iter().find(|(_, s)| !s.consistent()) {
        return Err(format!(
            "stored != acknowledged: {:?} of {}",
            s.stored, s.load.acknowledged
        ));
    }
    Ok(())
}

fn burst_report(
    plan: &Plan,
    bound: usize,
    defaults: &fastpix_nats_bridge::settings::HttpSettings,
    levels: &[usize],
    samples: &[(usize, Sample)],
) -> String {
    struct Level {
        stored: f64,
        non_2xx: u64,
        errors: u64,
        p50: f64,
        p99: f64,
        rss_mib: f64,
        bridge_cpu: f64,
        nats_cpu: f64,
        load_cpu: f64,
    }
    let at = |level: usize| {
        let of: Vec<&Sample> = samples
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, s)| s)
            .collect();
        Level {
            stored: median(of.iter().map(|s| s.load.stored_rps).collect()),
            non_2xx: of.iter().map(|s| s.load.non_2xx).max().unwrap_or(0),
            errors: of.iter().map(|s| s.load.errors).max().unwrap_or(0),
            p50: median(of.iter().map(|s| s.load.p50_ms).collect()),
            p99: median(of.iter().map(|s| s.load.p99_ms).collect()),
            rss_mib: of.iter().map(|s| mib(s.peak_rss_kib)).fold(0.0, f64::max),
            bridge_cpu: median(of.iter().map(|s| s.server_cpu_us).collect()),
            nats_cpu: median(of.iter().map(|s| s.nats_cpu_us).collect()),
            load_cpu: median(of.iter().map(|s| s.load_cpu_us).collect()),
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Burst run
"
    );
    let _ = writeln!(out, "- Command: `{}`", plan.command);
    let _ = writeln!(
        out,
        "- Machine: `nproc` = {}, CPU: {}, kernel {}; build: {}, commit {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        first_line_of("uname", &["-r"]),
        first_line_of("rustc", &["-V"]),
        first_line_of("git", &["describe", "--always", "--dirty"])
    );
    let _ = writeln!(
        out,
        "- The bridge with its defaults (`max_in_flight` {}, `queue_timeout` {:?}, `max_queued` {}), {} s warm-up then {} s measured per run, {} round(s) per level; medians over rounds (non-2xx: the largest of any round; peak RSS: the largest).{}\n",
        bound,
        defaults.queue_timeout,
        defaults.max_queued,
        plan.warmup,
        plan.duration,
        plan.rounds,
        if plan.quick {
            " Quick mode: not a measurement."
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "| connections | stored events/s | of 1x | non-2xx | errors | p50 ms | p99 ms | peak RSS MiB | CPU µs/req: bridge | nats-server | generator |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let base = at(1);
    for &level in levels {
        let l = at(level);
        let _ = writeln!(
            out,
            "| {} ({level}x) | {:.0} | {:.2} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
            bound * level,
            l.stored,
            if base.stored > 0.0 {
                l.stored / base.stored
            } else {
                0.0
            },
            l.non_2xx,
            l.errors,
            l.p50,
            l.p99,
            l.rss_mib,
            l.bridge_cpu,
            l.nats_cpu,
            l.load_cpu
        );
    }
    if plan.quick {
        let _ = writeln!(out, "\nQuick mode: targets not evaluated.");
        return out;
    }
    let (two, four) = (at(2), at(4));
    let ratio = |l: &Level| {
        if base.stored > 0.0 {
            l.stored / base.stored
        } else {
            0.0
        }
    };
    let p99_cap = defaults.queue_timeout.as_secs_f64() * 1000.0 + base.p99;
    // The memory bound: the bodies of max_in_flight admitted requests (here
    // ~1 KB each) on top of the bridge's own footprint; 48 MiB is the
    // benchmark's RSS target for the bridge at its bound.
    let rss_ok = |l: &Level| l.rss_mib <= 48.0;
    let yes = |ok: bool| if ok { "met" } else { "**missed**" };
    let _ = writeln!(out, "\n| target | figure | |\n|---|---|---|");
    let rows = [
        (
            "stored/s at 2x ≥ 90% of 1x".to_owned(),
            format!("{:.2}", ratio(&two)),
            ratio(&two) >= 0.9,
        ),
        (
            "stored/s at 4x ≥ 90% of 1x".to_owned(),
            format!("{:.2}", ratio(&four)),
            ratio(&four) >= 0.9,
        ),
        (
            "non-2xx = 0 at 2x".to_owned(),
            format!("{}", two.non_2xx),
            two.non_2xx == 0,
        ),
        (
            format!("p99 ≤ queue_timeout + 1x p99 = {p99_cap:.0} ms"),
            format!("{:.2} ms at 2x, {:.2} ms at 4x", two.p99, four.p99),
            two.p99 <= p99_cap && four.p99 <= p99_cap,
        ),
        (
            "peak RSS ≤ 48 MiB (the bridge's RSS target)".to_owned(),
            format!("{:.1} MiB at 4x", four.rss_mib),
            rss_ok(&base) && rss_ok(&two) && rss_ok(&four),
        ),
    ];
    for (target, figure, ok) in rows {
        let _ = writeln!(out, "| {target} | {figure} | {} |", yes(ok));
    }
    out
}

/// Replaces the text between the `bench:begin` and `bench:end` markers of
/// `path` (creating the file, or appending the markers, when missing), so
/// prose around the figures survives a re-run.
fn write_section(path: &Path, report: &str) -> Result<(), String> {
    write_marked(path, BEGIN, END, report)
}

fn write_marked(path: &Path, begin: &str, end: &str, report: &str) -> Result<(), String> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{begin}\n{report}{end}");
    let text = match (existing.find(begin), existing.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &existing[..b], &existing[e + end.len()..])
        }
        _ if existing.is_empty() => format!("# Benchmarks\n\n{section}\n"),
        _ => format!("{}\n{section}\n", existing.trim_end()),
    };
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
