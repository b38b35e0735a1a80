//! What a memory value may be: any JSON value, nested at most
//! [`MAX_VALUE_DEPTH`] levels deep.
//!
//! The one limit comes from reading back: serde_json refuses to parse JSON
//! nested deeper than 128 levels, and a value may be read back inside a
//! larger record (a run's memory, a Redis field). A value that was
//! accepted but nests close to that would be written and never read again. So every memory store refuses deeper values before it
//! writes, whoever sends them: an API client, an agent's `memory_set` tool
//! call with arguments an LLM chose, a run's flush.

use serde_json::Value;

use super::StoreError;

/// Deepest nesting of arrays and objects a stored value may have; half of
/// serde_json's limit, leaving room for the records values are kept in.
pub const MAX_VALUE_DEPTH: usize = 64;

/// How deeply `value` nests arrays and objects (a scalar is 0, `[]` is 1).
/// Iterative, so a deep value cannot overflow the stack here.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        pending.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// Refuses a value nested deeper than [`MAX_VALUE_DEPTH`].
pub(crate) fn check_value(value: &Value) -> Result<(), StoreError> {
    let levels = depth(value);
    if levels > MAX_VALUE_DEPTH {
        return Err(StoreError::InvalidValue {
            message: format!(
                "the value nests {levels} levels deep; at most {MAX_VALUE_DEPTH} are stored"
            ),
            max_depth: MAX_VALUE_DEPTH,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let text = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        serde_json::from_str(&text).unwrap_or_default()
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}], "c": 2})), 4);
    }

    #[test]
    fn values_up_to_the_limit_are_accepted_and_deeper_ones_refused() {
        assert!(check_value(&nested(MAX_VALUE_DEPTH)).is_ok());
        let refused = check_value(&nested(MAX_VALUE_DEPTH + 1));
        assert!(
            matches!(refused, Err(StoreError::InvalidValue { max_depth: 64, .. })),
            "{refused:?}"
        );
        // The deepest accepted value still reads back inside a record.
        let line = json!({"k": "key", "v": nested(MAX_VALUE_DEPTH), "t": 1}).to_string();
        assert!(serde_json::from_str::<Value>(&line).is_ok());
    }
}
