//! The layering the README states, checked on the source: in both crates,
//! each folder imports only folders of lower layers (folders of one layer
//! import none of each other). The README's line is the rule; both `lib.rs`
//! say the same, and the Layout block names the folders there are.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{read_repo_file, repo_path};

/// What the layer line starts with, in the README and both `lib.rs`.
const LINE: &str = "Layers, lowest first:";

/// The crates' source folders.
const SOURCES: [&str; 2] = ["src", "fastpix-nats/src"];

/// Layers, lowest first, each a set of folder names.
type Layers = Vec<Vec<String>>;

/// `fastpix → settings → bridge | consumer → cli` as layers.
fn parse_layers(text: &str) -> Option<Layers> {
    let line = text
        .lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .find_map(|l| l.strip_prefix(LINE))?;
    Some(
        line.split('→')
            .map(|layer| layer.split('|').map(|f| f.trim().to_owned()).collect())
            .collect(),
    )
}

fn level(layers: &Layers, folder: &str) -> Option<usize> {
    layers.iter().position(|l| l.iter().any(|f| f == folder))
}

/// Every reference in `source` to a folder of the crate (`crate::nats`, and
/// in the bridge `fastpix_nats::nats`, which it re-exports), with its line.
fn references<'a>(source: &'a str, folders: &'a BTreeSet<String>) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        for root in ["crate::", "fastpix_nats::"] {
            for (at, _) in line.match_indices(root) {
                let preceded = line[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_');
                if preceded {
                    continue;
                }
                let rest = &line[at + root.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if folders.contains(&name) {
                    found.push((n + 1, name));
                }
            }
            // `use fastpix_nats::{consumer, fastpix}`: each name in the braces.
            if let Some(rest) = line.trim().strip_prefix(&format!("pub use {root}{{")) {
                for name in rest.split(['{', '}', ',', ';']).map(str::trim) {
                    if folders.contains(name) {
                        found.push((n + 1, name.to_owned()));
                    }
                }
            }
        }
    }
    found
}

/// The imports of `file` (in folder `from`) that break `layers`.
fn violations(file: &str, from: &str, source: &str, layers: &Layers) -> Vec<String> {
    let folders: BTreeSet<String> = layers.iter().flatten().cloned().collect();
    let Some(mine) = level(layers, from) else {
        return vec![format!("{file}: folder `{from}` is in no layer")];
    };
    references(source, &folders)
        .into_iter()
        .filter(|(_, to)| to != from && level(layers, to).is_some_and(|theirs| theirs >= mine))
        .map(|(line, to)| format!("{file}:{line}: `{from}` imports `{to}`, not below it"))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn readme_layers() -> Layers {
    parse_layers(&read_repo_file("README.md"))
        .unwrap_or_else(|| panic!("the README has no line starting `{LINE}`"))
}

#[test]
fn no_folder_imports_its_own_layer_or_one_above() {
    let layers = readme_layers();
    let mut broken = Vec::new();
    let mut checked = 0;
    for root in SOURCES {
        let mut files = Vec::new();
        rust_files(&repo_path(root), &mut files);
        for path in files {
            let relative = path
                .strip_prefix(repo_path(root))
                .expect("under the source folder");
            let mut parts = relative.components();
            let first = parts.next().expect("a path").as_os_str().to_string_lossy();
            // The crate roots declare the modules; they are no layer.
            if parts.next().is_none() && matches!(&*first, "lib.rs" | "main.rs") {
                continue;
            }
            let from = first.trim_end_matches(".rs");
            let source = std::fs::read_to_string(&path).expect("a source file");
            let file = format!("{root}/{}", relative.display());
            broken.extend(violations(&file, from, &source, &layers));
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} files read");
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
}

#[test]
fn an_upward_or_sideways_import_is_caught() {
    let layers = parse_layers("Layers, lowest first: fastpix → nats → bridge | consumer → cli")
        .expect("a layer line");
    let ok = "use crate::fastpix::subject::Subject;\nuse crate::nats::headers;\n";
    assert!(violations("src/bridge/x.rs", "bridge", ok, &layers).is_empty());
    for (from, import) in [
        ("nats", "use crate::bridge::error::WebhookError;"),
        ("fastpix", "let x = crate::nats::headers::MSG_ID;"),
        ("bridge", "use crate::consumer::Worker;"),
        ("consumer", "pub use fastpix_nats::{bridge, fastpix};"),
        ("bridge", "/// See [`crate::cli::run`]."),
    ] {
        let found = violations("src/x.rs", from, import, &layers);
        assert_eq!(found.len(), 1, "{from}: {import}: {found:?}");
    }
    // Names that merely end like a folder are not imports of it.
    let lookalike = "use my_crate::cli::x;\nuse fastpix_nats_bridge::cli::Cli;";
    assert!(violations("src/x.rs", "nats", lookalike, &layers).is_empty());
}

#[test]
fn both_crate_roots_state_the_readme_layers() {
    let layers = readme_layers();
    let bridge = parse_layers(&read_repo_file("src/lib.rs")).expect("src/lib.rs states the layers");
    assert_eq!(bridge, layers, "src/lib.rs and the README differ");
    // The consumer crate: the same order, less the folders it does not have.
    let lean = parse_layers(&read_repo_file("fastpix-nats/src/lib.rs"))
        .expect("fastpix-nats/src/lib.rs states the layers");
    let has = |f: &String| repo_path(&format!("fastpix-nats/src/{f}")).is_dir();
    let expected: Layers = layers
        .iter()
        .map(|l| l.iter().filter(|f| has(f)).cloned().collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        lean, expected,
        "fastpix-nats/src/lib.rs and the README differ"
    );
}

#[test]
fn the_readme_layout_names_every_folder_and_only_folders_there_are() {
    let readme = read_repo_file("README.md");
    let layout = readme
        .split("## Layout")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("a Layout section with a code block");
    let mut parent = String::new();
    let mut named = BTreeSet::new();
    for line in layout.lines().filter(|l| !l.trim().is_empty()) {
        let indented = line.starts_with(' ');
        let entry = line.split_whitespace().next().expect("an entry");
        for entry in entry.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let path = if indented {
                format!("{parent}{entry}")
            } else {
                entry.to_owned()
            };
            assert!(
                repo_path(&path).exists(),
                "the Layout names {path}, which does not exist"
            );
            named.insert(path.trim_end_matches('/').to_owned());
        }
        if !indented {
            parent = entry.to_owned();
        }
    }
    let layers: BTreeSet<String> = readme_layers().into_iter().flatten().collect();
    for root in SOURCES {
        for entry in std::fs::read_dir(repo_path(root))
            .expect("a source folder")
            .flatten()
        {
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{root}/{name}");
            assert!(named.contains(&path), "the Layout does not name {path}/");
            assert!(layers.contains(&name), "{path}/ is in no layer");
        }
    }
}
