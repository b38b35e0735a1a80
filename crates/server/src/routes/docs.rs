//! `/doc`: read, write, delete and list documents.
//!
//! Every id goes through [`DocId::parse`] before the store sees it, so
//! nothing a client sends can name a file outside the docs directory: `..`,
//! `/`, `\`, NUL and `%` (any encoded form that survived the router's one
//! decoding) are refused with 400 `invalid_id`. A trailing `.md` is optional.
//!
//! Every write is a new version (SPEC 4.4): `GET /doc/{id}/versions` lists
//! them with who wrote each, `GET /doc/{id}?version=N` reads one; a plain
//! `GET` reads the latest. A `PUT` is recorded as written by `api`.
//!
//! Documents are stored as UTF-8. A Markdown or text body that declares
//! another charset (`text/plain; charset=iso-8859-1`) is refused with 415
//! rather than read as UTF-8 and mangled or refused as invalid; `utf-8`,
//! `us-ascii` (a subset) or no charset at all are accepted.

use crate::error::ApiError;
use crate::extract::{
    DocIdParam, QueryParams, charset, media_type, parse_json, read_body, unsupported_media_type,
};
use crate::routes::Success;
use crate::state::AppState;
use crate::wire::ErrorBody;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bmad2pf_engine::store::{DocId, DocMeta, DocVersion, DocWriter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// JSON form of a `PUT /doc/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocContent {
    /// The Markdown text.
    pub content: String,
}

/// Answer to `PUT /doc/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocWritten {
    pub success: bool,
    /// The stored id (without `.md`).
    pub id: String,
    /// Bytes written.
    pub bytes: u64,
    /// The version this write created (1 for a new document).
    pub version: u64,
}

/// Highest version a store can hold: SQLite integers are signed 64-bit.
pub const MAX_VERSION: u64 = i64::MAX as u64;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocGetQuery {
    /// A version to read instead of the latest (see `/doc/{id}/versions`);
    /// at most 2^63 - 1.
    #[param(minimum = 1)]
    pub version: Option<u64>,
}

/// Answer to `GET /doc/{id}/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocStatus {
    pub exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Last write, unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocListQuery {
    /// Only documents of this story (ids starting with `{story_id}__`).
    pub story_id: Option<String>,
}

fn doc_not_found(id: &DocId) -> ApiError {
    ApiError::not_found(format!("document `{id}` does not exist"))
}

/// Reads a document: its latest version, or the one `version` names.
#[utoipa::path(get, path = "/doc/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id, `.md` optional"), DocGetQuery),
    responses(
        (status = 200, description = "The Markdown text; the `x-doc-version` header gives its version", body = String, content_type = "text/markdown"),
        (status = 400, description = "Invalid id or version", body = ErrorBody),
        (status = 404, description = "No such document, or no such version of it", body = ErrorBody),
    ))]
pub async fn get_doc(
    State(state): State<AppState>,
    DocIdParam(id): DocIdParam,
    QueryParams(query): QueryParams<DocGetQuery>,
) -> Result<Response, ApiError> {
    let engine = state.engine();
    let docs = engine.docs();
    let document = match query.version {
        None => docs.get(&id).await?.ok_or_else(|| doc_not_found(&id))?,
        Some(version) if version == 0 || version > MAX_VERSION => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("version {version} is no version: versions go from 1 to {MAX_VERSION}"),
            ));
        }
        Some(version) => docs.get_version(&id, version).await?.ok_or_else(|| {
            ApiError::not_found(format!("document `{id}` has no version {version}"))
        })?,
    };
    let mut response = document.content.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    headers.insert("x-doc-version", HeaderValue::from(document.version));
    Ok(response)
}

/// Every version of a document, oldest first, with who wrote each and when.
#[utoipa::path(get, path = "/doc/{id}/versions", tag = "documents",
    params(("id" = String, Path, description = "Document id, `.md` optional")),
    responses(
        (status = 200, description = "The versions, oldest first", body = Vec<DocVersion>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such document", body = ErrorBody),
    ))]
