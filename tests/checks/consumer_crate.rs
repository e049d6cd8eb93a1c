//! The consumer crate, `fastpix-nats`, as a service outside this repository
//! uses it: the `Cargo.toml` line the README shows, and nothing of the
//! bridge's server.

use std::path::Path;
use std::process::Command;

use crate::{read_repo_file, repo_path};

/// Crates a consuming service must not compile: the bridge's server side.
const SERVER_CRATES: [&str; 5] = [
    "fastpix-nats-bridge",
    "axum",
    "hyper",
    "metrics-exporter-prometheus",
    "mimalloc",
];

/// `cargo tree` of the normal dependencies in `dir`, one package a line.
fn dependency_tree(dir: &Path, package: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .current_dir(dir)
        .args(["tree", "--offline"])
        .args(package)
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_no_server_crate(tree: &str, who: &str) {
    assert!(tree.contains("fastpix-nats v"), "{tree}");
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(!SERVER_CRATES.contains(&name), "{who} compiles {line}");
    }
}

/// The README's `fastpix-nats = { … }` line.
fn readme_dependency_line() -> String {
    let readme = read_repo_file("README.md");
    readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("fastpix-nats = {"))
        .unwrap_or_else(|| panic!("the README shows no `fastpix-nats = {{ … }}` line"))
        .to_owned()
}

#[test]
fn the_consumer_crate_depends_on_no_server_crate() {
    let tree = dependency_tree(&repo_path(""), &["--locked", "-p", "fastpix-nats"]);
    assert!(tree.contains("async-nats"), "{tree}");
    assert_no_server_crate(&tree, "fastpix-nats");
}

#[test]
fn an_example_consumer_builds_with_the_readme_line_and_only_that_crate() {
    let line = readme_dependency_line();
    let (before, rest) = line
        .split_once("path = \"")
        .unwrap_or_else(|| panic!("the README line names no path: {line}"));
    let (_, after) = rest
        .split_once('"')
        .unwrap_or_else(|| panic!("unclosed path in {line}"));
    let here = repo_path("fastpix-nats");
    let dependency = format!("{before}path = {:?}{after}", here.display().to_string());

    // A service of its own, outside the workspace, running the example.
    let dir = tempfile::tempdir().expect("temp dir");
    let service = dir.path();
    std::fs::create_dir(service.join("src")).expect("src/");
    std::fs::write(
        service.join("Cargo.toml"),
        format!(
            "[package]\nname = \"media-catalog-service\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\n{dependency}\n\
             async-nats = {{ version = \"0.51\", default-features = false }}\n\
             time = \"0.3\"\n\
             tokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\n\
             tracing = \"0.1\"\n\n[workspace]\n"
        ),
    )
    .expect("Cargo.toml");
    std::fs::copy(
        repo_path("fastpix-nats/examples/media_catalog.rs"),
        service.join("src/main.rs"),
    )
    .expect("the example");
    // The workspace's versions, so the build needs no network; and its
    // target directory, so dependencies built before are reused.
    std::fs::copy(repo_path("Cargo.lock"), service.join("Cargo.lock")).expect("Cargo.lock");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| Path::new(&t).to_owned())
        .unwrap_or_else(|| repo_path("target"));
    let out = Command::new(env!("CARGO"))
        .current_dir(service)
        .args(["build", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "the example does not build with `{dependency}`:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(target.join("debug/media-catalog-service").is_file());

    assert_no_server_crate(&dependency_tree(service, &[]), "the service");
}
