//! tools.yaml's `ca_file`: the private CA that an `https://` MCP server's
//! certificate is checked against, read from the source directory.
//!
//! The file is PEM text with one or more `CERTIFICATE` blocks, each a CA
//! certificate. It is checked here, so a wrong file is a compile error with
//! the line of `ca_file` rather than a failed connection later, and inlined
//! into the bundle ([`CaFile`]). A block holding a private key is refused:
//! the bundle would carry it, and a CA file never needs one.

use crate::bundle::CaFile;
use crate::sourcefs::SourceSnapshot;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{self, SectionKind};

/// The CA file at `path` (relative to the source directory, `/`-separated),
/// checked; the error is a sentence naming the file.
pub(super) fn read_ca_file(files: &SourceSnapshot, path: &str) -> Result<CaFile, String> {
    let path = path.strip_prefix("./").unwrap_or(path);
    if path.starts_with('/') || path.contains('\\') {
        return Err(format!(
            "`{path}` must be a path relative to the source directory, with `/` separators"
        ));
    }
    if !files.is_file(path) {
        return Err(format!("`{path}` is not a file of the source directory"));
    }
    let pem = files.text(path)?;
    let mut reader = pem.as_bytes();
    let mut certificates = 0;
    loop {
        match pem::from_buf(&mut reader) {
            Ok(Some((SectionKind::Certificate, der))) => {
                certificates += 1;
                webpki::anchor_from_trusted_cert(&CertificateDer::from(der)).map_err(|e| {
                    format!("certificate {certificates} of `{path}` is not a valid X.509 certificate ({e:?})")
                })?;
            }
            Ok(Some((kind, _))) => {
                return Err(format!(
                    "`{path}` holds a {kind:?} block; a CA file holds only certificates (a key would be copied into the bundle)"
                ));
            }
            Ok(None) => break,
            Err(e) => return Err(format!("`{path}` is not valid PEM: {e}")),
        }
    }
    if certificates == 0 {
        return Err(format!(
            "`{path}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
        ));
    }
    Ok(CaFile {
        path: path.to_string(),
        pem: pem.to_string(),
    })
}
