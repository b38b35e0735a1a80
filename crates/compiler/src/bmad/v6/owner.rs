//! Who runs each flow, and agents' menus turned into commands (SPEC 1.7,
//! "Owner", "Ids").
//!
//! A flow runs as the `agent` of its `module-help.csv` row, else as the
//! first agent (by id) whose menu names it, else as a synthetic agent
//! without persona. Menu targets are resolved by file
//! (`exec: {project-root}/_bmad/bmm/workflows/prd/workflow.md`) or by name
//! (`skill = "bmad-create-prd"`), where a name resolves as an id, in the
//! agent's own module, in `core`, through the `bmad-<module>-` and
//! `bmad-agent-` prefixes, through shim aliases, and finally wherever its
//! last segment is unique.

use super::FlowDraft;
use super::agent::{AgentDraft, MenuTarget, prompt_template};
use super::config::CORE;
use super::help::HelpRow;
use super::layout::parent;
use super::paths::Tree;
use super::vars::Vars;
use crate::ProjectParts;
use crate::bmad::bmad_agent;
use crate::bundle::{AgentSpec, Command};
use crate::diag::{Diagnostics, Pos};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// What the readers found, for [`assemble`].
pub struct Found {
    pub drafts: Vec<AgentDraft>,
    pub flows: BTreeMap<String, FlowDraft>,
    /// Shim name → (target, intent).
    pub aliases: BTreeMap<String, (String, String)>,
    pub help: Vec<HelpRow>,
}

