//! The web console: its HTML, CSS and JavaScript modules, embedded in the
//! binary and served at `/` (the page) and `/console/…` (its assets).
//!
//! The console is a client of the public HTTP API and nothing more: every
//! page calls the same routes a script would, so the assets here hold no
//! server logic. They are plain files in `crates/server/console/`, with no
//! build step.
//!
//! # Decisions
//! - Embedded with `include_str!`, one entry per file in [`ASSETS`]: the
//!   set is small and fixed, needs no dependency, is checked at compile time
//!   (a missing file fails the build), and cargo rebuilds when a file
//!   changes. `rust-embed` would add a derive and a crate for the same.
//! - Assets live under `/console/`, a prefix no API route uses, so nothing
//!   here can shadow the API; `/` is the only other path.
//! - The page and its assets need no API key ([`crate::auth`] lets them
//!   through): they are the same for everyone and hold no data. The page
//!   asks for the key when the API answers 401.
//! - A strict Content-Security-Policy (scripts and styles from this origin
//!   only, no inline script, no framing) backs the rule that untrusted text
//!   is never written as HTML.
//! - `Cache-Control: no-cache` with an `ETag` (a hash of the file, computed
//!   at compile time): browsers revalidate every file, so a new binary's
//!   console is picked up at once, and an unchanged file costs a `304` with
//!   no body — which also lets the browser keep its compiled code for the
//!   file. Versioned, `immutable` paths would save the revalidation too, but
//!   would need the page rewritten with every file's version.

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the console's assets are served (the page itself is at `/`).
pub const ASSET_PREFIX: &str = "/console/";

/// The policy sent with every console file.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// Its path under [`ASSET_PREFIX`].
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// A hash of `body`, its entity tag: a revalidation that sends it back
    /// gets a `304` without the body.
    tag: u64,
}

/// An [`Asset`], its tag computed at compile time.
const fn asset(path: &'static str, content_type: &'static str, body: &'static str) -> Asset {
    Asset {
        path,
        content_type,
        body,
        tag: fnv1a(body.as_bytes()),
    }
}

/// The 64-bit FNV-1a hash: tiny, `const`, and enough to tell versions of a
/// file apart (it is a cache validator, not a security check).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut at = 0;
    while at < bytes.len() {
        hash ^= bytes[at] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        at += 1;
    }
    hash
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page served at `/`.
const INDEX: Asset = asset(
    "",
    "text/html; charset=utf-8",
    include_str!("../console/index.html"),
);

/// Every file the page loads.
const ASSETS: &[Asset] = &[
    asset(
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../console/style.css"),
    ),
    asset("app.js", JS, include_str!("../console/app.js")),
    asset("api.js", JS, include_str!("../console/api.js")),
    asset("dom.js", JS, include_str!("../console/dom.js")),
    asset("markdown.js", JS, include_str!("../console/markdown.js")),
    asset("graph.js", JS, include_str!("../console/graph.js")),
    asset("question.js", JS, include_str!("../console/question.js")),
    asset(
        "pages/flows.js",
        JS,
        include_str!("../console/pages/flows.js"),
    ),
    asset(
        "pages/runs.js",
        JS,
        include_str!("../console/pages/runs.js"),
    ),
    asset("pages/run.js", JS, include_str!("../console/pages/run.js")),
    asset(
        "pages/questions.js",
        JS,
        include_str!("../console/pages/questions.js"),
    ),
    asset(
        "pages/documents.js",
        JS,
        include_str!("../console/pages/documents.js"),
    ),
    asset(
        "pages/health.js",
        JS,
        include_str!("../console/pages/health.js"),
    ),
];

/// The console's routes: `/` and `/console/{path}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(serve_index))
        .route("/console/{*path}", get(serve_asset))
}

/// Whether `path` is one of the console's (served without the API key).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path.starts_with(ASSET_PREFIX)
}

/// The total size of the embedded files, in bytes.
pub fn embedded_bytes() -> usize {
    INDEX.body.len() + ASSETS.iter().map(|asset| asset.body.len()).sum::<usize>()
}

