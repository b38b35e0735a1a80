//! Validated identifiers for everything the stores name: documents, memory
//! scopes and keys, workflows.
//!
//! Every id that reaches a store arrives from a client (a URL path segment, a
//! JSON body) or from a bundle, and some of them become file names. So the
//! rule is strict and the same everywhere (SPEC 5, "Rules"):
//! `^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`, with `..` rejected anywhere, and no
//! `/`, `\`, NUL or `%` — the last one so that no percent-encoded form
//! (`%2e%2e`, `%2f`, or double-encoded `%252e`) can ever be decoded into a
//! path later by someone else. Once a value is one of these types it is safe
//! to use as a file name component, a Redis key part or a log field.
//!
//! Conventions decided here:
//! - A document id given with a trailing `.md` means the same document as
//!   without it (`prd.md` ≡ `prd`); the stored form has no extension.
//! - Memory keys may also contain `:` (`plan:v2`), since they are never file
//!   names; they still refuse `..` and every separator.
//! - An isolated memory scope names its agent without `/`: a pack-qualified
//!   agent id `pack/pm` is written `pack.pm` (the same mapping the compiler
//!   uses for default document names). [`MemoryScope::isolated`] applies it;
//!   [`MemoryScope::parse`] expects the mapped form, because the API carries
//!   the scope in one URL path segment where `/` cannot appear.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id, in bytes (all valid characters are ASCII).
pub const MAX_ID_LEN: usize = 200;

/// Longest `agent + story` of an isolated memory scope. The limit comes from
/// an earlier store that named a file after each scope; it is kept so that
/// every scope accepted before is accepted now, and no more than that.
pub const MAX_ISOLATED_LEN: usize = 240;

/// Why an id was refused: which kind of id, the offending value (escaped and
/// shortened for display) and the rule it broke. Its message goes to clients
/// as the detail of a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value}: {reason}")]
pub struct IdError {
    /// What was being parsed: "document id", "memory scope", "memory key"…
    pub kind: &'static str,
    /// The input, debug-escaped (so NUL and control characters are visible)
    /// and cut to a readable length.
    pub value: String,
    /// The rule that was broken, in words.
    pub reason: String,
}

impl IdError {
    fn new(kind: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let shown: String = value.chars().take(80).collect();
        let value = if shown.len() < value.len() {
            format!("{shown:?}…")
        } else {
            format!("{shown:?}")
        };
        Self {
            kind,
            value,
            reason: reason.into(),
        }
    }
}

/// Checks `value` against the shared id rule; `extra` lists characters
/// allowed beyond `[A-Za-z0-9._-]` (after the first character).
fn check_id(kind: &'static str, value: &str, extra: &[char]) -> Result<(), IdError> {
    let fail = |reason: String| Err(IdError::new(kind, value, reason));
    if value.is_empty() {
        return fail("must not be empty".into());
    }
    if value.len() > MAX_ID_LEN {
        return fail(format!(
            "is {} characters long, at most {MAX_ID_LEN} are allowed",
            value.len()
        ));
    }
    if value.contains("..") {
        return fail("must not contain `..`".into());
    }
    if let Some(bad) = value.chars().find(|c| matches!(c, '/' | '\\' | '\0' | '%')) {
        let reason = match bad {
            '/' | '\\' => format!("must not contain a path separator ({bad:?})"),
            '\0' => "must not contain a NUL character".into(),
            _ => "must not contain `%` (percent-encoded ids are not accepted)".into(),
        };
        return fail(reason);
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return fail("must start with a letter or a digit".into());
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(&c);
    if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
        let mut set = String::from("letters, digits, `.`, `_`, `-`");
        for c in extra {
            set.push_str(&format!(", `{c}`"));
        }
        return fail(format!("contains {bad:?}; only {set} are allowed"));
    }
    Ok(())
}

/// Checks a story id (used in document names, scopes and workflow records).
/// Public so that the server can refuse a bad story id (400 `invalid_id`)
/// before it reaches the engine, wherever the id comes from.
///
/// A story id prefixes the ids made from it (`{story}__{name}` documents,
/// `{flow}__{story}` workflows), so it may not contain `__` nor end with
/// `_`: each such id then splits one way only, and no story's documents
/// or workflows can pass for another's (`Q_` + `prd` would be `Q___prd`,
/// which reads as story `Q`).
pub fn check_story_id(value: &str) -> Result<(), IdError> {
    check_id("story id", value, &[])?;
    if value.contains("__") || value.ends_with('_') {
        return Err(IdError::new(
            "story id",
            value,
            "must not contain `__` nor end with `_` (`__` separates a story id from the names joined to it)",
        ));
    }
    Ok(())
}

