//! The inspector API's one error type: each variant is a status and a fixed
//! one-line JSON answer (`{"error": "..."}`); a NATS failure's cause goes to
//! the log, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why an inspector request was not answered with what it asked for.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message says how.
    #[error("{0}")]
    BadRequest(String),
    #[error("token required")]
    Unauthorized,
    #[error("actions by cookie must come from the inspector's page")]
    CrossOrigin,
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The bridge a test event was sent to did not take it.
    #[error("{0}")]
    BadGateway(String),
    #[error("the index is not open yet; retry later")]
    IndexNotReady,
    #[error("sending test events is not set up")]
    NoSender,
    /// NATS failed or did not answer; the cause is logged.
    #[error("NATS did not answer; retry later")]
    Nats(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    /// A NATS failure, kept for the log.
    pub fn nats(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Nats(cause.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::CrossOrigin => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::IndexNotReady | ApiError::NoSender | ApiError::Nats(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Nats(cause) = &self {
            tracing::warn!(error = %cause, "inspector request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_error_is_its_status_and_one_line_of_json_without_the_cause() {
        let cases = [
            (ApiError::bad("limit must be from 1 to 500"), 400),
            (ApiError::Unauthorized, 401),
            (ApiError::CrossOrigin, 403),
            (ApiError::NotFound("no such path"), 404),
            (ApiError::MethodNotAllowed, 405),
            (ApiError::BadGateway("cannot reach the bridge".into()), 502),
            (ApiError::IndexNotReady, 503),
            (ApiError::nats(std::io::Error::other("secret cause")), 503),
        ];
        for (error, status) in cases {
            let text = error.to_string();
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{text}");
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json, serde_json::json!({ "error": text }));
            assert!(!text.contains("secret cause"));
        }
    }
}
