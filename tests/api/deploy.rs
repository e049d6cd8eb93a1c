//! Running the stack's processes natively: what a compose service runs, with
//! its container paths, host names and ports mapped onto this machine. The
//! files themselves are read by [`crate::repo_files`], re-exported here.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::nats_server_bin;

pub use crate::repo_files::*;

/// A nats-server run the way a compose service runs it: the service's
/// command and environment, its bind-mounted files read from the repository
/// and its named volumes in a temporary directory, on loopback ports.
pub struct NatsProcess {
    child: Option<Child>,
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    dir: tempfile::TempDir,
}

impl NatsProcess {
    /// `extra_args` go after the service's own (ports, cluster listen);
    /// `env` is laid over the service's environment.
    pub fn start(
        service: &Service<'_>,
        client_port: u16,
        monitor_port: u16,
        extra_args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("nats dir");
        let mut args = service.command();
        // The official image runs `nats-server` with the command as arguments.
        if args.first().is_some_and(|a| a == "nats-server") {
            args.remove(0);
        }
        for (source, target) in service.volumes() {
            let local = match source {
                VolumeSource::Host(path) => {
                    assert!(
                        path.exists(),
                        "{}: {} is missing",
                        service.name,
                        path.display()
                    );
                    path
                }
                VolumeSource::Named(name) => {
                    let p = dir.path().join(name);
                    std::fs::create_dir_all(&p).expect("volume dir");
                    p
                }
            };
            for arg in &mut args {
                if arg == &target {
                    *arg = local.to_string_lossy().into_owned();
                }
            }
        }
        args.extend(
            [
                "--addr",
                "127.0.0.1",
                "--port",
                &client_port.to_string(),
                "--http_port",
                &monitor_port.to_string(),
            ]
            .map(str::to_owned),
        );
        args.extend_from_slice(extra_args);
        let mut environment = service.environment();
        environment.extend(env.clone());

        let log = std::fs::File::create(dir.path().join("nats-server.log")).expect("log file");
        let child = Command::new(nats_server_bin())
            .args(&args)
            .env_clear()
            .envs(&environment)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        let mut nats = NatsProcess {
            child: Some(child),
            name: service.name.clone(),
            client_port,
            monitor_port,
            dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", client_port)).is_err() {
            let exited = nats
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && start.elapsed() < Duration::from_secs(30),
                "{} did not start ({exited:?}) with {args:?}:\n{}",
                nats.name,
                nats.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    pub fn monitor_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.monitor_port, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server at once (no lame-duck mode), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary built here for a program the image has under /usr/local/bin:
/// the bridge itself, or an example (which `cargo test` builds next to the
/// test binary).
pub fn native_program(container_path: &str) -> PathBuf {
    // Already a program of this machine (a Python example's interpreter).
    if !container_path.starts_with("/usr/local/bin/") && Path::new(container_path).is_file() {
        return PathBuf::from(container_path);
    }
    let name = Path::new(container_path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name == "fastpix-nats-bridge" {
        return PathBuf::from(env!("CARGO_BIN_EXE_fastpix-nats-bridge"));
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// A program run natively as a compose service would run it, its output
/// kept in files; killed when dropped.
pub struct ServiceProcess {
    child: Option<Child>,
    pub name: String,
    dir: tempfile::TempDir,
}

impl ServiceProcess {
    pub fn start(name: &str, argv: &[String], env: &BTreeMap<String, String>) -> Self {
        let dir = tempfile::tempdir().expect("service dir");
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let (program, args) = argv.split_first().expect("a program to run");
        let child = Command::new(native_program(program))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({argv:?}): {e}"));
        ServiceProcess {
            child: Some(child),
            name: name.to_owned(),
            dir,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn exit_code(&mut self) -> Option<i32> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .and_then(|s| s.code())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