/// Checks an agent id as it appears in orchestration status records, where
/// pack-qualified ids (`pack/pm`) are kept as given: the id rule plus `/`
/// between segments (never leading, trailing or doubled).
pub(crate) fn check_status_agent_id(value: &str) -> Result<(), IdError> {
    const KIND: &str = "agent id";
    if value.starts_with('/') || value.ends_with('/') || value.contains("//") {
        return Err(IdError::new(
            KIND,
            value,
            "`/` may only separate a pack name from an agent id",
        ));
    }
    if value.len() > MAX_ID_LEN {
        return check_id(KIND, value, &[]);
    }
    value
        .split('/')
        .try_for_each(|part| check_id(KIND, part, &[]))
}

/// Gives a validated id type its string conversions, so serde reads and
/// writes it as a plain string that is validated again when deserialised.
macro_rules! string_forms {
    ($ty:ty) => {
        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }

        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.to_string()
            }
        }
    };
}

/// `string_forms!`, plus `as_str` and `Display` for the newtypes over one `String`.
macro_rules! newtype_forms {
    ($ty:ident) => {
        string_forms!($ty);

        impl $ty {
            /// The id as stored and listed.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A document id: the file stem of `{docs.path}/{id}.md`, without the extension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocId(String);

newtype_forms!(DocId);

impl DocId {
    /// Parses a client- or bundle-supplied id. A single trailing `.md` is
    /// accepted and dropped; an id that still ends in `.md` after that
    /// (`a.md.md`) is refused, so every document has exactly one spelling
    /// with and one without the extension.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let stem = value.strip_suffix(".md").unwrap_or(value);
        if stem.ends_with(".md") {
            return Err(IdError::new(
                "document id",
                value,
                "ends in `.md` twice; the extension is implied",
            ));
        }
        check_id("document id", stem, &[])?;
        Ok(Self(stem.to_string()))
    }

    /// Whether this document belongs to `story_id` by the naming convention
    /// `{story_id}__{name}`, where the name starts with a letter or digit.
    pub fn belongs_to_story(&self, story_id: &str) -> bool {
        self.0
            .strip_prefix(story_id)
            .and_then(|rest| rest.strip_prefix("__"))
            .is_some_and(|name| name.starts_with(|c: char| c.is_ascii_alphanumeric()))
    }
}

/// The id of document `name` of story `story_id`: `{story_id}__{name}`.
/// `name` may carry `.md` (`requirements.md` ≡ `requirements`).
pub fn doc_id(story_id: &str, name: &str) -> Result<DocId, IdError> {
    check_story_id(story_id)?;
    let name_stem = name.strip_suffix(".md").unwrap_or(name);
    check_id("document name", name_stem, &[])?;
    DocId::parse(&format!("{story_id}__{name_stem}"))
}

/// A memory key inside a scope: the id rule, plus `:` anywhere after the
/// first character.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemoryKey(String);

newtype_forms!(MemoryKey);

impl MemoryKey {
    /// Parses a client- or agent-supplied key.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_id("memory key", value, &[':'])?;
        Ok(Self(value.to_string()))
    }
}

/// Where a piece of memory lives (SPEC 4.4): private to one agent working on
/// one story, or shared under a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MemoryScope {
    /// `isolated:<agent>:<story>`; `agent` has `/` already mapped to `.`.
    Isolated {
        /// The agent id in scope form (no `/`).
        agent: String,
        /// The story the agent works on.
        story: String,
    },
    /// `shared:<namespace>`; plain `shared` is `shared:default`.
    Shared {
        /// The namespace; `default` for plain `shared`.
        namespace: String,
    },
}

/// The namespace of the plain `shared` scope.
pub const DEFAULT_NAMESPACE: &str = "default";

