//! A small YAML tree that remembers where every value came from.
//!
//! serde-style deserialisation stops at the first problem and forgets
//! positions; the compiler wants every problem, each with `line:col`. So
//! YAML text is parsed (with `saphyr-parser`, a panic-free YAML 1.2 parser)
//! into [`Node`]s that carry their [`Pos`], and the source readers walk those
//! nodes, reporting into [`Diagnostics`] as they go.
//!
//! Guarantees: duplicate mapping keys are reported (not silently
//! overwritten); aliases are expanded with a size cap, so a "billion laughs"
//! document is an error rather than an out-of-memory; nesting deeper than
//! [`MAX_DEPTH`] is an error, so recursive walkers cannot overflow the stack.

use crate::diag::{Diagnostics, Pos, did_you_mean};
use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::borrow::Cow;
use std::collections::HashMap;

/// Deepest nesting accepted; real agent files use fewer than ten levels.
pub(crate) const MAX_DEPTH: usize = 128;
/// Most nodes one document may expand to (aliases included).
const MAX_NODES: usize = 1_000_000;

/// One YAML value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// A mapping key: always a string here (scalar keys are read as their text).
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique (duplicates were reported and dropped).
    Map(Vec<(Key, Node)>),
}

impl Node {
    /// The YAML type name, for "expected a list, found a string" messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The text of any scalar (numbers and booleans written plainly, e.g. `version: 1.0`).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// [`Self::scalar_text`], taking a string's text instead of copying it.
    pub fn into_scalar_text(self) -> Option<String> {
        match self.value {
            Value::Str(s) => Some(s),
            _ => self.scalar_text(),
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The value under `key` when this node is a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// Converts to JSON (maps keep document order). Non-finite floats become null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// YAML text as JSON, read the way sources are; when it cannot be read,
/// its problems as `file:line:col` text.
pub fn to_json(text: &str, file: &str) -> Result<serde_json::Value, Vec<String>> {
    let mut diags = Diagnostics::new();
    match parse(text, file, 0, &mut diags) {
        Some(node) if !diags.has_errors() => Ok(node.to_json()),
        _ => Err(diags.iter().map(ToString::to_string).collect()),
    }
}

/// Parses the first YAML document of `text`. Problems go to `diags` against
/// `file`; `line_offset` is added to every line (for YAML embedded in Markdown).
/// Returns `None` when the text is not valid YAML. An empty document is `Null`.
pub fn parse(text: &str, file: &str, line_offset: u32, diags: &mut Diagnostics) -> Option<Node> {
    let mut builder = Builder {
        file,
        line_offset,
        diags,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(err)) => {
                let m = err.marker();
                let pos = Pos::new(m.line() as u32 + line_offset, m.col() as u32 + 1);
                builder.diags.error(
                    "yaml-syntax",
                    file,
                    pos,
                    format!("invalid YAML: {}", err.info()),
                );
                return None;
            }
        };
        match builder.event(event, span) {
            Flow::Continue => {}
            Flow::Done => break,
            Flow::Failed => return None,
        }
    }
    Some(builder.root.unwrap_or(Node {
        pos: Pos::new(1 + line_offset, 1),
        value: Value::Null,
    }))
}

enum Flow {
    Continue,
    Done,
    Failed,
}

/// A collection being built: its node, its anchor, and for maps a pending key.
struct Open {
    node: Node,
    anchor: usize,
    pending_key: Option<Key>,
}

struct Builder<'a> {
    file: &'a str,
    line_offset: u32,
    diags: &'a mut Diagnostics,
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
}

impl Builder<'_> {
    fn pos(&self, span: Span) -> Pos {
        Pos::new(
            span.start.line() as u32 + self.line_offset,
            span.start.col() as u32 + 1,
        )
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Flow {
        let pos = self.pos(span);
        match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => Flow::Continue,
            Event::DocumentEnd | Event::StreamEnd => Flow::Done,
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar_value(text, style, tag.as_ref());
                self.finish(Node { pos, value }, anchor)
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.nodes = self.nodes.saturating_add(count_nodes(&node));
                    self.finish(node, 0)
                }
                None => {
                    self.diags
                        .error("yaml-syntax", self.file, pos, "alias to an unknown anchor");
                    Flow::Failed
                }
            },
            Event::SequenceStart(anchor, _) => self.open(pos, Value::Seq(Vec::new()), anchor),
            Event::MappingStart(anchor, _) => self.open(pos, Value::Map(Vec::new()), anchor),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(open) => self.finish(open.node, open.anchor),
                None => Flow::Failed,
            },
        }
    }

    fn open(&mut self, pos: Pos, value: Value, anchor: usize) -> Flow {
        if self.stack.len() >= MAX_DEPTH {
            self.diags.error(
                "yaml-too-deep",
                self.file,
                pos,
                format!("YAML nested deeper than {MAX_DEPTH} levels"),
            );
            return Flow::Failed;
        }
        self.stack.push(Open {
            node: Node { pos, value },
            anchor,
            pending_key: None,
        });
        Flow::Continue
    }

    /// Places a finished node into its parent (or as the root).
    fn finish(&mut self, node: Node, anchor: usize) -> Flow {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            self.diags.error(
                "yaml-too-large",
                self.file,
                node.pos,
                format!("YAML expands to more than {MAX_NODES} values (alias bomb?)"),
            );
            return Flow::Failed;
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Flow::Continue;
        };
        match &mut parent.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match parent.pending_key.take() {
                None => {
                    let pos = node.pos;
                    let name = match node.value {
                        Value::Null => Some(String::new()),
                        _ => node.into_scalar_text(),
                    };
                    let Some(name) = name else {
                        self.diags.error(
                            "yaml-complex-key",
                            self.file,
                            pos,
                            "mapping keys must be plain scalars",
                        );
                        return Flow::Failed;
                    };
                    parent.pending_key = Some(Key { name, pos });
                }
                Some(key) => {
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == key.name) {
                        let first_line = first.pos.line;
                        self.diags
                            .error(
                                "duplicate-key",
                                self.file,
                                key.pos,
                                format!("duplicate key `{}`", key.name),
                            )
                            .hint = Some(format!("first defined on line {first_line}"));
                    } else {
                        entries.push((key, node));
                    }
                }
            },
            _ => return Flow::Failed,
        }
        Flow::Continue
    }
}

