//! The HTTP client of an MCP server reached over streamable HTTP: the
//! engine's TLS ([`crate::outbound`]) with the server's private CA, and
//! the connection and redirect rules of rmcp's own default client.

use crate::outbound::{self, HttpVersions};
use bmad2pf_compiler::bundle::CaFile;

/// The client for one server, trusting `ca_file` too when it is given.
/// Built when the engine starts, so a CA that cannot be used stops it
/// with an error naming the file.
pub(super) fn http_client(ca_file: Option<&CaFile>) -> Result<reqwest::Client, String> {
    outbound::builder(ca_file, HttpVersions::Http1)?
        // As rmcp's own default client: no idle connections kept (a reused
        // one can stall on delayed ACKs), and only redirects that keep the
        // request whole and stay on the server ([`same_origin_redirects`]).
        .pool_max_idle_per_host(0)
        .redirect(same_origin_redirects())
        .build()
        .map_err(|e| format!("cannot set up its HTTP client: {e}"))
}

/// The most redirects one request follows.
const MAX_REDIRECTS: usize = 10;

/// Follows 307 and 308 redirects to the same origin only. Other redirects
/// would turn the JSON-RPC POST into a GET without its body, and one to
/// another host would hand it the session id and the `headers` (tokens);
/// they come back to rmcp as the failed response they are.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let keeps_the_body = matches!(attempt.status().as_u16(), 307 | 308);
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if keeps_the_body && same_origin && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}
