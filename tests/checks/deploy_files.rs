//! Static checks of the stack's files (scripts/test-stack runs them for real):
//! compose files against the Compose Specification schema plus what the
//! stack needs (a healthcheck on every service, dependencies, env-only
//! settings that load), the Dockerfile's stages, and the Kubernetes
//! manifests and Helm values.

use std::collections::{BTreeMap, BTreeSet};

use fastpix_nats_bridge::settings::{Purpose, Settings};
use serde_json::Value;

use crate::repo_files::*;

const BRIDGE_BIN: &str = "/usr/local/bin/fastpix-nats-bridge";
/// Where the example consumers live: in the consumer crate, which they use alone.
const EXAMPLES: &str = "fastpix-nats/examples";
/// A syntactically valid secret, standing in for the one a Secret holds.
const SECRET_PLACEHOLDER: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

/// Validates `doc` against the vendored Compose Specification schema.
fn compose_spec_errors(doc: &Value) -> Option<String> {
    let schema: Value =
        serde_json::from_str(&read_repo_file("tests/compose-spec/compose-spec.json"))
            .expect("the vendored schema is JSON");
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    let url = "file:///compose-spec/compose-spec.json";
    compiler.add_resource(url, schema).expect("schema added");
    let index = compiler
        .compile(url, &mut schemas)
        .unwrap_or_else(|e| panic!("the Compose schema compiles: {e:#}"));
    schemas.validate(doc, index).err().map(|e| e.to_string())
}

/// The settings a bridge would load from `env` alone (no config file).
fn settings_from(env: &BTreeMap<String, String>) -> Result<Settings, String> {
    settings_for(Purpose::Bridge, env)
}

