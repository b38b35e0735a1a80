//! The JSON Schemas of the ids clients send, written from the stores' id
//! rule (`store::ids`, SPEC 5): one table for every front end that
//! describes its inputs — the HTTP API's OpenAPI document and the MCP
//! tools' input schemas — so both promise exactly what the engine accepts.

use crate::store::ids::{MAX_ID_LEN, MAX_ISOLATED_LEN};
use serde_json::{Value, json};

/// One id of the stores' rule, unanchored: a letter or digit first, then
/// letters, digits, `.`, `_`, `-` (at most 200 characters in all).
const ID: &str = "[A-Za-z0-9][A-Za-z0-9._-]{0,199}";

/// In front of a pattern: no `..` anywhere.
const NO_DOUBLE_DOT: &str = r"(?!.*\.\.)";

/// In front of a story id (the end of the string): no `__`, no trailing `_`.
const STORY_SEPARABLE: &str = "(?!.*__)(?!.*_$)";

/// The kinds of id the API carries, each with its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// Workflow ids, and story ids that only filter a list of runs: the id rule.
    Plain,
    /// A story id that a run or a readiness check makes ids from: the story
    /// rule (no `__`, no trailing `_`); its length limit depends on the ids
    /// it makes (see `story_limit`), so the caller gives it.
    Story,
    /// A story id that makes no id with a length limit (listing a story's
    /// documents, status records): the story rule, up to 200 characters.
    AnyStory,
    /// A document id (or a document's name within a story): the id rule,
    /// `.md` optional (but not twice).
    Doc,
    /// A memory key: the id rule plus `:` after the first character.
    MemoryKey,
    /// `shared`, `shared:<ns>` or `isolated:<agent>:<story>`, where agent
    /// and story together have at most 240 characters.
    MemoryScope,
    /// An agent id in a status record: ids joined by `/` (`pack/pm`).
    StatusAgent,
    /// A run id: `run-` and 16 hex digits.
    Run,
    /// An interrupt id: `int-` and 16 hex digits.
    Interrupt,
}

impl IdKind {
    /// The JSON schema of this kind of id; `story_limit` is the longest
    /// story id accepted where the id is a [`Self::Story`] (other kinds
    /// ignore it).
    pub fn schema(self, story_limit: usize) -> Value {
        let (pattern, max_length) = match self {
            Self::Plain => (format!("^{NO_DOUBLE_DOT}{ID}$"), MAX_ID_LEN),
            Self::Story => (
                format!("^{NO_DOUBLE_DOT}{STORY_SEPARABLE}{ID}$"),
                story_limit,
            ),
            Self::AnyStory => (
                format!("^{NO_DOUBLE_DOT}{STORY_SEPARABLE}{ID}$"),
                MAX_ID_LEN,
            ),
            Self::Doc => (
                format!(r"^(?!.*\.\.(?!md$))(?!.*\.md\.md$){ID}(\.md)?$"),
                MAX_ID_LEN + ".md".len(),
            ),
            Self::MemoryKey => (
                format!("^{NO_DOUBLE_DOT}[A-Za-z0-9][A-Za-z0-9._:-]{{0,199}}$"),
                MAX_ID_LEN,
            ),
            Self::MemoryScope => (
                format!("^{NO_DOUBLE_DOT}(shared(:{ID})?|isolated:{ID}:{STORY_SEPARABLE}{ID})$"),
                "isolated::".len() + MAX_ISOLATED_LEN,
            ),
            Self::StatusAgent => (format!("^{NO_DOUBLE_DOT}{ID}(/{ID})*$"), MAX_ID_LEN),
            Self::Run => ("^run-[0-9A-Fa-f]{16}$".to_string(), "run-".len() + 16),
            Self::Interrupt => ("^int-[0-9a-f]{16}$".to_string(), "int-".len() + 16),
        };
        json!({"type": "string", "minLength": 1, "maxLength": max_length, "pattern": pattern})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ids::{MemoryScope, check_story_id};

    fn accepts(schema: &Value, value: &str) -> bool {
        jsonschema::validator_for(schema).is_ok_and(|v| v.is_valid(&json!(value)))
    }

    #[test]
    fn story_schemas_accept_exactly_what_the_stores_accept() {
        let samples = [
            "Q", "Q_x", "Q__x", "Q_", "a.b-c_d", "a..b", "_a", "x___y", "9z", "a__",
        ];
        for kind in [IdKind::Story, IdKind::AnyStory] {
            let schema = kind.schema(MAX_ID_LEN);
            for value in samples {
                let stored = check_story_id(value).is_ok();
                assert_eq!(accepts(&schema, value), stored, "{kind:?} {value}");
            }
        }
        let scope = IdKind::MemoryScope.schema(0);
        for value in samples.map(|story| format!("isolated:pm:{story}")) {
            let stored = MemoryScope::parse(&value).is_ok();
            assert_eq!(accepts(&scope, &value), stored, "{value}");
        }
    }
}
