//! The `X-Bmad2pf-Signature` header of a webhook (SPEC 8.5):
//! `t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
//!
//! The timestamp is signed with the body, so a receiver that checks it is
//! recent refuses a captured request replayed later; each attempt is
//! signed anew with its own time, over the same body.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's value for `body` sent at `unix_s`.
pub(crate) fn signature(secret: &str, unix_s: u64, body: &str) -> Option<String> {
    let message = format!("{unix_s}.{body}");
    let mac = hmac_sha256(secret.as_bytes(), message.as_bytes())?;
    Some(format!("t={unix_s},v1={}", hex::encode(mac)))
}

/// `None` only if the `hmac` crate refused the key, which HMAC never does
/// (RFC 2104 takes keys of any length); no panic either way.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(message);
    Some(mac.finalize().into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 2: key "Jefe".
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?").map(hex::encode),
            Some("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".into())
        );
        // Test case 6: a key longer than the block size.
        assert_eq!(
            hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )
            .map(hex::encode),
            Some("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54".into())
        );
    }

    #[test]
    fn the_header_signs_the_time_and_the_body() {
        let header = signature("whsec", 1_700_000_000, r#"{"event":"run.finished"}"#);
        let expected = hmac_sha256(b"whsec", br#"1700000000.{"event":"run.finished"}"#)
            .map(hex::encode)
            .unwrap_or_default();
        assert_eq!(header, Some(format!("t=1700000000,v1={expected}")));
        assert_ne!(
            header,
            signature("whsec", 1_700_000_001, r#"{"event":"run.finished"}"#)
        );
    }
}
