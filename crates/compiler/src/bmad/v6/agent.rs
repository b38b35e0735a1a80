//! BMAD v6 agents: `agents/**/*.agent.yaml` → an [`AgentDraft`] (SPEC 1.7,
//! "v6 agents"), and the parts every v6 agent shares with skill agents:
//! persona, menu items and the prompt template.
//!
//! A draft names its menu targets as written (a workflow path, a skill
//! name or an inline prompt); [`super`] turns it into an `AgentSpec` once
//! every flow is known, so a target's kind is read from the flow it
//! resolved to, not from the menu key.

use super::vars::Vars;
use crate::bmad::agent::{MAX_DESCRIPTION_CHARS, sections_template};
use crate::bmad::{node_text, parse_yaml_lenient};
use crate::bundle::{Persona, Resource};
use crate::diag::{Diagnostics, Pos};
use crate::yaml::Node;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// An agent read from a v6 agent file or an agent skill.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDraft {
    pub id: String,
    /// The module the agent belongs to (`core` when none).
    pub module: String,
    pub source: String,
    /// Where the id comes from, for the duplicate error.
    pub pos: Pos,
    /// `name, title`, for the prompt header.
    pub display: String,
    pub description: String,
    pub persona: Option<Persona>,
    pub menu: Vec<MenuItem>,
    /// Text the prompt closes with, in order: the skill body, activation
    /// steps, critical actions (the `tasks` variable, verbatim).
    pub instructions: Vec<Resource>,
    /// Reference text: inline menu prompts, `prompts`, persistent facts.
    pub data: Vec<Resource>,
    pub metadata: BTreeMap<String, Json>,
}

/// The variable naming an agent's own folder, where BMAD's expert agents
/// keep their instructions and memories (`{agent-folder}/memories.md`).
const AGENT_FOLDER: &str = "agent-folder";
/// The variable naming an agent's sidecar folder, which BMAD's installer
/// replaces by the installed copy's path.
const AGENT_SIDECAR_FOLDER: &str = "agent_sidecar_folder";

impl AgentDraft {
    /// The variables of the agent's own text: its module's (from
    /// `by_module`), plus `{agent-folder}`, the folder of its file, and
    /// `{agent_sidecar_folder}`, its sidecar folder.
    pub fn vars(&self, by_module: &BTreeMap<String, Vars>) -> Vars {
        let mut vars = by_module.get(&self.module).cloned().unwrap_or_default();
        vars.set(AGENT_FOLDER, super::layout::parent(&self.source));
        if let Some(stem) = self.source_stem() {
            vars.set(AGENT_SIDECAR_FOLDER, format!("{stem}-sidecar"));
        }
        vars
    }

    /// The agent file's path without its extension (`src/bmm/agents/pm` of
    /// `….agent.yaml` or of an install's `….md`), which names its sidecar
    /// folder; `None` for an agent skill.
    pub fn source_stem(&self) -> Option<&str> {
        let source = self.source.as_str();
        source.strip_suffix(".agent.yaml").or_else(|| {
            source
                .strip_suffix(".md")
                .filter(|_| !source.ends_with("SKILL.md"))
        })
    }
}

/// One menu entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuItem {
    /// Lower-cased menu code: the command is `*<code>`.
    pub code: String,
    /// A second name (`create-prd` of `CP or fuzzy match on create-prd`).
    pub alias: Option<String>,
    pub description: String,
    pub target: MenuTarget,
    /// The file the item hands its target as input (`data`), as written.
    pub input: Option<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuTarget {
    /// A file path as written (`exec`, `workflow`).
    File(String),
    /// The workflow file whose output the item checks against the
    /// workflow's checklist (`validate-workflow`, BMAD before 6.0).
    Validate(String),
    /// A skill or flow name (`skill =` of a skill agent's menu).
    Name(String),
    /// An inline prompt (`action`, `prompt`).
    Prompt(String),
}

/// Sections of a v6 agent's prompt before the run's documents and request.
const PROMPT_SECTIONS: [(&str, &str); 3] = [
    ("Persona", "persona"),
    ("Menu", "commands"),
    ("Reference", "data"),
];
/// Sections after them: the agent's own instructions close the prompt.
const CLOSING_SECTIONS: [(&str, &str); 1] = [("Instructions", "tasks")];

/// The prompt template of every v6 agent and skill agent.
pub fn prompt_template(display: &str, id: &str) -> String {
    sections_template(display, id, &PROMPT_SECTIONS, &CLOSING_SECTIONS)
}

