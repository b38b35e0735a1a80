//! Agents as a BMAD v6.0 install writes them: `_bmad/<m>/agents/<name>.md`,
//! Markdown around one ```` ```xml ```` block whose `<agent>` element the
//! installer compiled from the module's `<name>.agent.yaml`. An installed
//! project without skills has its agents only in this form.
//!
//! Read from it: the `<agent>` attributes (`name`, `title`, `icon`, `id`),
//! the `<persona>` (`role`, `identity`, `communication_style`,
//! `principles`), and the `<menu>` items, whose `cmd` and text are the
//! source's `trigger` and `description` and whose attributes are its
//! targets (`exec`, `workflow`, `validate-workflow`, `action`, `data`);
//! an `action="#id"` names a `<prompt id>` of `<prompts>`. Items without
//! a target (menu help, chat, dismiss) are the installer's own and are
//! left out. Of the `<activation>` steps only the agent's own critical
//! actions are read (see [`critical_actions`]): the others tell a chat
//! client how to load config and wait for menu choices, which the engine
//! does itself.

use super::agent::{
    AgentDraft, MenuItem, cut_description, display_name, menu_entry, menu_prompts, persona,
    resource, split_bullets,
};
use crate::diag::{Diagnostics, Pos};
use roxmltree::{Document, Node};
use serde_json::json;
use std::collections::BTreeMap;

/// Whether `text` holds a compiled agent (an `<agent` element in an
/// ```` ```xml ```` block).
pub fn is_compiled_agent(text: &str) -> bool {
    xml_block(text).is_some_and(|(_, xml)| xml.trim_start().starts_with("<agent"))
}

/// The first ```` ```xml ```` block of `text`: its first line (1-based)
/// and its content.
fn xml_block(text: &str) -> Option<(u32, &str)> {
    let start = text.find("```xml")?;
    let after_fence = start + text[start..].find('\n')? + 1;
    let end = text[after_fence..]
        .find("\n```")
        .map_or(text.len(), |at| after_fence + at + 1);
    let line = text[..after_fence].matches('\n').count() as u32 + 1;
    Some((line, &text[after_fence..end]))
}

