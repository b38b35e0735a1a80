//! BMAD v4 agent files: `agents/*.md` whose first fenced ```` ```yaml ````
//! block holds an `agent:` map.
//!
//! The file is Markdown written for a chat assistant (activation notices,
//! sometimes further fences); only the YAML block matters. This module finds
//! it (CRLF, indented fences, `yml`, unterminated fences), reads it into an
//! [`AgentDraft`] with every loose shape normalised, and builds the agent's
//! prompt template. Dependencies are only named here; [`super::resources`]
//! looks them up.

use super::resources::{DependencyKind, DependencyRef};
use super::{is_valid_name, node_text, parse_yaml_lenient, sanitize_name};
use crate::bundle::{Command, Persona};
use crate::diag::{Diagnostics, Pos, did_you_mean};
use crate::yaml::{Key, Node, Value};
use std::collections::BTreeMap;

/// Longest agent description SPEC 1.1 accepts.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// Top-level keys of the YAML block the importer understands.
const AGENT_BLOCK_KEYS: [&str; 5] = [
    "agent",
    "persona",
    "core_principles",
    "commands",
    "dependencies",
];
/// Top-level keys real v4 files carry that are instructions for a chat
/// assistant: kept in metadata without a warning.
const KNOWN_EXTRA_KEYS: [&str; 15] = [
    "root",
    "IDE-FILE-RESOLUTION",
    "REQUEST-RESOLUTION",
    "activation-instructions",
    "startup",
    "help-display-template",
    "fuzzy-matching",
    "transformation",
    "loading",
    "kb-mode-behavior",
    "workflow-guidance",
    "story-file-permissions",
    "develop-story",
    "whenToUse",
    "customization",
];
/// Keys of the `agent:` map; all but `id` land in metadata.
const AGENT_MAP_KEYS: [&str; 6] = ["id", "name", "title", "icon", "whenToUse", "customization"];
/// Keys of the `persona:` map.
const PERSONA_KEYS: [&str; 5] = ["role", "style", "identity", "focus", "core_principles"];
/// Dependency kinds that name other BMAD files but are not agent resources.
const REFERENCE_DEPENDENCY_KEYS: [&str; 2] = ["workflows", "agent-teams"];

/// One fenced YAML block of a Markdown file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlBlock {
    /// The block's text, fence lines excluded, `\r` removed.
    pub text: String,
    /// Lines of the file before the block's first line (for diagnostics).
    pub line_offset: u32,
}

/// What an agent file says, before its dependencies are looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDraft {
    /// The id as written (sanitised if it had to be), not yet pack-qualified.
    pub id: String,
    /// Where the id is written, for the duplicate-id error.
    pub id_pos: Pos,
    /// `name, title` for the prompt header (falls back to the id).
    pub display_name: String,
    /// `title: whenToUse`, at most [`MAX_DESCRIPTION_CHARS`] characters.
    pub description: String,
    pub persona: Option<Persona>,
    pub commands: Vec<Command>,
    pub dependencies: Vec<DependencyRef>,
    /// `icon`, `whenToUse`, `activation-instructions`, unknown keys…
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// True when `text` is a BMAD agent file: a fenced YAML block with an
/// `agent:` map, and no `---` front matter (that is the preprocessing layout).
pub fn is_agent_text(text: &str) -> bool {
    if text.trim_start_matches('\u{feff}').starts_with("---") {
        return false;
    }
    yaml_blocks(text).iter().any(|block| {
        let mut scratch = Diagnostics::new();
        parse_yaml_lenient(&block.text, "", 0, &mut scratch)
            .is_some_and(|root| root.get("agent").is_some_and(|a| a.as_map().is_some()))
    })
}

/// Every fenced block whose info string is `yaml` or `yml`, in file order.
/// Follows CommonMark: fences of three or more backticks or tildes indented at
/// most three spaces; a block is closed by a fence of the same character, at
/// least as long and indented no deeper than its opener (so a fence inside an
/// indented YAML block scalar does not end the block); an unclosed block runs
/// to the end of the file.
pub fn yaml_blocks(text: &str) -> Vec<YamlBlock> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(open) = opening_fence(lines[i]) else {
            i += 1;
            continue;
        };
        let mut end = i + 1;
        while end < lines.len() && !open.is_closed_by(lines[end]) {
            end += 1;
        }
        let language = open.info.split_whitespace().next().unwrap_or("");
        let language = language.trim_matches(|c| c == '{' || c == '}' || c == '.');
        if language.eq_ignore_ascii_case("yaml") || language.eq_ignore_ascii_case("yml") {
            let body: Vec<&str> = lines[i + 1..end]
                .iter()
                .map(|l| strip_indent(l, open.indent))
                .collect();
            blocks.push(YamlBlock {
                text: body.join("\n"),
                line_offset: u32::try_from(i + 1).unwrap_or(u32::MAX),
            });
        }
        i = end + 1;
    }
    blocks
}

