//! `[http]`: the bridge's listeners and how deliveries are admitted.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{SettingsError, invalid};

/// `[http]`: the public and admin listeners, and how much each delivery may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address of the public webhook listener (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Address of the admin listener: `/metrics`, `/healthz`, `/readyz`.
    /// Separate so the port exposed to FastPix need not expose metrics.
    pub admin_listen: SocketAddr,
    /// Largest body accepted; also kept under the NATS server's `max_payload`.
    pub max_body_bytes: usize,
    /// Requests handled at once. Bodies are buffered only for these, so at
    /// most `max_in_flight × max_body_bytes` of body is held.
    pub max_in_flight: usize,
    /// How long a delivery that finds every slot taken waits for one (first
    /// come, first served) before it is refused with 503: absorbs bursts.
    /// A waiting request has not read its body. `0s`: refuse at once.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Deliveries that may wait for a slot at once; beyond it, 503 at once.
    pub max_queued: usize,
    /// A client must deliver its whole body within this, or gets 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// A client must deliver a request's headers within this (and an idle
    /// keep-alive connection must start its next request within it), or the
    /// connection is closed: slow or silent clients cannot hold sockets.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            max_body_bytes: 1024 * 1024,
            max_in_flight: 256,
            queue_timeout: Duration::from_secs(1),
            max_queued: 1024,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl HttpSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.max_body_bytes == 0 {
            return Err(invalid("http.max_body_bytes", "must be above 0"));
        }
        // NATS refuses any max_payload above 64 MiB, so no server can take more.
        if self.max_body_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "http.max_body_bytes",
                "must be at most 67108864 (the largest max_payload a NATS server allows)",
            ));
        }
        let (public, admin) = (self.listen, self.admin_listen);
        let overlapping_ips = public.ip() == admin.ip()
            || public.ip().is_unspecified()
            || admin.ip().is_unspecified();
        if admin.port() != 0 && admin.port() == public.port() && overlapping_ips {
            return Err(invalid(
                "http.admin_listen",
                format!(
                    "{admin} clashes with http.listen ({public}); give the admin listener its own port"
                ),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(invalid("http.max_in_flight", "must be above 0"));
        }
        if self.body_timeout.is_zero() {
            return Err(invalid("http.body_timeout", "must be above 0"));
        }
        if self.header_timeout.is_zero() {
            return Err(invalid("http.header_timeout", "must be above 0"));
        }
        Ok(())
    }
}
