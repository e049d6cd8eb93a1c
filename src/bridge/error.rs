//! The errors a webhook delivery can meet, with the HTTP answer each gets.
//! Clients get a one-line JSON error with a fixed text; causes go to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::fastpix::envelope::InvalidBody;
use crate::nats::sink::PublishError;
use crate::ops::outcome::DeliveryOutcome;

/// Seconds FastPix (or any sender) is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing FastPix-Signature")]
    Unsigned,
    #[error("invalid FastPix-Signature")]
    BadSignature,
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body not received within the time allowed")]
    BodyTimeout,
    #[error("could not read the request body")]
    BodyRead,
    /// Signed but not routable. Only answered once the body is stored on
    /// `<prefix>_invalid`; a body that could not be stored is `Unavailable`.
    #[error("{reason}")]
    Invalid { reason: InvalidBody },
    #[error("too many requests in flight")]
    Overloaded,
    #[error("event not stored: {0}")]
    Unavailable(#[from] PublishError),
}

impl WebhookError {
    pub fn outcome(&self) -> DeliveryOutcome {
        match self {
            WebhookError::Unsigned => DeliveryOutcome::Unsigned,
            WebhookError::BadSignature => DeliveryOutcome::BadSignature,
            WebhookError::TooLarge { .. } => DeliveryOutcome::TooLarge,
            WebhookError::BodyTimeout | WebhookError::BodyRead => DeliveryOutcome::BadRequest,
            WebhookError::Invalid { .. } => DeliveryOutcome::Invalid,
            WebhookError::Overloaded => DeliveryOutcome::Overloaded,
            WebhookError::Unavailable(e) => publish_outcome(e),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::Unsigned | WebhookError::BadSignature => StatusCode::UNAUTHORIZED,
            WebhookError::TooLarge { .. }
            | WebhookError::Unavailable(PublishError::MessageTooLarge(_)) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            WebhookError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            WebhookError::BodyRead | WebhookError::Invalid { .. } => StatusCode::BAD_REQUEST,
            WebhookError::Overloaded | WebhookError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// What the client is told: the reason for its own mistakes, a fixed
    /// text for ours (the NATS error stays in the log).
    fn public_message(&self) -> String {
        match self {
            WebhookError::Unavailable(PublishError::StorageFull(_)) => {
                "event not stored: storage is full, retry later".to_owned()
            }
            WebhookError::Unavailable(PublishError::MessageTooLarge(_)) => {
                "event larger than the stream takes".to_owned()
            }
            WebhookError::Unavailable(_) => "event not stored, retry later".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The outcome of a publish that failed: a full stream is told apart from
/// NATS being unavailable, and a message too large from both.
pub fn publish_outcome(e: &PublishError) -> DeliveryOutcome {
    match e {
        PublishError::StorageFull(_) => DeliveryOutcome::StorageFull,
        PublishError::MessageTooLarge(_) => DeliveryOutcome::TooLarge,
        _ => DeliveryOutcome::NatsUnavailable,
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.public_message(), "outcome": self.outcome().as_str() });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}