/// Reads one `*.agent.yaml`; `None` (with a warning) when it holds no `agent` map.
pub fn read_agent_yaml(
    text: &str,
    rel: &str,
    id: String,
    module: &str,
    diags: &mut Diagnostics,
) -> Option<AgentDraft> {
    let root = parse_yaml_lenient(text, rel, 0, diags)?;
    let Some(agent) = root.get("agent").filter(|a| a.as_map().is_some()) else {
        diags.warning(
            "bmad-not-an-agent",
            rel,
            root.pos,
            "no `agent:` map: not read as an agent",
        );
        return None;
    };
    let mut metadata = BTreeMap::new();
    let meta = agent.get("metadata");
    let text_of = |key: &str| {
        meta.and_then(|m| m.get(key))
            .map(node_text)
            .filter(|t| !t.trim().is_empty())
    };
    if let Some(m) = meta {
        metadata.insert("bmad_metadata".to_string(), m.to_json());
    }
    let title = text_of("title");
    let name = text_of("name");
    let description = match (&title, text_of("capabilities")) {
        (Some(t), Some(c)) => format!("{t}: {c}"),
        (Some(t), None) => t.clone(),
        (None, Some(c)) => c,
        (None, None) => String::new(),
    };
    let display = display_name(name.as_deref(), title.as_deref(), &id);
    let persona = agent.get("persona").map(|p| {
        let field = |k: &str| p.get(k).map(node_text).filter(|t| !t.trim().is_empty());
        persona(
            field("role"),
            field("identity"),
            field("communication_style"),
            p.get("principles")
                .map(principles_of_node)
                .unwrap_or_default(),
        )
    });
    let menu: Vec<MenuItem> = agent
        .get("menu")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| menu_item(item, rel, diags))
        .collect();
    let mut data = menu_prompts(&menu, rel);
    if let Some(prompts) = agent.get("prompts") {
        metadata.insert("prompts".to_string(), prompts.to_json());
        data.push(resource("prompts", rel, &node_text(prompts)));
    }
    let mut instructions = Vec::new();
    if let Some(actions) = agent.get("critical_actions").and_then(Node::as_seq) {
        let text: Vec<String> = actions
            .iter()
            .map(|a| format!("- {}", node_text(a)))
            .collect();
        instructions.push(resource("critical_actions", rel, &text.join("\n")));
    }
    for (key, _) in agent.as_map().unwrap_or_default() {
        if !["metadata", "persona", "menu", "critical_actions", "prompts"]
            .contains(&key.name.as_str())
        {
            diags.warning(
                "bmad-unknown-key",
                rel,
                key.pos,
                format!("unknown key `agent.{}`: kept as metadata", key.name),
            );
            if let Some(v) = agent.get(&key.name) {
                metadata.insert(key.name.clone(), v.to_json());
            }
        }
    }
    Some(AgentDraft {
        id,
        module: module.to_string(),
        source: rel.to_string(),
        pos: agent.pos,
        display,
        description: cut_description(description, rel, agent.pos, diags),
        persona,
        menu,
        instructions,
        data,
        metadata,
    })
}

/// A description cut to SPEC 1.1's limit, with a warning when it was longer.
pub fn cut_description(text: String, rel: &str, pos: Pos, diags: &mut Diagnostics) -> String {
    let text = text.trim().to_string();
    if text.chars().count() <= MAX_DESCRIPTION_CHARS {
        return text;
    }
    diags.warning(
        "bmad-description-cut",
        rel,
        pos,
        format!("description longer than {MAX_DESCRIPTION_CHARS} characters: cut"),
    );
    text.chars().take(MAX_DESCRIPTION_CHARS).collect()
}

/// A resource holding BMAD text verbatim.
pub fn resource(name: &str, path: &str, content: &str) -> Resource {
    Resource {
        name: name.to_string(),
        path: path.to_string(),
        content: content.to_string(),
    }
}

/// A persona from the v6 fields; `None`-like fields are left out.
pub fn persona(
    role: Option<String>,
    identity: Option<String>,
    style: Option<String>,
    core_principles: Vec<String>,
) -> Persona {
    Persona {
        role,
        style,
        identity,
        focus: None,
        core_principles,
        text: None,
    }
}

fn principles_of_node(node: &Node) -> Vec<String> {
    match node.as_seq() {
        Some(items) => items.iter().map(node_text).collect(),
        None => split_bullets(&node_text(node)),
    }
}

/// A `- ` bulleted block as its items (continuation lines joined); text
/// without bullets is one item per non-empty line.
pub fn split_bullets(text: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    let bulleted = text.lines().any(|l| l.trim_start().starts_with("- "));
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix("- ") {
            Some(item) => items.push(item.trim().to_string()),
            None if bulleted && !items.is_empty() => {
                if let Some(last) = items.last_mut() {
                    last.push(' ');
                    last.push_str(line);
                }
            }
            None => items.push(line.to_string()),
        }
    }
    items
}

/// How an agent is introduced: "Name, Title", or whichever it has.
pub fn display_name(name: Option<&str>, title: Option<&str>, id: &str) -> String {
    match (name, title) {
        (Some(n), Some(t)) if n != t => format!("{n}, {t}"),
        (Some(n), _) => n.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => id.to_string(),
    }
}

/// The inline prompts of menu entries (`action`), as reference text
/// (`menu *<code>`).
pub fn menu_prompts(menu: &[MenuItem], rel: &str) -> Vec<Resource> {
    menu.iter()
        .filter_map(|entry| match &entry.target {
            MenuTarget::Prompt(prompt) => {
                Some(resource(&format!("menu *{}", entry.code), rel, prompt))
            }
            _ => None,
        })
        .collect()
}

