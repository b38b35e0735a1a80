//! `bundle.schema.json`: the JSON Schema of `bundle.json`.
//!
//! Derived from the bundle types with `schemars` (which reads their serde
//! attributes: `deny_unknown_fields`, renames, defaults), so the schema
//! cannot drift from what the compiler writes and the engine reads.

use crate::bundle::Bundle;

/// The JSON Schema (draft 2020-12) of a serialised [`Bundle`].
pub fn bundle_schema() -> schemars::Schema {
    schemars::schema_for!(Bundle)
}