/// Builds the agents (with their commands) and the flows (with their owner
/// on every step).
pub fn assemble(
    tree: &Tree<'_>,
    vars: &BTreeMap<String, Vars>,
    found: Found,
    diags: &mut Diagnostics,
) -> ProjectParts {
    let Found {
        mut drafts,
        mut flows,
        aliases,
        help,
    } = found;
    let aliases = &aliases;
    drafts.sort_by(|a, b| a.id.cmp(&b.id));
    // A file or folder that names one flow; a folder holding several
    // flows' files (`workflow-create.md` beside `workflow-validate.md`)
    // names none of them.
    let mut by_file: BTreeMap<&str, &str> = BTreeMap::new();
    let mut shared: BTreeSet<&str> = BTreeSet::new();
    for flow in flows.values() {
        for file in &flow.files {
            let name = flow.spec.name.as_str();
            if by_file
                .insert(file.as_str(), name)
                .is_some_and(|other| other != name)
            {
                shared.insert(file.as_str());
            }
        }
    }
    by_file.retain(|file, _| !shared.contains(file));
    let names = Names {
        ids: flows
            .keys()
            .cloned()
            .chain(drafts.iter().map(|d| d.id.clone()))
            .collect(),
        modules: tree.module_dirs.keys().cloned().collect(),
        aliases,
    };
    // The help catalogue names owners first, then menus (below).
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for row in &help {
        let by_command = row
            .command
            .as_deref()
            .and_then(|c| names.resolve(c, &row.module))
            .filter(|f| flows.contains_key(f));
        let empty = Vars::default();
        let path = row.workflow_file.as_deref().map(|written| {
            tree.resolve(
                written,
                parent(&row.file),
                vars.get(&row.module).unwrap_or(&empty),
            )
        });
        let by_file = || by_file.get(path.as_deref()?).map(|f| f.to_string());
        // BMAD 6.1 names a skill as `skill:<name>` in place of a file.
        let by_skill = || {
            let name = row.workflow_file.as_deref()?.strip_prefix("skill:")?;
            names
                .resolve(name.trim(), &row.module)
                .filter(|f| flows.contains_key(f))
        };
        let agent = names
            .resolve(&row.agent, &row.module)
            .filter(|a| drafts.iter().any(|d| d.id == *a));
        match (by_command.or_else(by_skill).or_else(by_file), agent) {
            (Some(flow), Some(agent)) => {
                owners.entry(flow).or_insert(agent);
            }
            (_, None) => {
                diags.warning(
                    "bmad-unknown-agent",
                    &row.file,
                    Pos::new(row.line, 1),
                    format!("`agent` names `{}`, which is no agent here", row.agent),
                );
            }
            // A row that names its agent's own file (or, in an install,
            // where the compiled copy of it is) is one of the agent's
            // actions, done by talking to it: no workflow to find.
            (None, Some(_)) if path.as_deref().is_some_and(|p| names_agent_file(tree, p)) => {}
            (None, Some(_)) => {
                diags.warning(
                    "bmad-unknown-target",
                    &row.file,
                    Pos::new(row.line, 1),
                    format!(
                        "the row names no workflow here (command `{}`, workflow-file `{}`)",
                        row.command.as_deref().unwrap_or_default(),
                        row.workflow_file.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
    }
    // Then every menu item: commands, and the owners still missing.
    let mut agents: BTreeMap<String, AgentSpec> = BTreeMap::new();
    let mut menus: Vec<(String, Vec<Command>, Vec<serde_json::Value>)> = Vec::new();
    for draft in &drafts {
        let mut commands = Vec::new();
        let mut menu_meta = Vec::new();
        let agent_vars = draft.vars(vars);
        for item in &draft.menu {
            let target = match &item.target {
                MenuTarget::File(path) | MenuTarget::Validate(path) => {
                    let resolved = tree.resolve(path, parent(&draft.source), &agent_vars);
                    let found = by_file
                        .get(resolved.as_str())
                        .or_else(|| by_file.get(parent(&resolved)))
                        .map(|f| f.to_string());
                    if found.is_none() {
                        diags.warning(
                            "bmad-unknown-target",
                            &draft.source,
                            item.pos,
                            format!("menu `{}` names `{path}`, which is no workflow here: kept as a command without a flow", item.code),
                        );
                    }
                    found
                }
                MenuTarget::Name(name) => {
                    let found = names.resolve(name, &draft.module);
                    if found.is_none() {
                        diags.warning(
                            "bmad-unknown-target",
                            &draft.source,
                            item.pos,
                            format!(
                                "menu `{}` names skill `{name}`, which is not in this tree",
                                item.code
                            ),
                        );
                    }
                    found
                }
                MenuTarget::Prompt(_) => None,
            };
            let validates = matches!(item.target, MenuTarget::Validate(_));
            let description = match &target {
                Some(t) if validates => format!(
                    "{} (checks what flow `{t}` wrote against a checklist)",
                    item.description
                ),
                Some(t) if flows.contains_key(t) => {
                    format!("{} (runs flow `{t}`)", item.description)
                }
                Some(t) => format!("{} (hands over to agent `{t}`)", item.description),
                None => item.description.clone(),
            };
            // Checking a workflow's output does not make its agent the owner.
            if let Some(t) = &target
                && flows.contains_key(t)
                && !validates
            {
                owners.entry(t.clone()).or_insert_with(|| draft.id.clone());
            }
            let mut names = vec![format!("*{}", item.code)];
            names.extend(item.alias.iter().map(|a| format!("*{a}")));
            for name in names {
                if !commands.iter().any(|c: &Command| c.name == name) {
                    commands.push(Command {
                        name,
                        description: description.clone(),
                    });
                }
            }
            let mut meta = json!({
                "code": item.code,
                "alias": item.alias,
                "target": target,
            });
            if validates {
                meta["validates"] = json!(true);
            }
            menu_meta.push(meta);
        }
        menus.push((draft.id.clone(), commands, menu_meta));
    }
    for (draft, (_, mut commands, menu_meta)) in drafts.into_iter().zip(menus) {
        add_route_commands(&draft.id, &owners, &flows, &mut commands);
        // Agent text is BMAD text too: config variables filled in, the rest kept.
        let agent_vars = draft.vars(vars);
        let mut spec = bmad_agent(
            draft.id.clone(),
            if draft.source.ends_with("SKILL.md") {
                "bmad-skill"
            } else {
                "bmad-v6"
            },
            &draft.source,
            prompt_template(&draft.display, &draft.id),
        );
        spec.description = draft.description;
        spec.persona = draft.persona;
        spec.commands = commands;
        spec.tasks = draft.instructions;
        spec.data = draft.data;
        for resource in spec.tasks.iter_mut().chain(spec.data.iter_mut()) {
            resource.content = agent_vars.substitute(&resource.content);
        }
        spec.metadata = draft.metadata;
        spec.metadata
            .insert("module".to_string(), json!(draft.module));
        if !menu_meta.is_empty() {
            spec.metadata.insert("menu".to_string(), json!(menu_meta));
        }
        agents.insert(draft.id, spec);
    }
    // Flows nobody's menu names run as an agent of their own.
    for (name, flow) in &flows {
        if owners.contains_key(name) {
            continue;
        }
        let id = if agents.contains_key(name) {
            format!("{name}-runner")
        } else {
            name.clone()
        };
        let mut spec = bmad_agent(
            id.clone(),
            "bmad-v6-runner",
            &flow.spec.source,
            prompt_template(name, &id),
        );
        spec.description = flow.spec.description.clone();
        spec.metadata.insert("runs_flow".to_string(), json!(name));
        owners.insert(name.clone(), id.clone());
        let mut commands = Vec::new();
        add_route_commands(&id, &owners, &flows, &mut commands);
        spec.commands = commands;
        agents.insert(id, spec);
    }
    let mut out = ProjectParts::default();
    for (name, flow) in std::mem::take(&mut flows) {
        let mut spec = flow.spec;
        let owner = owners.get(&name).cloned().unwrap_or_default();
        for step in &mut spec.steps {
            step.agents = vec![owner.clone()];
        }
        spec.metadata.insert("owner".to_string(), json!(owner));
        let shims: BTreeMap<&String, &String> = aliases
            .iter()
            .filter(|(_, (target, _))| {
                names.resolve(target, CORE).as_deref() == Some(name.as_str())
            })
            .map(|(alias, (_, intent))| (alias, intent))
            .collect();
        if !shims.is_empty() {
            spec.metadata.insert("aliases".to_string(), json!(shims));
        }
        out.flows.insert(name, spec);
    }
    out.agents = agents;
    out
}

/// The route actions of every flow `agent` owns, as commands.
fn add_route_commands(
    agent: &str,
    owners: &BTreeMap<String, String>,
    flows: &BTreeMap<String, FlowDraft>,
    commands: &mut Vec<Command>,
) {
    let mut routes: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (name, flow) in flows {
        if owners.get(name).map(String::as_str) == Some(agent) {
            routes.extend(flow.actions.iter().map(|a| (a.as_str(), name.as_str())));
        }
    }
    for (action, flow) in routes {
        if !commands.iter().any(|c| c.name == action) {
            commands.push(Command {
                name: action.to_string(),
                description: format!("route of flow `{flow}`"),
            });
        }
    }
}

/// Every agent and flow id, for resolving names.
struct Names<'a> {
    ids: BTreeSet<String>,
    modules: Vec<String>,
    aliases: &'a BTreeMap<String, (String, String)>,
}

impl Names<'_> {
    /// The id `name` stands for, seen from `module`.
    fn resolve(&self, name: &str, module: &str) -> Option<String> {
        let name = name.trim();
        let mut forms = vec![name.to_string()];
        for m in &self.modules {
            if let Some(rest) = name.strip_prefix(&format!("bmad-{m}-")) {
                forms.push(format!("{m}/{rest}"));
            }
        }
        for prefix in ["bmad-agent-", "bmad-"] {
            if let Some(rest) = name.strip_prefix(prefix) {
                forms.push(rest.to_string());
            }
        }
        for form in &forms {
            for candidate in [
                form.clone(),
                format!("{module}/{form}"),
                format!("{CORE}/{form}"),
            ] {
                if self.ids.contains(&candidate) {
                    return Some(candidate);
                }
            }
        }
        if let Some((target, _)) = self.aliases.get(name)
            && target != name
            && !self.aliases.contains_key(target)
        {
            return self.resolve(target, module);
        }
        for form in &forms {
            let mut matching = self
                .ids
                .iter()
                .filter(|id| id.rsplit('/').next() == Some(form.as_str()));
            if let (Some(only), None) = (matching.next(), matching.next()) {
                return Some(only.clone());
            }
        }
        None
    }
}

/// Whether `path` is an agent's file: its `.agent.yaml`, or the `.md` an
/// install compiled from it.
fn names_agent_file(tree: &Tree<'_>, path: &str) -> bool {
    path.strip_suffix(".agent.yaml")
        .is_some_and(|stem| tree.files.is_file(path) || tree.files.is_file(&format!("{stem}.md")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_spec_order() {
        let aliases = BTreeMap::from([(
            "old-prd".to_string(),
            ("bmad-bmm-create-prd".to_string(), "edit".to_string()),
        )]);
        let names = Names {
            ids: [
                "bmm/create-prd",
                "core/help",
                "pm",
                "bmad-agent-dev",
                "x/only",
            ]
            .map(String::from)
            .into(),
            modules: vec!["bmm".into(), "core".into()],
            aliases: &aliases,
        };
        assert_eq!(
            names.resolve("create-prd", "bmm").as_deref(),
            Some("bmm/create-prd")
        );
        assert_eq!(
            names.resolve("bmad-bmm-create-prd", "core").as_deref(),
            Some("bmm/create-prd")
        );
        assert_eq!(names.resolve("help", "bmm").as_deref(), Some("core/help"));
        assert_eq!(names.resolve("bmad-agent-pm", "bmm").as_deref(), Some("pm"));
        assert_eq!(
            names.resolve("bmad-agent-dev", "bmm").as_deref(),
            Some("bmad-agent-dev")
        );
        assert_eq!(names.resolve("only", "bmm").as_deref(), Some("x/only"));
        assert_eq!(
            names.resolve("old-prd", "bmm").as_deref(),
            Some("bmm/create-prd")
        );
        assert_eq!(names.resolve("nope", "bmm"), None);
    }
}