fn scalar_value(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Cow<'_, saphyr_parser::Tag>>,
) -> Value {
    // Only a tag that does not fit its value (`!!int abc`) fails the parse,
    // and then the text is kept: only tagged scalars need a copy of it.
    let tagged_text = tag.map(|_| text.to_string());
    match Scalar::parse_from_cow_and_metadata(text, style, tag) {
        Some(Scalar::Null) => Value::Null,
        Some(Scalar::Boolean(b)) => Value::Bool(b),
        Some(Scalar::Integer(i)) => Value::Int(i),
        Some(Scalar::FloatingPoint(f)) => Value::Float(f.into_inner()),
        Some(Scalar::String(s)) => Value::Str(s.into_owned()),
        None => Value::Str(tagged_text.unwrap_or_default()),
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| count_nodes(v)).sum::<usize>(),
        _ => 1,
    }
}

/// Reports every key of `map` that is not in `known`, with a "did you mean" hint.
/// `what` names the thing being read, e.g. "agent front matter".
pub(crate) fn check_keys(
    map: &[(Key, Node)],
    known: &[&str],
    what: &str,
    file: &str,
    diags: &mut Diagnostics,
) {
    for (key, _) in map {
        if known.contains(&key.name.as_str()) {
            continue;
        }
        let diag = diags.error(
            "unknown-key",
            file,
            key.pos,
            format!("unknown key `{}` in {what}", key.name),
        );
        diag.hint = Some(match did_you_mean(&key.name, known.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("known keys: {}", known.join(", ")),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> (Option<Node>, Diagnostics) {
        let mut d = Diagnostics::new();
        let node = parse(text, "f.yaml", 0, &mut d);
        (node, d)
    }

    #[test]
    fn keeps_positions_and_types() {
        let (node, d) = parse_ok("id: pm\nretry_count: 3\nparallel: true\nlist:\n  - a\n  - 'b'\n");
        assert!(d.is_empty());
        let node = node.unwrap_or_else(|| panic!("parsed"));
        let list = node.get("list").and_then(Node::as_seq).unwrap_or_default();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].pos, Pos::new(6, 5));
        assert_eq!(
            node.get("retry_count").map(|n| n.value.clone()),
            Some(Value::Int(3))
        );
        assert_eq!(
            node.get("parallel").map(|n| n.value.clone()),
            Some(Value::Bool(true))
        );
        let (key, _) = &node.as_map().unwrap_or_default()[1];
        assert_eq!(key.pos, Pos::new(2, 1));
    }

    #[test]
    fn reports_duplicate_keys() {
        let (_, d) = parse_ok("a: 1\nb: 2\na: 3\n");
        let first = d.iter().next().map(ToString::to_string).unwrap_or_default();
        assert!(
            first.starts_with("f.yaml:3:1: error[duplicate-key]"),
            "{first}"
        );
    }

    #[test]
    fn syntax_error_has_position_and_offset() {
        let mut d = Diagnostics::new();
        assert!(parse("a: [1, 2\nb: c", "x.md", 1, &mut d).is_none());
        let diag = d.iter().next().cloned();
        let diag = diag.unwrap_or_else(|| panic!("one diagnostic"));
        assert_eq!(diag.code, "yaml-syntax");
        assert!(diag.line >= 2, "{diag}");
    }

    #[test]
    fn alias_bomb_is_an_error() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (node, d) = parse_ok(&text);
        assert!(node.is_none());
        assert!(d.iter().any(|x| x.code == "yaml-too-large"));
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let text = "[".repeat(1000);
        let (node, d) = parse_ok(&text);
        assert!(node.is_none());
        assert!(d.has_errors());
    }

    #[test]
    fn unknown_keys_get_suggestions() {
        let (node, _) = parse_ok("tols: [a]\n");
        let mut d = Diagnostics::new();
        check_keys(
            node.as_ref().and_then(Node::as_map).unwrap_or_default(),
            &["tools", "tasks"],
            "agent",
            "a.md",
            &mut d,
        );
        let hint = d.iter().next().and_then(|x| x.hint.clone());
        assert_eq!(hint.as_deref(), Some("did you mean `tools`?"));
    }
}