struct Fence<'a> {
    indent: usize,
    marker: char,
    len: usize,
    info: &'a str,
}

impl Fence<'_> {
    fn is_closed_by(&self, line: &str) -> bool {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent > 3 || indent > self.indent {
            return false;
        }
        let rest = &line[indent..];
        let run = rest.len() - rest.trim_start_matches(self.marker).len();
        run >= self.len && rest[run..].trim().is_empty()
    }
}

fn opening_fence(line: &str) -> Option<Fence<'_>> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let marker = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = rest.len() - rest.trim_start_matches(marker).len();
    if len < 3 {
        return None;
    }
    let info = rest[len..].trim();
    if marker == '`' && info.contains('`') {
        return None;
    }
    Some(Fence {
        indent,
        marker,
        len,
        info,
    })
}

/// Removes up to `n` leading spaces (CommonMark fenced-content rule).
fn strip_indent(line: &str, n: usize) -> &str {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    &line[spaces.min(n)..]
}

/// Reads one agent file. `None` (with a warning) when it holds no YAML block
/// with an `agent:` map.
pub fn parse_agent(text: &str, rel: &str, diags: &mut Diagnostics) -> Option<AgentDraft> {
    let blocks = yaml_blocks(text);
    let mut first_failure: Option<Diagnostics> = None;
    let mut chosen = None;
    for block in &blocks {
        let mut scratch = Diagnostics::new();
        let mut root = parse_yaml_lenient(&block.text, rel, block.line_offset, &mut scratch);
        if root.is_none()
            && let Some((node, retry)) = parse_with_quoted_stars(block, rel)
        {
            root = Some(node);
            scratch = retry;
        }
        match root {
            Some(root) if root.get("agent").is_some_and(|a| a.as_map().is_some()) => {
                diags.extend(scratch);
                chosen = Some(root);
                break;
            }
            _ => {
                if first_failure.is_none() {
                    first_failure = Some(scratch);
                }
            }
        }
    }
    let Some(root) = chosen else {
        if let Some(scratch) = first_failure {
            diags.extend(scratch);
        }
        let message = if blocks.is_empty() {
            "no ```yaml block: not a BMAD agent file, skipped"
        } else {
            "no ```yaml block with an `agent:` map: not a BMAD agent file, skipped"
        };
        diags.warning("bmad-not-an-agent", rel, Pos::new(1, 1), message);
        return None;
    };
    Some(read_block(&root, rel, diags))
}

/// Second chance for a block that is not valid YAML because it writes
/// commands unquoted (`- *help - Show help`): YAML reads `*help` as an alias.
/// Such lines are quoted (line count unchanged, so positions hold) and the
/// block parsed again; success is reported as a warning.
fn parse_with_quoted_stars(block: &YamlBlock, rel: &str) -> Option<(Node, Diagnostics)> {
    let repaired = quote_star_lines(&block.text)?;
    let mut retry = Diagnostics::new();
    let node = parse_yaml_lenient(&repaired, rel, block.line_offset, &mut retry)?;
    retry.warning(
        "bmad-yaml-repaired",
        rel,
        Pos::new(block.line_offset + 1, 1),
        "the YAML block has unquoted `*name` entries (YAML aliases): read them as quoted strings",
    );
    Some((node, retry))
}

/// `- *x …` → `- '*x …'` and `*x: v` → `'*x': v`; `None` when no line changes.
fn quote_star_lines(text: &str) -> Option<String> {
    let mut changed = false;
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start_matches(' ').len()];
            let rest = &line[indent.len()..];
            if let Some(item) = rest.strip_prefix("- *") {
                changed = true;
                format!("{indent}- '*{}'", item.trim_end().replace('\'', "''"))
            } else if let Some((key, value)) =
                rest.strip_prefix('*').and_then(|r| r.split_once(": "))
            {
                changed = true;
                format!("{indent}'*{}': {value}", key.replace('\'', "''"))
            } else {
                line.to_string()
            }
        })
        .collect();
    changed.then(|| lines.join("\n"))
}

