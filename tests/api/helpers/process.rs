//! The real binary, run as a child process.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

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

    /// POSTs `body` to `/webhooks/fastpix`, signed with [`SECRET`] as FastPix signs.
    pub async fn post_signed(&self, body: String) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/webhooks/fastpix"))
            .header("FastPix-Signature", sign(SECRET, body.as_bytes()))
            .body(body)
            .send()
            .await
            .expect("the bridge answers")
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