/// The settings `env` gives a process loading them for `purpose`.
fn settings_for(purpose: Purpose, env: &BTreeMap<String, String>) -> Result<Settings, String> {
    let map = env
        .iter()
        .filter(|(k, _)| k.starts_with("FASTPIX_BRIDGE__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Settings::load_for(purpose, None, Some(map)).map_err(|e| e.to_string())
}

/// The `NATS_SERVER_VERSION` the scripts install for the tests.
fn tested_nats_version() -> String {
    read_repo_file("scripts/lib.sh")
        .lines()
        .find_map(|l| l.strip_prefix("NATS_SERVER_VERSION="))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("scripts/lib.sh sets NATS_SERVER_VERSION")
}

#[test]
fn the_compose_schema_is_the_compose_specification_and_it_can_fail() {
    let schema: Value =
        serde_json::from_str(&read_repo_file("tests/compose-spec/compose-spec.json")).unwrap();
    assert_eq!(schema["title"], "Compose Specification");
    let broken = serde_json::json!({
        "services": { "bridge": { "image": "x", "helthcheck": {} } }
    });
    assert!(compose_spec_errors(&broken).is_some(), "a typo must fail");
    let wrong_type = serde_json::json!({
        "services": { "bridge": { "image": "x", "depends_on": { "nats": { "condition": "healthy" } } } }
    });
    assert!(
        compose_spec_errors(&wrong_type).is_some(),
        "a bad condition must fail"
    );
}

#[test]
fn compose_files_are_valid_compose_specification() {
    for path in COMPOSE_FILES {
        let compose = Compose::load(path);
        if let Some(errors) = compose_spec_errors(&compose.doc) {
            panic!("{path} is not valid against the Compose Specification:\n{errors}");
        }
    }
}

#[test]
fn every_compose_service_has_a_healthcheck_restarts_and_waits_for_healthy_dependencies() {
    for path in COMPOSE_FILES {
        let compose = Compose::load(path);
        let names = compose.service_names();
        for name in &names {
            let service = compose.service(name);
            assert!(
                service.value["restart"].is_string(),
                "{path}: `{name}` has no restart policy"
            );
            // `docker compose ps` and orchestration see a stuck service only through it.
            let check = service.healthcheck_test();
            assert!(
                !check.is_empty() && check[0] != "NONE",
                "{path}: `{name}` has no healthcheck"
            );
            assert_ne!(
                service.value["healthcheck"]["disable"],
                Value::Bool(true),
                "{path}: `{name}` disables its healthcheck"
            );
            for (dependency, condition) in service.depends_on() {
                assert!(
                    names.contains(&dependency),
                    "{path}: `{name}` depends on unknown `{dependency}`"
                );
                assert_eq!(
                    condition, "service_healthy",
                    "{path}: `{name}` starts before `{dependency}` is healthy"
                );
            }
            for (source, _) in service.volumes() {
                if let VolumeSource::Host(p) = &source {
                    assert!(
                        p.exists(),
                        "{path}: `{name}` mounts missing {}",
                        p.display()
                    );
                }
                if let VolumeSource::Named(v) = &source {
                    assert!(
                        compose.doc["volumes"].get(v).is_some(),
                        "{path}: `{name}` uses undeclared volume `{v}`"
                    );
                }
            }
        }
    }
}

#[test]
fn compose_nats_is_the_pinned_official_image_with_its_config_from_deploy() {
    let version = tested_nats_version();
    for (path, services) in [
        ("docker-compose.yml", vec!["nats"]),
        (
            "deploy/cluster/docker-compose.yml",
            vec!["nats-1", "nats-2", "nats-3"],
        ),
    ] {
        let compose = Compose::load(path);
        for name in services {
            let nats = compose.service(name);
            let image = nats.value["image"].as_str().unwrap_or_default();
            assert!(
                image == format!("nats:{version}-alpine") || image == format!("nats:{version}"),
                "{path}: `{name}` runs {image:?}, not the official nats image at {version} (the version the tests run)"
            );
            let command = nats.command();
            let volumes = nats.volumes();
            let config = command
                .iter()
                .skip_while(|a| !matches!(a.as_str(), "--config" | "-c"))
                .nth(1)
                .unwrap_or_else(|| panic!("{path}: `{name}` is not given a --config"));
            let mounted = volumes
                .iter()
                .find(|(_, target)| target == config)
                .unwrap_or_else(|| panic!("{path}: `{name}`'s {config} is not mounted"));
            assert!(
                matches!(&mounted.0, VolumeSource::Host(p) if p.starts_with(repo_path("deploy"))),
                "{path}: `{name}`'s config does not come from deploy/"
            );
            let store = command
                .iter()
                .skip_while(|a| !matches!(a.as_str(), "--store_dir" | "-sd"))
                .nth(1)
                .unwrap_or_else(|| panic!("{path}: `{name}` has no --store_dir"));
            assert!(
                volumes
                    .iter()
                    .any(|(s, t)| t == store && matches!(s, VolumeSource::Named(_))),
                "{path}: `{name}` keeps its JetStream store outside a named volume"
            );
            let check = nats.healthcheck_test().join(" ");
            assert!(
                check.contains(":8222/healthz"),
                "{path}: `{name}`'s healthcheck does not ask the monitoring /healthz: {check}"
            );
        }
    }
}

#[test]
fn compose_bridges_are_configured_by_environment_alone_and_checked_on_readyz() {
    for path in COMPOSE_FILES {
        let compose = Compose::load(path);
        let bridges: Vec<String> = compose
            .service_names()
            .into_iter()
            .filter(|n| n.starts_with("bridge"))
            .collect();
        assert!(!bridges.is_empty(), "{path}: no bridge service here");
        let (built, _) = the_one_build(&compose);
        for name in bridges {
            let bridge = compose.service(&name);
            assert_eq!(
                bridge.value["image"],
                compose.service(&built).value["image"],
                "{path}: `{name}` does not run the image the stack builds"
            );
            assert!(
                bridge.value.get("env_file").is_none() && bridge.volumes().is_empty(),
                "{path}: `{name}` must be configured through `environment` only"
            );
            let mut env = bridge.environment();
            let secret = env
                .get("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS")
                .cloned()
                .unwrap_or_default();
            if secret.starts_with("${") {
                // Required from the user's environment: nothing committed.
                assert!(
                    secret.contains(":?"),
                    "{path}: `{name}`'s secret must be required"
                );
                env.insert(
                    "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
                    SECRET_PLACEHOLDER.into(),
                );
            }
            let settings = settings_from(&env)
                .unwrap_or_else(|e| panic!("{path}: `{name}`'s environment does not load: {e}"));
            for url in &settings.nats.url {
                let host = url.split("://").nth(1).and_then(|r| r.split(':').next());
                assert!(
                    host.is_some_and(|h| compose.service_names().iter().any(|s| s == h)),
                    "{path}: `{name}` points at {url}, not a NATS service of this file"
                );
            }
            assert!(
                bridge.value["ports"].as_array().is_some_and(|p| p
                    .iter()
                    .any(|p| p.as_str().is_some_and(|p| p.ends_with(":8080")))),
                "{path}: `{name}` does not publish port 8080"
            );
            let check = bridge.healthcheck_test();
            assert_eq!(
                check.first().map(String::as_str),
                Some(BRIDGE_BIN),
                "{path}: `{name}`"
            );
            assert!(
                check.iter().any(|a| a == "healthcheck")
                    && check.iter().any(|a| a.ends_with(":8080/readyz")),
                "{path}: `{name}`'s healthcheck must ask /readyz: {check:?}"
            );
            assert!(
                bridge
                    .depends_on()
                    .keys()
                    .all(|d| compose.service(d).value["image"]
                        .as_str()
                        .is_some_and(|i| i.starts_with("nats:"))),
                "{path}: `{name}` must wait for NATS"
            );
            assert!(
                !bridge.depends_on().is_empty(),
                "{path}: `{name}` must wait for NATS"
            );
        }
    }
}

#[test]
fn compose_runs_the_inspector_on_loopback_8090_with_a_token_checked_on_its_admin_port() {
    let compose = Compose::load("docker-compose.yml");
    let inspector = compose.service("inspector");
    assert_eq!(container_argv(&inspector)[1..], ["inspect".to_owned()]);
    assert_eq!(
        inspector.value["ports"],
        serde_json::json!(["127.0.0.1:8090:8090"])
    );
    let settings = settings_from(&inspector.environment()).expect("its settings load");
    assert_eq!(settings.inspect.listen.port(), 8090);
    assert!(
        settings.inspect.token.is_some(),
        "it listens off loopback, so needs a token"
    );
    settings_for(Purpose::Inspector, &inspector.environment()).expect("the inspector would start");
    assert_eq!(
        settings.inspect.bridge_url.as_deref(),
        Some("http://bridge:8080/webhooks/fastpix")
    );
    let admin = format!(
        "http://127.0.0.1:{}/readyz",
        settings.inspect.admin_listen.port()
    );
    assert_eq!(
        inspector.healthcheck_test(),
        [BRIDGE_BIN, "healthcheck", "--url", admin.as_str()]
    );
    // It reads NATS only; it waits for NATS, not for a bridge.
    assert_eq!(
        inspector.depends_on().into_keys().collect::<Vec<_>>(),
        ["nats".to_owned()]
    );
}

#[test]
fn compose_consumers_run_what_the_image_ships_each_with_its_own_durable() {
    let compose = Compose::load("docker-compose.yml");
    let consumers = consumer_services(&compose);
    assert!(
        consumers.len() >= 2,
        "at least two consumers: {consumers:?}"
    );
    let mut shipped = vec![BRIDGE_BIN.to_owned()];
    shipped.extend(
        examples_in_the_repository()
            .iter()
            .map(|e| format!("/usr/local/bin/{e}")),
    );
    let mut durables = BTreeSet::new();
    for name in consumers {
        let service = compose.service(&name);
        let argv = container_argv(&service);
        if let Some(script) = python_example(&argv) {
            // A Python example on its own image: its healthcheck asks for
            // its durable with the same script.
            let check = service.healthcheck_test();
            assert_eq!(
                check,
                ["python", argv[1].as_str(), "--healthcheck"],
                "`{name}`'s healthcheck"
            );
            let source = read_repo_file(&format!("examples/python/{script}"));
            let env = service.environment();
            let durable = env.get("DURABLE").cloned().unwrap_or_else(|| {
                source
                    .lines()
                    .find_map(|l| l.strip_prefix("DEFAULT_DURABLE = \""))
                    .and_then(|r| r.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("examples/python/{script} names no DEFAULT_DURABLE"))
                    .to_owned()
            });
            assert!(
                durables.insert(durable.clone()),
                "`{name}` shares the durable `{durable}`: it would get only part of the events"
            );
            assert_eq!(
                env.get("FASTPIX_BRIDGE__NATS__URL").map(String::as_str),
                Some("nats://nats:4222"),
                "`{name}`"
            );
            continue;
        }
        assert!(
            shipped.contains(&argv[0]),
            "`{name}` runs {}, which the image does not ship ({shipped:?})",
            argv[0]
        );
        let check = service.healthcheck_test();
        let checked = match check.as_slice() {
            [bin, hc, flag, durable]
                if bin == BRIDGE_BIN && hc == "healthcheck" && flag == "--durable" =>
            {
                durable.clone()
            }
            _ => panic!(
                "`{name}`'s healthcheck must be `{BRIDGE_BIN} healthcheck --durable NAME`: {check:?}"
            ),
        };
        if argv[0] == BRIDGE_BIN && argv.get(1).map(String::as_str) == Some("forward") {
            // A forwarder: its healthcheck asks for one of its destinations'
            // consumers.
            let env: config::Map<String, String> = service.environment().into_iter().collect();
            let settings = Settings::load_for(Purpose::Client, None, Some(env))
                .unwrap_or_else(|e| panic!("`{name}`'s environment does not load: {e}"));
            let consumers: Vec<String> = settings.forward.iter().map(|d| d.consumer()).collect();
            assert!(
                consumers.contains(&checked),
                "`{name}`'s healthcheck asks for `{checked}`, not one of its destinations {consumers:?}"
            );
            assert!(
                durables.insert(checked.clone()),
                "`{name}` shares the durable `{checked}`"
            );
        } else if argv[0] == BRIDGE_BIN {
            assert_eq!(
                argv.get(1).map(String::as_str),
                Some("subscribe"),
                "`{name}`"
            );
            let durable = argv
                .iter()
                .skip_while(|a| *a != "--durable")
                .nth(1)
                .unwrap_or_else(|| panic!("`{name}` should not lose events while down: --durable"));
            assert_eq!(
                &checked, durable,
                "`{name}`'s healthcheck asks for another durable"
            );
            assert!(
                durables.insert(durable.clone()),
                "`{name}` shares the durable `{durable}`: it would get only part of the events"
            );
        } else {
            // The examples name their durable in a constant.
            let program = argv[0].trim_start_matches("/usr/local/bin/");
            let source = read_repo_file(&format!("{EXAMPLES}/{program}.rs"));
            assert!(
                source.contains(&format!("&str = \"{checked}\";")),
                "`{name}`'s healthcheck asks for `{checked}`, which {EXAMPLES}/{program}.rs does not bind"
            );
        }
        let env: config::Map<String, String> = service.environment().into_iter().collect();
        let settings = Settings::load_for(Purpose::Client, None, Some(env))
            .unwrap_or_else(|e| panic!("`{name}`'s environment does not load: {e}"));
        assert_eq!(settings.nats.url, ["nats://nats:4222"], "`{name}`");
    }
}

#[test]
fn the_development_secret_is_marked_as_one_and_can_be_replaced_without_editing() {
    let compose = Compose::load("docker-compose.yml");
    let raw = &compose.doc["services"]["bridge"]["environment"]["FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS"];
    assert!(
        raw.as_str()
            .is_some_and(|v| v.starts_with("${FASTPIX_BRIDGE_SIGNING_SECRETS:-")),
        "the secret should come from FASTPIX_BRIDGE_SIGNING_SECRETS when set: {raw}"
    );
    let text = read_repo_file("docker-compose.yml");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.trim_start()
                .starts_with("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS:")
        })
        .expect("docker-compose.yml sets a signing secret");
    let context = lines[at.saturating_sub(4)..at].join("\n");
    assert!(
        context.contains("DEVELOPMENT SECRET"),
        "the secret in docker-compose.yml must be marked as a development secret right above it"
    );
}