/// Reads the chosen YAML block (a map with an `agent:` map).
fn read_block(root: &Node, rel: &str, diags: &mut Diagnostics) -> AgentDraft {
    let mut metadata = BTreeMap::new();
    let agent = root.get("agent").unwrap_or(root);
    let (id, id_pos) = read_id(agent, rel, diags);
    let text_of = |key: &str| {
        agent
            .get(key)
            .or_else(|| root.get(key))
            .map(node_text)
            .filter(|t| !t.trim().is_empty())
    };
    let name = text_of("name");
    let title = text_of("title");
    let when_to_use = text_of("whenToUse");
    read_agent_map(agent, rel, diags, &mut metadata);

    let mut persona = root
        .get("persona")
        .and_then(|p| read_persona(p, rel, diags, &mut metadata));
    if let Some(principles) = root.get("core_principles") {
        persona
            .get_or_insert_with(Persona::default)
            .core_principles
            .extend(list_text(principles));
    }
    let commands = root
        .get("commands")
        .map(|c| read_commands(c, rel, diags))
        .unwrap_or_default();
    let dependencies = root
        .get("dependencies")
        .map(|d| read_dependencies(d, rel, diags, &mut metadata))
        .unwrap_or_default();

    for (key, value) in root.as_map().unwrap_or_default() {
        if AGENT_BLOCK_KEYS.contains(&key.name.as_str()) {
            continue;
        }
        if !KNOWN_EXTRA_KEYS.contains(&key.name.as_str()) {
            warn_unknown_key(key, &KNOWN_EXTRA_KEYS, "the agent's YAML block", rel, diags);
        }
        metadata.insert(key.name.clone(), value.to_json());
    }

    let description = description(title.as_deref(), when_to_use.as_deref(), id_pos, rel, diags);
    let display_name = match (&name, &title) {
        (Some(n), Some(t)) => format!("{n}, {t}"),
        (Some(one), None) | (None, Some(one)) => one.clone(),
        (None, None) => id.clone(),
    };
    AgentDraft {
        id,
        id_pos,
        display_name,
        description,
        persona,
        commands,
        dependencies,
        metadata,
    }
}

/// `agent.id`, sanitised when it is not a valid name; the file stem when absent.
fn read_id(agent: &Node, rel: &str, diags: &mut Diagnostics) -> (String, Pos) {
    let stem = rel
        .rsplit('/')
        .next()
        .unwrap_or(rel)
        .trim_end_matches(".md")
        .trim_end_matches(".MD");
    let Some((raw, pos)) = agent
        .get("id")
        .and_then(|n| n.scalar_text().map(|t| (t.trim().to_string(), n.pos)))
        .filter(|(t, _)| !t.is_empty())
    else {
        let id = sanitize_name(stem);
        diags.warning(
            "bmad-missing-id",
            rel,
            agent.pos,
            format!("`agent.id` is missing: using `{id}` from the file name"),
        );
        return (id, agent.pos);
    };
    (
        super::valid_name_or_repaired(&raw, "agent id", rel, pos, diags),
        pos,
    )
}

/// Copies the `agent:` map's fields (except `id`) into metadata; unknown ones with a warning.
fn read_agent_map(
    agent: &Node,
    rel: &str,
    diags: &mut Diagnostics,
    metadata: &mut BTreeMap<String, serde_json::Value>,
) {
    for (key, value) in agent.as_map().unwrap_or_default() {
        if key.name == "id" {
            continue;
        }
        if AGENT_MAP_KEYS.contains(&key.name.as_str()) {
            metadata.insert(key.name.clone(), value.to_json());
        } else {
            warn_unknown_key(key, &AGENT_MAP_KEYS, "`agent:`", rel, diags);
            metadata.insert(format!("agent.{}", key.name), value.to_json());
        }
    }
}

fn warn_unknown_key(key: &Key, known: &[&str], what: &str, rel: &str, diags: &mut Diagnostics) {
    let diag = diags.warning(
        "bmad-unknown-key",
        rel,
        key.pos,
        format!("unknown key `{}` in {what}: kept as metadata", key.name),
    );
    if let Some(close) = did_you_mean(&key.name, known.iter().copied()) {
        diag.hint = Some(format!("did you mean `{close}`?"));
    }
}

