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

    /// `<prefix>_invalid`: where signed bodies that are not valid events are
    /// kept, outside the events' `<prefix>.>` so that they never take the
    /// events stream's room (the bridge keeps them in `<stream>_INVALID`).
    pub fn invalid_subject(&self) -> Subject {
        Subject(format!("{}_{INVALID_TOKEN}", self.0))
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
        Self::check(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// The checks of [`EventType::parse`], without keeping a copy.
    pub fn check(raw: &str) -> Result<(), InvalidEventType> {
        if raw.is_empty() {
            return Err(InvalidEventType::Empty);
        }
        if raw.len() > MAX_TYPE_BYTES {
            return Err(InvalidEventType::TooLong);
        }
        if raw.bytes().filter(|&b| b == b'.').count() >= MAX_TYPE_TOKENS {
            return Err(InvalidEventType::TooManyTokens);
        }
        // An ASCII control is one byte; C1 controls (U+0080..U+009F) need
        // the characters, and only a non-ASCII type can hold them.
        let control = if raw.is_ascii() {
            raw.bytes().any(|b| b.is_ascii_control())
        } else {
            raw.chars().any(char::is_control)
        };
        if control {
            return Err(InvalidEventType::ControlCharacter);
        }
        Ok(())
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

/// True when `token` of an event type becomes `mapped` in its subject
/// (see [`push_token`]), without building the subject.
fn token_maps_to(token: &str, mapped: &str) -> bool {
    if token.is_empty() {
        return mapped == "_";
    }
    let mut want = mapped.bytes();
    for c in token.chars() {
        let got = if c.is_ascii() && is_subject_byte(c as u8) {
            c as u8
        } else {
            b'_'
        };
        if want.next() != Some(got) {
            return false;
        }
    }
    want.next().is_none()
}

/// True when the subject of `event_type` is matched by the filter that
/// `pattern` (an event-type pattern of subject-safe tokens, `*` and a final
/// `>`) becomes under any prefix. The same answer as mapping both and
/// calling [`SubjectFilter::matches`], but without allocating: this runs
/// for every request.
pub fn type_matches_pattern(event_type: &str, pattern: &str) -> bool {
    EventType::check(event_type).is_ok() && checked_type_matches_pattern(event_type, pattern)
}

/// [`type_matches_pattern`] for a type [`EventType::check`] has accepted.
pub(crate) fn checked_type_matches_pattern(event_type: &str, pattern: &str) -> bool {
    let mut wanted = pattern.split('.');
    let mut got = event_type.split('.');
    loop {
        match (wanted.next(), got.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(w), Some(g)) if token_maps_to(g, w) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A subject filter for a subscription or a JetStream consumer, known to
/// lie under the prefix and to be well formed: tokens the bridge can publish,
/// `*` for one whole token, `>` only as the last token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubjectFilter(String);

impl SubjectFilter {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when a subject published by the bridge matches this filter.
    pub fn matches(&self, subject: &str) -> bool {
        let mut wanted = self.0.split('.');
        let mut got = subject.split('.');
        loop {
            match (wanted.next(), got.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(w), Some(g)) if w == g => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl SubjectFilter {
    /// True when every subject `other` matches is matched by `self` too.
    pub fn covers(&self, other: &SubjectFilter) -> bool {
        let mut mine = self.0.split('.');
        let mut theirs = other.0.split('.');
        loop {
            match (mine.next(), theirs.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(t)) if t != ">" => {}
                (Some(m), Some(t)) if m == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    /// True when some subject matches both filters. JetStream refuses
    /// overlapping filters on one consumer, and two overlapping core
    /// subscriptions would deliver such a subject twice.
    pub fn overlaps(&self, other: &SubjectFilter) -> bool {
        let mut a = self.0.split('.');
        let mut b = other.0.split('.');
        loop {
            match (a.next(), b.next()) {
                (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
                (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
                (Some(x), Some(y)) if x == y => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for SubjectFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SubjectFilter {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a filter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum InvalidFilter {
    #[error("a filter cannot be empty")]
    Empty,
    #[error("`>` may only be the last token (it matches everything after it)")]
    TailNotLast,
    #[error("empty token (two dots in a row, or a dot at either end)")]
    EmptyToken,
    #[error(
        "token {0:?} has characters the bridge never puts in a subject: use letters, digits, `_` or `-`, or `*`/`>` as a whole token"
    )]
    BadToken(String),
    #[error("{0}")]
    Type(#[from] InvalidEventType),
}

impl SubjectPrefix {
    /// Resolves a filter as a user writes it. Text that starts with the prefix
    /// (`fastpix.video.media.*`) is a NATS subject filter, checked and kept.
    /// Anything else is a FastPix event type or pattern (`video.live_stream.*`,
    /// `Video.media.live_stream.created`), mapped token by token exactly as the
    /// bridge maps the types it publishes, with `*` and a final `>` kept as
    /// wildcards.
    pub fn filter(&self, input: &str) -> Result<SubjectFilter, InvalidFilter> {
        let input = input.trim();
        if input.is_empty() {
            return Err(InvalidFilter::Empty);
        }
        match input
            .strip_prefix(self.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
        {
            Some(rest) => self.subject_filter(rest),
            None => self.type_filter(input),
        }
    }

    /// `rest` is what follows `<prefix>.` in a NATS subject filter.
    fn subject_filter(&self, rest: &str) -> Result<SubjectFilter, InvalidFilter> {
        let tokens: Vec<&str> = rest.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            match *token {
                "" => return Err(InvalidFilter::EmptyToken),
                ">" if i + 1 != tokens.len() => return Err(InvalidFilter::TailNotLast),
                ">" | "*" => {}
                t if t.bytes().all(is_subject_byte) => {}
                t => return Err(InvalidFilter::BadToken(t.to_owned())),
            }
        }
        Ok(SubjectFilter(format!("{}.{rest}", self.0)))
    }

    /// An event type or pattern, mapped with the bridge's own token rules.
    fn type_filter(&self, pattern: &str) -> Result<SubjectFilter, InvalidFilter> {
        let pattern = EventType::parse(pattern)?;
        let tokens: Vec<&str> = pattern.0.split('.').collect();
        let mut out = String::with_capacity(self.0.len() + 1 + pattern.0.len());
        out.push_str(&self.0);
        for (i, token) in tokens.iter().enumerate() {
            out.push('.');
            match *token {
                ">" if i + 1 != tokens.len() => return Err(InvalidFilter::TailNotLast),
                ">" | "*" => out.push_str(token),
                t => push_token(&mut out, t),
            }
        }
        Ok(SubjectFilter(out))
    }

    /// `<prefix>.>` as a filter.
    pub fn all(&self) -> SubjectFilter {
        SubjectFilter(self.wildcard())
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

    #[test]
    fn well_formed_types_map_to_themselves_under_the_prefix() {
        for t in crate::fastpix::catalog::known_types() {
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
    fn filters_are_subject_filters_or_type_patterns_mapped_like_types() {
        let p = SubjectPrefix::default();
        let f = |s: &str| p.filter(s).map(|f| f.to_string());
        for (input, want) in [
            ("fastpix.video.media.*", "fastpix.video.media.*"),
            ("fastpix.>", "fastpix.>"),
            (
                "fastpix.video.live_stream.active",
                "fastpix.video.live_stream.active",
            ),
            (
                "video.live_stream.active",
                "fastpix.video.live_stream.active",
            ),
            ("video.live_stream.*", "fastpix.video.live_stream.*"),
            ("video.>", "fastpix.video.>"),
            (">", "fastpix.>"),
            ("*.media.ready", "fastpix.*.media.ready"),
            (
                "Video.media.live_stream.created",
                "fastpix.Video.media.live_stream.created",
            ),
            ("video.media.ready*", "fastpix.video.media.ready_"),
            ("video..idle", "fastpix.video._.idle"),
            ("vidéo.média", "fastpix.vid_o.m_dia"),
            ("  video.media.ready ", "fastpix.video.media.ready"),
        ] {
            assert_eq!(f(input).as_deref(), Ok(want), "{input:?}");
        }
        // A type pattern maps to the very subject the bridge publishes that type on.
        for t in ["video.media.ready*", "video..idle", "vidéo.média", "a b.c"] {
            assert_eq!(
                f(t).unwrap(),
                subject_for_type(&p, t).unwrap().to_string(),
                "{t:?}"
            );
        }
        assert_eq!(f(""), Err(InvalidFilter::Empty));
        assert_eq!(f("video.>.ready"), Err(InvalidFilter::TailNotLast));
        assert_eq!(f("fastpix.>.x"), Err(InvalidFilter::TailNotLast));
        assert_eq!(f("fastpix.video..x"), Err(InvalidFilter::EmptyToken));
        assert_eq!(f("fastpix."), Err(InvalidFilter::EmptyToken));
        assert!(matches!(
            f("fastpix.video.ready*"),
            Err(InvalidFilter::BadToken(_))
        ));
        assert!(matches!(f("fastpix.a b"), Err(InvalidFilter::BadToken(_))));
        assert_eq!(
            f("video.\nready"),
            Err(InvalidFilter::Type(InvalidEventType::ControlCharacter))
        );
        assert_eq!(
            f("a\tb"),
            Err(InvalidFilter::Type(InvalidEventType::ControlCharacter))
        );
        assert_eq!(
            f(&["a"; 17].join(".")),
            Err(InvalidFilter::Type(InvalidEventType::TooManyTokens))
        );
        let acme = SubjectPrefix::new("acme.fastpix").unwrap();
        assert_eq!(
            acme.filter("acme.fastpix.video.>").unwrap().as_str(),
            "acme.fastpix.video.>"
        );
        assert_eq!(
            acme.filter("fastpix.video.>").unwrap().as_str(),
            "acme.fastpix.fastpix.video.>"
        );
    }

    #[test]
    fn filters_match_like_nats() {
        let p = SubjectPrefix::default();
        let m = |f: &str, s: &str| p.filter(f).unwrap().matches(s);
        assert!(m("video.live_stream.*", "fastpix.video.live_stream.active"));
        assert!(!m(
            "video.live_stream.*",
            "fastpix.video.live_stream.simulcast.created"
        ));
        assert!(m("video.>", "fastpix.video.live_stream.simulcast.created"));
        assert!(!m("video.>", "fastpix.video"));
        assert!(m(">", "fastpix.invalid"));
        assert!(!m("video.media.ready", "fastpix.video.media.ready.x"));
        assert!(!m("video.media.ready", "fastpix.video.media"));
    }

    #[test]
    fn filters_know_when_they_cover_or_overlap_each_other() {
        let p = SubjectPrefix::default();
        let f = |s: &str| p.filter(s).unwrap();
        assert!(f(">").covers(&f("video.media.ready")));
        assert!(f("video.>").covers(&f("video.*.ready")));
        assert!(f("video.*.ready").covers(&f("video.media.ready")));
        assert!(f("video.media.ready").covers(&f("video.media.ready")));
        assert!(!f("video.media.ready").covers(&f("video.*.ready")));
        assert!(!f("video.*").covers(&f("video.>")));
        assert!(!f("video.*").covers(&f("video.media.ready")));

        assert!(f("*.media.ready").overlaps(&f("video.*.ready")));
        assert!(f("video.>").overlaps(&f("*.media")));
        assert!(!f("video.live_stream.*").overlaps(&f("video.live_stream.simulcast.*")));
        assert!(!f("video.media.>").overlaps(&f("video.upload.>")));
        assert!(!f("video.media").overlaps(&f("video.media.>")));
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
            "fastpix_invalid"
        );
        assert_eq!(SubjectPrefix::default().wildcard(), "fastpix.>");
    }
}