#[test]
fn the_cluster_compose_runs_three_routed_nodes_and_the_stream_at_3_replicas() {
    let compose = Compose::load("deploy/cluster/docker-compose.yml");
    let nodes = ["nats-1", "nats-2", "nats-3"];
    let expected_routes: BTreeSet<String> =
        nodes.iter().map(|n| format!("nats://{n}:6222")).collect();
    let mut names = BTreeSet::new();
    for node in nodes {
        let env = compose.service(node).environment();
        names.insert(env.get("NATS_SERVER_NAME").cloned().unwrap_or_default());
        let routes: BTreeSet<String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("NATS_ROUTE_"))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(routes, expected_routes, "{node}'s routes");
    }
    assert_eq!(names.len(), 3, "server names must be unique: {names:?}");
    let config = read_repo_file("deploy/cluster/nats.conf");
    for var in [
        "$NATS_SERVER_NAME",
        "$NATS_ROUTE_1",
        "$NATS_ROUTE_2",
        "$NATS_ROUTE_3",
    ] {
        assert!(
            config.contains(var),
            "deploy/cluster/nats.conf does not use {var}"
        );
    }
    let bridges: Vec<String> = compose
        .service_names()
        .into_iter()
        .filter(|n| n.starts_with("bridge"))
        .collect();
    assert!(bridges.len() >= 2, "at least two bridge replicas");
    for name in bridges {
        let mut env = compose.service(&name).environment();
        env.insert(
            "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
            SECRET_PLACEHOLDER.into(),
        );
        let settings = settings_from(&env).unwrap();
        assert_eq!(settings.jetstream.replicas, 3, "{name}");
        let mut hosts: Vec<String> = settings
            .nats
            .url
            .iter()
            .filter_map(|u| u.split("://").nth(1)?.split(':').next().map(str::to_owned))
            .collect();
        hosts.sort();
        assert_eq!(hosts, nodes, "{name} must know every node");
    }
}

#[test]
fn the_dockerfile_caches_dependencies_builds_release_and_runs_unprivileged() {
    let stages = dockerfile_stages();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    for stage in &stages {
        let image = stage.image.as_str();
        assert!(
            names.contains(&image)
                || (image.contains(':') && !image.contains('$') && !image.ends_with(":latest")),
            "base image {image} is not pinned"
        );
    }
    assert!(stages.len() >= 2, "multi-stage build expected");

    let builder = stages
        .iter()
        .find(|s| {
            s.ops
                .iter()
                .any(|(op, a)| op == "RUN" && a.contains("cargo build"))
        })
        .expect("a stage runs cargo build");
    let position = |pred: &dyn Fn(&(String, String)) -> bool| builder.ops.iter().position(pred);
    let cook = position(&|(op, a)| op == "RUN" && a.contains("cargo chef cook"))
        .expect("dependencies are built on their own (cargo chef cook)");
    let source =
        position(&|(op, a)| op == "COPY" && a.starts_with(". ")).expect("the source is copied in");
    let build = position(&|(op, a)| op == "RUN" && a.contains("cargo build")).expect("cargo build");
    assert!(
        cook < source && source < build,
        "dependency layer must come before the source is copied"
    );
    let build_args = &builder.ops[build].1;
    for flag in ["--release", "--locked", "--bin fastpix-nats-bridge"] {
        assert!(build_args.contains(flag), "cargo build lacks {flag}");
    }
    for example in examples_in_the_repository() {
        assert!(
            build_args.contains(&format!("--example {example}")),
            "the image does not build example {example}"
        );
    }

    let runtime = &stages.last().expect("stages").ops;
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !matches!(uid, "root" | "0" | ""),
        "the runtime runs as root: USER {user}"
    );
    assert_eq!(image_entrypoint(), [BRIDGE_BIN]);
    assert!(
        runtime.iter().any(|(op, a)| op == "COPY"
            && a.contains("--from=")
            && a.trim_end().ends_with("/usr/local/bin/")),
        "the runtime stage copies the binaries to /usr/local/bin/"
    );
    assert!(
        !runtime
            .iter()
            .any(|(op, a)| op == "RUN" && a.contains("cargo")),
        "nothing is built in the runtime stage"
    );
}