/// `title: whenToUse`, cut to [`MAX_DESCRIPTION_CHARS`] with a warning.
fn description(
    title: Option<&str>,
    when_to_use: Option<&str>,
    pos: Pos,
    rel: &str,
    diags: &mut Diagnostics,
) -> String {
    let text = match (title, when_to_use) {
        (Some(t), Some(w)) => format!("{}: {}", t.trim(), w.trim()),
        (Some(one), None) | (None, Some(one)) => one.trim().to_string(),
        (None, None) => String::new(),
    };
    let count = text.chars().count();
    if count <= MAX_DESCRIPTION_CHARS {
        return text;
    }
    diags.warning(
        "bmad-long-description",
        rel,
        pos,
        format!(
            "title + whenToUse is {count} characters: cut to {MAX_DESCRIPTION_CHARS} (the full text stays in metadata `whenToUse`)"
        ),
    );
    let mut cut: String = text.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// `persona:` as a map (role, style, identity, focus, core_principles) or a string.
fn read_persona(
    node: &Node,
    rel: &str,
    diags: &mut Diagnostics,
    metadata: &mut BTreeMap<String, serde_json::Value>,
) -> Option<Persona> {
    match &node.value {
        Value::Null => None,
        Value::Map(entries) => {
            let mut persona = Persona::default();
            for (key, value) in entries {
                let text = Some(node_text(value)).filter(|t| !t.trim().is_empty());
                match key.name.as_str() {
                    "role" => persona.role = text,
                    "style" => persona.style = text,
                    "identity" => persona.identity = text,
                    "focus" => persona.focus = text,
                    "core_principles" => persona.core_principles.extend(list_text(value)),
                    _ => {
                        warn_unknown_key(key, &PERSONA_KEYS, "`persona:`", rel, diags);
                        metadata.insert(format!("persona.{}", key.name), value.to_json());
                    }
                }
            }
            Some(persona)
        }
        _ => Some(Persona {
            text: Some(node_text(node)).filter(|t| !t.trim().is_empty()),
            ..Persona::default()
        }),
    }
}

/// A list of principles: one string per item (maps flattened), or one string.
fn list_text(node: &Node) -> Vec<String> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .map(node_text)
            .filter(|t| !t.trim().is_empty())
            .collect(),
        _ => Some(node_text(node))
            .filter(|t| !t.trim().is_empty())
            .into_iter()
            .collect(),
    }
}

/// `commands:` in every v4 shape: a list of one-key maps, of
/// `'*name - description'` / `'name: description'` strings, a plain map, and
/// nested values (`develop-story: {order-of-execution: …}`). Names become
/// `*name`; a key with arguments (`critique {file|text}`) keeps its first word.
fn read_commands(node: &Node, rel: &str, diags: &mut Diagnostics) -> Vec<Command> {
    let mut found: Vec<(Command, Pos)> = Vec::new();
    match &node.value {
        Value::Null => {}
        Value::Seq(items) => {
            for item in items {
                match &item.value {
                    Value::Null => {}
                    Value::Map(entries) => {
                        let named = item.get("name").and_then(Node::scalar_text);
                        if let Some(name) = named {
                            let desc = item.get("description").map(node_text).unwrap_or_default();
                            found.extend(command_from_key(&name, &desc, item.pos, rel, diags));
                        } else {
                            for (key, value) in entries {
                                found.extend(command_from_key(
                                    &key.name,
                                    &node_text(value),
                                    key.pos,
                                    rel,
                                    diags,
                                ));
                            }
                        }
                    }
                    Value::Seq(_) => {
                        diags.warning(
                            "bmad-command",
                            rel,
                            item.pos,
                            "a command is a nested list: skipped",
                        );
                    }
                    _ => {
                        let text = item.scalar_text().unwrap_or_default();
                        found.extend(command_from_string(&text, item.pos, rel, diags));
                    }
                }
            }
        }
        Value::Map(entries) => {
            for (key, value) in entries {
                found.extend(command_from_key(
                    &key.name,
                    &node_text(value),
                    key.pos,
                    rel,
                    diags,
                ));
            }
        }
        _ => {
            let text = node.scalar_text().unwrap_or_default();
            found.extend(command_from_string(&text, node.pos, rel, diags));
        }
    }
    let mut commands: Vec<Command> = Vec::new();
    for (command, pos) in found {
        if commands.iter().any(|c| c.name == command.name) {
            diags.warning(
                "bmad-duplicate-command",
                rel,
                pos,
                format!(
                    "command `{}` is listed twice: the first one is kept",
                    command.name
                ),
            );
        } else {
            commands.push(command);
        }
    }
    commands
}

/// The head of a command: its name (without `*`) and what follows the name.
struct CommandHead<'a> {
    name: &'a str,
    /// Characters glued to the name that are not part of it (`help"` → `"`).
    glued: &'a str,
    rest: &'a str,
}

