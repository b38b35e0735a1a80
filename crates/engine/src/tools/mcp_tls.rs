//! The HTTP client of an MCP server reached over streamable HTTP, and the
//! TLS it speaks to an `https://` server.
//!
//! rmcp's transport takes a reqwest 0.13 client (the rest of the engine is
//! on 0.12). It is built here with a rustls configuration of the engine's
//! own, so `https://` servers are checked like every other outbound HTTPS
//! call: ring, the crypto provider reqwest 0.12 uses, and the webpki roots
//! it trusts. A server's private CA (tools.yaml `ca_file`, inlined in the
//! bundle) is trusted besides those roots, for that server only.

use bmad2pf_compiler::bundle::CaFile;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

/// The client for one server, trusting `ca_file` too when it is given.
/// Built when the engine starts, so a CA that cannot be used stops it
/// with an error naming the file.
pub(super) fn http_client(ca_file: Option<&CaFile>) -> Result<rmcp_reqwest::Client, String> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca_file) = ca_file {
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(ca_file.pem.as_bytes()) {
            let certificate = certificate
                .map_err(|e| format!("ca_file `{}` is not valid PEM: {e}", ca_file.path))?;
            added += 1;
            // rustls's own message speaks of a peer's certificate: say which one this is.
            roots.add(certificate).map_err(|_| {
                format!(
                    "ca_file `{}`: certificate {added} is not a valid X.509 certificate",
                    ca_file.path
                )
            })?;
        }
        if added == 0 {
            return Err(format!(
                "ca_file `{}` holds no PEM certificate",
                ca_file.path
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // rmcp's reqwest is built without HTTP/2: offer the server HTTP/1.1 only.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    rmcp_reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
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
fn same_origin_redirects() -> rmcp_reqwest::redirect::Policy {
    rmcp_reqwest::redirect::Policy::custom(|attempt| {
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
