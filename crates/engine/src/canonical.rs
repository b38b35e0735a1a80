//! Canonical JSON: the one text form of a value that every input hash in the
//! engine is taken over.
//!
//! serde_json keeps object keys in the order they were written (the
//! `preserve_order` feature is on, so documents and replies round-trip as
//! written), which would make two equal values hash differently. Here keys
//! are written sorted at every level (the compiler's [`SortedJson`], which
//! writes bundle files the same way), so a hash depends on what a value is,
//! not on how a client or a YAML file happened to order it.

use bmad2pf_compiler::SortedJson;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hex sha256 of the canonical JSON of `value`: its compact JSON text with
/// object keys sorted at every level, written straight into the hash.
pub(crate) fn canonical_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    // Writing a JSON value cannot fail, and neither can a hasher.
    let _ = serde_json::to_writer(&mut hasher, &SortedJson(value));
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_of_compact_json_with_sorted_keys() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": 0, "c": 1}], "x": null}}"#)
                .unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [1, {"c": 1, "d": 0}]}, "b": 1}"#)
                .unwrap_or_default();
        assert_eq!(canonical_hash(&a), canonical_hash(&b));
        // The exact text hashed: stored hashes (replay recordings, run
        // records) were taken over it, so it must not change.
        let text = r#"{"a":{"x":null,"y":[1,{"c":1,"d":0}]},"b":1}"#;
        assert_eq!(
            canonical_hash(&a),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        assert_ne!(canonical_hash(&a), canonical_hash(&Value::Null));
    }
}