/// Example programs of the consumer crate (the image ships each one).
fn examples_in_the_repository() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(repo_path(EXAMPLES)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn the_dockerignore_keeps_build_output_out_and_the_source_in() {
    let ignored: Vec<String> = read_repo_file(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target", ".git", ".tools"] {
        assert!(
            ignored.iter().any(|i| i == must),
            ".dockerignore lacks {must}"
        );
    }
    for needed in ["src", "Cargo.toml", "Cargo.lock", "examples", "tests"] {
        assert!(
            !ignored.iter().any(|i| i == needed || i == "*"),
            ".dockerignore drops {needed}, which the build needs"
        );
    }
}

/// The Prometheus Operator objects of `deploy/kubernetes/monitoring/`.
fn monitoring_objects() -> Vec<Value> {
    let kustomization = yaml_file("deploy/kubernetes/monitoring/kustomization.yaml");
    kustomization["resources"]
        .as_array()
        .expect("the monitoring kustomization lists resources")
        .iter()
        .filter_map(|r| r.as_str())
        .flat_map(|file| {
            let path = format!("deploy/kubernetes/monitoring/{file}");
            yaml_documents(&read_repo_file(&path), &path)
        })
        .collect()
}

/// The name of the container port `port`, if the container exposes it named.
fn container_port_name(container: &Value, port: u16) -> Option<String> {
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["containerPort"] == port)
        .and_then(|p| p["name"].as_str())
        .map(str::to_owned)
}

#[test]
fn kubernetes_manifests_have_what_a_safe_bridge_deployment_needs() {
    let objects = kubernetes_objects();
    for o in &objects {
        assert!(
            o["apiVersion"].is_string()
                && o["kind"].is_string()
                && o["metadata"]["name"].is_string(),
            "every object has apiVersion, kind and metadata.name: {o}"
        );
    }
    let deployment = object(&objects, "Deployment");
    let spec = &deployment["spec"];
    assert!(
        spec["replicas"].as_u64().unwrap_or(0) >= 2,
        "at least 2 replicas"
    );
    let selector = &spec["selector"]["matchLabels"];
    let pod = &spec["template"];
    assert!(selector.is_object(), "Deployment selector");
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "pod labels match the selector"
        );
    }
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let port_name = container_port_name(c, 8080).expect("a named container port 8080");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
    }
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource}"
            );
        }
    }
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);

    // Settings: the ConfigMap through envFrom, the secret from a Secret.
    let configmap = object(&objects, "ConfigMap");
    let cm_name = &configmap["metadata"]["name"];
    assert!(
        c["envFrom"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| &e["configMapRef"]["name"] == cm_name)),
        "the container reads the ConfigMap"
    );
    let secret_env = c["env"]
        .as_array()
        .and_then(|e| {
            e.iter()
                .find(|e| e["name"] == "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS")
        })
        .expect("the signing secret is set");
    let secret_ref = &secret_env["valueFrom"]["secretKeyRef"];
    assert!(
        secret_ref["name"].is_string() && secret_ref["key"].is_string(),
        "the signing secret comes from a Secret"
    );
    assert!(
        !objects.iter().any(|o| o["kind"] == "Secret"),
        "no Secret with a value is committed"
    );
    let mut env: BTreeMap<String, String> = configmap["data"]
        .as_object()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("ConfigMap values are strings").to_owned(),
            )
        })
        .collect();
    env.insert(
        "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
        SECRET_PLACEHOLDER.into(),
    );
    let settings =
        settings_from(&env).unwrap_or_else(|e| panic!("the ConfigMap does not load: {e}"));
    assert_eq!(settings.jetstream.replicas, 3, "the stream at 3 replicas");
    assert_eq!(settings.nats.url.len(), 3, "every NATS node's URL");

    // Shutdown fits in the grace period: preStop sleep, then http.shutdown_grace.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    assert!(
        pre_stop + settings.http.shutdown_grace.as_secs() + 5 <= grace,
        "terminationGracePeriodSeconds {grace} is too short for preStop {pre_stop}s + shutdown grace {:?}",
        settings.http.shutdown_grace
    );

    let service = object(&objects, "Service");
    assert_eq!(
        &service["spec"]["selector"], selector,
        "Service selects the pods"
    );
    assert!(
        service["spec"]["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["targetPort"] == port_name)),
        "the Service forwards to the public port `{port_name}`"
    );

    let pdb = object(&objects, "PodDisruptionBudget");
    assert_eq!(
        &pdb["spec"]["selector"]["matchLabels"], selector,
        "PDB selects the pods"
    );
    let min = pdb["spec"]["minAvailable"].as_u64();
    let replicas = spec["replicas"].as_u64().unwrap_or(0);
    assert!(
        min.is_some_and(|m| m >= 1 && m < replicas) || pdb["spec"]["maxUnavailable"].is_number(),
        "the PDB keeps a bridge up and still lets a node drain"
    );
}

#[test]
fn kubernetes_probes_and_the_servicemonitor_use_the_admin_port_the_bridge_listens_on() {
    let objects = kubernetes_objects();
    let configmap = object(&objects, "ConfigMap");
    let mut env: BTreeMap<String, String> =
        serde_json::from_value(configmap["data"].clone()).expect("ConfigMap data are strings");
    env.insert(
        "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
        SECRET_PLACEHOLDER.into(),
    );
    // The port the bridge of this manifest listens on: the settings'
    // default unless the ConfigMap sets http.admin_listen.
    let settings = settings_from(&env).expect("the ConfigMap loads");
    let admin_port = settings.http.admin_listen.port();
    let public_port = settings.http.listen.port();

    let deployment = object(&objects, "Deployment");
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    let admin = container_port_name(c, admin_port).unwrap_or_else(|| {
        panic!("the admin port {admin_port} (http.admin_listen) is not a named container port")
    });
    let public = container_port_name(c, public_port)
        .unwrap_or_else(|| panic!("the public port {public_port} is not a named container port"));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            c[probe]["httpGet"]["port"], admin,
            "{probe} must ask the admin port `{admin}`, not the one FastPix reaches"
        );
    }

    let service = object(&objects, "Service");
    let ports = service["spec"]["ports"].as_array().expect("Service ports");
    let admin_service_port = ports
        .iter()
        .find(|p| p["targetPort"] == admin)
        .and_then(|p| p["name"].as_str())
        .expect("the Service exposes the admin port under a name");
    assert!(
        ports.iter().any(|p| p["targetPort"] == public),
        "the Service forwards to `{public}`"
    );

    let monitoring = monitoring_objects();
    let monitor = object(&monitoring, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("the ServiceMonitor selects by labels");
    for (k, v) in selector {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the ServiceMonitor does not select the Service"
        );
    }
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    assert!(
        endpoints
            .iter()
            .any(|e| e["port"] == admin_service_port && e["path"] == "/metrics"),
        "the ServiceMonitor scrapes /metrics on `{admin_service_port}`: {endpoints:?}"
    );
    // The operator names the job after the Service; FastPixBridgeDown watches it.
    let job = service["metadata"]["name"].as_str().unwrap();
    assert!(
        read_repo_file("deploy/prometheus/rules/fastpix-bridge.rules.yml")
            .contains(&format!("up{{job=\"{job}\"}}")),
        "FastPixBridgeDown does not watch the job `{job}`"
    );
}