impl MemoryScope {
    /// Parses the API string form: `isolated:<agent_id>:<story_id>`,
    /// `shared`, or `shared:<ns>`. Agent ids must already be in scope form
    /// (`pack.pm`, not `pack/pm`).
    pub fn parse(value: &str) -> Result<Self, IdError> {
        const KIND: &str = "memory scope";
        let mut parts = value.split(':');
        let scope = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("shared"), None, _, _) => Self::shared_default(),
            (Some("shared"), Some(ns), None, _) => Self::shared(ns)?,
            (Some("isolated"), Some(agent), Some(story), None) => {
                check_id("agent id in memory scope", agent, &[])?;
                Self::checked_isolated(agent, story)?
            }
            (Some("shared"), Some(_), Some(_), _) => {
                return Err(IdError::new(
                    KIND,
                    value,
                    "expected `shared` or `shared:<namespace>`",
                ));
            }
            (Some("isolated"), ..) => {
                return Err(IdError::new(
                    KIND,
                    value,
                    "expected `isolated:<agent_id>:<story_id>`",
                ));
            }
            _ => {
                return Err(IdError::new(
                    KIND,
                    value,
                    "expected `isolated:<agent_id>:<story_id>`, `shared` or `shared:<namespace>`",
                ));
            }
        };
        Ok(scope)
    }

    /// The isolated scope of `agent_id` on `story_id`. A pack-qualified
    /// agent id (`pack/pm`) is mapped to scope form (`pack.pm`).
    pub fn isolated(agent_id: &str, story_id: &str) -> Result<Self, IdError> {
        let agent = agent_id.replace('/', ".");
        check_id("agent id in memory scope", &agent, &[])?;
        Self::checked_isolated(&agent, story_id)
    }

    fn checked_isolated(agent: &str, story: &str) -> Result<Self, IdError> {
        check_story_id(story)?;
        if agent.len() + story.len() > MAX_ISOLATED_LEN {
            return Err(IdError::new(
                "memory scope",
                &format!("isolated:{agent}:{story}"),
                format!(
                    "agent id and story id together must not exceed {MAX_ISOLATED_LEN} characters"
                ),
            ));
        }
        Ok(Self::Isolated {
            agent: agent.to_string(),
            story: story.to_string(),
        })
    }

    /// The shared scope `shared:<namespace>`.
    pub fn shared(namespace: &str) -> Result<Self, IdError> {
        check_id("memory namespace", namespace, &[])?;
        Ok(Self::Shared {
            namespace: namespace.to_string(),
        })
    }

    /// The plain `shared` scope (`shared:default`).
    pub fn shared_default() -> Self {
        Self::Shared {
            namespace: DEFAULT_NAMESPACE.to_string(),
        }
    }
}

/// The canonical string form: `isolated:<agent>:<story>` or `shared:<ns>`
/// (plain `shared` displays as `shared:default`). It parses back to the same scope.
impl fmt::Display for MemoryScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Isolated { agent, story } => write!(f, "isolated:{agent}:{story}"),
            Self::Shared { namespace } => write!(f, "shared:{namespace}"),
        }
    }
}

string_forms!(MemoryScope);

/// An orchestration workflow id: the id rule, no extension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkflowId(String);

newtype_forms!(WorkflowId);

