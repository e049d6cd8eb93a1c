//! What happens to one delivery, independent of HTTP: probe detection,
//! signature check, envelope reading, header building, publishing.
//! The HTTP layer only reads the body and maps the result to a status.

use std::borrow::Cow;

use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::bridge::error::{WebhookError, publish_outcome};
use crate::fastpix::catalog::Family;
use crate::fastpix::envelope::{Envelope, EventFields};
use crate::nats::headers::{encode_value, names};
use crate::nats::sink::{Outgoing, Sink, Stored};
use crate::settings::{CloudEvents, WebhookConfig};

/// A delivery the bridge answered 2xx for.
#[derive(Debug)]
pub enum Accepted {
    /// FastPix's validation probe: answered, not published.
    Probe,
    Published {
        stored: Stored,
        /// The event's family in the catalog, for the metrics.
        family: Option<Family>,
    },
}

/// One incoming delivery.
pub struct WebhookDelivery<'a> {
    pub signature: Option<&'a [u8]>,
    /// W3C trace context to carry into the message, when the sender gave one.
    pub traceparent: Option<&'a str>,
    /// Borrowed: the caller keeps it for the record of a refusal.
    pub body: &'a Bytes,
}

/// True for what FastPix sends when an endpoint is registered: an empty
/// body or an empty JSON object.
fn is_probe_body(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return true;
    }
    trimmed.len() <= 64
        && trimmed.first() == Some(&b'{')
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(trimmed)
            .is_ok_and(|m| m.is_empty())
}

/// Runs the delivery rules in order and publishes when they allow it.
pub async fn ingest<S: Sink>(
    webhook: &WebhookConfig,
    publisher: &S,
    delivery: WebhookDelivery<'_>,
) -> Result<Accepted, WebhookError> {
    let signature = delivery.signature.filter(|s| !s.is_empty());
    match signature {
        None if is_probe_body(delivery.body) => return Ok(Accepted::Probe),
        None if !webhook.allow_unsigned => return Err(WebhookError::Unsigned),
        Some(sig) => {
            // One set for the whole check, even if a reload swaps it meanwhile.
            let verifier = webhook.secrets.current();
            // With no secret configured (allow_unsigned), a signature cannot be checked.
            if !verifier.is_empty() && !verifier.verify(sig, delivery.body) {
                return Err(WebhookError::BadSignature);
            }
        }
        None => {}
    }

    let mut fields = match Envelope::parse(delivery.body) {
        Ok(Envelope::Probe) => return Ok(Accepted::Probe),
        Ok(Envelope::Event(fields)) => fields,
        Err(reason) => {
            keep_invalid(webhook, publisher, delivery.body, &reason.to_string()).await?;
            return Err(WebhookError::Invalid { reason });
        }
    };
    let subject = webhook.prefix.subject_for(&fields.event_type);
    // Filled in the request's span (a `debug` span: free at the default level).
    let span = tracing::Span::current();
    span.record("event_id", fields.id.as_deref());
    span.record("event_type", fields.event_type.as_str());
    span.record("subject", subject.as_str());
    let traceparent = delivery.traceparent.filter(|tp| is_traceparent(tp));
    span.record("traceparent", traceparent);
    let headers = event_headers(webhook, &mut fields, delivery.body, traceparent);
    let published = publisher
        .publish(Outgoing {
            subject,
            headers,
            payload: delivery.body.clone(),
        })
        .await;
    match published {
        Ok(stored) => Ok(Accepted::Published {
            stored,
            family: Family::of_type(fields.event_type.as_str()),
        }),
        Err(e) => {
            // Logged here, where the event is known, since the span carrying
            // it is off at the default level.
            tracing::warn!(
                event_id = fields.id.as_deref(),
                event_type = fields.event_type.as_str(),
                subject = webhook.prefix.subject_for(&fields.event_type).as_str(),
                traceparent,
                outcome = %publish_outcome(&e),
                error = %e,
                "event not stored"
            );
            Err(WebhookError::Unavailable(e))
        }
    }
}

/// Stores a signed but unroutable body on `<prefix>_invalid` (in its own
/// stream, never taking the events stream's room), so a bad
/// delivery is never silently lost. Its id is the body's hash, so FastPix's
/// retries of it are stored once. If NATS cannot take it the delivery is
/// answered 503, never 400: a 400 would tell FastPix to stop retrying.
async fn keep_invalid<S: Sink>(
    webhook: &WebhookConfig,
    publisher: &S,
    body: &Bytes,
    reason: &str,
) -> Result<Stored, WebhookError> {
    let mut headers = HeaderMap::new();
    insert_owned(&mut headers, names::MSG_ID, body_hash(body));
    insert(&mut headers, names::BRIDGE_ERROR, reason);
    insert(&mut headers, names::CONTENT_TYPE, "application/json");
    insert(&mut headers, names::WEBHOOK, &webhook.name);
    let stored = publisher
        .publish(Outgoing {
            subject: webhook.prefix.invalid_subject(),
            headers,
            payload: body.clone(),
        })
        .await
        .map_err(|e| {
            tracing::warn!(reason, outcome = %publish_outcome(&e), error = %e, "signed body that is not a routable event could not be kept");
            WebhookError::Unavailable(e)
        })?;
    tracing::warn!(reason, seq = ?stored.seq, "signed body is not a routable event; kept on the invalid subject");
    Ok(stored)
}