#[test]
fn nats_helm_values_give_a_3_node_jetstream_cluster_the_bridge_points_at() {
    let values = yaml_file("deploy/kubernetes/nats-values.yaml");
    let config = &values["config"];
    assert_eq!(config["cluster"]["enabled"], true);
    assert_eq!(config["cluster"]["replicas"], 3);
    assert_eq!(config["jetstream"]["enabled"], true);
    assert_eq!(config["jetstream"]["fileStore"]["enabled"], true);
    assert_eq!(config["jetstream"]["fileStore"]["pvc"]["enabled"], true);
    assert!(config["jetstream"]["fileStore"]["pvc"]["size"].is_string());
    let tag = values["container"]["image"]["tag"]
        .as_str()
        .unwrap_or_default();
    assert!(
        tag.starts_with(&tested_nats_version()),
        "the chart runs nats {tag}, not the tested {}",
        tested_nats_version()
    );
    // The ConfigMap names the pods of a release called `nats`.
    let objects = kubernetes_objects();
    let urls = object(&objects, "ConfigMap")["data"]["FASTPIX_BRIDGE__NATS__URL"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..3 {
        assert!(
            urls.contains(&format!("nats://nats-{i}.nats-headless:4222")),
            "{urls}"
        );
    }
}

#[test]
fn deploy_readme_covers_each_setup() {
    let readme = read_repo_file("deploy/README.md");
    for file in [
        "nats/nats.conf",
        "cluster/nats.conf",
        "cluster/docker-compose.yml",
        "kubernetes/nats-values.yaml",
        "kubectl apply -k deploy/kubernetes",
        "kubectl apply -k deploy/kubernetes/monitoring",
        "--profile observability",
        "helm",
    ] {
        assert!(
            readme.contains(file),
            "deploy/README.md does not mention {file}"
        );
    }
}

#[test]
fn the_readme_runs_the_stack_as_the_compose_file_defines_it() {
    let readme = read_repo_file("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Run the stack with Docker Compose"))
        .expect("README has a `## Run the stack with Docker Compose` section");
    for needed in [
        "docker compose up --build",
        "docker compose exec bridge fastpix-nats-bridge send",
    ] {
        assert!(
            section.contains(needed),
            "the stack section lacks `{needed}`"
        );
    }
    let compose = Compose::load("docker-compose.yml");
    for name in consumer_services(&compose) {
        assert!(
            section.contains(&format!("{name}-1 ")) || section.contains(&format!("`{name}`")),
            "the stack section does not show consumer `{name}`"
        );
    }
}

/// The one service of a compose file that builds the project's image (from
/// the repository's Dockerfile), and that image's name; panics unless
/// exactly one does, and unless no two services build the same context.
fn the_one_build(compose: &Compose) -> (String, String) {
    let path = compose.path;
    let context_of = |name: &str| match &compose.service(name).value["build"] {
        Value::String(s) => compose.dir().join(s),
        other => compose.dir().join(other["context"].as_str().unwrap_or(".")),
    };
    let builders: Vec<(String, std::path::PathBuf)> = compose
        .service_names()
        .into_iter()
        .filter(|n| compose.service(n).value.get("build").is_some())
        .map(|n| {
            let dir = context_of(&n);
            let dir = dir.canonicalize().unwrap_or(dir);
            (n, dir)
        })
        .collect();
    let contexts: BTreeSet<_> = builders.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(
        contexts.len(),
        builders.len(),
        "{path}: two services build the same image, so `up --build` builds it twice: {builders:?}"
    );
    let root = repo_path(".").canonicalize().expect("the repository");
    let project: Vec<&String> = builders
        .iter()
        .filter(|(_, d)| *d == root)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        project.len(),
        1,
        "{path}: exactly one service builds the project's image: {builders:?}"
    );
    for (name, _) in &builders {
        let service = compose.service(name);
        assert!(
            service.value["image"].is_string(),
            "{path}: `{name}` builds an image without naming it (`image:`)"
        );
        // Always built here: a registry may hold another image of that name.
        assert_eq!(service.value["pull_policy"], "build", "{path}: `{name}`");
    }
    let built = compose.service(project[0]);
    let image = built.value["image"].as_str().unwrap_or_default().to_owned();
    (built.name.clone(), image)
}

#[test]
fn each_compose_stack_builds_one_image_and_every_project_service_runs_it() {
    for path in COMPOSE_FILES {
        let compose = Compose::load(path);
        let (builder, image) = the_one_build(&compose);
        // Images other services build (the Python examples' own), which
        // more than one service may run.
        let other_images: Vec<String> = compose
            .service_names()
            .into_iter()
            .filter(|n| *n != builder)
            .map(|n| compose.service(&n))
            .filter(|s| s.value.get("build").is_some())
            .filter_map(|s| s.value["image"].as_str().map(str::to_owned))
            .collect();
        let mut users = 0;
        for name in compose.service_names() {
            let service = compose.service(&name);
            let runs = service.value["image"].as_str().unwrap_or_default();
            let other_build = service.value.get("build").is_some() && name != builder;
            if runs.starts_with("nats:")
                || runs.starts_with("prom/")
                || runs.starts_with("grafana/")
                || other_build
                || other_images.iter().any(|i| i == runs)
            {
                continue;
            }
            assert_eq!(
                runs, image,
                "{path}: `{name}` runs another image than the one built"
            );
            users += 1;
            if name != builder {
                // Never pulled: the image exists once `builder` is built.
                assert_eq!(service.value["pull_policy"], "never", "{path}: `{name}`");
            }
        }
        assert!(
            users >= 2,
            "{path}: the built image is shared ({users} services)"
        );
    }
}

