//! JSON values written with every object's keys in sorted order, read in
//! place rather than sorted in a copy.
//!
//! The workspace builds serde_json with `preserve_order`, so an object keeps
//! its keys in the order they were inserted: YAML metadata in document
//! order, the OpenAPI document in utoipa's order. The bundle's files list
//! keys sorted (the same bytes for the same content), and [`Sorted`] gives
//! that order to any serializer while borrowing every key and string of the
//! value. The bundle types do the same for their own fields (see
//! [`crate::bundle`]) and use the `serialize_with` helpers here for their
//! free-form JSON fields.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// A borrowed JSON value that serialises with the keys of each of its
/// objects, at every depth, in sorted order.
#[derive(Debug, Clone, Copy)]
pub struct Sorted<'a>(pub &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(object) => {
                let mut entries: Vec<(&String, &Value)> = object.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, &Sorted(value))?;
                }
                map.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            scalar => scalar.serialize(serializer),
        }
    }
}

/// `serialize_with` for a free-form JSON field.
pub(crate) fn value<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    Sorted(value).serialize(serializer)
}

/// `serialize_with` for an optional free-form JSON field.
pub(crate) fn optional_value<S: Serializer>(
    value: &Option<Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.as_ref().map(Sorted).serialize(serializer)
}

/// `serialize_with` for a map of names to free-form JSON (the `metadata` fields).
pub(crate) fn value_map<S: Serializer>(
    map: &BTreeMap<String, Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().map(|(key, value)| (key, Sorted(value))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_written_with_sorted_keys_at_every_depth() -> Result<(), serde_json::Error> {
        let value: Value = serde_json::from_str(
            r#"{"z": {"b": [1, {"d": 2, "c": 3}], "a": null}, "m": "é\n\"q\"", "A": 1.5}"#,
        )?;
        let mut sorted_copy = value.clone();
        sorted_copy.sort_all_objects();
        assert_eq!(
            serde_json::to_string_pretty(&Sorted(&value))?,
            serde_json::to_string_pretty(&sorted_copy)?
        );
        assert_eq!(
            serde_json::to_string(&Sorted(&value))?,
            r#"{"A":1.5,"m":"é\n\"q\"","z":{"a":null,"b":[1,{"c":3,"d":2}]}}"#
        );
        Ok(())
    }
}