impl WorkflowId {
    /// Parses a client-supplied workflow id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_id("workflow id", value, &[])?;
        Ok(Self(value.to_string()))
    }

    /// A fresh id for a workflow created without one: `wf-` and 16 random
    /// hex digits.
    pub fn generate() -> Self {
        Self(format!("wf-{}", hex::encode(rand::random::<[u8; 8]>())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_accept_the_documented_alphabet_and_strip_one_md() {
        assert_eq!(DocId::parse("prd").map(|d| d.0), Ok("prd".to_string()));
        assert_eq!(DocId::parse("prd.md").map(|d| d.0), Ok("prd".to_string()));
        assert_eq!(
            DocId::parse("S-1__arch_v2.final").map(|d| d.0),
            Ok("S-1__arch_v2.final".to_string())
        );
        assert!(DocId::parse(&"a".repeat(200)).is_ok());
        assert!(DocId::parse(&format!("{}.md", "a".repeat(200))).is_ok());
    }

    #[test]
    fn doc_ids_refuse_everything_that_could_leave_the_directory() {
        for bad in [
            "",
            ".md",
            "..",
            "a..b",
            "../etc/passwd",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "..\\win",
            "C:\\x",
            "a\0b",
            "%2e%2e",
            "%2e%2e%2fsecret",
            "%252e%252e",
            "a%2fb",
            ".hidden",
            "-x",
            "_x",
            "a b",
            "é",
            "a.md.md",
        ] {
            assert!(DocId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(DocId::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = DocId::parse("../x").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid document id \"../x\": must not contain `..`")
        );
        let err = DocId::parse("a%2fb").err().map(|e| e.reason);
        assert_eq!(
            err.as_deref(),
            Some("must not contain `%` (percent-encoded ids are not accepted)")
        );
        let err = DocId::parse("a\0").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid document id \"a\\0\": must not contain a NUL character")
        );
    }

    #[test]
    fn doc_id_joins_story_and_name() {
        let a = doc_id("S1", "requirements.md").map(|d| d.0);
        let b = doc_id("S1", "requirements").map(|d| d.0);
        assert_eq!(a, Ok("S1__requirements".to_string()));
        assert_eq!(a, b);
        assert!(doc_id("../S1", "x").is_err());
        assert!(doc_id("S1", "a/b").is_err());
        assert!(doc_id("S1", "").is_err());
        assert!(doc_id("S1", ".md").is_err());
    }

    #[test]
    fn story_membership_needs_the_double_underscore() {
        let id = DocId::parse("S1__prd").map_err(|e| e.to_string());
        assert_eq!(id.as_ref().map(|d| d.belongs_to_story("S1")), Ok(true));
        assert_eq!(id.as_ref().map(|d| d.belongs_to_story("S")), Ok(false));
        assert_eq!(id.as_ref().map(|d| d.belongs_to_story("S1__p")), Ok(false));
        let id = DocId::parse("S1___prd").map_err(|e| e.to_string());
        assert_eq!(id.as_ref().map(|d| d.belongs_to_story("S1")), Ok(false));
    }

    #[test]
    fn story_ids_split_one_way_only() {
        for bad in ["Q__x", "Q_", "a__", "x___y"] {
            let err = check_story_id(bad).map_err(|e| e.reason);
            assert!(
                err.as_ref().is_err_and(|r| r.contains("`__`")),
                "{bad}: {err:?}"
            );
            assert!(doc_id(bad, "prd").is_err() && MemoryScope::isolated("pm", bad).is_err());
        }
        for good in ["Q", "Q_x", "story-1_a.b", "A_b_c"] {
            assert_eq!(check_story_id(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn scopes_parse_and_display_canonically() {
        let cases = [
            ("shared", "shared:default"),
            ("shared:team", "shared:team"),
            ("isolated:pm:S-1", "isolated:pm:S-1"),
            ("isolated:pack.pm:S-1", "isolated:pack.pm:S-1"),
        ];
        for (input, canonical) in cases {
            let scope = MemoryScope::parse(input).map(|s| s.to_string());
            assert_eq!(scope.as_deref(), Ok(canonical));
            let again = MemoryScope::parse(canonical).map(|s| s.to_string());
            assert_eq!(again.as_deref(), Ok(canonical));
        }
        assert_eq!(
            MemoryScope::isolated("pack/pm", "S-1"),
            MemoryScope::parse("isolated:pack.pm:S-1")
        );
    }

    #[test]
    fn bad_scopes_are_refused() {
        for bad in [
            "",
            "shared:",
            "shared:a:b",
            "shared:..",
            "shared:%2e%2e",
            "isolated",
            "isolated:pm",
            "isolated:pm:",
            "isolated::S1",
            "isolated:pm:S1:x",
            "isolated:pack/pm:S1",
            "isolated:pm:../S1",
            "private:x",
            "Shared",
        ] {
            assert!(MemoryScope::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("isolated:{}:{}", "a".repeat(150), "b".repeat(150));
        assert!(MemoryScope::parse(&long).is_err());
    }

    #[test]
    fn keys_allow_colons_but_no_separators() {
        assert!(MemoryKey::parse("plan:v2").is_ok());
        for bad in [":x", "a/b", "a\\b", "..", "a%2f", "a\0"] {
            assert!(MemoryKey::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn status_agent_ids_may_be_pack_qualified() {
        assert!(check_status_agent_id("pack/pm").is_ok());
        assert!(check_status_agent_id("pm").is_ok());
        for bad in ["/pm", "pm/", "a//b", "a/../b", "a/%2e", ""] {
            assert!(check_status_agent_id(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn generated_workflow_ids_are_valid_and_distinct() {
        let a = WorkflowId::generate();
        let b = WorkflowId::generate();
        assert_ne!(a, b);
        assert!(WorkflowId::parse(a.as_str()).is_ok());
        assert!(a.as_str().starts_with("wf-"));
    }
}