#[test]
fn every_shipped_deployment_sizes_its_bodies_for_the_memory_it_is_given() {
    let bridges = shipped_bridges();
    assert!(
        bridges.len() >= 4,
        "k8s, the stack's bridge, two cluster bridges"
    );
    for bridge in bridges {
        let file = &bridge.file;
        let limit = bridge
            .memory_limit
            .unwrap_or_else(|| panic!("{file}: the bridge has no memory limit"));
        let mut env = bridge.env.clone();
        env.insert(
            "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
            SECRET_PLACEHOLDER.into(),
        );
        let settings = settings_from(&env).unwrap_or_else(|e| panic!("{file}: {e}"));
        let need = memory_needed(&settings.http);
        assert!(
            need <= limit,
            "{file}: 2 x max_in_flight {} x max_body_bytes {} + max_queued {} x 128 KiB + 64 MiB \
             = {} MiB, above the memory limit of {} MiB",
            settings.http.max_in_flight,
            settings.http.max_body_bytes,
            settings.http.max_queued,
            need >> 20,
            limit >> 20
        );
    }
    // The rule can fail: the defaults do not fit these limits.
    let defaults = fastpix_nats_bridge::settings::HttpSettings::default();
    assert!(memory_needed(&defaults) > 256 << 20);
}

/// The host path behind `container_path` in `service`'s bind mounts (the
/// longest mount that holds it).
fn host_path_of(service: &Service<'_>, container_path: &str) -> Option<std::path::PathBuf> {
    service
        .volumes()
        .into_iter()
        .filter_map(|(source, target)| match source {
            VolumeSource::Host(path) if container_path == target => Some((target.len(), path)),
            VolumeSource::Host(path) => container_path
                .strip_prefix(&format!("{}/", target.trim_end_matches('/')))
                .map(|rest| (target.len(), path.join(rest))),
            VolumeSource::Named(_) => None,
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, path)| path)
}

/// `host:port` targets of the scrape job `job` in a Prometheus config.
fn scrape_targets(config: &Value, job: &str) -> Vec<String> {
    config["scrape_configs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_name"] == job))
        .unwrap_or_else(|| panic!("no scrape job `{job}`"))["static_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_observability_profile_adds_pinned_prometheus_and_grafana_wired_to_the_bridge() {
    let compose = Compose::load("docker-compose.yml");
    let mut profiled: Vec<String> = compose
        .service_names()
        .into_iter()
        .filter(|n| compose.service(n).value.get("profiles").is_some())
        .collect();
    profiled.sort();
    assert_eq!(
        profiled,
        ["grafana", "prometheus"],
        "only the observability services are behind a profile"
    );
    for name in &profiled {
        let service = compose.service(name);
        assert_eq!(
            service.value["profiles"],
            serde_json::json!(["observability"]),
            "`{name}`"
        );
        let image = service.value["image"].as_str().unwrap_or_default();
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
        assert!(
            !tag.is_empty() && !tag.contains('/') && tag != "latest" && !image.contains('$'),
            "`{name}` runs {image:?}: pin a version"
        );
        for port in service.value["ports"].as_array().expect("ports") {
            assert!(
                port.as_str().is_some_and(|p| p.starts_with("127.0.0.1:")),
                "`{name}` publishes {port} beyond loopback"
            );
        }
    }

    // Prometheus: the repository's config, its rules, the bridge's admin port.
    let prometheus = compose.service("prometheus");
    let command = prometheus.command();
    let flag = |name: &str| {
        command
            .iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .map(str::to_owned)
    };
    let config_file = flag("config.file").expect("--config.file");
    assert_eq!(
        host_path_of(&prometheus, &config_file),
        Some(repo_path("deploy/prometheus/prometheus.yml")),
        "Prometheus must read deploy/prometheus/prometheus.yml"
    );
    let data = flag("storage.tsdb.path").expect("--storage.tsdb.path");
    assert!(
        prometheus
            .volumes()
            .iter()
            .any(|(s, t)| *t == data && matches!(s, VolumeSource::Named(_))),
        "Prometheus keeps its data outside a named volume"
    );
    let prometheus_port: u16 = flag("web.listen-address")
        .as_deref()
        .unwrap_or(":9090")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a listen port");
    assert!(
        prometheus
            .healthcheck_test()
            .join(" ")
            .contains(&format!("127.0.0.1:{prometheus_port}/-/ready")),
        "Prometheus's healthcheck asks /-/ready"
    );

    let config = yaml_file("deploy/prometheus/prometheus.yml");
    let config_dir = repo_path("deploy/prometheus");
    let mut rule_files = BTreeSet::new();
    for pattern in config["rule_files"].as_array().expect("rule_files") {
        let pattern = pattern.as_str().expect("a rule file pattern");
        let (dir, glob) = pattern.rsplit_once('/').unwrap_or((".", pattern));
        let suffix = glob.strip_prefix('*').unwrap_or(glob);
        for entry in std::fs::read_dir(config_dir.join(dir)).expect("rules dir") {
            let path = entry.expect("dir entry").path();
            if path.to_string_lossy().ends_with(suffix) {
                rule_files.insert(path);
            }
        }
    }
    assert_eq!(
        rule_files,
        BTreeSet::from([repo_path(
            "deploy/prometheus/rules/fastpix-bridge.rules.yml"
        )]),
        "Prometheus loads the rules file, and only it (not its tests)"
    );

    let mut env = compose.service("bridge").environment();
    env.insert(
        "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
        SECRET_PLACEHOLDER.into(),
    );
    let admin_port = settings_from(&env)
        .expect("the bridge's environment loads")
        .http
        .admin_listen
        .port();
    assert_eq!(
        scrape_targets(&config, "fastpix-nats-bridge"),
        [format!("bridge:{admin_port}")],
        "Prometheus scrapes the bridge's admin port (http.admin_listen)"
    );
    assert_eq!(scrape_targets(&config, "inspector"), ["inspector:9091"]);
    for job in config["scrape_configs"].as_array().unwrap() {
        let name = job["job_name"].as_str().unwrap_or_default();
        for target in scrape_targets(&config, name) {
            let host = target.split(':').next().unwrap_or_default();
            // The inspector service comes with the `inspect` command;
            // Prometheus shows its target as down until then.
            assert!(
                host == "inspector" || compose.service_names().iter().any(|s| s == host),
                "job `{name}` scrapes {target}, not a service of this file"
            );
        }
    }

    // Grafana: read-only without a login, Prometheus and the dashboard provisioned.
    let grafana = compose.service("grafana");
    let env = grafana.environment();
    for (key, value) in [
        ("GF_AUTH_ANONYMOUS_ENABLED", "true"),
        ("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer"),
        ("GF_AUTH_DISABLE_LOGIN_FORM", "true"),
        ("GF_AUTH_BASIC_ENABLED", "false"),
    ] {
        assert_eq!(
            env.get(key).map(String::as_str),
            Some(value),
            "grafana {key}"
        );
    }
    assert_eq!(
        grafana.value["ports"],
        serde_json::json!(["127.0.0.1:3000:3000"]),
        "Grafana on 127.0.0.1:3000"
    );
    assert!(
        grafana
            .healthcheck_test()
            .join(" ")
            .contains("127.0.0.1:3000/api/health"),
        "Grafana's healthcheck asks /api/health"
    );
    assert!(
        grafana.depends_on().contains_key("prometheus"),
        "Grafana waits for Prometheus"
    );
    for kind in ["datasources", "dashboards"] {
        assert_eq!(
            host_path_of(&grafana, &format!("/etc/grafana/provisioning/{kind}")),
            Some(repo_path(&format!("deploy/grafana/provisioning/{kind}"))),
            "Grafana's {kind} are provisioned from deploy/grafana/provisioning/{kind}"
        );
    }

    let datasources = yaml_file("deploy/grafana/provisioning/datasources/prometheus.yml");
    let source = datasources["datasources"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == "prometheus"))
        .expect("a Prometheus datasource");
    assert_eq!(
        source["url"],
        format!("http://prometheus:{prometheus_port}"),
        "the datasource is the compose Prometheus"
    );
    assert_eq!(source["editable"], false);

    let providers = yaml_file("deploy/grafana/provisioning/dashboards/fastpix.yml");
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"], "file");
    assert_eq!(provider["allowUiUpdates"], false);
    let dashboards = provider["options"]["path"].as_str().expect("a path");
    let dir = host_path_of(&grafana, dashboards).expect("the dashboards folder is mounted");
    assert!(
        dir.join("fastpix-bridge.json").is_file(),
        "{} does not hold the dashboard",
        dir.display()
    );
    let home = env
        .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        .expect("the dashboard is Grafana's home");
    assert!(
        host_path_of(&grafana, home).is_some_and(|p| p.is_file()),
        "the home dashboard {home} is not mounted"
    );
}