fn split_head(text: &str) -> CommandHead<'_> {
    let text = text
        .trim()
        .trim_start_matches(['"', '\''])
        .trim_start_matches('*')
        .trim_start();
    let name_len = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(text.len());
    let (name, after) = text.split_at(name_len);
    let glued_len = after
        .find(|c: char| c.is_whitespace() || matches!(c, '{' | '[' | '<' | '(' | ':'))
        .unwrap_or(after.len());
    let (glued, rest) = after.split_at(glued_len);
    CommandHead { name, glued, rest }
}

/// Validates the name part; warns when it was sanitised or cannot be used.
fn command_name(
    head: &CommandHead<'_>,
    raw: &str,
    pos: Pos,
    rel: &str,
    diags: &mut Diagnostics,
) -> Option<String> {
    if !is_valid_name(head.name) {
        diags.warning(
            "bmad-command",
            rel,
            pos,
            format!("command `{}` has no usable name (expected a word starting with a letter): skipped", raw.trim()),
        )
        .hint = Some("command names match ^\\*[A-Za-z][A-Za-z0-9_-]*$".to_string());
        return None;
    }
    let glued = head.glued.trim_matches(['"', '\'', ',', '-']);
    if !glued.is_empty() {
        diags.warning(
            "bmad-command",
            rel,
            pos,
            format!("command `{}` sanitised to `*{}`", raw.trim(), head.name),
        );
    }
    Some(format!("*{}", head.name))
}

/// A command written as a map key (`create-prd`, `'*help'`, `critique {file|text}`).
fn command_from_key(
    key: &str,
    value: &str,
    pos: Pos,
    rel: &str,
    diags: &mut Diagnostics,
) -> Option<(Command, Pos)> {
    let head = split_head(key);
    let name = command_name(&head, key, pos, rel, diags)?;
    let args = head.rest.trim().trim_matches(['"', '\'']).trim();
    Some((
        Command {
            name,
            description: with_arguments(value.trim(), args),
        },
        pos,
    ))
}

/// A command written as one string: `'*name - description'`, `'name: description'`,
/// `'*checklist {name}" - description'`, or just `*name`.
fn command_from_string(
    text: &str,
    pos: Pos,
    rel: &str,
    diags: &mut Diagnostics,
) -> Option<(Command, Pos)> {
    let head = split_head(text);
    let name = command_name(&head, text, pos, rel, diags)?;
    let rest = head.rest;
    let separator = [" - ", " – ", " — ", ":"]
        .iter()
        .filter_map(|sep| rest.find(sep).map(|at| (at, sep.len())))
        .min();
    let quotes: &[char] = &['"', '\''];
    let (args, desc) = match separator {
        Some((at, len)) => (rest[..at].trim(), rest[at + len..].trim()),
        None if rest.trim_start().starts_with(['{', '[', '<', '(']) => (rest.trim(), ""),
        None => ("", rest.trim()),
    };
    Some((
        Command {
            name,
            description: with_arguments(
                desc.trim_matches(quotes).trim(),
                args.trim_matches(quotes).trim(),
            ),
        },
        pos,
    ))
}

fn with_arguments(description: &str, args: &str) -> String {
    match (description.is_empty(), args.is_empty()) {
        (_, true) => description.to_string(),
        (true, false) => format!("(arguments: {args})"),
        (false, false) => format!("{description} (arguments: {args})"),
    }
}

/// `dependencies:` → the resources to look up; kinds that are not resources
/// (`workflows`) and unknown kinds go to metadata `dependencies.<kind>`.
fn read_dependencies(
    node: &Node,
    rel: &str,
    diags: &mut Diagnostics,
    metadata: &mut BTreeMap<String, serde_json::Value>,
) -> Vec<DependencyRef> {
    let Some(entries) = node.as_map() else {
        if !node.is_null() {
            diags.warning(
                "bmad-dependencies",
                rel,
                node.pos,
                format!(
                    "`dependencies` should be a map of kind → names, found {}: ignored",
                    node.type_name()
                ),
            );
        }
        return Vec::new();
    };
    let mut refs = Vec::new();
    for (key, value) in entries {
        let Some(kind) = DependencyKind::from_key(&key.name) else {
            if !REFERENCE_DEPENDENCY_KEYS.contains(&key.name.as_str()) {
                let known: Vec<&str> = DependencyKind::ALL.iter().map(|k| k.folder()).collect();
                let diag = diags.warning(
                    "bmad-unknown-key",
                    rel,
                    key.pos,
                    format!("unknown dependency kind `{}`: kept as metadata", key.name),
                );
                if let Some(close) = did_you_mean(&key.name, known.iter().copied()) {
                    diag.hint = Some(format!("did you mean `{close}`?"));
                }
            }
            metadata.insert(format!("dependencies.{}", key.name), value.to_json());
            continue;
        };
        for (name, pos) in dependency_names(value) {
            refs.push(DependencyRef { kind, name, pos });
        }
    }
    refs
}

