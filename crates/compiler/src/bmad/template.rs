//! BMAD v4 YAML document templates (`templates/*-tmpl.yaml`) rendered to the
//! Markdown outline an agent fills in.
//!
//! A v4 template is a `template:` header (id, name, version, output file and
//! title) and a tree of `sections`, each with a title and optional
//! `instruction`, `condition`, `repeatable`, `type`, `columns`, `choices`,
//! `examples`, `template` text and nested `sections`. The outline keeps every
//! piece: headings for sections, HTML comments for instructions (the reader
//! removes them when filling), italic notes for conditions and repeatable
//! markers. Keys this module does not know are kept as comments rather than
//! dropped. `{{placeholders}}` are left exactly as written: the outline is a
//! resource and is never rendered by the engine.

use super::{node_text, parse_yaml_lenient};
use crate::diag::{Diagnostics, Pos};
use crate::yaml::{Node, Value};

/// Deepest Markdown heading level; deeper sections become bold lines.
const MAX_HEADING: usize = 6;
/// Section keys rendered specially (everything else becomes a comment).
const SECTION_KEYS: [&str; 13] = [
    "id",
    "title",
    "sections",
    "condition",
    "repeatable",
    "instruction",
    "elicit",
    "type",
    "prefix",
    "columns",
    "choices",
    "template",
    "examples",
];

