//! Where refused deliveries are recorded: a short JSON record per refusal,
//! on `<prefix>_refused` (outside the events' `<prefix>.>` capture) in a
//! capped stream of its own, `<stream>_REFUSED`. The bridge writes them, the
//! inspector reads them.

use std::time::Duration;

use async_nats::jetstream::stream;
use serde::{Deserialize, Serialize};

use crate::fastpix::subject::SubjectPrefix;
use crate::settings::JetStreamSettings;

/// Most records kept; the oldest go first.
pub const MAX_RECORDS: i64 = 10_000;
/// Most bytes kept (a record is a few hundred bytes).
pub const MAX_BYTES: i64 = 8 * 1024 * 1024;
/// Oldest record kept.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// One refused delivery. Never the body: its size and SHA-256 only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefusalRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub path: String,
    /// HTTP status answered.
    pub status: u16,
    /// The outcome label, as in `fastpix_bridge_requests_total`.
    pub outcome: String,
    pub reason: String,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    /// Bytes read (or declared, when refused before reading).
    pub body_size: Option<u64>,
    /// Hex SHA-256 of the body, when it was read.
    pub body_sha256: Option<String>,
}

/// `<prefix>_refused`.
pub fn subject(prefix: &SubjectPrefix) -> String {
    format!("{}_refused", prefix.as_str())
}

/// `<stream>_REFUSED`.
pub fn stream_name(js: &JetStreamSettings) -> String {
    format!("{}_REFUSED", js.stream)
}

/// The capped stream the records live in.
pub fn stream_config(js: &JetStreamSettings, prefix: &SubjectPrefix) -> stream::Config {
    stream::Config {
        name: stream_name(js),
        subjects: vec![subject(prefix)],
        max_messages: MAX_RECORDS,
        max_bytes: MAX_BYTES,
        max_age: MAX_AGE,
        discard: stream::DiscardPolicy::Old,
        num_replicas: js.replicas,
        storage: super::storage_type(&js.storage),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_outside_the_events_capture() {
        let prefix = SubjectPrefix::new("acme.fastpix").unwrap();
        let s = subject(&prefix);
        assert_eq!(s, "acme.fastpix_refused");
        assert!(!s.starts_with(&format!("{}.", prefix.as_str())));
    }
}