pub async fn doc_versions(
    State(state): State<AppState>,
    DocIdParam(id): DocIdParam,
) -> Result<Json<Vec<DocVersion>>, ApiError> {
    let versions = state.engine().docs().versions(&id).await?;
    if versions.is_empty() {
        return Err(doc_not_found(&id));
    }
    Ok(Json(versions))
}

/// Writes (creates or replaces) a document.
#[utoipa::path(put, path = "/doc/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id, `.md` optional")),
    request_body(description = "Markdown as `text/markdown` or `text/plain` (any UTF-8 text, taken as it is), \
        or JSON `{\"content\": \"...\"}`",
        content((serde_json::Value = "text/markdown"), (serde_json::Value = "text/plain"), (DocContent = "application/json"))),
    responses(
        (status = 200, description = "Written", body = DocWritten),
        (status = 400, description = "Invalid id, malformed JSON or text that is not UTF-8", body = ErrorBody),
        (status = 413, description = "Body above `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Another content type, or a text charset other than UTF-8", body = ErrorBody),
        (status = 422, description = "JSON without `content`", body = ErrorBody),
    ))]
pub async fn put_doc(
    State(state): State<AppState>,
    DocIdParam(id): DocIdParam,
    request: Request,
) -> Result<Json<DocWritten>, ApiError> {
    let kind = media_type(request.headers());
    let content = match kind.as_deref() {
        Some("text/markdown" | "text/plain") => {
            if charset(request.headers()).is_some_and(|c| c != "utf-8" && c != "us-ascii") {
                return Err(unsupported_media_type(
                    "text/markdown or text/plain in UTF-8 (or application/json)",
                ));
            }
            let bytes = read_body(request, &state).await?;
            String::from_utf8(bytes.to_vec()).map_err(|e| {
                ApiError::bad_request("invalid_utf8", format!("the body is not UTF-8: {e}"))
            })?
        }
        Some("application/json") => {
            let bytes = read_body(request, &state).await?;
            parse_json::<DocContent>(&bytes)?.content
        }
        _ => {
            return Err(unsupported_media_type(
                "text/markdown, text/plain or application/json",
            ));
        }
    };
    let written = state
        .engine()
        .docs()
        .put(&id, &content, DocWriter::Api)
        .await?;
    Ok(Json(DocWritten {
        success: true,
        id: id.to_string(),
        bytes: written.bytes,
        version: written.version,
    }))
}

/// Deletes a document.
#[utoipa::path(delete, path = "/doc/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id, `.md` optional")),
    responses(
        (status = 200, description = "Deleted", body = Success),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such document", body = ErrorBody),
    ))]
pub async fn delete_doc(
    State(state): State<AppState>,
    DocIdParam(id): DocIdParam,
) -> Result<Json<Success>, ApiError> {
    if state.engine().docs().delete(&id).await? {
        Ok(Json(Success::yes()))
    } else {
        Err(doc_not_found(&id))
    }
}

/// Whether a document exists, its size and modification time.
#[utoipa::path(get, path = "/doc/{id}/status", tag = "documents",
    params(("id" = String, Path, description = "Document id, `.md` optional")),
    responses(
        (status = 200, description = "`exists: false` for an absent document", body = DocStatus),
        (status = 400, description = "Invalid id", body = ErrorBody),
    ))]
pub async fn doc_status(
    State(state): State<AppState>,
    DocIdParam(id): DocIdParam,
) -> Result<Json<DocStatus>, ApiError> {
    let meta = state.engine().docs().meta(&id).await?;
    Ok(Json(DocStatus {
        exists: meta.is_some(),
        bytes: meta.as_ref().map(|m| m.bytes),
        modified: meta.map(|m| m.modified),
    }))
}

/// Lists documents, all or one story's.
#[utoipa::path(get, path = "/doc", tag = "documents", params(DocListQuery),
    responses(
        (status = 200, description = "Documents sorted by id", body = Vec<DocMeta>),
        (status = 400, description = "Invalid story id", body = ErrorBody),
    ))]
pub async fn list_docs(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<DocListQuery>,
) -> Result<Json<Vec<DocMeta>>, ApiError> {
    Ok(Json(
        state
            .engine()
            .docs()
            .list(query.story_id.as_deref())
            .await?,
    ))
}