/// The JetStream file store of the NATS a shipped bridge talks to: the
/// config's `max_file_store` (NATS reads `GB` as GiB), or for Kubernetes
/// the chart's, which is the size of the store's volume.
fn nats_file_store(bridge_file: &str) -> u64 {
    let conf = |path: &str| {
        let text = read_repo_file(path);
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("max_file_store:"))
            .unwrap_or_else(|| panic!("{path} sets no max_file_store"))
            .trim();
        memory_bytes(value.trim_end_matches('B'))
    };
    if bridge_file.starts_with("deploy/kubernetes") {
        let values = yaml_file("deploy/kubernetes/nats-values.yaml");
        let size = &values["config"]["jetstream"]["fileStore"]["pvc"]["size"];
        memory_bytes(size.as_str().expect("the store's volume has a size"))
    } else if bridge_file.starts_with("deploy/cluster/") {
        conf("deploy/cluster/nats.conf")
    } else {
        conf("deploy/nats/nats.conf")
    }
}

#[test]
fn every_shipped_stream_bound_fits_the_store_of_its_nats() {
    // JetStream reserves each stream's max_bytes when the stream is made, and
    // refuses one that does not fit (docs/settings.md, "Why 8 GiB").
    for bridge in shipped_bridges() {
        let file = &bridge.file;
        let mut env = bridge.env.clone();
        env.insert(
            "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
            SECRET_PLACEHOLDER.into(),
        );
        let settings = settings_from(&env).unwrap_or_else(|e| panic!("{file}: {e}"));
        let reserved = settings.jetstream.max_bytes
            + fastpix_nats_bridge::nats::invalid::MAX_BYTES as u64
            + fastpix_nats_bridge::nats::refused::MAX_BYTES as u64;
        let store = nats_file_store(file);
        assert!(
            reserved <= store,
            "{file}: jetstream.max_bytes {} plus the invalid and refused streams' {} MiB is above its NATS store of {} MiB",
            settings.jetstream.max_bytes,
            (reserved - settings.jetstream.max_bytes) >> 20,
            store >> 20
        );
    }
    // The rule can fail: the default does not fit the Compose stack's store.
    assert!(
        fastpix_nats_bridge::settings::jetstream::DEFAULT_MAX_BYTES
            > nats_file_store("docker-compose.yml")
    );
}

