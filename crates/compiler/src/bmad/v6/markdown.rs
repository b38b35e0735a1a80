//! BMAD v6 Markdown files (SKILL.md, workflow.md, step files): optional
//! `---` front matter, read leniently, and the body.
//!
//! Real front matter is often not valid YAML (`\'` inside single quotes,
//! unquoted `{planning_artifacts}/…` values). When the YAML parser refuses
//! it, the lines are read key by key (`key: value` at column 1, quotes
//! stripped) with one `bmad-yaml-repaired` warning, so a step chain named
//! there still works.

use crate::diag::{Diagnostics, Pos};
use crate::source::agent::split_front_matter;
use crate::yaml::{Key, Node, Value};

/// A Markdown file split into front matter and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Markdown {
    /// The front matter as a YAML map (empty when there is none).
    pub fields: Vec<(Key, Node)>,
    /// The body, `\r` removed.
    pub body: String,
    /// Line of the file where the body starts.
    pub body_line: u32,
}

impl Markdown {
    /// The text of a scalar front-matter field.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| k.name == name)
            .and_then(|(_, v)| v.scalar_text())
    }

    /// The position of a front-matter key (line 1 when absent).
    pub fn key_pos(&self, name: &str) -> Pos {
        self.fields
            .iter()
            .find(|(k, _)| k.name == name)
            .map_or(Pos::new(1, 1), |(k, _)| k.pos)
    }
}

/// Reads `text` (the file `rel`); problems are warnings.
pub fn read(text: &str, rel: &str, diags: &mut Diagnostics) -> Markdown {
    let text = text.replace("\r\n", "\n");
    if !text.starts_with("---") {
        return Markdown {
            fields: Vec::new(),
            body: text,
            body_line: 1,
        };
    }
    let parts = match split_front_matter(&text) {
        Ok(parts) => parts,
        Err(message) => {
            diags.warning("bmad-front-matter", rel, Pos::new(1, 1), message);
            return Markdown {
                fields: Vec::new(),
                body: text.clone(),
                body_line: 1,
            };
        }
    };
    let mut scratch = Diagnostics::new();
    let node = crate::yaml::parse(
        parts.front_matter,
        rel,
        parts.front_matter_offset,
        &mut scratch,
    );
    let fields = match node {
        Some(Node {
            value: Value::Map(entries),
            ..
        }) if !scratch.has_errors() => entries,
        Some(Node {
            value: Value::Null, ..
        }) if !scratch.has_errors() => Vec::new(),
        _ => {
            let (first, pos) = scratch.iter().next().map_or_else(
                || {
                    (
                        "not a map".to_string(),
                        Pos::new(parts.front_matter_offset + 1, 1),
                    )
                },
                |d| (d.message.clone(), Pos::new(d.line, d.col)),
            );
            diags
                .warning(
                    "bmad-yaml-repaired",
                    rel,
                    pos,
                    format!("front matter is not YAML ({first}): read key by key"),
                )
                .hint = Some("quote values that hold `{`, `:` or `\\'`".into());
            key_by_key(parts.front_matter, parts.front_matter_offset)
        }
    };
    Markdown {
        fields,
        body: parts.body.to_string(),
        body_line: parts.body_line,
    }
}

/// `key: value` lines at column 1 as string fields; other lines are
/// continuation or list lines and are ignored.
fn key_by_key(text: &str, line_offset: u32) -> Vec<(Key, Node)> {
    let mut out: Vec<(Key, Node)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim_end();
        let plain_key = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if key.is_empty() || !plain_key || line.starts_with([' ', '\t', '-', '#']) {
            continue;
        }
        if out.iter().any(|(k, _)| k.name == key) {
            continue;
        }
        let pos = Pos::new(line_offset + i as u32 + 1, 1);
        out.push((
            Key {
                name: key.to_string(),
                pos,
            },
            Node {
                pos,
                value: Value::Str(unquote(value.trim()).to_string()),
            },
        ));
    }
    out
}

/// A value without its surrounding quotes (`\'` and `''` left as one `'`).
fn unquote(value: &str) -> String {
    for q in ['\'', '"'] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            let inner = &value[1..value.len() - 1];
            return inner.replace("\\'", "'").replace("''", "'");
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_front_matter_and_body() {
        let mut d = Diagnostics::new();
        let md = read(
            "---\nname: a\nnextStepFile: './step-02.md'\n---\n# Body\n",
            "s.md",
            &mut d,
        );
        assert!(d.is_empty());
        assert_eq!(md.field("nextStepFile").as_deref(), Some("./step-02.md"));
        assert_eq!(md.key_pos("nextStepFile").line, 3);
        assert_eq!(md.body, "# Body\n");
        assert_eq!(md.body_line, 5);
    }

    #[test]
    fn broken_yaml_is_read_key_by_key() {
        let mut d = Diagnostics::new();
        let md = read(
            "---\nname: 'it\\'s'\noutputFile: {planning_artifacts}/prd.md\n  more: x\n---\nB",
            "s.md",
            &mut d,
        );
        assert_eq!(d.iter().next().map(|d| d.code), Some("bmad-yaml-repaired"));
        assert_eq!(md.field("name").as_deref(), Some("it's"));
        assert_eq!(
            md.field("outputFile").as_deref(),
            Some("{planning_artifacts}/prd.md")
        );
        assert_eq!(md.field("more"), None);
    }

    #[test]
    fn no_front_matter_or_unclosed() {
        let mut d = Diagnostics::new();
        assert_eq!(read("# T\n", "a.md", &mut d).body, "# T\n");
        assert!(d.is_empty());
        let md = read("---\nname: a\n", "a.md", &mut d);
        assert!(md.fields.is_empty());
        assert_eq!(d.iter().next().map(|d| d.code), Some("bmad-front-matter"));
    }
}