/// Names in a dependency list, cleaned of comments and remarks
/// (`create-doc.md # for PRDs` → `create-doc.md`).
fn dependency_names(node: &Node) -> Vec<(String, Pos)> {
    let raw: Vec<(String, Pos)> = match &node.value {
        Value::Seq(items) => items
            .iter()
            .flat_map(|item| match &item.value {
                Value::Map(entries) => entries
                    .iter()
                    .map(|(k, _)| (k.name.clone(), k.pos))
                    .collect(),
                _ => item
                    .scalar_text()
                    .map(|t| (t, item.pos))
                    .into_iter()
                    .collect::<Vec<_>>(),
            })
            .collect(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, _)| (k.name.clone(), k.pos))
            .collect(),
        _ => node
            .scalar_text()
            .map(|t| t.split(',').map(|s| (s.to_string(), node.pos)).collect())
            .unwrap_or_default(),
    };
    raw.into_iter()
        .filter_map(|(text, pos)| clean_dependency_name(&text).map(|n| (n, pos)))
        .collect()
}

/// The file name in a dependency entry: text before a `#` comment, first word,
/// without quotes or a trailing comma.
pub fn clean_dependency_name(text: &str) -> Option<String> {
    let before_comment = text.split(" #").next().unwrap_or("");
    let before_comment = before_comment
        .strip_prefix('#')
        .map_or(before_comment, |_| "");
    let word = before_comment.split_whitespace().next()?;
    let word = word.trim_matches(['"', '\'', ',', '`']);
    (!word.is_empty()).then(|| word.to_string())
}

/// The agent's prompt template: a fixed Jinja skeleton over the run-time
/// variables. Nothing from resource files is placed in it; the only source
/// text is the agent's display name, inserted as a Jinja string literal when
/// it contains template syntax.
pub fn prompt_template(display_name: &str, id: &str) -> String {
    sections_template(
        display_name,
        id,
        &[
            ("Persona", "persona"),
            ("Commands", "commands"),
            ("Tasks", "tasks"),
            ("Templates", "templates"),
            ("Checklists", "checklists"),
            ("Data", "data"),
        ],
        &[],
    )
}

/// A BMAD agent's prompt template: a header naming the agent, a `## <title>`
/// section per variable in `before`, the run's documents and request, then
/// the sections of `after` (BMAD v6 agents close with their instructions).
/// A section whose variable is empty is left out, so the model reads no
/// empty headings. Only variables are placed in it, never resource text.
pub fn sections_template(
    display_name: &str,
    id: &str,
    before: &[(&str, &str)],
    after: &[(&str, &str)],
) -> String {
    // `text`, shown when `variable` is not empty.
    let shown = |variable: &str, text: String| format!("{{% if {variable} %}}{text}{{% endif %}}");
    let mut out = format!(
        "You are {name} (BMAD agent `{id}`).\n\n",
        name = jinja_text(display_name),
        id = jinja_text(id),
    );
    for (title, variable) in before {
        out.push_str(&shown(
            variable,
            format!("## {title}\n{{{{ {variable} }}}}\n\n"),
        ));
    }
    out.push_str(
        "## Documents\n\
         {% for name, content in docs|items %}\n\
         ### {{ name }}\n\
         {{ content }}\n\
         {% endfor %}\n\
         ## Request\n\
         {{ input }}\n",
    );
    for (title, variable) in after {
        out.push_str(&shown(
            variable,
            format!("\n## {title}\n{{{{ {variable} }}}}\n"),
        ));
    }
    out
}

