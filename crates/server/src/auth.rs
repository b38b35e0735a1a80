//! API-key authentication (SPEC 5 "Auth").
//!
//! When `server.api_key_env` is set, every route but `/health` needs the key,
//! as `Authorization: Bearer <key>` (the scheme in any case) or
//! `X-API-Key: <key>`. Keys are compared as SHA-256 digests in constant
//! time: hashing first makes the comparison independent of the key's length
//! too, so neither content nor length leaks through timing.
//!
//! The web console's page and assets ([`crate::console`]) load without the
//! key: they are the same static files for everyone and hold no data; the
//! page asks for the key when the API answers 401, and sends it like any
//! client.

use crate::console;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The one API route reachable without the key (load balancers and container
/// health checks have no secret).
const PUBLIC_PATH: &str = "/health";

/// The expected key, kept only as its digest.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    pub fn new(key: &str) -> Self {
        Self {
            digest: Sha256::digest(key.as_bytes()).into(),
        }
    }

    /// Whether `candidate` is the key, in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }

    /// Whether the request's headers carry the key.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        // Check both, so the time taken does not tell which header was right.
        let by_bearer = bearer.is_some_and(|k| self.matches(k.trim()));
        let by_header = api_key.is_some_and(|k| self.matches(k.trim()));
        by_bearer | by_header
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// matched without regard to case, as HTTP auth schemes are (RFC 9110
/// §11.1): `bearer k` and `BEARER k` carry the key `k` too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Whether `path` is reachable without the key: `/health` and the console's files.
fn is_public(path: &str) -> bool {
    path == PUBLIC_PATH || console::is_console_path(path)
}

/// Middleware: 401 unless the route is public, auth is off, or the key matches.
pub async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match state.api_key() {
        Some(key) if !is_public(request.uri().path()) && !key.admits(request.headers()) => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_matches() {
        let key = ApiKey::new("s3cret");
        assert!(key.matches("s3cret"));
        assert!(!key.matches("s3cre"));
        assert!(!key.matches("s3cret "));
        assert!(!key.matches(""));
    }

    #[test]
    fn either_header_admits() {
        let key = ApiKey::new("k");
        let mut headers = HeaderMap::new();
        assert!(!key.admits(&headers));
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("Bearer k"),
        );
        assert!(key.admits(&headers));
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", header::HeaderValue::from_static("k"));
        assert!(key.admits(&headers));
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("Basic k"),
        );
        assert!(key.admits(&headers));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer k"), Some("k"));
        assert_eq!(bearer_token("bearer k"), Some("k"));
        assert_eq!(bearer_token("BEARER k"), Some("k"));
        assert_eq!(bearer_token("Basic k"), None);
        assert_eq!(bearer_token("Bearerk"), None);
        assert_eq!(bearer_token("k"), None);
    }

    #[test]
    fn debug_does_not_show_the_key() {
        assert!(!format!("{:?}", ApiKey::new("hunter2")).contains("hunter2"));
    }
}