/// True for `.yaml` / `.yml` paths (the only templates rendered to outlines).
pub fn is_yaml_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// The Markdown outline of a v4 YAML template. Text that is not a v4
/// template (invalid YAML, no `template:`/`sections:`) is returned as
/// written, with a warning naming `rel`.
pub fn render_outline(text: &str, rel: &str, diags: &mut Diagnostics) -> String {
    let root = parse_yaml_lenient(text, rel, 0, diags);
    let Some(root) = root.filter(|r| r.get("template").is_some() || r.get("sections").is_some())
    else {
        diags.warning(
            "bmad-template",
            rel,
            Pos::new(1, 1),
            "not a BMAD v4 YAML template (no `template:` or `sections:`): kept as written",
        );
        return text.to_string();
    };
    let mut out = String::new();
    render_header(&root, rel, &mut out);
    match root.get("sections").map(|s| &s.value) {
        Some(Value::Seq(sections)) => {
            for section in sections {
                render_section(section, 0, &mut out);
            }
        }
        Some(Value::Map(entries)) => {
            for (key, section) in entries {
                render_keyed_section(&key.name, section, 0, &mut out);
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            let pos = root.get("sections").map_or(Pos::new(1, 1), |s| s.pos);
            diags.warning(
                "bmad-template",
                rel,
                pos,
                "`sections` should be a list of sections: ignored",
            );
        }
    }
    out
}

fn render_header(root: &Node, rel: &str, out: &mut String) {
    let header = root.get("template");
    let field = |key: &str| header.and_then(|h| h.get(key)).and_then(Node::scalar_text);
    let output = header.and_then(|h| h.get("output"));
    let output_field = |key: &str| output.and_then(|o| o.get(key)).and_then(Node::scalar_text);
    let stem = rel.rsplit('/').next().unwrap_or(rel);
    let title = output_field("title")
        .or_else(|| field("name"))
        .or_else(|| field("id"))
        .unwrap_or_else(|| stem.to_string());
    out.push_str(&format!("# {}\n\n", one_line(&title)));
    let mut about = format!(
        "Document outline from template `{}`",
        field("id").unwrap_or_else(|| stem.to_string())
    );
    if let Some(version) = field("version") {
        about.push_str(&format!(" (version {version})"));
    }
    about.push_str(
        ". Fill in every section, follow the instructions in comments and remove them, replace {{placeholders}}.",
    );
    push_comment(&about, out);
    if let Some(filename) = output_field("filename") {
        let format = output_field("format").unwrap_or_else(|| "markdown".to_string());
        push_comment(&format!("Output: {filename} ({format})"), out);
    }
    if let Some(workflow) = root
        .get("workflow")
        .map(node_text)
        .filter(|t| !t.is_empty())
    {
        push_comment(&format!("Workflow: {workflow}"), out);
    }
    out.push('\n');
}

/// A section written as `id: {title: …}` inside a `sections:` map.
fn render_keyed_section(key: &str, section: &Node, depth: usize, out: &mut String) {
    if section
        .as_map()
        .is_some_and(|m| m.iter().any(|(k, _)| k.name == "title"))
    {
        render_section(section, depth, out);
    } else {
        push_heading(key, depth, out);
        if !section.is_null() {
            push_comment(&node_text(section), out);
        }
        out.push('\n');
    }
}

fn render_section(section: &Node, depth: usize, out: &mut String) {
    let Some(entries) = section.as_map() else {
        // A bare string (or number) is a section with only a title.
        let title = node_text(section);
        if !title.is_empty() {
            push_heading(&title, depth, out);
            out.push('\n');
        }
        return;
    };
    let text = |key: &str| {
        section
            .get(key)
            .map(node_text)
            .filter(|t| !t.trim().is_empty())
    };
    let is_true = |key: &str| matches!(section.get(key).map(|n| &n.value), Some(Value::Bool(true)));
    let title = text("title")
        .or_else(|| text("id"))
        .unwrap_or_else(|| "Section".to_string());
    push_heading(&title, depth, out);
    if let Some(condition) = text("condition") {
        out.push_str(&format!("_Only if: {}_\n", one_line(&condition)));
    }
    if is_true("repeatable") {
        out.push_str("_Repeatable: write this section once per item._\n");
    }
    if let Some(instruction) = text("instruction") {
        push_comment(&format!("Instruction: {instruction}"), out);
    }
    if is_true("elicit") {
        push_comment(
            "Elicit: after drafting this section, ask the user for feedback before going on.",
            out,
        );
    }
    if let Some(kind) = text("type") {
        out.push_str(&format!("_Format: {}_\n", one_line(&kind)));
    }
    if let Some(prefix) = text("prefix") {
        out.push_str(&format!("_Item prefix: {}_\n", one_line(&prefix)));
    }
    if let Some(columns) = section.get("columns").and_then(Node::as_seq) {
        let names: Vec<String> = columns.iter().map(|c| one_line(&node_text(c))).collect();
        out.push_str(&format!("\n| {} |\n", names.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(names.len().max(1))));
    }
    if let Some(choices) = section.get("choices") {
        push_choices(choices, out);
    }
    if let Some(body) = text("template") {
        out.push('\n');
        out.push_str(body.trim_end());
        out.push('\n');
    }
    if let Some(examples) = section.get("examples") {
        out.push_str("_Examples:_\n");
        for example in examples.as_seq().unwrap_or(std::slice::from_ref(examples)) {
            out.push_str(&format!("- {}\n", one_line(&node_text(example))));
        }
    }
    for (key, value) in entries {
        if SECTION_KEYS.contains(&key.name.as_str()) {
            continue;
        }
        let value = node_text(value);
        push_comment(&format!("{}: {value}", key.name), out);
    }
    out.push('\n');
    match section.get("sections").map(|s| &s.value) {
        Some(Value::Seq(children)) => {
            for child in children {
                render_section(child, depth + 1, out);
            }
        }
        Some(Value::Map(children)) => {
            for (key, child) in children {
                render_keyed_section(&key.name, child, depth + 1, out);
            }
        }
        _ => {}
    }
}

fn push_choices(choices: &Node, out: &mut String) {
    match choices.as_map() {
        Some(entries) => {
            for (key, options) in entries {
                let options: Vec<String> = match options.as_seq() {
                    Some(items) => items.iter().map(|o| one_line(&node_text(o))).collect(),
                    None => vec![one_line(&node_text(options))],
                };
                out.push_str(&format!(
                    "_Choices for {}: {}_\n",
                    key.name,
                    options.join(" | ")
                ));
            }
        }
        None => out.push_str(&format!("_Choices: {}_\n", one_line(&node_text(choices)))),
    }
}

fn push_heading(title: &str, depth: usize, out: &mut String) {
    let level = depth + 2;
    if level <= MAX_HEADING {
        out.push_str(&format!("{} {}\n\n", "#".repeat(level), one_line(title)));
    } else {
        out.push_str(&format!("**{}**\n\n", one_line(title)));
    }
}

/// An HTML comment that cannot end early: `-->` inside the text is broken up.
fn push_comment(text: &str, out: &mut String) {
    let safe = text.trim().replace("-->", "- ->");
    if safe.contains('\n') {
        out.push_str(&format!("<!--\n{safe}\n-->\n"));
    } else {
        out.push_str(&format!("<!-- {safe} -->\n"));
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRD: &str = r#"
template:
  id: prd-v1
  name: Product Requirements
  version: 1.0
  output: {format: markdown, filename: docs/prd.md, title: "{{project}} PRD"}
workflow: {mode: interactive}
sections:
  - id: goals
    title: Goals
    instruction: |
      List the outcomes.
      Keep each to one line --> short.
    elicit: true
    sections:
      - id: changelog
        title: Change Log
        type: table
        columns: [Date, Change]
  - id: epic
    title: "Epic {{n}}"
    repeatable: true
    condition: has epics
    template: "As a {{user}}, I want {{goal}}."
    examples: ["Epic 1: Setup"]
    choices: {size: [S, M, L]}
    owner: pm
    sections:
      - id: a
        title: A
        sections:
          - id: b
            title: B
            sections:
              - id: c
                title: C
                sections:
                  - id: d
                    title: D
                    sections:
                      - id: e
                        title: E
"#;

    #[test]
    fn renders_an_outline() {
        let mut d = Diagnostics::new();
        let out = render_outline(PRD, "templates/prd-tmpl.yaml", &mut d);
        assert!(d.is_empty(), "{d:?}");
        assert!(out.starts_with("# {{project}} PRD\n"), "{out}");
        assert!(out.contains("<!-- Output: docs/prd.md (markdown) -->"));
        assert!(out.contains("## Goals\n"));
        assert!(out.contains(
            "<!--\nInstruction: List the outcomes.\nKeep each to one line - -> short.\n-->"
        ));
        assert!(out.contains("Elicit:"));
        assert!(out.contains("### Change Log\n"));
        assert!(out.contains("| Date | Change |\n|---|---|"));
        assert!(out.contains("## Epic {{n}}\n"));
        assert!(out.contains("_Only if: has epics_"));
        assert!(out.contains("_Repeatable:"));
        assert!(out.contains("As a {{user}}, I want {{goal}}."));
        assert!(out.contains("- Epic 1: Setup"));
        assert!(out.contains("_Choices for size: S | M | L_"));
        assert!(out.contains("<!-- owner: pm -->"));
        assert!(out.contains("###### D\n"));
        assert!(out.contains("**E**\n"));
    }

    #[test]
    fn unparseable_or_foreign_yaml_is_kept_with_a_warning() {
        let mut d = Diagnostics::new();
        assert_eq!(render_outline("a: [", "t.yaml", &mut d), "a: [");
        assert!(!d.has_errors());
        assert!(d.iter().any(|x| x.code == "bmad-template"));
        let mut d = Diagnostics::new();
        assert_eq!(
            render_outline("just: data\n", "t.yaml", &mut d),
            "just: data\n"
        );
        assert_eq!(d.warning_count(), 1);
    }
}
