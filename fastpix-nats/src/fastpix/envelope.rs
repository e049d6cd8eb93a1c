//! The FastPix event envelope, read leniently.
//!
//! The bridge publishes the body byte for byte, so it only reads the few
//! fields routing and headers need: `type`, `id`, `object.{type,id}` and
//! `workspace.id` (or `environment.id` in the older envelope). Everything else
//! may be missing, renamed or of any shape. Two things are refused because
//! they make routing ambiguous: a body that is not one JSON object, and a
//! `type` key given twice (parsers disagree on which one wins).
//!
//! [`Event`] is the owned form consumers deserialize into.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::fastpix::subject::{EventType, InvalidEventType};

/// Longest value carried into an optional header; longer ones are dropped.
const MAX_HEADER_VALUE_BYTES: usize = 256;

/// The routing view of a webhook body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// A JSON object without `type`: FastPix's signed validation probe.
    Probe,
    /// A routable event.
    Event(EventFields),
}

/// What the headers of a published message are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields {
    pub event_type: EventType,
    /// Top-level `id`, the idempotency key, when usable as a header value.
    pub id: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub workspace_id: Option<String>,
    /// `createdAt` (or the older `created_at`) as sent, when header-safe.
    pub created_at: Option<String>,
}

/// Why a signed body cannot be routed. The text is the reason given to the
/// client and in `FastPix-Bridge-Error`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvalidBody {
    #[error("body is not a JSON object: {0}")]
    NotJsonObject(String),
    #[error("body has the key `type` more than once")]
    DuplicateType,
    #[error("`type` is not a string")]
    TypeNotString,
    /// A string whose escapes do not decode, such as a lone surrogate `\ud800`.
    #[error("`type` is not valid Unicode")]
    TypeNotUnicode,
    #[error(transparent)]
    Type(#[from] InvalidEventType),
}

/// The top-level fields routing reads. Deserialized by hand so that a
/// second `type` key is seen as such ([`Top::duplicate_type`]) rather than
/// read back from the text of a serde error.
#[derive(Default)]
struct Top<'a> {
    /// `None` when absent; `"type": null` is `Some("null")`: the first is a
    /// probe, the second an invalid event.
    kind: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    object: Option<&'a RawValue>,
    workspace: Option<&'a RawValue>,
    environment: Option<&'a RawValue>,
    duplicate_type: bool,
    /// `createdAt`, else the older `created_at`: only CloudEvents' `time`
    /// reads it, so a repeated or second spelling is ignored, never refused.
    created_at: Option<&'a RawValue>,
}

/// The keys of [`Top`]; escaped spellings (`"typ\u0065"`) are the same key.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum TopKey {
    Type,
    Id,
    Object,
    Workspace,
    Environment,
    #[serde(rename = "createdAt", alias = "created_at")]
    CreatedAt,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Top<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Top<'de>, A::Error> {
                use serde::de::{Error, IgnoredAny};
                let mut top = Top::default();
                while let Some(key) = map.next_key::<TopKey>()? {
                    let (slot, name) = match key {
                        TopKey::Type if top.kind.is_some() => {
                            // Ambiguous whatever follows: skip the rest, unread.
                            top.duplicate_type = true;
                            map.next_value::<IgnoredAny>()?;
                            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                            return Ok(top);
                        }
                        TopKey::Type => (&mut top.kind, "type"),
                        TopKey::Id => (&mut top.id, "id"),
                        TopKey::Object => (&mut top.object, "object"),
                        TopKey::Workspace => (&mut top.workspace, "workspace"),
                        TopKey::Environment => (&mut top.environment, "environment"),
                        TopKey::CreatedAt if top.created_at.is_none() => {
                            top.created_at = Some(map.next_value()?);
                            continue;
                        }
                        TopKey::CreatedAt | TopKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(A::Error::duplicate_field(name));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(top)
            }
        }
        d.deserialize_map(Visit)
    }
}

#[derive(Deserialize)]
struct Ref<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