async fn serve_index(request: HeaderMap) -> Response {
    file_response(&INDEX, &request)
}

async fn serve_asset(Path(path): Path<String>, request: HeaderMap) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|asset| asset.path == path)
        .map(|asset| file_response(asset, &request))
        .ok_or_else(|| ApiError::not_found(format!("no console file `{path}`")))
}

/// The file, or a `304` without it when the request's `If-None-Match`
/// names its current tag.
fn file_response(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.tag);
    let mut response = if matches_tag(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Whether `If-None-Match` (a list of tags, weak or strong, or `*`) holds
/// `etag`: for a `GET`, a weak match is enough (RFC 9110, 13.1.2).
fn matches_tag(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let base = asset.path.rsplit_once('/').map_or("", |(dir, _)| dir);
            for target in imports(asset.body) {
                let resolved = resolve(base, target);
                assert!(
                    ASSETS.iter().any(|a| a.path == resolved),
                    "{} imports {target} ({resolved}), which is not embedded",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn the_shell_imports_every_page_on_demand() {
        let shell = ASSETS.iter().find(|a| a.path == "app.js").map(|a| a.body);
        let imported = imports(shell.unwrap_or_default());
        for page in ASSETS.iter().filter(|a| a.path.starts_with("pages/")) {
            let target = format!("./{}", page.path);
            assert!(imported.contains(&target.as_str()), "{target}");
        }
    }

    /// What a module imports: `import … "x"` lines and `import("x")` calls.
    fn imports(body: &str) -> Vec<&str> {
        let mut found = Vec::new();
        for line in body.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("import ") {
                found.extend(rest.split('"').nth(1));
            }
            found.extend(
                line.split("import(\"")
                    .skip(1)
                    .filter_map(|rest| rest.split('"').next()),
            );
        }
        found
    }

    /// `target` relative to the folder `base` (only `./` and `../`).
    fn resolve(base: &str, target: &str) -> String {
        let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
        for piece in target.split('/') {
            match piece {
                "." => {}
                ".." => {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        parts.join("/")
    }

    #[test]
    fn console_paths_never_shadow_the_api() {
        assert!(is_console_path("/"));
        assert!(is_console_path("/console/app.js"));
        for api in [
            "/runs",
            "/flows",
            "/health",
            "/docs/",
            "/doc/x",
            "/consoles",
        ] {
            assert!(!is_console_path(api), "{api}");
        }
    }

    #[test]
    fn an_unchanged_file_is_answered_304_without_its_body() {
        let app = ASSETS.iter().find(|a| a.path == "app.js");
        let Some(app) = app else {
            panic!("app.js is not embedded");
        };
        let full = file_response(app, &HeaderMap::new());
        assert_eq!(full.status(), StatusCode::OK);
        let etag = full.headers().get(header::ETAG).cloned();
        let Some(etag) = etag else {
            panic!("no ETag");
        };
        for sent in [
            etag.to_str().map(str::to_owned).unwrap_or_default(),
            format!("\"other\", W/{}", etag.to_str().unwrap_or_default()),
            "*".to_owned(),
        ] {
            let mut request = HeaderMap::new();
            request.insert(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(&sent).unwrap_or(HeaderValue::from_static("")),
            );
            let cached = file_response(app, &request);
            assert_eq!(cached.status(), StatusCode::NOT_MODIFIED, "{sent}");
            assert_eq!(cached.headers().get(header::ETAG), Some(&etag));
            assert!(cached.headers().get(header::CONTENT_TYPE).is_none());
        }
        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0\""));
        assert_eq!(file_response(app, &stale).status(), StatusCode::OK);
    }

    #[test]
    fn every_file_has_its_own_tag() {
        let mut tags: Vec<u64> = ASSETS.iter().map(|a| a.tag).collect();
        tags.push(INDEX.tag);
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1);
    }

    #[test]
    fn the_embedded_files_stay_small() {
        assert!(embedded_bytes() < 2 * 1024 * 1024);
    }
}
