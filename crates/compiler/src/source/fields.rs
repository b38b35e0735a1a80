//! Typed reads of YAML fields, each reporting a wrong type as a diagnostic.
//!
//! The source readers walk [`Node`]s by hand so that every problem carries a
//! position. These helpers turn "expected a list of strings, found a map"
//! into one consistent error (`wrong-type`, naming the field and the expected
//! type) and hand back `None` / an empty value so the reader carries on.
//! They also hold the name rules shared by agents, flows, steps and tools.

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::yaml::{Key, Node, Value};

/// Where diagnostics of one source file go.
pub struct FieldReader<'a> {
    pub file: &'a str,
    pub diags: &'a mut Diagnostics,
}

impl<'a> FieldReader<'a> {
    pub fn new(file: &'a str, diags: &'a mut Diagnostics) -> Self {
        Self { file, diags }
    }

    /// Reports that `field` holds the wrong kind of value.
    pub fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) -> &mut Diagnostic {
        self.diags.error(
            "wrong-type",
            self.file,
            node.pos,
            format!("`{field}` must be {expected}, found {}", node.type_name()),
        )
    }

    /// Reports a value of the right type that breaks a rule (`bad-value`).
    pub fn bad_value(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.error("bad-value", self.file, pos, message)
    }

    /// A string value.
    pub fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(node, field, "a string");
                None
            }
        }
    }

    /// A string, or null meaning "not given".
    pub fn optional_string(&mut self, node: &Node, field: &str) -> Option<String> {
        if node.is_null() {
            None
        } else {
            self.string(node, field)
        }
    }

    /// A list of strings with their positions; null is an empty list.
    /// Non-string entries are reported and skipped.
    pub fn string_list(&mut self, node: &Node, field: &str) -> Vec<(String, Pos)> {
        let items = match &node.value {
            Value::Null => return Vec::new(),
            Value::Seq(items) => items,
            _ => {
                self.wrong_type(node, field, "a list of strings");
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match &item.value {
                Value::Str(s) => out.push((s.clone(), item.pos)),
                _ => {
                    self.wrong_type(item, &format!("{field}[]"), "a string");
                }
            }
        }
        out
    }

    pub fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, field, "a boolean (true or false)");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn integer(&mut self, node: &Node, field: &str, min: i64, max: i64) -> Option<i64> {
        let Value::Int(i) = node.value else {
            self.wrong_type(node, field, "an integer");
            return None;
        };
        if i < min || i > max {
            self.bad_value(
                node.pos,
                format!("`{field}` must be between {min} and {max}, found {i}"),
            );
            return None;
        }
        Some(i)
    }

    /// A number (integer or float) within `min..=max`.
    pub fn number(&mut self, node: &Node, field: &str, min: f64, max: f64) -> Option<f64> {
        let n = match node.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            _ => {
                self.wrong_type(node, field, "a number");
                return None;
            }
        };
        if !(min..=max).contains(&n) {
            self.bad_value(
                node.pos,
                format!("`{field}` must be between {min} and {max}, found {n}"),
            );
            return None;
        }
        Some(n)
    }

    /// The entries of a map; null is an empty map.
    pub fn map<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n [(Key, Node)]> {
        match &node.value {
            Value::Null => Some(&[]),
            Value::Map(entries) => Some(entries),
            _ => {
                self.wrong_type(node, field, "a map");
                None
            }
        }
    }

    /// Reports a required field that is absent, at the position of its parent.
    pub fn missing(&mut self, parent: Pos, field: &str, what: &str) {
        self.diags.error(
            "missing-field",
            self.file,
            parent,
            format!("{what} needs `{field}`"),
        );
    }
}

/// `^[A-Za-z][A-Za-z0-9_-]*$`: agent ids, flow names, step ids, tool names.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`: document names (SPEC 5), which
/// become file names, so nothing that could leave the docs directory.
pub fn is_doc_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 200
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !s.contains("..")
}

/// A resource name (`create-doc`, `sub/prd-tmpl.yaml`) that stays inside its folder.
pub fn is_resource_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.contains('\\')
        && !s.contains('\0')
        && s.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(is_name("pm"));
        assert!(is_name("Game_dev-2"));
        assert!(!is_name("2pm"));
        assert!(!is_name(""));
        assert!(!is_name("p m"));
        assert!(is_doc_name("requirements.md"));
        assert!(is_doc_name("1-story.md"));
        assert!(!is_doc_name("../x"));
        assert!(!is_doc_name("a/b"));
        assert!(is_resource_name("sub/create-doc.md"));
        assert!(!is_resource_name("../etc/passwd"));
        assert!(!is_resource_name("/etc/passwd"));
    }
}