impl Envelope {
    /// Reads the routing fields of `body`.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidBody> {
        // serde's derived visitors also accept an array as a struct; only an object routes.
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(InvalidBody::NotJsonObject("expected an object".to_owned()));
        }
        let top: Top<'_> =
            serde_json::from_slice(body).map_err(|e| InvalidBody::NotJsonObject(e.to_string()))?;
        if top.duplicate_type {
            return Err(InvalidBody::DuplicateType);
        }
        let Some(kind) = top.kind else {
            return Ok(Envelope::Probe);
        };
        let raw_type = json_str(kind.get()).ok_or_else(|| {
            if kind.get().starts_with('"') {
                InvalidBody::TypeNotUnicode
            } else {
                InvalidBody::TypeNotString
            }
        })?;
        let event_type = EventType::parse(&raw_type)?;
        let object = top.object.and_then(parse_ref);
        let (object_type, object_id) = match object {
            Some(r) => (r.kind.and_then(header_string), r.id.and_then(header_string)),
            None => (None, None),
        };
        let workspace_id = top
            .workspace
            .or(top.environment)
            .and_then(parse_ref)
            .and_then(|r| r.id)
            .and_then(header_string);
        Ok(Envelope::Event(EventFields {
            event_type,
            id: top.id.and_then(header_string),
            object_type,
            object_id,
            workspace_id,
            created_at: top
                .created_at
                .filter(|raw| raw.get().starts_with('"'))
                .and_then(header_string),
        }))
    }
}

fn parse_ref(raw: &RawValue) -> Option<Ref<'_>> {
    // Lenient: an `object` or `workspace` of another shape is ignored, not refused.
    serde_json::from_str(raw.get()).ok()
}

/// A JSON string's value, borrowed from the body unless it has escapes
/// (serde's `Cow` impl always copies, hence the two steps).
fn json_str(text: &str) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(text) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

/// A string (or number, as some ids are) that can travel in a NATS header.
fn header_string(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    // A string borrows from the body unless it has escapes: one copy, at the end.
    let s: Cow<'_, str> = if text.starts_with('"') {
        json_str(text)?
    } else {
        Cow::Owned(
            serde_json::from_str::<serde_json::Number>(text)
                .ok()?
                .to_string(),
        )
    };
    (!s.is_empty() && s.len() <= MAX_HEADER_VALUE_BYTES && !s.chars().any(char::is_control))
        .then(|| s.into_owned())
}

/// A reference to another FastPix object (`object`, `workspace`, `environment`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectRef {
    #[serde(
        rename = "type",
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
}

/// A FastPix event as a consumer reads it: only `type` is required, both
/// spellings of the older envelope are accepted, an optional field of an
/// unexpected shape reads as absent rather than failing the event, and
/// `createdAt` keeps its nanoseconds (as the string FastPix sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub event_type: String,
    /// The idempotency key: the same event delivered twice has the same id.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_ref",
        skip_serializing_if = "Option::is_none"
    )]
    pub object: Option<ObjectRef>,
    /// `workspace`, or `environment` in the older envelope.
    #[serde(alias = "environment", default, deserialize_with = "lenient_ref")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<ObjectRef>,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<String>,
    /// `createdAt`, or `created_at` in the older envelope.
    #[serde(rename = "createdAt", alias = "created_at", default)]
    #[serde(
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Event {
    /// Reads a message payload (the webhook body, byte for byte).
    pub fn from_json(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// `createdAt` as a UTC timestamp with its nanoseconds; `None` when it
    /// is missing or not RFC 3339.
    pub fn created_at_time(&self) -> Option<time::OffsetDateTime> {
        let raw = self.created_at.as_deref()?;
        time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.to_offset(time::UtcOffset::UTC))
    }

    /// `object.id`: the media, upload or live stream the event is about.
    pub fn object_id(&self) -> Option<&str> {
        self.object.as_ref().and_then(|o| o.id.as_deref())
    }

    /// `workspace.id` (or `environment.id` in the older envelope).
    pub fn workspace_id(&self) -> Option<&str> {
        self.workspace.as_ref().and_then(|w| w.id.as_deref())
    }
}