/// Reads the compiled agent in `text` (file `rel`) as agent `id` of
/// `module`; `None`, with a warning, when its XML cannot be read.
pub fn read_compiled_agent(
    text: &str,
    rel: &str,
    id: String,
    module: &str,
    diags: &mut Diagnostics,
) -> Option<AgentDraft> {
    let (first_line, xml) = xml_block(text)?;
    // Rows count from 1 within the block, which starts at `first_line`.
    let line_of = |row: u32| first_line + row.saturating_sub(1);
    let at = |error: &roxmltree::Error| Pos::new(line_of(error.pos().row), error.pos().col);
    // Installers have written malformed `<activation>` steps; the rest of
    // the agent is still worth reading without them.
    let without_activation;
    let doc = match Document::parse(xml) {
        Ok(doc) => doc,
        Err(error) => {
            without_activation = activation_blanked(xml);
            match without_activation.as_deref().map(Document::parse) {
                Some(Ok(doc)) => {
                    diags.warning(
                        "bmad-agent-xml",
                        rel,
                        at(&error),
                        format!("the `<activation>` steps are not well-formed XML ({error}): the agent's critical actions are not read"),
                    );
                    doc
                }
                _ => {
                    diags.warning(
                        "bmad-agent-xml",
                        rel,
                        at(&error),
                        format!("the compiled agent is not well-formed XML ({error}): not read"),
                    );
                    return None;
                }
            }
        }
    };
    let agent = doc.root_element();
    let pos_of = |node: Node| {
        let at = doc.text_pos_at(node.range().start);
        Pos::new(line_of(at.row), at.col)
    };
    let attribute = |name: &str| {
        agent
            .attribute(name)
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let (name, title) = (attribute("name"), attribute("title"));
    let bmad_metadata: serde_json::Map<String, serde_json::Value> = agent
        .attributes()
        .map(|a| (a.name().to_string(), json!(a.value())))
        .collect();
    let persona = child(agent, "persona").map(|p| {
        let field = |name: &str| child(p, name).map(text_of).filter(|t| !t.is_empty());
        persona(
            field("role"),
            field("identity"),
            field("communication_style"),
            field("principles")
                .map(|text| principles(&text))
                .unwrap_or_default(),
        )
    });
    let prompts: BTreeMap<&str, String> = child(agent, "prompts")
        .into_iter()
        .flat_map(|p| p.children().filter(|c| c.has_tag_name("prompt")))
        .filter_map(|p| Some((p.attribute("id")?, text_of(p))))
        .collect();
    let menu: Vec<MenuItem> = child(agent, "menu")
        .into_iter()
        .flat_map(|m| m.children().filter(|c| c.has_tag_name("item")))
        .filter_map(|item| {
            let field = |key: &str| match key {
                "trigger" => item.attribute("cmd").map(str::to_string),
                "description" => Some(text_of(item)),
                "action" => item.attribute("action").map(|action| {
                    action
                        .strip_prefix('#')
                        .and_then(|id| prompts.get(id))
                        .cloned()
                        .unwrap_or_else(|| action.to_string())
                }),
                _ => item.attribute(key).map(str::to_string),
            };
            menu_entry(&field, pos_of(item))
        })
        .collect();
    let mut data = menu_prompts(&menu, rel);
    if !prompts.is_empty() {
        let all: Vec<&str> = prompts.values().map(String::as_str).collect();
        data.push(resource("prompts", rel, &all.join("\n\n")));
    }
    let actions: Vec<String> = critical_actions(agent)
        .iter()
        .map(|action| format!("- {action}"))
        .collect();
    let instructions = if actions.is_empty() {
        Vec::new()
    } else {
        vec![resource("critical_actions", rel, &actions.join("\n"))]
    };
    let metadata = BTreeMap::from([
        ("bmad_metadata".to_string(), json!(bmad_metadata)),
        ("compiled".to_string(), json!(true)),
    ]);
    let pos = pos_of(agent);
    Some(AgentDraft {
        display: display_name(name, title, &id),
        description: cut_description(title.unwrap_or_default().to_string(), rel, pos, diags),
        id,
        module: module.to_string(),
        source: rel.to_string(),
        pos,
        persona,
        menu,
        instructions,
        data,
        metadata,
    })
}

/// The agent's own critical actions among its `<activation>` steps: the
/// installer puts them after its opening steps (load the persona, the
/// config, remember the user's name) and before its closing ones (greet,
/// show the menu, wait). Without those landmarks, none.
fn critical_actions(agent: Node) -> Vec<String> {
    let steps: Vec<String> = child(agent, "activation")
        .into_iter()
        .flat_map(|a| a.children().filter(|c| c.has_tag_name("step")))
        .map(text_of)
        .collect();
    let after = steps.iter().position(|s| s.starts_with("Remember: user"));
    let before = steps.iter().position(|s| s.starts_with("Show greeting"));
    match (after, before) {
        (Some(after), Some(before)) if after < before => steps[after + 1..before].to_vec(),
        _ => Vec::new(),
    }
}

/// `xml` with its `<activation>` element blanked out, its line breaks kept
/// so that later positions stay right; `None` without one.
fn activation_blanked(xml: &str) -> Option<String> {
    let start = xml.find("<activation")?;
    let end = start + xml[start..].find("</activation>")? + "</activation>".len();
    let blank: String = xml[start..end].chars().filter(|&c| c == '\n').collect();
    Some(format!("{}{blank}{}", &xml[..start], &xml[end..]))
}

/// Principles as the installer writes them: the source's bullets, joined
/// on one line (`- one - two`) or kept on lines of their own.
fn principles(text: &str) -> Vec<String> {
    match text.strip_prefix("- ") {
        Some(rest) if !text.contains('\n') => rest
            .split(" - ")
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        _ => split_bullets(text),
    }
}

/// The first child element of `node` named `name`.
fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// All the text inside `node`, trimmed.
fn text_of(node: Node) -> String {
    let text: String = node
        .descendants()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect();
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmad::v6::agent::MenuTarget;

    const PM: &str = r##"---
name: "pm"
description: "Product Manager"
---

You must fully embody this agent's persona.

```xml
<agent id="pm.agent.yaml" name="Pat" title="Product Manager" icon="P">
<activation critical="MANDATORY">
  <step n="1">Load persona from this current agent file</step>
  <step n="2">Load the config</step>
  <step n="3">Remember: user's name is {user_name}</step>
  <step n="4">Never skip the tests</step>
  <step n="5">Show greeting using {user_name}</step>
  <step n="6">STOP and WAIT for user input</step>
</activation>
  <persona>
    <role>Product Manager for &apos;small&apos; teams.</role>
    <identity>Ten years of launches.</identity>
    <communication_style>Asks why.</communication_style>
    <principles>- Users first - Ship small</principles>
  </persona>
  <prompts>
    <prompt id="pitch">Write a one-line pitch.</prompt>
  </prompts>
  <menu>
    <item cmd="MH or fuzzy match on menu or help">[MH] Redisplay Menu Help</item>
    <item cmd="CP or fuzzy match on create-prd" exec="{project-root}/_bmad/bmm/workflows/prd/workflow.md">[CP] Create PRD</item>
    <item cmd="PI" action="#pitch">[PI]: Pitch it</item>
    <item cmd="VP" validate-workflow="{project-root}/_bmad/bmm/workflows/prd/workflow.yaml" checklist="c.md">[VP] Validate PRD</item>
    <item cmd="DA or fuzzy match on exit">[DA] Dismiss Agent</item>
  </menu>
</agent>
```
"##;

    #[test]
    fn reads_persona_menu_and_prompts() -> Result<(), String> {
        assert!(is_compiled_agent(PM));
        let mut d = Diagnostics::new();
        let a = read_compiled_agent(PM, "_bmad/bmm/agents/pm.md", "bmm/pm".into(), "bmm", &mut d)
            .ok_or("not read")?;
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(a.display, "Pat, Product Manager");
        assert_eq!(a.description, "Product Manager");
        let persona = a.persona.ok_or("no persona")?;
        assert_eq!(
            persona.role.as_deref(),
            Some("Product Manager for 'small' teams.")
        );
        assert_eq!(persona.core_principles, ["Users first", "Ship small"]);
        let actions: Vec<&str> = a.instructions.iter().map(|r| r.content.as_str()).collect();
        assert_eq!(actions, ["- Never skip the tests"]);
        let codes: Vec<&str> = a.menu.iter().map(|m| m.code.as_str()).collect();
        assert_eq!(codes, ["cp", "pi", "vp"]);
        assert_eq!(a.menu[0].alias.as_deref(), Some("create-prd"));
        assert_eq!(a.menu[0].pos.line, 29);
        assert_eq!(
            a.menu[1].target,
            MenuTarget::Prompt("Write a one-line pitch.".into())
        );
        assert!(matches!(a.menu[2].target, MenuTarget::Validate(_)));
        assert_eq!(a.menu[1].description, "Pitch it");
        assert_eq!(a.menu[2].description, "Validate PRD (checklist: c.md)");
        Ok(())
    }

    #[test]
    fn xml_that_is_not_well_formed_warns_where() {
        let broken = "# x\n\n```xml\n<agent name=\"a\">\n  <persona>R&D</persona>\n</agent>\n```\n";
        let mut d = Diagnostics::new();
        assert!(read_compiled_agent(broken, "a.md", "m/a".into(), "m", &mut d).is_none());
        let found: Vec<(&str, u32)> = d.iter().map(|x| (x.code, x.line)).collect();
        assert_eq!(found, [("bmad-agent-xml", 5)]);
        assert!(!is_compiled_agent("# notes\n\n```xml\n<config/>\n```\n"));
        // Broken activation steps cost only the critical actions.
        let odd = "```xml\n<agent name=\"a\">\n<activation><step n={X}\">x</step></activation>\n<persona><role>R</role></persona>\n</agent>\n```\n";
        let mut d = Diagnostics::new();
        let read = read_compiled_agent(odd, "a.md", "m/a".into(), "m", &mut d);
        let role = read.and_then(|a| a.persona).and_then(|p| p.role);
        assert_eq!(role.as_deref(), Some("R"));
        let found: Vec<(&str, u32)> = d.iter().map(|x| (x.code, x.line)).collect();
        assert_eq!(found, [("bmad-agent-xml", 3)]);
    }
}
