//! Where forwarders say who delivers for each destination, and how it goes:
//! the KV bucket `<stream>_FORWARD_LEASES`, one key per destination's
//! consumer (`forward-<name>`), its value a [`LeaseState`] renewed every few
//! seconds by the forwarder holding the lease. The inspector reads it.

use serde::{Deserialize, Serialize};

/// The bucket of `stream`'s forward leases.
pub fn bucket_name(stream: &str) -> String {
    format!("{stream}_FORWARD_LEASES")
}

/// What the holder of a destination's lease writes at each renewal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseState {
    /// The forwarder process holding it.
    pub holder: String,
    pub destination: String,
    /// True while the destination is down and only probed.
    pub paused: bool,
    /// The last answer's status (`200`, `503`, `timeout`, `unreachable`).
    pub last_status: String,
    /// When this was written (RFC 3339).
    pub updated: String,
}
