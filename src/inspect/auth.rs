//! Who may read: a bearer token on the API, or the session cookie the page
//! gets from `POST /login`. The cookie holds an HMAC of the token (never the
//! token), and is HttpOnly and SameSite=Strict, so another site can neither
//! read it nor make the browser send it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::inspect::error::ApiError;

pub const COOKIE: &str = "fastpix_inspector";

#[derive(Clone)]
pub struct Auth {
    token: String,
    session: String,
}

impl Auth {
    pub fn new(token: String) -> Self {
        let session = match hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()) {
            Ok(mut mac) => {
                mac.update(b"fastpix-inspector-session");
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        };
        Auth { token, session }
    }

    pub fn token_matches(&self, given: &str) -> bool {
        !self.token.is_empty() && bool::from(given.as_bytes().ct_eq(self.token.as_bytes()))
    }

    fn session_matches(&self, given: &str) -> bool {
        !self.session.is_empty() && bool::from(given.as_bytes().ct_eq(self.session.as_bytes()))
    }

    /// The `Set-Cookie` value after a good login.
    pub fn cookie(&self, secure: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
            self.session,
            if secure { "; Secure" } else { "" }
        )
    }

    /// How the request proves itself, if it does.
    fn check(&self, headers: &HeaderMap) -> Option<Via> {
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            && self.token_matches(bearer.trim())
        {
            return Some(Via::Bearer);
        }
        let cookies = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for line in cookies {
            for pair in line.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k == COOKIE
                    && self.session_matches(v)
                {
                    return Some(Via::Cookie);
                }
            }
        }
        None
    }
}

enum Via {
    Bearer,
    Cookie,
}

/// Lets through only requests with the token or the session cookie. An
/// action (a POST) by cookie must also come from the page's own origin.
pub async fn require(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    // The form that asks for the token is the one way in.
    if request.method() == Method::POST && request.uri().path() == "/login" {
        return next.run(request).await;
    }
    match auth.check(request.headers()) {
        Some(Via::Bearer) => next.run(request).await,
        Some(Via::Cookie) if request.method() != Method::POST || same_origin(request.headers()) => {
            next.run(request).await
        }
        Some(Via::Cookie) => ApiError::CrossOrigin.into_response(),
        None if request.method() == Method::GET && request.uri().path() == "/" => {
            (StatusCode::UNAUTHORIZED, login_page()).into_response()
        }
        None => ApiError::Unauthorized.into_response(),
    }
}

/// `Origin`, when a browser sends one, names this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
}

/// The only thing shown without the token: a form asking for it. No
/// script, no data; its inline style is allowed by its own CSP.
pub fn login_page() -> Response {
    let html = include_str!("assets/login.html");
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_or_session_cookie_and_nothing_else() {
        let auth = Auth::new("a-long-enough-token-0123".to_owned());
        let mut h = HeaderMap::new();
        assert!(auth.check(&h).is_none());
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(auth.check(&h).is_none());
        h.insert(
            header::AUTHORIZATION,
            "Bearer a-long-enough-token-0123".parse().unwrap(),
        );
        assert!(matches!(auth.check(&h), Some(Via::Bearer)));
        let mut h = HeaderMap::new();
        let cookie = auth.cookie(false);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("a-long-enough-token"));
        let value = cookie.split(';').next().unwrap().to_owned();
        h.insert(header::COOKIE, format!("x=1; {value}").parse().unwrap());
        assert!(matches!(auth.check(&h), Some(Via::Cookie)));
        h.insert(
            header::COOKIE,
            format!("{COOKIE}=a-long-enough-token-0123")
                .parse()
                .unwrap(),
        );
        assert!(auth.check(&h).is_none());
    }
}
