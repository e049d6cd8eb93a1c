//! The headers the bridge writes on every message, which consumers read.

use async_nats::HeaderName;

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

/// Bytes a CloudEvents attribute value may not carry as they are: controls,
/// `%`, and (as the HTTP binding's section 3.1.3.2, which the NATS binding
/// follows, requires) space and `"`. Non-ASCII bytes are always encoded.
const CLOUDEVENTS_ENCODED: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b'%').add(b' ').add(b'"');

/// A CloudEvents attribute as a header value: UTF-8 percent-encoded by the
/// binding's rule, so any string round-trips through a percent-decoder.
pub fn cloudevents_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, CLOUDEVENTS_ENCODED).to_string()
}

/// The same names, built once: a name given as `&str` is copied into every message.
pub(crate) mod names {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevents_values_are_encoded_as_the_binding_requires() {
        assert_eq!(cloudevents_value("video.media.ready"), "video.media.ready");
        assert_eq!(
            cloudevents_value("/fastpix/workspaces/ws 1\"50%\"é"),
            "/fastpix/workspaces/ws%201%2250%25%22%C3%A9"
        );
        assert_eq!(cloudevents_value("a\tb\u{7f}"), "a%09b%7F");
    }
}
