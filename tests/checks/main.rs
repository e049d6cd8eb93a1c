//! Checks of the repository itself that start no server: the deploy files
//! (compose, Dockerfile, Kubernetes, Prometheus and Grafana wiring), the
//! layering of the source, and the consumer crate building on its own. All
//! modules build into one test binary.

mod consumer_crate;
mod deploy_files;
mod layering;
#[path = "../common/repo_files.rs"]
mod repo_files;

pub use repo_files::{read_repo_file, repo_path};