/// A string, or a number as some ids are sent; anything else reads as absent.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// An object reference; any other shape reads as absent.
fn lenient_ref<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ObjectRef>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value
        .is_object()
        .then(|| serde_json::from_value(value).ok())
        .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> EventFields {
        match Envelope::parse(body.as_bytes()) {
            Ok(Envelope::Event(e)) => e,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn reads_the_current_envelope() {
        let e = event(
            r#"{"type":"video.media.ready","id":"3f0c","object":{"type":"media","id":"7318"},
               "workspace":{"id":"ws1","name":"prod"},"status":"ready","data":{"x":[1,2]},
               "createdAt":"2026-05-11T20:42:16.361817248Z","attempts":[]}"#,
        );
        assert_eq!(e.event_type.as_str(), "video.media.ready");
        assert_eq!(e.id.as_deref(), Some("3f0c"));
        assert_eq!(e.object_type.as_deref(), Some("media"));
        assert_eq!(e.object_id.as_deref(), Some("7318"));
        assert_eq!(e.workspace_id.as_deref(), Some("ws1"));
    }

    #[test]
    fn reads_the_older_envelope_and_tolerates_odd_optional_fields() {
        let e = event(
            r#"{"environment":{"id":"env9"},"type":"video.live_stream.idle","webhookId":5,"created_at":"x"}"#,
        );
        assert_eq!(e.workspace_id.as_deref(), Some("env9"));
        assert_eq!(e.id, None);
        let e = event(r#"{"type":"t","id":42,"object":"weird","workspace":[1],"data":null}"#);
        assert_eq!(e.id.as_deref(), Some("42"));
        assert_eq!((e.object_id, e.workspace_id), (None, None));
        let e = event(r#"{"type":"t","id":"a\r\nb","object":{"id":{"deep":1}}}"#);
        assert_eq!((e.id, e.object_id), (None, None));
    }

    #[test]
    fn an_object_without_type_is_a_probe() {
        assert_eq!(Envelope::parse(b"{}"), Ok(Envelope::Probe));
        assert_eq!(
            Envelope::parse(br#" {"hello":"fastpix"} "#),
            Ok(Envelope::Probe)
        );
    }

    #[test]
    fn unroutable_bodies_are_refused_with_a_reason() {
        let err = |b: &[u8]| Envelope::parse(b).unwrap_err();
        assert!(matches!(err(b"[1,2]"), InvalidBody::NotJsonObject(_)));
        assert!(matches!(
            err(b"\"video.media.ready\""),
            InvalidBody::NotJsonObject(_)
        ));
        assert!(matches!(err(b"   "), InvalidBody::NotJsonObject(_)));
        assert!(matches!(
            err(b"{\"type\":\"a\"} trailing"),
            InvalidBody::NotJsonObject(_)
        ));
        assert!(matches!(
            err(b"{\"type\":\"v\xff\"}"),
            InvalidBody::NotJsonObject(_)
        ));
        assert_eq!(
            err(br#"{"type":"a","type":"b"}"#),
            InvalidBody::DuplicateType
        );
        assert_eq!(err(br#"{"type":5}"#), InvalidBody::TypeNotString);
        assert_eq!(err(br#"{"type":null}"#), InvalidBody::TypeNotString);
        assert_eq!(err(br#"{"type":"a\ud800b"}"#), InvalidBody::TypeNotUnicode);
        assert_eq!(
            err(br#"{"type":""}"#),
            InvalidBody::Type(InvalidEventType::Empty)
        );
    }

    #[test]
    fn deep_nesting_in_fields_the_bridge_does_not_read_is_skipped_without_recursion() {
        let deep = format!(
            "{{\"type\":\"a\",\"d\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            Envelope::parse(deep.as_bytes()),
            Ok(Envelope::Event(_))
        ));
        let deep_object = format!(
            "{{\"type\":\"a\",\"object\":{{\"id\":{}1{}}}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            Envelope::parse(deep_object.as_bytes()),
            Ok(Envelope::Event(EventFields {
                object_id: None,
                ..
            }))
        ));
        let unbalanced = format!("{{\"type\":\"a\",\"d\":{}}}", "[".repeat(100_000));
        assert!(Envelope::parse(unbalanced.as_bytes()).is_err());
    }

    #[test]
    fn consumers_read_events_leniently() {
        let e: Event = serde_json::from_str(
            r#"{"type":"video.media.ready","id":"1","environment":{"id":"e"},"created_at":"2026-05-11T20:42:16.361817248Z","extra":1}"#,
        )
        .unwrap();
        assert_eq!(e.workspace.as_ref().unwrap().id.as_deref(), Some("e"));
        assert_eq!(
            e.created_at.as_deref(),
            Some("2026-05-11T20:42:16.361817248Z")
        );
        assert_eq!(e.created_at_time().unwrap().nanosecond(), 361_817_248);
        assert_eq!(e.workspace_id(), Some("e"));

        let odd = Event::from_json(
            br#"{"type":"t","id":42,"object":"weird","workspace":[1],"status":{"a":1},"createdAt":7,"data":null}"#,
        )
        .unwrap();
        assert_eq!(odd.id.as_deref(), Some("42"));
        assert_eq!(
            (&odd.object, &odd.workspace, &odd.status),
            (&None, &None, &None)
        );
        assert_eq!(odd.created_at.as_deref(), Some("7"));
        assert_eq!(odd.created_at_time(), None);
        let odd = Event::from_json(br#"{"type":"t","object":{"id":9,"type":[]}}"#).unwrap();
        assert_eq!(odd.object_id(), Some("9"));
        assert!(Event::from_json(br#"{"id":"no type"}"#).is_err());
    }
}