/// Hex SHA-256 of the body: the message id when the event has none.
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The message headers. The object and workspace fields are moved into
/// them (nothing reads them afterwards); id and type stay for the log.
fn event_headers(
    webhook: &WebhookConfig,
    fields: &mut EventFields,
    body: &[u8],
    traceparent: Option<&str>,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    let msg_id = match &fields.id {
        Some(id) => {
            insert(&mut h, names::MSG_ID, id);
            insert(&mut h, names::EVENT_ID, id);
            None
        }
        None => {
            let hash = body_hash(body);
            insert(&mut h, names::MSG_ID, &hash);
            Some(hash)
        }
    };
    if let Some(ce) = &webhook.cloudevents {
        cloudevents_headers(&mut h, ce, fields, msg_id.as_deref());
    }
    insert(&mut h, names::WEBHOOK, &webhook.name);
    insert(&mut h, names::EVENT_TYPE, fields.event_type.as_str());
    for (name, value) in [
        (names::OBJECT_TYPE, fields.object_type.take()),
        (names::OBJECT_ID, fields.object_id.take()),
        (names::WORKSPACE_ID, fields.workspace_id.take()),
    ] {
        if let Some(v) = value {
            insert_owned(&mut h, name, v);
        }
    }
    insert(&mut h, names::CONTENT_TYPE, "application/json");
    if let Some(tp) = traceparent.filter(|tp| is_traceparent(tp)) {
        insert(&mut h, names::TRACEPARENT, tp);
    }
    h
}

/// The CloudEvents NATS binding's binary-mode attributes, each
/// percent-encoded as the binding requires. Read before the object and
/// workspace fields are moved into their own headers.
fn cloudevents_headers(
    h: &mut HeaderMap,
    ce: &CloudEvents,
    fields: &EventFields,
    msg_id: Option<&str>,
) {
    use crate::nats::headers::names::cloudevents as n;
    // The same encoding as every other header value: the binding's.
    let mut put = |name: HeaderName, value: &str| insert(h, name, value);
    put(n::SPECVERSION, "1.0");
    // `ce-id` is required: an event without an id gets its message id (the body's hash).
    if let Some(id) = fields.id.as_deref().or(msg_id) {
        put(n::ID, id);
    }
    match &fields.workspace_id {
        Some(ws) => put(n::SOURCE, &format!("/fastpix/workspaces/{ws}")),
        None => put(n::SOURCE, &ce.source),
    }
    put(
        n::TYPE,
        &format!("{}{}", ce.type_prefix, fields.event_type.as_str()),
    );
    // A `time` that is not RFC 3339 would make the whole event unreadable to a CloudEvents SDK.
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if let Some(t) = fields
        .created_at
        .as_deref()
        .filter(|t| time::OffsetDateTime::parse(t, rfc3339).is_ok())
    {
        put(n::TIME, t);
    }
    if let Some(subject) = &fields.object_id {
        put(n::SUBJECT, subject);
    }
    put(n::DATACONTENTTYPE, "application/json");
}

