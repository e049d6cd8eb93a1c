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
}
