//! `[jetstream]`: the stream events are stored in.

use std::time::Duration;

use serde::Deserialize;

use super::{SettingsError, invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    File,
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JetStreamSettings {
    /// Off: core NATS publish + flush, at-most-once.
    pub enabled: bool,
    pub stream: String,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is stored once.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    pub replicas: usize,
    pub storage: Storage,
    /// Most bytes the events stream keeps (messages, headers and store
    /// overhead). Reached, it refuses new events (`discard = new`): nothing
    /// stored is ever dropped to make room, and the bridge answers `503`
    /// with outcome `storage_full` until there is room again. Bounds what
    /// one stream can take from a NATS server shared with others.
    pub max_bytes: u64,
    /// Largest message the stream takes, headers included [default:
    /// `http.max_body_bytes` plus [`HEADER_ROOM_BYTES`]].
    pub max_msg_size: Option<u32>,
}

/// `jetstream.max_bytes`'s default, 8 GiB: about 6.8 million events at
/// ~1,250 bytes each as stored (a typical FastPix event with the bridge's
/// headers, on the file store; docs/settings.md says how it was measured).
pub const DEFAULT_MAX_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// The smallest `jetstream.max_bytes`: a few dozen events.
pub const MIN_MAX_BYTES: u64 = 64 * 1024;

/// Room kept for the headers the bridge adds, above the largest body.
pub const HEADER_ROOM_BYTES: usize = 4096;

impl Default for JetStreamSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            stream: "FASTPIX".to_owned(),
            max_age: Duration::from_secs(30 * 24 * 3600),
            duplicate_window: Duration::from_secs(3600),
            replicas: 1,
            storage: Storage::File,
            max_bytes: DEFAULT_MAX_BYTES,
            max_msg_size: None,
        }
    }
}

impl JetStreamSettings {
    /// The largest message the stream takes: `max_msg_size`, or room for
    /// the largest body and its headers.
    pub fn message_size_limit(&self, max_body_bytes: usize) -> u32 {
        self.max_msg_size.unwrap_or_else(|| {
            let room = (max_body_bytes + HEADER_ROOM_BYTES) as u64;
            u32::try_from(room.min(self.max_bytes)).unwrap_or(u32::MAX)
        })
    }

    /// `max_body_bytes` is `http.max_body_bytes`: the stream must take the
    /// largest body the bridge accepts, with its headers.
    pub(super) fn validate(&self, max_body_bytes: usize) -> Result<(), SettingsError> {
        if self.enabled {
            // Below a few events the bound means nothing; above i64 NATS cannot take it.
            if self.max_bytes < MIN_MAX_BYTES || self.max_bytes > i64::MAX as u64 {
                return Err(invalid(
                    "jetstream.max_bytes",
                    format!("must be from {MIN_MAX_BYTES} to {} bytes", i64::MAX),
                ));
            }
            if let Some(size) = self.max_msg_size {
                let needed = max_body_bytes + HEADER_ROOM_BYTES;
                if (size as usize) < needed || size > i32::MAX as u32 {
                    return Err(invalid(
                        "jetstream.max_msg_size",
                        format!(
                            "must be at least {needed} bytes (http.max_body_bytes {max_body_bytes} plus {HEADER_ROOM_BYTES} for headers), and at most {}",
                            i32::MAX
                        ),
                    ));
                }
                if u64::from(size) > self.max_bytes {
                    return Err(invalid(
                        "jetstream.max_msg_size",
                        "must not be above jetstream.max_bytes",
                    ));
                }
            }
            if !is_valid_stream_name(&self.stream) {
                return Err(invalid("jetstream.stream", STREAM_NAME_RULE));
            }
            if self.replicas == 0 || self.replicas > 5 {
                return Err(invalid("jetstream.replicas", "must be from 1 to 5"));
            }
            if self.duplicate_window.is_zero() {
                return Err(invalid(
                    "jetstream.duplicate_window",
                    "must be above 0, or retried deliveries would be stored twice",
                ));
            }
            if !self.max_age.is_zero() && self.duplicate_window > self.max_age {
                return Err(invalid(
                    "jetstream.duplicate_window",
                    "must not be longer than jetstream.max_age",
                ));
            }
        }
        Ok(())
    }
}

/// A JetStream stream name: `jetstream.stream`, or a webhook's own `stream`.
pub(super) fn is_valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

pub(super) const STREAM_NAME_RULE: &str =
    "must be non-empty, without spaces, `.`, `*`, `>`, `/` or `\\`";

#[cfg(test)]
mod tests {
    use super::super::tests::{SECRET, load, load_err};

    #[test]
    fn the_stream_is_bounded_and_its_messages_fit_the_largest_body() {
        let s = load(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)]).unwrap();
        assert_eq!(s.jetstream.max_bytes, 8 * 1024 * 1024 * 1024);
        assert_eq!(s.jetstream.max_msg_size, None);
        assert_eq!(s.jetstream.message_size_limit(1_048_576), 1_048_576 + 4096);

        let s = load(&[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__JETSTREAM__MAX_BYTES", "1073741824"),
            ("FASTPIX_BRIDGE__JETSTREAM__MAX_MSG_SIZE", "2000000"),
        ])
        .unwrap();
        assert_eq!(s.jetstream.max_bytes, 1 << 30);
        assert_eq!(s.jetstream.message_size_limit(1_048_576), 2_000_000);

        for (key, value, named) in [
            ("MAX_BYTES", "1000", "jetstream.max_bytes"),
            ("MAX_BYTES", "lots", "FASTPIX_BRIDGE__JETSTREAM__MAX_BYTES"),
            ("MAX_MSG_SIZE", "1048576", "jetstream.max_msg_size"),
            (
                "MAX_MSG_SIZE",
                "-1",
                "FASTPIX_BRIDGE__JETSTREAM__MAX_MSG_SIZE",
            ),
        ] {
            let var = format!("FASTPIX_BRIDGE__JETSTREAM__{key}");
            let err = load_err(&[
                ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
                (var.as_str(), value),
            ]);
            assert!(err.contains(named), "{key}={value}: {err}");
        }
        // A message may not be larger than the whole stream.
        let err = load_err(&[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__JETSTREAM__MAX_BYTES", "2097152"),
            ("FASTPIX_BRIDGE__JETSTREAM__MAX_MSG_SIZE", "3000000"),
        ]);
        assert!(err.contains("jetstream.max_msg_size"), "{err}");
    }
}
