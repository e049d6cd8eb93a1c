//! Event type → NATS subject mapping.
//!
//! FastPix event types are dotted names (`video.live_stream.active`), but a
//! `type` is attacker-shaped input until the signature says otherwise and
//! FastPix itself sends camelCase and a capital `V`. The mapping is therefore
//! total: every string that passes [`EventType::parse`] maps to a valid subject
//! under the prefix, and nothing can produce a wildcard, whitespace or a token
//! outside the prefix.

use std::fmt;

/// Longest `type` accepted, in bytes.
pub const MAX_TYPE_BYTES: usize = 256;
/// Most dot-separated tokens a `type` may have.
pub const MAX_TYPE_TOKENS: usize = 16;
/// Token under the prefix where undeliverable-as-event bodies are kept.
pub const INVALID_TOKEN: &str = "invalid";

/// A NATS subject that is known to be valid for publishing: non-empty
/// tokens of `[A-Za-z0-9_-]` joined by dots. It can only be built through
/// this module, so holding one is proof of validity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subject(String);

impl Subject {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Subject {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The root every published subject starts with (`fastpix`, `acme.fastpix`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectPrefix(String);

/// Why a configured prefix was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "must be one or more dot-separated tokens of letters, digits, `_` or `-` (no wildcards, spaces or empty tokens), got {0:?}"
)]
pub struct InvalidPrefix(pub String);

impl SubjectPrefix {
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let ok = !prefix.is_empty()
            && prefix
                .split('.')
                .all(|token| !token.is_empty() && token.bytes().all(is_subject_byte));
        if ok {
            Ok(Self(prefix.to_owned()))
        } else {
            Err(InvalidPrefix(prefix.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix>.>`: the filter that captures every subject the bridge publishes.
    pub fn wildcard(&self) -> String {
        format!("{}.>", self.0)
    }

    /// `<prefix>.invalid`: where signed bodies that are not valid events are kept.
    pub fn invalid_subject(&self) -> Subject {
        Subject(format!("{}.{INVALID_TOKEN}", self.0))
    }

    /// The subject an event of this type is published on.
    pub fn subject_for(&self, event_type: &EventType) -> Subject {
        let mut out = String::with_capacity(self.0.len() + 1 + event_type.0.len());
        out.push_str(&self.0);
        for token in event_type.0.split('.') {
            out.push('.');
            push_token(&mut out, token);
        }
        Subject(out)
    }
}

impl Default for SubjectPrefix {
    fn default() -> Self {
        Self("fastpix".to_owned())
    }
}

impl fmt::Display for SubjectPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A FastPix event type that can be routed: a non-empty string of at most
/// [`MAX_TYPE_BYTES`] bytes and [`MAX_TYPE_TOKENS`] tokens, with no control
/// characters (it travels verbatim in the `FastPix-Event-Type` header, and a
/// NATS header cannot carry CR or LF).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventType(String);

/// Why a `type` cannot be routed; the text goes into `FastPix-Bridge-Error`
/// and the 400 answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum InvalidEventType {
    #[error("`type` is empty")]
    Empty,
    #[error("`type` is longer than 256 bytes")]
    TooLong,
    #[error("`type` has more than 16 dot-separated tokens")]
    TooManyTokens,
    #[error("`type` contains a control character")]
    ControlCharacter,
}

impl EventType {
    pub fn parse(raw: &str) -> Result<Self, InvalidEventType> {
        if raw.is_empty() {
            return Err(InvalidEventType::Empty);
        }
        if raw.len() > MAX_TYPE_BYTES {
            return Err(InvalidEventType::TooLong);
        }
        if raw.split('.').count() > MAX_TYPE_TOKENS {
            return Err(InvalidEventType::TooManyTokens);
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidEventType::ControlCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The type exactly as FastPix sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_subject_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Appends one token: case kept, every character outside `[A-Za-z0-9_-]`
/// replaced by one `_` (per character, not per byte), empty becomes `_`.
fn push_token(out: &mut String, token: &str) {
    if token.is_empty() {
        out.push('_');
        return;
    }
    for c in token.chars() {
        if c.is_ascii() && is_subject_byte(c as u8) {
            out.push(c);
        } else {
            out.push('_');
        }
    }
}

/// Maps an event type to its subject under `prefix`; convenience for
/// consumers that hold plain strings.
pub fn subject_for_type(
    prefix: &SubjectPrefix,
    event_type: &str,
) -> Result<Subject, InvalidEventType> {
    Ok(prefix.subject_for(&EventType::parse(event_type)?))
}

/// True when `s` is a subject this module could have produced under `prefix`.
/// Used by property tests and consumers that validate filters.
pub fn is_valid_subject_under(prefix: &SubjectPrefix, s: &str) -> bool {
    s.strip_prefix(prefix.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('.')
                    .all(|t| !t.is_empty() && t.bytes().all(is_subject_byte))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(t: &str) -> String {
        subject_for_type(&SubjectPrefix::default(), t)
            .unwrap()
            .to_string()
    }

    /// Every type the seed lists, spelled as the seed spells it.
    pub const SEED_TYPES: &[&str] = &[
        "video.media.created",
        "video.media.ready",
        "video.media.failed",
        "video.media.delete",
        "video.media.updated",
        "video.upload.media_created",
        "video.upload.created",
        "video.upload.ready",
        "video.upload.failed",
        "Video.media.live_stream.created",
        "video.live_stream.created",
        "video.live_stream.connected",
        "video.live_stream.recording",
        "video.live_stream.active",
        "video.live_stream.disconnected",
        "video.live_stream.idle",
        "video.asset.created",
        "video.live_stream.updated",
        "video.live_stream.enabled",
        "video.live_stream.disabled",
        "video.live_stream.deleted",
        "video.live_stream.simulcast.created",
        "video.live_stream.simulcast.deleted",
    ];

    /// Types FastPix's SDKs and newer docs send beyond the seed.
    const SDK_TYPES: &[&str] = &[
        "video.media.deleted",
        "video.media.upload",
        "video.media.upload.cancelled",
        "video.media.track.created",
        "video.media.track.ready",
        "video.media.track.updated",
        "video.media.track.deleted",
        "video.media.source.ready",
        "video.media.source.deleted",
        "video.media.subtitle.generated.ready",
        "video.media.mp4Support.ready",
        "video.media.intro.ready",
        "video.live_stream.simulcast_target.created",
        "video.live_stream.simulcast_target.updated",
        "video.live_stream.simulcast_target.deleted",
        "video.mediaAI.chapters.ready",
        "video.mediaAI.namedEntities.ready",
        "video.mediaAI.summary.ready",
    ];

    #[test]
    fn well_formed_types_map_to_themselves_under_the_prefix() {
        for t in SEED_TYPES.iter().chain(SDK_TYPES) {
            assert_eq!(map(t), format!("fastpix.{t}"), "type {t}");
        }
    }

    #[test]
    fn mapping_table() {
        let table = [
            (
                "video.live_stream.active",
                "fastpix.video.live_stream.active",
            ),
            (
                "video.mediaAI.summary.ready",
                "fastpix.video.mediaAI.summary.ready",
            ),
            (
                "Video.media.live_stream.created",
                "fastpix.Video.media.live_stream.created",
            ),
            ("video.media.ready*", "fastpix.video.media.ready_"),
            ("video..idle", "fastpix.video._.idle"),
            ("video.>", "fastpix.video._"),
            ("*", "fastpix._"),
            (">", "fastpix._"),
            (".", "fastpix._._"),
            ("..", "fastpix._._._"),
            ("video.media ready", "fastpix.video.media_ready"),
            ("vidéo.média", "fastpix.vid_o.m_dia"),
            ("video.🎬", "fastpix.video._"),
            ("a$b.c/d", "fastpix.a_b.c_d"),
            ("invalid", "fastpix.invalid"),
            ("UPPER.lower-dash_under", "fastpix.UPPER.lower-dash_under"),
        ];
        for (input, want) in table {
            assert_eq!(map(input), want, "type {input:?}");
        }
    }

    #[test]
    fn hostile_types_are_refused() {
        assert_eq!(EventType::parse(""), Err(InvalidEventType::Empty));
        assert_eq!(
            EventType::parse(&"a".repeat(257)),
            Err(InvalidEventType::TooLong)
        );
        assert!(EventType::parse(&"a".repeat(256)).is_ok());
        assert_eq!(
            EventType::parse(&["a"; 17].join(".")),
            Err(InvalidEventType::TooManyTokens)
        );
        assert!(EventType::parse(&["a"; 16].join(".")).is_ok());
        for bad in ["video\r\n.x", "video.\nready", "a\tb", "a\u{0}b", "a\u{7f}"] {
            assert_eq!(
                EventType::parse(bad),
                Err(InvalidEventType::ControlCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_mapped_subject_is_valid_under_the_prefix() {
        let prefix = SubjectPrefix::new("acme.fastpix").unwrap();
        for t in ["video.media.ready", "*", ">", "..", " ", "a.b c.d", "é"] {
            let s = prefix.subject_for(&EventType::parse(t).unwrap());
            assert!(is_valid_subject_under(&prefix, s.as_str()), "{t:?} → {s}");
        }
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(SubjectPrefix::new("fastpix").is_ok());
        assert!(SubjectPrefix::new("acme.fastpix-prod").is_ok());
        for bad in [
            "",
            "fastpix.",
            ".fastpix",
            "fast pix",
            "fastpix.*",
            "fastpix.>",
            "a..b",
        ] {
            assert!(SubjectPrefix::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            SubjectPrefix::default().invalid_subject().as_str(),
            "fastpix.invalid"
        );
        assert_eq!(SubjectPrefix::default().wildcard(), "fastpix.>");
    }
}
