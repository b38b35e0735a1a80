//! The HTTP clients of every outbound call the engine makes (LLM vendors,
//! webhooks, HTTP tools, MCP servers over streamable HTTP), and the TLS
//! they speak to an `https://` server.
//!
//! reqwest is built without a crypto provider of its own, so every client
//! starts from [`builder`]: rustls on ring, trusting the webpki roots, and
//! for an MCP server with a private CA (tools.yaml `ca_file`, inlined in
//! the bundle) that CA too, for that server only.

use bmad2pf_compiler::bundle::CaFile;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

/// The HTTP versions a client offers a server over TLS.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HttpVersions {
    /// HTTP/2 when the server offers it, else HTTP/1.1.
    Any,
    /// HTTP/1.1 only.
    Http1,
}

/// A client builder with the engine's TLS and user agent, trusting
/// `ca_file` besides the webpki roots when it is given. An error names
/// what is wrong with the CA file.
pub(crate) fn builder(
    ca_file: Option<&CaFile>,
    versions: HttpVersions,
) -> Result<reqwest::ClientBuilder, String> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca_file) = ca_file {
        add_private_ca(&mut roots, ca_file)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // A configuration handed to reqwest is used as it is: the ALPN list
    // is what the client offers.
    tls.alpn_protocols = match versions {
        HttpVersions::Any => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        HttpVersions::Http1 => vec![b"http/1.1".to_vec()],
    };
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("bmad2pf/", env!("CARGO_PKG_VERSION")));
    Ok(match versions {
        HttpVersions::Any => builder,
        HttpVersions::Http1 => builder.http1_only(),
    })
}

/// A client with the defaults of [`builder`]: any HTTP version, the
/// webpki roots only.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    builder(None, HttpVersions::Any)?
        .build()
        .map_err(|e| e.to_string())
}

/// Adds every certificate of `ca_file` to `roots`; a file with none, or
/// with one that is not PEM or not a certificate, is an error.
fn add_private_ca(roots: &mut rustls::RootCertStore, ca_file: &CaFile) -> Result<(), String> {
    let mut added = 0;
    for certificate in CertificateDer::pem_slice_iter(ca_file.pem.as_bytes()) {
        let certificate =
            certificate.map_err(|e| format!("ca_file `{}` is not valid PEM: {e}", ca_file.path))?;
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
    Ok(())
}
