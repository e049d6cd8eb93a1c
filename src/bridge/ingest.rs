//! What happens to one delivery, independent of HTTP: probe detection,
//! signature check, envelope reading, header building, publishing.
//! The HTTP layer only reads the body and maps the result to a status.

use std::borrow::Cow;

use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::bridge::error::WebhookError;
use crate::fastpix::catalog::Family;
use crate::fastpix::envelope::{Envelope, EventFields};
use crate::nats::headers::{encode_value, names};
use crate::nats::sink::{Outgoing, Sink, Stored};
use crate::ops::outcome::Outcome;
use crate::settings::WebhookConfig;

/// Header names on every published message.
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
pub struct Delivery<'a> {
    pub signature: Option<&'a [u8]>,
    /// W3C trace context to carry into the message, when the sender gave one.
    pub traceparent: Option<&'a str>,
    pub body: Bytes,
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
    delivery: Delivery<'_>,
) -> Result<Accepted, WebhookError> {
    let signature = delivery.signature.filter(|s| !s.is_empty());
    match signature {
        None if is_probe_body(&delivery.body) => return Ok(Accepted::Probe),
        None if !webhook.allow_unsigned => return Err(WebhookError::Unsigned),
        // With no secret configured (allow_unsigned), a signature cannot be checked.
        Some(sig)
            if !webhook.verifier.is_empty() && !webhook.verifier.verify(sig, &delivery.body) =>
        {
            return Err(WebhookError::BadSignature);
        }
        _ => {}
    }

    let mut fields = match Envelope::parse(&delivery.body) {
        Ok(Envelope::Probe) => return Ok(Accepted::Probe),
        Ok(Envelope::Event(fields)) => fields,
        Err(reason) => {
            keep_invalid(webhook, publisher, &delivery.body, &reason.to_string()).await?;
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
    let headers = event_headers(&mut fields, &delivery.body, traceparent);
    let published = publisher
        .publish(Outgoing {
            subject,
            headers,
            payload: delivery.body,
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
                outcome = %Outcome::NatsUnavailable,
                error = %e,
                "event not stored"
            );
            Err(WebhookError::Unavailable(e))
        }
    }
}

/// Stores a signed but unroutable body on `<prefix>.invalid`, so a bad
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
    let stored = publisher
        .publish(Outgoing {
            subject: webhook.prefix.invalid_subject(),
            headers,
            payload: body.clone(),
        })
        .await
        .map_err(|e| {
            tracing::warn!(reason, outcome = %Outcome::NatsUnavailable, error = %e, "signed body that is not a routable event could not be kept");
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
fn event_headers(fields: &mut EventFields, body: &[u8], traceparent: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    match &fields.id {
        Some(id) => {
            insert(&mut h, names::MSG_ID, id);
            insert(&mut h, names::EVENT_ID, id);
        }
        None => insert_owned(&mut h, names::MSG_ID, body_hash(body)),
    }
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

        let body = br#"{"type":"x"}"#;
        let Envelope::Event(mut f) = Envelope::parse(body).unwrap() else {
            panic!()
        };
        let h = event_headers(&mut f, body, Some("garbage"));
        assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), body_hash(body));
        assert!(h.get("FastPix-Event-Id").is_none() && h.get("traceparent").is_none());
    }

    #[test]
    fn header_values_are_percent_encoded_outside_printable_ascii() {
        let body = "{\"type\":\"vid\u{e9}o.ready\",\"id\":\"e 1%\",\"object\":{\"id\":\"%\"},\"workspace\":{\"id\":\"w\u{2028}\"}}";
        let Envelope::Event(mut f) = Envelope::parse(body.as_bytes()).unwrap() else {
            panic!()
        };
        let h = event_headers(&mut f, body.as_bytes(), None);
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
