//! Reading the repository's own deploy files (compose files, the
//! Dockerfile, the Kubernetes manifests) as data: shared by the black-box
//! tests that run what they describe (tests/api/) and the static checks of
//! them (tests/checks/).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The compose files shipped: the stack, and the 3-node cluster.
pub const COMPOSE_FILES: [&str; 2] = ["docker-compose.yml", "deploy/cluster/docker-compose.yml"];

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

/// Services of the top-level compose file that wait for the bridge.
pub fn consumer_services(compose: &Compose) -> Vec<String> {
    compose
        .service_names()
        .into_iter()
        .filter(|n| compose.service(n).depends_on().contains_key("bridge"))
        .collect()
}

/// `python /app/<script>.py …` (a Python example from examples/python/,
/// built into its own image): the script's name.
pub fn python_example(argv: &[String]) -> Option<&str> {
    match argv {
        [python, script, ..] if python == "python" => {
            let name = script.strip_prefix("/app/")?;
            assert!(
                repo_path(&format!("examples/python/{name}")).is_file(),
                "{script} is not in examples/python/"
            );
            Some(name)
        }
        _ => None,
    }
}

/// Every object of every manifest the kustomization lists.
pub fn kubernetes_objects() -> Vec<Value> {
    let kustomization = yaml_file("deploy/kubernetes/kustomization.yaml");
    let resources = kustomization["resources"]
        .as_array()
        .expect("kustomization lists resources");
    resources
        .iter()
        .filter_map(|r| r.as_str())
        .flat_map(|file| {
            let path = format!("deploy/kubernetes/{file}");
            yaml_documents(&read_repo_file(&path), &path)
        })
        .collect()
}

/// The one object of `kind` among `objects`.
pub fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} expected");
    found[0]
}

/// A memory quantity as Kubernetes (`256Mi`, `1Gi`, `512M`) or Compose
/// (`256m`, `1g`, `256M`, bytes) writes it, in bytes.
pub fn memory_bytes(quantity: &str) -> u64 {
    let q = quantity.trim();
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("memory quantity {quantity:?}"));
    let mult: u64 = match unit.trim_end_matches(['b', 'B']) {
        "" => 1,
        "Ki" | "k" | "K" => 1 << 10,
        "Mi" | "m" | "M" => 1 << 20,
        "Gi" | "g" | "G" => 1 << 30,
        other => panic!("memory unit {other:?} in {quantity:?}"),
    };
    n * mult
}

/// One bridge as a shipped file deploys it: its environment and the memory
/// it is given.
pub struct ShippedBridge {
    pub file: String,
    pub env: BTreeMap<String, String>,
    pub memory_limit: Option<u64>,
}

/// Every bridge of every shipped deployment: the Kubernetes Deployment (with
/// its ConfigMap) and each bridge service of both compose files.
pub fn shipped_bridges() -> Vec<ShippedBridge> {
    let mut found = Vec::new();
    let objects = kubernetes_objects();
    let configmap = object(&objects, "ConfigMap");
    let deployment = object(&objects, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = configmap["data"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    found.push(ShippedBridge {
        file: "deploy/kubernetes".into(),
        env,
        memory_limit: container["resources"]["limits"]["memory"]
            .as_str()
            .map(memory_bytes),
    });
    for path in COMPOSE_FILES {
        let compose = Compose::load(path);
        for name in compose
            .service_names()
            .into_iter()
            .filter(|n| n.starts_with("bridge"))
        {
            let service = compose.service(&name);
            let limit = &service.value["deploy"]["resources"]["limits"]["memory"];
            let limit = match limit {
                Value::String(s) => Some(memory_bytes(s)),
                Value::Number(n) => n.as_u64(),
                _ => match &service.value["mem_limit"] {
                    Value::String(s) => Some(memory_bytes(s)),
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                },
            };
            found.push(ShippedBridge {
                file: format!("{path} `{name}`"),
                env: service.environment(),
                memory_limit: limit,
            });
        }
    }
    found
}

/// The sizing rule of docs/settings.md ("Sizing memory"): twice the bodies
/// in flight, the kernel's receive buffers of waiting requests, and the
/// bridge's own footprint.
pub fn memory_needed(http: &fastpix_nats_bridge::settings::HttpSettings) -> u64 {
    const FOOTPRINT: u64 = 64 << 20;
    const SOCKET_BUFFER: u64 = 128 << 10;
    2 * http.max_in_flight as u64 * http.max_body_bytes as u64
        + http.max_queued as u64 * SOCKET_BUFFER
        + FOOTPRINT
}
