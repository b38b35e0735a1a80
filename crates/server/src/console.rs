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
//! - `Cache-Control: no-cache`: browsers revalidate, so a new binary's
//!   console is picked up at once.

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
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
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page served at `/`.
const INDEX: &str = include_str!("../console/index.html");

/// Every file the page loads.
const ASSETS: &[Asset] = &[
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../console/style.css"),
    },
    Asset {
        path: "app.js",
        content_type: JS,
        body: include_str!("../console/app.js"),
    },
    Asset {
        path: "api.js",
        content_type: JS,
        body: include_str!("../console/api.js"),
    },
    Asset {
        path: "dom.js",
        content_type: JS,
        body: include_str!("../console/dom.js"),
    },
    Asset {
        path: "markdown.js",
        content_type: JS,
        body: include_str!("../console/markdown.js"),
    },
    Asset {
        path: "graph.js",
        content_type: JS,
        body: include_str!("../console/graph.js"),
    },
    Asset {
        path: "question.js",
        content_type: JS,
        body: include_str!("../console/question.js"),
    },
    Asset {
        path: "pages/flows.js",
        content_type: JS,
        body: include_str!("../console/pages/flows.js"),
    },
    Asset {
        path: "pages/runs.js",
        content_type: JS,
        body: include_str!("../console/pages/runs.js"),
    },
    Asset {
        path: "pages/run.js",
        content_type: JS,
        body: include_str!("../console/pages/run.js"),
    },
    Asset {
        path: "pages/questions.js",
        content_type: JS,
        body: include_str!("../console/pages/questions.js"),
    },
    Asset {
        path: "pages/documents.js",
        content_type: JS,
        body: include_str!("../console/pages/documents.js"),
    },
    Asset {
        path: "pages/health.js",
        content_type: JS,
        body: include_str!("../console/pages/health.js"),
    },
];

/// The console's routes: `/` and `/console/{path}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console/{*path}", get(asset))
}

/// Whether `path` is one of the console's (served without the API key).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path.starts_with(ASSET_PREFIX)
}

/// The total size of the embedded files, in bytes.
pub fn embedded_bytes() -> usize {
    INDEX.len() + ASSETS.iter().map(|asset| asset.body.len()).sum::<usize>()
}

async fn index() -> Response {
    file_response("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|asset| asset.path == path)
        .map(|asset| file_response(asset.content_type, asset.body))
        .ok_or_else(|| ApiError::not_found(format!("no console file `{path}`")))
}

fn file_response(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for line in asset.body.lines() {
                let Some(rest) = line.trim_start().strip_prefix("import ") else {
                    continue;
                };
                let Some(target) = rest.split('"').nth(1) else {
                    continue;
                };
                let base = asset.path.rsplit_once('/').map_or("", |(dir, _)| dir);
                let resolved = resolve(base, target);
                assert!(
                    ASSETS.iter().any(|a| a.path == resolved),
                    "{} imports {target} ({resolved}), which is not embedded",
                    asset.path
                );
            }
        }
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
    fn the_embedded_files_stay_small() {
        assert!(embedded_bytes() < 2 * 1024 * 1024);
    }
}
