//! The headers the bridge writes on every message, which consumers read,
//! and the one encoding of their values.
//!
//! NATS header values are printable ASCII (ADR-4), but clients disagree on
//! anything else: async-nats passes raw UTF-8 through, nats-py hands back an
//! encoded-header object. So every value is written as the CloudEvents NATS
//! protocol binding writes its attributes (section 3.1.3.2): UTF-8,
//! percent-encoded outside `!`..`~`, and for space, `"` and `%`. A value
//! FastPix sends in plain ASCII, as all its event types and ids are, is
//! written unchanged; any client reads back the original with one round of
//! percent-decoding ([`decode_value`]).

use std::borrow::Cow;

use async_nats::HeaderName;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EVENT_TYPE: &str = "FastPix-Event-Type";
pub const EVENT_ID: &str = "FastPix-Event-Id";
pub const OBJECT_TYPE: &str = "FastPix-Object-Type";
pub const OBJECT_ID: &str = "FastPix-Object-Id";
pub const WORKSPACE_ID: &str = "FastPix-Workspace-Id";
pub const BRIDGE_ERROR: &str = "FastPix-Bridge-Error";
pub const CONTENT_TYPE: &str = "Content-Type";
pub const TRACEPARENT: &str = "traceparent";
/// The name of the webhook (workspace) a message came in through.
pub const WEBHOOK: &str = "FastPix-Webhook";

/// The CloudEvents NATS binding's binary-mode headers (when enabled).
pub mod cloudevents {
    pub const SPECVERSION: &str = "ce-specversion";
    pub const ID: &str = "ce-id";
    pub const SOURCE: &str = "ce-source";
    pub const TYPE: &str = "ce-type";
    pub const TIME: &str = "ce-time";
    pub const SUBJECT: &str = "ce-subject";
    pub const DATACONTENTTYPE: &str = "ce-datacontenttype";
}

/// The same names, built once: a name given as `&str` is copied into every message.
pub mod names {
    use super as headers;
    use super::HeaderName;
    pub const MSG_ID: HeaderName = HeaderName::from_static(headers::MSG_ID);
    pub const EVENT_TYPE: HeaderName = HeaderName::from_static(headers::EVENT_TYPE);
    pub const EVENT_ID: HeaderName = HeaderName::from_static(headers::EVENT_ID);
    pub const OBJECT_TYPE: HeaderName = HeaderName::from_static(headers::OBJECT_TYPE);
    pub const OBJECT_ID: HeaderName = HeaderName::from_static(headers::OBJECT_ID);
    pub const WORKSPACE_ID: HeaderName = HeaderName::from_static(headers::WORKSPACE_ID);
    pub const BRIDGE_ERROR: HeaderName = HeaderName::from_static(headers::BRIDGE_ERROR);
    pub const CONTENT_TYPE: HeaderName = HeaderName::from_static(headers::CONTENT_TYPE);
    pub const TRACEPARENT: HeaderName = HeaderName::from_static(headers::TRACEPARENT);
    pub const WEBHOOK: HeaderName = HeaderName::from_static(headers::WEBHOOK);
    pub mod cloudevents {
        use super::HeaderName;
        use crate::nats::headers::cloudevents as ce;
        pub const SPECVERSION: HeaderName = HeaderName::from_static(ce::SPECVERSION);
        pub const ID: HeaderName = HeaderName::from_static(ce::ID);
        pub const SOURCE: HeaderName = HeaderName::from_static(ce::SOURCE);
        pub const TYPE: HeaderName = HeaderName::from_static(ce::TYPE);
        pub const TIME: HeaderName = HeaderName::from_static(ce::TIME);
        pub const SUBJECT: HeaderName = HeaderName::from_static(ce::SUBJECT);
        pub const DATACONTENTTYPE: HeaderName = HeaderName::from_static(ce::DATACONTENTTYPE);
    }
}

/// What the binding percent-encodes. The crate always encodes bytes above
/// 0x7E; `CONTROLS` adds 0x00..=0x1F and 0x7F. Space (which clients trim at
/// the ends of a value), `"` (quoted strings) and `%` (the escape itself)
/// complete the binding's set.
const ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// `value` as a header value every NATS client reads the same: printable
/// ASCII with no space, uppercase `%XX` escapes of the UTF-8 bytes. Borrows
/// (no allocation) when nothing needs encoding, which is every value FastPix
/// sends today.
pub fn encode_value(value: &str) -> Cow<'_, str> {
    // The common case, checked in one pass over the bytes.
    if value
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%')
    {
        return Cow::Borrowed(value);
    }
    match utf8_percent_encode(value, ENCODED).into() {
        // A value of one escaped byte comes back borrowed from the crate's
        // table of escapes: borrowed must mean unchanged.
        Cow::Borrowed(escape) if escape.len() != value.len() => Cow::Owned(escape.to_owned()),
        encoded => encoded,
    }
}

/// The value [`encode_value`] was given; `None` when the escapes do not
/// decode to UTF-8. Lowercase escapes and escapes of characters that need
/// none are accepted, as the binding asks of a decoder.
pub fn decode_value(value: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(value).decode_utf8().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_example_and_plain_values() {
        // The example of the CloudEvents NATS binding, section 3.1.3.2.
        assert_eq!(
            encode_value("Euro \u{20AC} \u{1F600}"),
            "Euro%20%E2%82%AC%20%F0%9F%98%80"
        );
        assert_eq!(
            encode_value("vid\u{e9}o.m\u{e9}dia.pr\u{ea}t"),
            "vid%C3%A9o.m%C3%A9dia.pr%C3%AAt"
        );
        assert_eq!(encode_value("100%"), "100%25");
        assert_eq!(
            encode_value("/fastpix/workspaces/ws 1\"50%\"\u{e9}"),
            "/fastpix/workspaces/ws%201%2250%25%22%C3%A9"
        );
        for lone in ["%", " ", "\"", "\u{7f}"] {
            assert!(matches!(encode_value(lone), Cow::Owned(_)), "{lone:?}");
        }
        assert_eq!(encode_value("a\"b\r\n\t\u{7f}"), "a%22b%0D%0A%09%7F");
        let plain = "video.live_stream.simulcast_target.created:{id}/[x]=~!";
        assert!(matches!(encode_value(plain), Cow::Borrowed(b) if b == plain));
        assert_eq!(decode_value("caf%c3%a9%2E").as_deref(), Some("caf\u{e9}."));
        assert_eq!(decode_value("%C0%A0"), None, "overlong UTF-8 is refused");
    }
}