/// Every key named `key` anywhere in `doc` (YAML merge keys already applied).
fn keys_named(doc: &Value, key: &str, path: String, found: &mut Vec<String>) {
    match doc {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                if k == key {
                    found.push(here.clone());
                }
                keys_named(v, key, here, found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                keys_named(v, key, format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn compose_files_start_on_docker_engine_20_10() {
    // Debian 12 ships Engine 20.10; Compose refuses `healthcheck.start_interval`
    // on engines before 25 ("requires Docker Engine v25 or later") and starts nothing.
    for path in COMPOSE_FILES {
        let compose = Compose::load(path);
        let mut found = Vec::new();
        keys_named(&compose.doc, "start_interval", String::new(), &mut found);
        assert!(
            found.is_empty(),
            "{path}: `start_interval` needs Docker Engine 25+: {found:?}"
        );
    }
}

#[test]
fn the_dockerfiles_build_without_pulling_a_frontend_image() {
    // A `# syntax=` line makes BuildKit pull that frontend from a registry
    // before reading the file: no build without one. The files use no syntax
    // newer than the builder's own.
    for path in ["Dockerfile", "examples/python/Dockerfile"] {
        let text = read_repo_file(path);
        let directive = text
            .lines()
            .take_while(|l| l.trim_start().starts_with('#'))
            .find(|l| {
                l.trim_start_matches('#')
                    .trim()
                    .to_ascii_lowercase()
                    .starts_with("syntax")
            });
        assert!(
            directive.is_none(),
            "{path}: {directive:?} makes BuildKit pull a frontend image"
        );
    }
}

/// The commands of a RUN instruction's `&&` chain that start with `prefix`.
fn commands_starting(builder: &Stage, prefix: &str) -> Vec<String> {
    builder
        .ops
        .iter()
        .filter(|(op, _)| op == "RUN")
        .flat_map(|(_, a)| {
            a.split("&&")
                .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .filter(|c| c.starts_with(prefix))
        .collect()
}

#[test]
fn the_image_cooks_and_builds_only_what_it_ships_and_the_bridge_on_its_own() {
    let stages = dockerfile_stages();
    let cooks: Vec<String> = stages
        .iter()
        .flat_map(|s| commands_starting(s, "cargo chef cook"))
        .collect();
    let builds: Vec<String> = stages
        .iter()
        .flat_map(|s| commands_starting(s, "cargo build"))
        .collect();
    assert!(
        !cooks.is_empty() && !builds.is_empty(),
        "the Dockerfile cooks and builds"
    );
    let root = read_repo_file("Cargo.toml");
    assert!(
        root.contains("[dev-dependencies]"),
        "the root package has test crates"
    );
    for cook in &cooks {
        // Examples, tests and benches compile their package's dev-dependencies:
        // the root package's are the test suites' crates.
        assert!(
            cook.contains(" -p ") || cook.contains(" --package "),
            "`{cook}` cooks the whole workspace, test crates included"
        );
        assert!(
            !(cook.contains("-p fastpix-nats-bridge")
                && ["--examples", "--tests", "--benches", "--all-targets"]
                    .iter()
                    .any(|f| cook.contains(f))),
            "`{cook}` cooks the bridge's test-only dependencies"
        );
        // Each cooked selection is one the build runs, so the cooked layer is used.
        let words: Vec<&str> = cook.split_whitespace().collect();
        for package in words.windows(2).filter(|w| w[0] == "-p").map(|w| w[1]) {
            assert!(
                builds.iter().any(|b| b.contains(&format!("-p {package}"))),
                "`{cook}` cooks {package}, which no build builds: {builds:?}"
            );
        }
    }
    let bridge = builds
        .iter()
        .filter(|b| b.contains("--bin fastpix-nats-bridge"))
        .collect::<Vec<_>>();
    assert_eq!(bridge.len(), 1, "one build of the bridge: {builds:?}");
    // Built with other targets, the bridge's dependencies would get the union
    // of their features: another binary than `cargo build --release` gives.
    let words: Vec<&str> = bridge[0].split_whitespace().collect();
    assert_eq!(
        words
            .iter()
            .filter(|w| **w == "-p" || **w == "--package")
            .count(),
        1,
        "the bridge is built together with other packages: `{}`",
        bridge[0]
    );
    for other in [
        "--example",
        "--examples",
        "--bins",
        "--all-targets",
        "--workspace",
    ] {
        assert!(
            !words.contains(&other),
            "the bridge is built together with {other}: `{}`",
            bridge[0]
        );
    }
}

#[test]
fn compose_gives_the_bridge_and_inspector_their_shutdown_grace_before_sigkill() {
    // Compose sends SIGKILL 10s after SIGTERM unless told otherwise; a
    // process serving HTTP needs http.shutdown_grace for in-flight requests
    // and then time to drain its NATS connection.
    const COMPOSE_DEFAULT: std::time::Duration = std::time::Duration::from_secs(10);
    let mut checked = 0;
    for path in COMPOSE_FILES {
        let compose = Compose::load(path);
        for name in compose.service_names() {
            let service = compose.service(&name);
            if service.value["image"] != "fastpix-nats-bridge:local" {
                continue;
            }
            let argv = container_argv(&service);
            let purpose = match argv.get(1).map(String::as_str) {
                None | Some("serve") if argv[0] == BRIDGE_BIN => Purpose::Bridge,
                Some("inspect") => Purpose::Inspector,
                _ => continue,
            };
            let mut env = service.environment();
            // The cluster file requires the user's secret; any valid one does here.
            env.insert(
                "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS".into(),
                SECRET_PLACEHOLDER.into(),
            );
            let settings =
                settings_for(purpose, &env).unwrap_or_else(|e| panic!("{path}: `{name}`: {e}"));
            let stop = match &service.value["stop_grace_period"] {
                Value::String(s) => humantime::parse_duration(s)
                    .unwrap_or_else(|e| panic!("{path}: `{name}`: stop_grace_period {s}: {e}")),
                _ => COMPOSE_DEFAULT,
            };
            assert!(
                stop > settings.http.shutdown_grace,
                "{path}: `{name}` is killed {stop:?} after SIGTERM, within http.shutdown_grace ({:?}) and its drain",
                settings.http.shutdown_grace
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "bridges and the inspector checked: {checked}");
}

/// `text` matches the shell `case` pattern `pattern` (only `*` is special).
fn case_pattern_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn the_stack_test_runs_in_ci_and_can_stand_in_for_every_base_image_it_runs() {
    assert!(
        read_repo_file("scripts/test").contains("scripts/test-stack"),
        "scripts/test does not run the Compose stacks"
    );
    assert!(
        read_repo_file("docs/docker-compose.md").contains("scripts/test-stack"),
        "docs/docker-compose.md does not say how the stack is tested"
    );
    // The `case` patterns of build_stand_in in scripts/stack-lib.sh.
    let lib = read_repo_file("scripts/stack-lib.sh");
    let body = lib
        .split("build_stand_in() {")
        .nth(1)
        .expect("scripts/stack-lib.sh defines build_stand_in");
    let patterns: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_suffix(')'))
        .filter(|l| !l.contains(' ') && !l.contains('(') && *l != "*")
        .collect();
    assert!(case_pattern_matches(
        "rust:*-slim-bookworm",
        "rust:1.95-slim-bookworm"
    ));
    assert!(!case_pattern_matches("nats:*-alpine", "nats:2.15.1"));
    let stages = dockerfile_stages();
    let mut images: Vec<String> = stages
        .iter()
        .filter(|s| !stages.iter().any(|o| o.name == s.image))
        .map(|s| s.image.clone())
        .collect();
    images.push(
        read_repo_file("examples/python/Dockerfile")
            .lines()
            .find_map(|l| l.strip_prefix("FROM "))
            .expect("the Python example's FROM")
            .trim()
            .to_owned(),
    );
    for path in COMPOSE_FILES {
        let compose = Compose::load(path);
        for name in compose.service_names() {
            let service = compose.service(&name);
            // The observability profile is not run by the stack test (docs/docker-compose.md).
            if service.value.get("profiles").is_some() || service.value.get("build").is_some() {
                continue;
            }
            if let Some(image) = service.value["image"].as_str()
                && !image.starts_with("fastpix-nats-bridge")
            {
                images.push(image.to_owned());
            }
        }
    }
    for image in images {
        assert!(
            patterns.iter().any(|p| case_pattern_matches(p, &image)),
            "scripts/stack-lib.sh has no stand-in for {image}: without a registry the stack test fails (patterns {patterns:?})"
        );
    }
}
