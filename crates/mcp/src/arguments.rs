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
            value,
        })
    }

    /// The arguments as the tool's request type.
    pub fn read<T: DeserializeOwned>(self) -> Result<T, McpError> {
        serde_json::from_value(self.value).map_err(|e| {
            McpError::invalid_params(format!("invalid arguments for `{}`: {e}", self.tool), None)
        })
    }
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
