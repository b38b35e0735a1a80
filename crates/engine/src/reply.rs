//! Reading an LLM's reply: the `ACTION:` line, structured JSON replies, summaries.
//!
//! A free-text reply may end with a line `ACTION: *name` choosing one of the
//! agent's commands; that line is routing, not content, so it is removed
//! from the document. A structured reply (stateless execute, and agents
//! with an `output_schema`) is one JSON object, the *envelope*:
//!
//! ```json
//! {"content": "the document, Markdown", "summary": "one line",
//!  "action": "*approve", "data": {"…": "matches output_schema"}}
//! ```
//!
//! `content` and `summary` are required strings; `action` is optional (an
//! agent whose schema puts an `action` string in `data` may give it there);
//! `data` is required exactly when the agent declares an `output_schema`,
//! and is validated against it. A reply wrapped in a ```json fence is accepted.

use bmad2pf_compiler::bundle::Command;
use serde::{Deserialize, Serialize};

/// The action taken when a reply names none (or one the agent does not have).
pub const DEFAULT_ACTION: &str = "default";

/// Splits a trailing `ACTION: *name` line off `reply`.
/// Returns the content without that line and the action: the named command
/// if the agent has it, else [`DEFAULT_ACTION`].
pub fn split_action(reply: &str, commands: &[Command]) -> (String, String) {
    let trimmed = reply.trim_end();
    let (body, last) = match trimmed.rfind('\n') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("", trimmed),
    };
    let Some(named) = parse_action_line(last) else {
        return (reply.to_string(), DEFAULT_ACTION.to_string());
    };
    let action = resolve_action(named, commands);
    (format!("{}\n", body.trim_end()), action)
}

/// The command an action string names, normalised to `*name`, or `default`.
pub fn resolve_action(named: &str, commands: &[Command]) -> String {
    let wanted = named.trim().trim_start_matches('*');
    commands
        .iter()
        .find(|c| c.name.trim_start_matches('*').eq_ignore_ascii_case(wanted))
        .map_or_else(|| DEFAULT_ACTION.to_string(), |c| c.name.clone())
}

/// `ACTION: *name`, tolerating Markdown emphasis or code marks around it.
fn parse_action_line(line: &str) -> Option<&str> {
    let line = line
        .trim()
        .trim_matches(|c| c == '*' || c == '`' || c == '_')
        .trim();
    let (label, rest) = line.split_once(':')?;
    if !label.trim().eq_ignore_ascii_case("action") {
        return None;
    }
    let name = rest
        .trim()
        .trim_matches(|c| c == '`' || c == '_' || c == ' ');
    let bare = name.trim_start_matches('*');
    let valid = bare.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    valid.then_some(name)
}

/// A parsed structured reply (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub content: String,
    pub summary: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// Parses and validates a structured reply. The error says what is wrong in
/// words an LLM can act on (it is sent back in the repair attempt).
pub fn parse_envelope(
    reply: &str,
    output_schema: Option<&serde_json::Value>,
) -> Result<Envelope, String> {
    let json = strip_json_fence(reply);
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the reply is not a JSON object: {e}"))?;
    let envelope: Envelope = serde_json::from_value(value)
        .map_err(|e| format!("the reply does not have the required fields: {e}"))?;
    if let Some(schema) = output_schema {
        let data = envelope
            .data
            .as_ref()
            .ok_or("the reply has no `data` field, which must match the output schema")?;
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| format!("the agent's output_schema is not a valid JSON Schema: {e}"))?;
        let problems: Vec<String> = validator
            .iter_errors(data)
            .take(5)
            .map(|e| format!("{} at `{}`", e, e.instance_path()))
            .collect();
        if !problems.is_empty() {
            return Err(format!(
                "`data` does not match the output schema: {}",
                problems.join("; ")
            ));
        }
    }
    Ok(envelope)
}

fn strip_json_fence(reply: &str) -> &str {
    let t = reply.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// A one-line summary of a document: its first non-empty line, without
/// Markdown heading marks, at most 200 characters.
pub fn summarize(content: &str) -> String {
    let line = content
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Vec<Command> {
        ["*approve", "*revise"]
            .iter()
            .map(|n| Command {
                name: n.to_string(),
                description: String::new(),
            })
            .collect()
    }

    #[test]
    fn action_line_is_split_off() {
        let (content, action) =
            split_action("# Review\nLooks fine.\nACTION: *approve\n", &commands());
        assert_eq!(action, "*approve");
        assert_eq!(content, "# Review\nLooks fine.\n");
    }

    #[test]
    fn decorated_and_unstarred_actions_are_accepted() {
        assert_eq!(
            split_action("x\n**ACTION: revise**", &commands()).1,
            "*revise"
        );
        assert_eq!(
            split_action("x\n`action: *Approve`", &commands()).1,
            "*approve"
        );
    }

    #[test]
    fn unknown_or_missing_action_is_default() {
        let (content, action) = split_action("x\nACTION: *explode", &commands());
        assert_eq!(action, DEFAULT_ACTION);
        assert_eq!(content, "x\n");
        let (content, action) = split_action("just text\nno action here", &commands());
        assert_eq!(action, DEFAULT_ACTION);
        assert_eq!(content, "just text\nno action here");
    }

    #[test]
    fn envelope_is_validated_against_the_schema() {
        let schema = serde_json::json!({"type": "object", "required": ["score"],
            "properties": {"score": {"type": "integer"}}});
        let good = r#"```json
{"content": "c", "summary": "s", "data": {"score": 3}}
```"#;
        assert!(parse_envelope(good, Some(&schema)).is_ok());
        let bad = r#"{"content": "c", "summary": "s", "data": {"score": "high"}}"#;
        let err = parse_envelope(bad, Some(&schema)).err().unwrap_or_default();
        assert!(err.contains("score"), "{err}");
        assert!(parse_envelope("not json", None).is_err());
        assert!(parse_envelope(r#"{"content": "c"}"#, None).is_err());
    }

    #[test]
    fn summary_is_first_line_without_heading_marks() {
        assert_eq!(summarize("\n\n## Product brief\nbody"), "Product brief");
        assert_eq!(summarize(&"a".repeat(300)).chars().count(), 201);
    }
}
