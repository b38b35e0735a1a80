//! Canonical JSON: the one text form of a value that every input hash in the
//! engine is taken over.
//!
//! serde_json keeps object keys in the order they were written (the
//! `preserve_order` feature is on, so documents and replies round-trip as
//! written), which would make two equal values hash differently. Here keys
//! are sorted at every level first, so a hash depends on what a value is,
//! not on how a client or a YAML file happened to order it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// JSON text with object keys sorted at every level.
pub(crate) fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// Hex sha256 of the canonical JSON of `value`.
pub(crate) fn canonical_hash(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": 0, "c": 1}], "x": null}}"#)
                .unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [1, {"c": 1, "d": 0}]}, "b": 1}"#)
                .unwrap_or_default();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"c":1,"d":0}]},"b":1}"#
        );
        assert_eq!(canonical_hash(&a), canonical_hash(&b));
        assert_ne!(canonical_hash(&a), canonical_hash(&Value::Null));
    }
}
