//! Reading the stack's own files (compose files, manifests, NATS configs) and
//! running their processes natively: what a compose service runs, with its
//! container paths, host names and ports mapped onto this machine.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::nats_server_bin;

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn read_repo_file(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every YAML document in `text`, merge keys (`<<: *anchor`) applied, as JSON.
pub fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| {
            let mut value = <serde_norway::Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{what}: bad merge key: {e}"));
            serde_json::to_value(&value)
                .unwrap_or_else(|e| panic!("{what}: not representable as JSON: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A YAML file of the repository holding exactly one document.
pub fn yaml_file(relative: &str) -> Value {
    let mut docs = yaml_documents(&read_repo_file(relative), relative);
    assert_eq!(docs.len(), 1, "{relative} holds one YAML document");
    docs.remove(0)
}

/// A compose file, parsed.
pub struct Compose {
    pub path: &'static str,
    pub doc: Value,
}

impl Compose {
    pub fn load(path: &'static str) -> Self {
        Compose {
            path,
            doc: yaml_file(path),
        }
    }

    /// Directory relative paths in the file are resolved against.
    pub fn dir(&self) -> PathBuf {
        repo_path(self.path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| repo_path("."))
    }

    pub fn service_names(&self) -> Vec<String> {
        self.doc["services"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn service(&self, name: &str) -> Service<'_> {
        let value = &self.doc["services"][name];
        assert!(
            value.is_object(),
            "{}: no service `{name}` (has {:?})",
            self.path,
            self.service_names()
        );
        Service {
            compose: self,
            name: name.to_owned(),
            value,
        }
    }
}

/// One service of a compose file.
pub struct Service<'a> {
    pub compose: &'a Compose,
    pub name: String,
    pub value: &'a Value,
}

/// A command as compose accepts it: a list, or a string split on spaces.
fn command_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Service<'_> {
    /// `environment`, as a map or a `KEY=VALUE` list, interpolated as
    /// compose does when the user's shell sets nothing.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let pairs: Vec<(String, String)> = match &self.value["environment"] {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (kv.to_owned(), String::new()),
                })
                .collect(),
            _ => Vec::new(),
        };
        pairs
            .into_iter()
            .map(|(k, v)| (k, interpolate_unset(&v)))
            .collect()
    }

    pub fn command(&self) -> Vec<String> {
        command_list(&self.value["command"])
    }

    pub fn entrypoint(&self) -> Vec<String> {
        command_list(&self.value["entrypoint"])
    }

    /// The healthcheck's `test` without its `CMD`/`CMD-SHELL` marker.
    pub fn healthcheck_test(&self) -> Vec<String> {
        let mut test = command_list(&self.value["healthcheck"]["test"]);
        if matches!(test.first().map(String::as_str), Some("CMD" | "CMD-SHELL")) {
            test.remove(0);
        }
        test
    }

    /// `depends_on` as service → condition.
    pub fn depends_on(&self) -> BTreeMap<String, String> {
        match &self.value["depends_on"] {
            Value::Array(names) => names
                .iter()
                .map(|n| (scalar(n), "service_started".to_owned()))
                .collect(),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), scalar(&v["condition"])))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Short-syntax volumes as (source, target): a host path made absolute,
    /// or a named volume's name.
    pub fn volumes(&self) -> Vec<(VolumeSource, String)> {
        self.value["volumes"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str())
                    .map(|spec| {
                        let mut parts = spec.split(':');
                        let source = parts.next().unwrap_or_default();
                        let target = parts.next().unwrap_or_default().to_owned();
                        let source = if source.starts_with('.') || source.starts_with('/') {
                            VolumeSource::Host(self.compose.dir().join(source))
                        } else {
                            VolumeSource::Named(source.to_owned())
                        };
                        (source, target)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `${NAME:-default}` with NAME unset is `default`; anything else (a plain
/// value, or a required `${NAME:?message}`) is kept as written.
pub fn interpolate_unset(value: &str) -> String {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|inner| inner.split_once(":-"))
        .map_or_else(|| value.to_owned(), |(_, default)| default.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    Host(PathBuf),
    Named(String),
}

/// `nats://nats-1:4222,nats://nats-2:4222` with each compose host name
/// replaced by the loopback address and port `ports` maps it to.
pub fn localize_urls(urls: &str, ports: &BTreeMap<String, u16>) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
            let host = rest.split(':').next().unwrap_or(rest);
            let port = ports
                .get(host)
                .unwrap_or_else(|| panic!("{url}: no local port for host `{host}`"));
            format!("{scheme}://127.0.0.1:{port}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

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

/// One stage of the Dockerfile: its base image (global ARGs substituted),
/// its `AS` name and its instructions.
pub struct Stage {
    pub image: String,
    pub name: String,
    pub ops: Vec<(String, String)>,
}

/// The Dockerfile's stages: continuation lines joined, comments dropped.
pub fn dockerfile_stages() -> Vec<Stage> {
    let text = read_repo_file("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        if let Some((op, args)) = current.trim().split_once(char::is_whitespace) {
            instructions.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        }
        current.clear();
    }
    let mut stages: Vec<Stage> = Vec::new();
    // ARGs declared before the first FROM may be used in FROM lines.
    let mut global_args: Vec<(String, String)> = Vec::new();
    for (op, args) in instructions {
        if op == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let mut image = words.first().copied().unwrap_or_default().to_owned();
            for (k, v) in &global_args {
                image = image.replace(&format!("${{{k}}}"), v);
            }
            let name = words
                .iter()
                .skip_while(|w| !w.eq_ignore_ascii_case("as"))
                .nth(1)
                .copied()
                .unwrap_or_default()
                .to_owned();
            stages.push(Stage {
                image,
                name,
                ops: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.ops.push((op, args));
        } else if op == "ARG"
            && let Some((k, v)) = args.split_once('=')
        {
            global_args.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    stages
}

/// The image's ENTRYPOINT (exec form), from the Dockerfile's last stage.
pub fn image_entrypoint() -> Vec<String> {
    let stages = dockerfile_stages();
    let entrypoint = stages
        .last()
        .and_then(|s| s.ops.iter().rev().find(|(op, _)| op == "ENTRYPOINT"))
        .map(|(_, a)| a.clone())
        .expect("the runtime stage has an ENTRYPOINT");
    serde_json::from_str(&entrypoint).expect("ENTRYPOINT in exec (JSON) form")
}

/// What a container of the project's image runs for `service`: compose's
/// `entrypoint` or the image's, then `command` (the image's CMD is dropped
/// when compose sets an entrypoint, and the image's CMD here is `serve`).
pub fn container_argv(service: &Service<'_>) -> Vec<String> {
    let entrypoint = service.entrypoint();
    let mut argv = if entrypoint.is_empty() {
        image_entrypoint()
    } else {
        entrypoint
    };
    argv.extend(service.command());
    argv
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
