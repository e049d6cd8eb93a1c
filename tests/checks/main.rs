//! Checks of the repository itself that start no server: the layering of
//! the source, and the consumer crate building on its own. All modules
//! build into one test binary.

mod consumer_crate;
mod layering;

use std::path::{Path, PathBuf};

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn read_repo_file(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
