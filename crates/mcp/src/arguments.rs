//! A tool call's arguments: checked against the tool's input schema (the
//! one `tools/list` shows, so a client that follows it is never refused),
//! then read into the typed request of the tool. Anything else is an MCP
//! `invalid params` error naming each problem and where it is.

use rmcp::ErrorData as McpError;
use rmcp::model::{JsonObject, Tool};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// At most this many schema problems are listed in one error.
const MAX_PROBLEMS: usize = 5;

/// Arguments that match their tool's schema.
#[derive(Debug)]
pub struct Arguments {
    tool: String,
    value: Value,
}

impl Arguments {
    /// Checks `arguments` (absent: `{}`) against `tool`'s input schema.
    pub fn check(name: &str, tool: &Tool, arguments: Option<JsonObject>) -> Result<Self, McpError> {
        let value = Value::Object(arguments.unwrap_or_default());
        let schema = Value::Object(tool.input_schema.as_ref().clone());
        let validator = jsonschema::validator_for(&schema).map_err(|e| {
            McpError::internal_error(
                format!("the input schema of `{name}` is invalid: {e}"),
                None,
            )
        })?;
        let problems: Vec<Value> = validator
            .iter_errors(&value)
            .take(MAX_PROBLEMS)
            .map(|e| json!({"path": e.instance_path().to_string(), "message": e.to_string()}))
            .collect();
        if !problems.is_empty() {
            let listed: Vec<String> = problems
                .iter()
                .map(|p| {
                    let path = p["path"].as_str().unwrap_or_default();
                    let message = p["message"].as_str().unwrap_or_default();
                    if path.is_empty() {
                        message.to_string()
                    } else {
                        format!("`{path}`: {message}")
                    }
                })
                .collect();
            return Err(McpError::invalid_params(
                format!("invalid arguments for `{name}`: {}", listed.join("; ")),
                Some(json!({"tool": name, "problems": problems})),
            ));
        }
        Ok(Self {
            tool: name.to_string(),
            value: integral_floats_as_integers(value),
        })
    }

    /// The arguments as the tool's request type. The schema check has
    /// passed, so this fails only on a bug: a schema that lets through what
    /// the type does not take.
    pub fn read<T: DeserializeOwned>(self) -> Result<T, McpError> {
        serde_json::from_value(self.value).map_err(|e| {
            McpError::invalid_params(
                format!("invalid arguments for `{}`: {e}", self.tool),
                Some(json!({"tool": self.tool, "problems": [{"path": "", "message": e.to_string()}]})),
            )
        })
    }
}

/// `value` with every float that is a whole number (`1.0`) as that integer.
/// JSON Schema counts `1.0` as an integer, so a client may send it for an
/// `integer` argument; the tools' types read integers only.
fn integral_floats_as_integers(value: Value) -> Value {
    match value {
        Value::Number(number) => Value::Number(whole_number(&number).unwrap_or(number)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(integral_floats_as_integers).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, integral_floats_as_integers(value)))
                .collect(),
        ),
        other => other,
    }
}

/// `number` as an integer, when it is a float that is exactly one.
fn whole_number(number: &serde_json::Number) -> Option<serde_json::Number> {
    // Floats this large are not exact; 2^53 is where integers stop being so.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let float = number.as_f64().filter(|_| number.is_f64())?;
    if float.fract() != 0.0 || float.abs() > EXACT {
        return None;
    }
    // Exact: a whole float within ±2^53 converts without loss.
    let integer = float as i64;
    Some(serde_json::Number::from(integer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tool() -> Tool {
        let schema = json!({
            "type": "object",
            "properties": {"story_id": {"type": "string", "pattern": "^[a-z]+$"}, "n": {"type": "integer"}},
            "required": ["story_id"],
            "additionalProperties": false,
        });
        let Value::Object(schema) = schema else {
            unreachable!("an object literal")
        };
        Tool::new("t", "a tool", Arc::new(schema))
    }

    fn object(value: Value) -> Option<JsonObject> {
        value.as_object().cloned()
    }

    #[test]
    fn arguments_that_fit_the_schema_are_read() -> Result<(), McpError> {
        #[derive(serde::Deserialize)]
        struct Request {
            story_id: String,
        }
        let request: Request =
            Arguments::check("t", &tool(), object(json!({"story_id": "abc"})))?.read()?;
        assert_eq!(request.story_id, "abc");
        Ok(())
    }

    #[test]
    fn a_whole_float_is_read_as_the_integer_it_is() -> Result<(), McpError> {
        #[derive(serde::Deserialize)]
        struct Request {
            n: u64,
        }
        let arguments = object(json!({"story_id": "abc", "n": 3.0}));
        let request: Request = Arguments::check("t", &tool(), arguments)?.read()?;
        assert_eq!(request.n, 3);
        assert!(
            Arguments::check("t", &tool(), object(json!({"story_id": "a", "n": 1.5}))).is_err()
        );
        Ok(())
    }

    #[test]
    fn a_type_the_schema_let_through_is_refused_with_its_problems() -> Result<(), McpError> {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Request {
            n: u8,
        }
        let arguments = object(json!({"story_id": "abc", "n": 300}));
        let refused = Arguments::check("t", &tool(), arguments)?.read::<Request>();
        let Err(error) = refused else {
            panic!("300 is no u8")
        };
        assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        let data = error.data.unwrap_or_default();
        assert!(data["problems"][0]["message"].is_string(), "{data}");
        Ok(())
    }

    #[test]
    fn each_problem_is_named_with_its_place() {
        for (bad, expected) in [
            (json!({}), "story_id"),
            (json!({"story_id": "../x"}), "/story_id"),
            (json!({"story_id": "a", "n": "two"}), "/n"),
            (json!({"story_id": "a", "extra": 1}), "extra"),
        ] {
            let error = Arguments::check("t", &tool(), object(bad.clone()));
            let Err(error) = error else {
                panic!("{bad} was accepted")
            };
            assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{bad}");
            assert!(error.message.contains(expected), "{bad}: {}", error.message);
        }
    }
}