/// `version-traceid-parentid-flags`, lowercase hex, as W3C Trace Context
/// defines (all-zero ids are invalid; later versions may append fields).
fn is_traceparent(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let hex = |p: &str, n: usize| {
        p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |p: &str| p.bytes().any(|b| b != b'0');
    hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && nonzero(trace_id)
        && hex(parent_id, 16)
        && nonzero(parent_id)
        && hex(flags, 2)
}

fn insert(h: &mut HeaderMap, name: HeaderName, value: &str) {
    h.insert(name, encode_value(value).into_owned());
}

/// As [`insert`], reusing `value`'s allocation when it needs no encoding.
fn insert_owned(h: &mut HeaderMap, name: HeaderName, value: String) {
    let value = match encode_value(&value) {
        Cow::Borrowed(_) => value,
        Cow::Owned(encoded) => encoded,
    };
    h.insert(name, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Purpose, Settings};

    fn webhook(pairs: &[(&str, &str)]) -> WebhookConfig {
        let mut s = Settings::from_pairs(Purpose::Client, pairs).unwrap();
        s.webhooks.remove(0)
    }

    #[test]
    fn probes_are_empty_or_empty_objects() {
        for b in ["", "  \n", "{}", " { } ", "{\n}"] {
            assert!(is_probe_body(b.as_bytes()), "{b:?}");
        }
        for b in ["{\"a\":1}", "[]", "null", "{", "x"] {
            assert!(!is_probe_body(b.as_bytes()), "{b:?}");
        }
    }

    #[test]
    fn headers_carry_the_event_fields() {
        let body = br#"{"type":"video.media.ready","id":"e1","object":{"type":"media","id":"m1"},"workspace":{"id":"w1"}}"#;
        let Envelope::Event(mut f) = Envelope::parse(body).unwrap() else {
            panic!()
        };
        let h = event_headers(
            &webhook(&[]),
            &mut f,
            body,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("e1"));
        assert_eq!(get("FastPix-Event-Id").as_deref(), Some("e1"));
        assert_eq!(
            get("FastPix-Event-Type").as_deref(),
            Some("video.media.ready")
        );
        assert_eq!(get("FastPix-Object-Type").as_deref(), Some("media"));
        assert_eq!(get("FastPix-Object-Id").as_deref(), Some("m1"));
        assert_eq!(get("FastPix-Workspace-Id").as_deref(), Some("w1"));
        assert_eq!(get("Content-Type").as_deref(), Some("application/json"));
        assert!(get("traceparent").is_some());
        assert_eq!(get("FastPix-Webhook").as_deref(), Some("default"));
        assert!(get("ce-specversion").is_none(), "CloudEvents is opt-in");

        let body = br#"{"type":"x"}"#;
        let Envelope::Event(mut f) = Envelope::parse(body).unwrap() else {
            panic!()
        };
        let h = event_headers(&webhook(&[]), &mut f, body, Some("garbage"));
        assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), body_hash(body));
        assert!(h.get("FastPix-Event-Id").is_none() && h.get("traceparent").is_none());
    }

    #[test]
    fn header_values_are_percent_encoded_outside_printable_ascii() {
        let body = "{\"type\":\"vid\u{e9}o.ready\",\"id\":\"e 1%\",\"object\":{\"id\":\"%\"},\"workspace\":{\"id\":\"w\u{2028}\"}}";
        let Envelope::Event(mut f) = Envelope::parse(body.as_bytes()).unwrap() else {
            panic!()
        };
        let hook = webhook(&[("FASTPIX_BRIDGE__WEBHOOKS__PROD__ALLOW_UNSIGNED", "true")]);
        let h = event_headers(&hook, &mut f, body.as_bytes(), None);
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(
            get("FastPix-Event-Type").as_deref(),
            Some("vid%C3%A9o.ready")
        );
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("e%201%25"));
        assert_eq!(get("FastPix-Event-Id").as_deref(), Some("e%201%25"));
        assert_eq!(get("FastPix-Workspace-Id").as_deref(), Some("w%E2%80%A8"));
        assert_eq!(get("FastPix-Object-Id").as_deref(), Some("%25"));
    }

    #[test]
    fn cloudevents_headers_map_the_envelope_when_enabled() {
        let hook = webhook(&[
            ("FASTPIX_BRIDGE__WEBHOOKS__PROD__ALLOW_UNSIGNED", "true"),
            ("FASTPIX_BRIDGE__CLOUDEVENTS__ENABLED", "true"),
            ("FASTPIX_BRIDGE__CLOUDEVENTS__TYPE_PREFIX", "io.fastpix."),
        ]);
        let body = br#"{"type":"video.media.ready","id":"e1","object":{"type":"media","id":"m 1"},"workspace":{"id":"w%1"},"createdAt":"2026-05-11T20:42:16.361817248Z"}"#;
        let Envelope::Event(mut f) = Envelope::parse(body).unwrap() else {
            panic!()
        };
        let h = event_headers(&hook, &mut f, body, None);
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(get("ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(get("ce-id").as_deref(), Some("e1"));
        assert_eq!(
            get("ce-source").as_deref(),
            Some("/fastpix/workspaces/w%251")
        );
        assert_eq!(
            get("ce-type").as_deref(),
            Some("io.fastpix.video.media.ready")
        );
        assert_eq!(
            get("ce-time").as_deref(),
            Some("2026-05-11T20:42:16.361817248Z")
        );
        assert_eq!(get("ce-subject").as_deref(), Some("m%201"));
        assert_eq!(
            get("ce-datacontenttype").as_deref(),
            Some("application/json")
        );
        assert_eq!(get("FastPix-Webhook").as_deref(), Some("prod"));

        // No workspace, no id, a time that is not RFC 3339: the configured
        // source, the message id, and no ce-time.
        let body = br#"{"type":"video.media.ready","createdAt":"yesterday"}"#;
        let Envelope::Event(mut f) = Envelope::parse(body).unwrap() else {
            panic!()
        };
        let h = event_headers(&hook, &mut f, body, None);
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(get("ce-source").as_deref(), Some("/fastpix/webhooks/prod"));
        assert_eq!(get("ce-id"), Some(body_hash(body)));
        assert!(get("ce-time").is_none() && get("ce-subject").is_none());
    }

    #[test]
    fn traceparents_follow_the_w3c_format() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(good));
        assert!(is_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"
        ));
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(!is_traceparent(bad), "{bad}");
        }
    }
}
