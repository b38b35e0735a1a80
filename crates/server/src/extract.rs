//! Request extractors whose failures are [`ApiError`]s, not axum's plain-text
//! rejections.
//!
//! - [`JsonBody`]: `application/json` only (else 415), at most
//!   `server.max_body_bytes` (else 413, via axum's `DefaultBodyLimit`),
//!   malformed JSON → 400 with the parser's line and column, a body that
//!   does not fit the request type → 422 naming the field's path.
//! - [`PathParams`] and [`QueryParams`]: a bad path or query → 400.
//! - [`DocIdParam`] and [`MemoryAddress`]: path ids parsed into the
//!   store's id types → 400 `invalid_id`. Being path extractors they run
//!   before any body extractor, so a bad id is reported as such whatever the
//!   body is.
//! - [`read_body`]: the raw bytes with the same size limit, for routes that
//!   accept more than one content type (`PUT /doc/{id}`).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use bmad2pf_engine::store::{DocId, MemoryKey, MemoryScope};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A JSON request body deserialised into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if media_type(req.headers()).as_deref() != Some("application/json") {
            return Err(unsupported_media_type("application/json"));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The request body as bytes, or 413 when it exceeds the body limit.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::bad_request(
                    "unreadable_body",
                    format!("could not read the request body: {rejection}"),
                )
            }
        })
}

/// The media type of the request without parameters, lower-cased
/// (`text/markdown; charset=utf-8` → `text/markdown`).
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Some(essence)
}

/// The `charset` parameter of the request's media type, lower-cased and
/// unquoted (`text/plain; charset="UTF-8"` → `utf-8`), if there is one.
pub fn charset(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    })
}

/// 415 naming what the route accepts.
pub fn unsupported_media_type(accepted: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("expected Content-Type {accepted}"),
    )
}

/// Parses JSON into `T`: syntax errors are 400 with the position, type and
/// field errors 422 with the field's path.
///
/// serde meets one error and stops, and that error alone does not say
/// which of the two a body has: a type error can come first in a body that
/// is also cut short (`[[[…` for an object), and serde_json reports an enum
/// given `null` or a number as a syntax error ("expected value"). So on
/// failure the whole body is parsed once more as a plain JSON value (which,
/// unlike skipping it, also checks that its strings are UTF-8), and only a
/// body that is valid JSON is a 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => deserializer
            .end()
            .map(|()| value)
            .map_err(|e| (".".to_string(), e)),
        Err(error) => Err((error.path().to_string(), error.into_inner())),
    };
    parsed.map_err(
        |(path, inner)| match serde_json::from_slice::<Value>(bytes) {
            Err(syntax) => malformed_json(&syntax),
            Ok(_) => schema_violation(&path, &inner),
        },
    )
}

/// 400 `malformed_json` with the parser's position.
fn malformed_json(error: &serde_json::Error) -> ApiError {
    ApiError::bad_request("malformed_json", format!("malformed JSON: {error}"))
        .with_details(json!({ "line": error.line(), "column": error.column() }))
}

/// 422 `invalid_request` for valid JSON that does not fit the request type.
/// `details.field` is the path of the offending field: for a missing or
/// duplicate field serde reports the path of the object that holds it, so
/// the field's own name is appended.
fn schema_violation(path: &str, error: &serde_json::Error) -> ApiError {
    let text = error.to_string();
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let field = match (path, named) {
        (".", Some(name)) => name.to_string(),
        (_, Some(name)) => format!("{path}.{name}"),
        (_, None) => path.to_string(),
    };
    let message = match (error.classify(), named) {
        (serde_json::error::Category::Data, Some(_)) => text,
        (serde_json::error::Category::Data, None) if field != "." => {
            format!("field `{field}`: {text}")
        }
        (serde_json::error::Category::Data, None) => text,
        // Valid JSON that serde_json still calls a syntax error: a value of
        // a kind the field cannot take at all (`null` for a status).
        _ => format!("field `{field}`: a value of the wrong type"),
    };
    let details = json!({ "field": field, "line": error.line(), "column": error.column() });
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
        .with_details(details)
}

/// Path parameters deserialised into `T` (400 when they do not fit).
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParams(value))
            .map_err(|rejection| ApiError::bad_request("invalid_path", rejection.body_text()))
    }
}

/// Query parameters deserialised into `T` (400 when they do not fit).
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))
    }
}

/// The `{id}` of a `/doc/{id}` route, validated.
#[derive(Debug)]
pub struct DocIdParam(pub DocId);

impl<S: Send + Sync> FromRequestParts<S> for DocIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathParams(raw) = PathParams::<String>::from_request_parts(parts, state).await?;
        Ok(Self(DocId::parse(&raw)?))
    }
}

/// The `{scope}/{key}` of a `/memory/{scope}/{key}` route, validated.
#[derive(Debug)]
pub struct MemoryAddress {
    pub scope: MemoryScope,
    pub key: MemoryKey,
}

impl<S: Send + Sync> FromRequestParts<S> for MemoryAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathParams((scope, key)) =
            PathParams::<(String, String)>::from_request_parts(parts, state).await?;
        Ok(Self {
            scope: MemoryScope::parse(&scope)?,
            key: MemoryKey::parse(&key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        flow: String,
        #[serde(default)]
        force: bool,
    }

    #[test]
    fn syntax_errors_are_400_with_a_position() {
        let error = parse_json::<Body>(b"{\n  \"flow\": }").err();
        let error = error.map(|e| (e.status, e.code, e.details));
        assert!(matches!(
            error,
            Some((StatusCode::BAD_REQUEST, code, Some(d))) if code == "malformed_json" && d["line"] == 2
        ));
    }

    #[test]
    fn schema_errors_are_422_naming_the_field() {
        let wrong_type = parse_json::<Body>(br#"{"flow": "a", "force": "yes"}"#).err();
        assert!(
            wrong_type.is_some_and(|e| e.status == StatusCode::UNPROCESSABLE_ENTITY
                && e.message.contains("force")
                && e.details.is_some_and(|d| d["field"] == "force"))
        );
        let missing = parse_json::<Body>(b"{}").err();
        assert!(missing.is_some_and(
            |e| e.status == StatusCode::UNPROCESSABLE_ENTITY && e.message.contains("flow")
        ));
        let unknown = parse_json::<Body>(br#"{"flow": "a", "flwo": 1}"#).err();
        assert!(unknown.is_some_and(|e| e.message.contains("flwo")));
    }

    #[test]
    fn trailing_garbage_is_malformed() {
        let error = parse_json::<Body>(br#"{"flow": "a"} x"#).err();
        assert!(error.is_some_and(|e| e.status == StatusCode::BAD_REQUEST));
    }

    #[test]
    fn charset_is_read_from_the_parameters() {
        let mut headers = HeaderMap::new();
        assert_eq!(charset(&headers), None);
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; format=flowed; Charset=\"UTF-8\""),
        );
        assert_eq!(charset(&headers).as_deref(), Some("utf-8"));
    }

    #[test]
    fn media_type_drops_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("Text/Markdown; charset=utf-8"),
        );
        assert_eq!(media_type(&headers).as_deref(), Some("text/markdown"));
    }
}