/// One `menu` entry of a v6 agent; `None` (with a warning) when it names no target.
fn menu_item(item: &Node, rel: &str, diags: &mut Diagnostics) -> Option<MenuItem> {
    let text = |k: &str| item.get(k).map(node_text).filter(|t| !t.trim().is_empty());
    let entry = menu_entry(&text, item.pos);
    if entry.is_none() {
        diags.warning(
            "bmad-menu-item",
            rel,
            item.pos,
            "menu item with no `exec`, `workflow`, `validate-workflow` or `action`: skipped",
        );
    }
    entry
}

/// One menu entry from its fields as `field` reads them (`trigger`,
/// `description`, and the target keys `exec`, `workflow`,
/// `validate-workflow`, `action`, with `data`, `checklist`, `document`);
/// `None` when it names no target.
pub fn menu_entry(field: &dyn Fn(&str) -> Option<String>, pos: Pos) -> Option<MenuItem> {
    let text = |k: &str| field(k).filter(|t| !t.trim().is_empty());
    let trigger = text("trigger").unwrap_or_default();
    let description = text("description").unwrap_or_default();
    let target = if let Some(path) = text("exec").or_else(|| text("workflow")) {
        MenuTarget::File(path)
    } else if let Some(path) = text("validate-workflow") {
        MenuTarget::Validate(path)
    } else {
        MenuTarget::Prompt(text("action")?)
    };
    let (code, label) = menu_code(&trigger, &description)?;
    let alias = trigger
        .split_once("fuzzy match on")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(|a| {
            a.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .to_ascii_lowercase()
        })
        .filter(|a| !a.is_empty() && *a != code);
    let mut entry = MenuItem {
        code,
        alias,
        description: label,
        target,
        input: text("data"),
        pos,
    };
    // What the item hands its target, as BMAD writes it.
    for (key, label) in [
        ("data", "input"),
        ("checklist", "checklist"),
        ("document", "document"),
    ] {
        if let Some(value) = text(key) {
            entry.description = format!("{} ({label}: {value})", entry.description);
        }
    }
    Some(entry)
}

/// The code of a menu entry (`[CP]` of the description, else the first word
/// of the trigger) lower-cased, and the description without the code.
pub fn menu_code(trigger: &str, description: &str) -> Option<(String, String)> {
    let bracketed = description
        .trim_start()
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'));
    let (code, label) = match bracketed {
        // `[US]: Update Standards`: the separator is not part of the label.
        Some((code, label)) => (
            code.trim().to_string(),
            label.trim_start_matches([' ', ':', '-']).trim().to_string(),
        ),
        None => (
            trigger
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            description.trim().to_string(),
        ),
    };
    let code = crate::bmad::sanitize_name(&code.to_ascii_lowercase());
    (code != "unnamed").then_some((code, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_yaml_fields() -> Result<(), String> {
        let mut d = Diagnostics::new();
        let text = "agent:\n  metadata:\n    id: _bmad/bmm/agents/pm.md\n    name: Pat\n    title: Product Manager\n    capabilities: PRDs\n  persona:\n    role: PM\n    communication_style: terse\n    principles: |\n      - one\n        more\n      - two\n  critical_actions:\n    - load config\n  menu:\n    - trigger: CP or fuzzy match on create-prd\n      exec: '{project-root}/_bmad/bmm/workflows/prd/workflow.md'\n      description: '[CP] Create PRD'\n    - trigger: chat\n      action: 'Talk {{x}}'\n      description: Chat\n    - trigger: broken\n  extra: 1\n";
        let a = read_agent_yaml(text, "a.agent.yaml", "bmm/pm".into(), "bmm", &mut d)
            .ok_or("no agent")?;
        assert_eq!(a.description, "Product Manager: PRDs");
        assert_eq!(a.display, "Pat, Product Manager");
        let p = a.persona.ok_or("persona")?;
        assert_eq!(p.style.as_deref(), Some("terse"));
        assert_eq!(p.core_principles, ["one more", "two"]);
        assert_eq!(a.menu.len(), 2);
        assert_eq!(a.menu[0].code, "cp");
        assert_eq!(a.menu[0].alias.as_deref(), Some("create-prd"));
        assert_eq!(a.menu[1].target, MenuTarget::Prompt("Talk {{x}}".into()));
        assert_eq!(a.instructions[0].content, "- load config");
        let codes: Vec<_> = d.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["bmad-menu-item", "bmad-unknown-key"]);
        Ok(())
    }

    #[test]
    fn template_is_valid_jinja() {
        let t = prompt_template("A {b}", "bmm/pm");
        assert!(crate::prompt::environment().template_from_str(&t).is_ok());
        assert!(t.ends_with("{% if tasks %}\n## Instructions\n{{ tasks }}\n{% endif %}"));
    }
}