/// `text` made safe to place in a Jinja template: as is when it holds no
/// template syntax, else as a string-literal expression.
fn jinja_text(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if !one_line.contains(['{', '}', '%', '#']) {
        return one_line;
    }
    let escaped = one_line.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{{{{ \"{escaped}\" }}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<AgentDraft>, Diagnostics) {
        let mut d = Diagnostics::new();
        let draft = parse_agent(text, "agents/x.md", &mut d);
        (draft, d)
    }

    fn names(draft: &AgentDraft) -> Vec<&str> {
        draft.commands.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn finds_the_first_yaml_block_with_an_agent_map() {
        let text = "# x\r\n\r\n```js\r\nlet a = 1;\r\n```\r\n\r\n```yaml\r\nother: 1\r\n```\r\n\r\n  ```yml\r\n  agent:\r\n    id: x\r\n  ```\r\n";
        let blocks = yaml_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].line_offset, 11);
        assert_eq!(blocks[1].text, "agent:\n  id: x");
        let (draft, d) = parse(text);
        assert_eq!(draft.map(|a| a.id), Some("x".to_string()));
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn fence_inside_a_block_scalar_does_not_close() {
        let text = "```yaml\nagent:\n  id: a\nnotes: |\n  ```\n  inner\n  ```\ncommands: [help]\n```\nafter\n";
        let (draft, _) = parse(text);
        let draft = draft.unwrap_or_else(|| panic!("agent"));
        assert_eq!(names(&draft), ["*help"]);
    }

    #[test]
    fn unclosed_fence_runs_to_end() {
        let (draft, _) = parse("```yaml\nagent: {id: open}\n");
        assert_eq!(draft.map(|a| a.id), Some("open".to_string()));
    }

    #[test]
    fn commands_in_every_shape() {
        let text = r#"```yaml
agent: {id: c}
commands:
  - help: Show the list
  - '*yolo - Toggle yolo mode'
  - 'exit: Leave the persona'
  - '*checklist {checklist}" - Run a checklist'
  - '*chat-mode" - Talk'
  - critique {file|text}: Critique a file
  - develop-story:
      order-of-execution: read then write
      blocking: HALT on ambiguity
  - '*doc-out'
  - '*123bad'
  - help: duplicate
```"#;
        let (draft, d) = parse(text);
        let draft = draft.unwrap_or_else(|| panic!("agent"));
        assert_eq!(
            names(&draft),
            [
                "*help",
                "*yolo",
                "*exit",
                "*checklist",
                "*chat-mode",
                "*critique",
                "*develop-story",
                "*doc-out"
            ]
        );
        let desc: Vec<&str> = draft
            .commands
            .iter()
            .map(|c| c.description.as_str())
            .collect();
        assert_eq!(desc[1], "Toggle yolo mode");
        assert_eq!(desc[2], "Leave the persona");
        assert_eq!(desc[3], "Run a checklist (arguments: {checklist})");
        assert_eq!(desc[4], "Talk");
        assert_eq!(desc[5], "Critique a file (arguments: {file|text})");
        assert_eq!(
            desc[6],
            "order-of-execution: read then write\nblocking: HALT on ambiguity"
        );
        assert_eq!(desc[7], "");
        let warnings: Vec<String> = d.iter().map(|x| x.message.clone()).collect();
        assert!(
            warnings.iter().any(|m| m.contains("*123bad")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|m| m.contains("listed twice")),
            "{warnings:?}"
        );
        assert!(!d.has_errors());
    }

    #[test]
    fn commands_as_a_plain_map_and_star_keys() {
        let (draft, _) = parse(
            "```yaml\nagent: {id: m}\ncommands:\n  help: Show\n  '*status': Show status\n  agent [name]: Become another agent\n```",
        );
        let draft = draft.unwrap_or_else(|| panic!("agent"));
        assert_eq!(names(&draft), ["*help", "*status", "*agent"]);
        assert_eq!(
            draft.commands[2].description,
            "Become another agent (arguments: [name])"
        );
    }

    #[test]
    fn sanitised_command_warns() {
        let (draft, d) = parse("```yaml\nagent: {id: m}\ncommands:\n  - 'do.thing: x'\n```");
        assert_eq!(draft.map(|a| names(&a).join(",")), Some("*do".to_string()));
        assert!(d.iter().any(|x| x.message.contains("sanitised to `*do`")));
    }

    #[test]
    fn persona_shapes_and_top_level_principles() {
        let text = "```yaml\nagent:\n  id: p\n  title: Tester\n  customization: null\npersona:\n  role: Checks\n  identity: Careful\ncore_principles:\n  - One\n  - CRITICAL: Two\n```";
        let (draft, d) = parse(text);
        let draft = draft.unwrap_or_else(|| panic!("agent"));
        let persona = draft.persona.unwrap_or_default();
        assert_eq!(persona.role.as_deref(), Some("Checks"));
        assert_eq!(persona.style, None);
        assert_eq!(persona.focus, None);
        assert_eq!(persona.core_principles, ["One", "CRITICAL: Two"]);
        assert_eq!(
            draft.metadata.get("customization"),
            Some(&serde_json::Value::Null)
        );
        assert_eq!(draft.description, "Tester");
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn unknown_keys_are_metadata_with_a_hint() {
        let (draft, d) =
            parse("```yaml\nIIDE-FILE-RESOLUTION: [x]\nagent: {id: u, mood: calm}\n```");
        let draft = draft.unwrap_or_else(|| panic!("agent"));
        assert!(draft.metadata.contains_key("IIDE-FILE-RESOLUTION"));
        assert!(draft.metadata.contains_key("agent.mood"));
        let hint = d.iter().find_map(|x| x.hint.clone());
        assert_eq!(hint.as_deref(), Some("did you mean `IDE-FILE-RESOLUTION`?"));
        assert_eq!(d.warning_count(), 2);
        assert!(!d.has_errors());
    }

    #[test]
    fn long_description_is_cut_with_a_warning() {
        let long = "é".repeat(600);
        let (draft, d) = parse(&format!(
            "```yaml\nagent:\n  id: l\n  whenToUse: {long}\n```"
        ));
        let draft = draft.unwrap_or_else(|| panic!("agent"));
        assert_eq!(draft.description.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(d.iter().any(|x| x.code == "bmad-long-description"));
    }

    #[test]
    fn missing_or_invalid_id_falls_back() {
        let (draft, d) = parse("```yaml\nagent: {title: T}\n```");
        assert_eq!(draft.map(|a| a.id), Some("x".to_string()));
        assert!(d.iter().any(|x| x.code == "bmad-missing-id"));
        let (draft, _) = parse("```yaml\nagent: {id: game dev}\n```");
        assert_eq!(draft.map(|a| a.id), Some("game-dev".to_string()));
    }

    #[test]
    fn dependency_names_are_cleaned() {
        assert_eq!(
            clean_dependency_name("create-doc.md # for PRDs").as_deref(),
            Some("create-doc.md")
        );
        assert_eq!(
            clean_dependency_name(" 'prd-tmpl' ").as_deref(),
            Some("prd-tmpl")
        );
        assert_eq!(clean_dependency_name("# only a comment"), None);
        assert_eq!(
            clean_dependency_name("kb.md - the knowledge base").as_deref(),
            Some("kb.md")
        );
    }

    #[test]
    fn not_an_agent_is_a_warning() {
        let (draft, d) = parse("# nothing here\n");
        assert!(draft.is_none());
        assert_eq!(d.warning_count(), 1);
        let (draft, d) = parse("```yaml\nagent: [\n```");
        assert!(draft.is_none());
        assert!(!d.has_errors());
        assert!(d.warning_count() >= 2);
    }

    #[test]
    fn unquoted_star_commands_are_repaired() {
        let text = "```yaml\nagent: {id: s}\ncommands:\n  - *help - Show help\n  - *exit\nmore:\n  *status: Show it's state\n```";
        let (draft, d) = parse(text);
        let draft = draft.unwrap_or_else(|| panic!("agent"));
        assert_eq!(names(&draft), ["*help", "*exit"]);
        assert_eq!(draft.metadata["more"]["*status"], "Show it's state");
        assert!(
            d.iter()
                .any(|x| x.code == "bmad-yaml-repaired" && x.line == 2)
        );
        assert!(!d.has_errors());
    }

    #[test]
    fn front_matter_files_are_not_bmad() {
        assert!(!is_agent_text(
            "---\nid: pm\n---\n```yaml\nagent: {id: pm}\n```\n"
        ));
        assert!(is_agent_text("# pm\n```yaml\nagent: {id: pm}\n```\n"));
    }

    #[test]
    fn prompt_template_is_strict_jinja_and_escapes_the_name() {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let template = prompt_template("Evil {{ boom }} \"name\" {% raw %}", "pm");
        assert!(!template.contains("{{ boom }}\n"));
        let ctx = minijinja::context! {
            persona => "P", commands => "C", tasks => "{{ not rendered }}", templates => "T",
            checklists => "K", data => "D", input => "I", docs => BTreeMap::from([("prd.md", "PRD")]),
        };
        let out = env.render_str(&template, ctx);
        let out = out.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.starts_with("You are Evil {{ boom }} \"name\" {% raw %} (BMAD agent `pm`)."),
            "{out}"
        );
        assert!(out.contains("{{ not rendered }}"));
        assert!(out.contains("### prd.md\nPRD"));
        assert!(out.contains("## Data\nD"));
    }
}
