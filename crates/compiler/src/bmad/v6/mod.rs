//! The BMAD v6 and skills importer (SPEC 1.7): v6 module trees, skills
//! trees and installed projects read as agents and flows.
//!
//! Like the v4 importer beside it, it reads leniently: anything it does not
//! understand is a located warning, never a failed compile and never a
//! silent drop. The only errors are an agent id twice in a module and a
//! skill name twice in a tree.
//!
//! # Layout
//! - [`layout`]: which layout a tree holds (install, module tree, skills).
//! - [`config`]: `module.yaml` and the config layers → [`vars::Vars`] per module.
//! - [`vars`]: `{x}` / `{{x}}` substitution of BMAD text (not Jinja).
//! - [`paths`]: paths written in BMAD text → files of the tree.
//! - [`markdown`]: front matter read leniently (key by key when not YAML).
//! - [`customize`]: `customize.toml` merged with its override layers.
//! - [`agent`]: `*.agent.yaml` agents, menus, the v6 prompt template.
//! - [`compiled_agent`]: agents an install compiled (`agents/*.md` with an `<agent>` XML block).
//! - [`skill`]: `SKILL.md` skills, classified.
//! - [`render`]: BMAD's rendered skills, their Jinja templates rendered.
//! - [`steps`]: step-file workflows → chained steps with routes.
//! - [`workflow_yaml`]: `workflow.yaml` workflows → one-step flows.
//! - [`help`]: `module-help.csv` rows naming who runs a workflow.
//! - [`owner`]: who runs each flow, menu targets → commands, ids and aliases.
//! - [`team`]: `<module>/teams/*.yaml`, checked and recorded on the agents.
//! - [`resources`]: the other files of a flow's folder, and the files read by no one.
//! - [`agent_files`]: the files an agent's own text names, as its resources.
//!
//! # Decisions (also in docs/bmad-v6.md)
//! - Every step of a flow runs its owner agent; the step's own task text
//!   (runtime note, workflow body, step body) is the step's metadata
//!   `prompt`, verbatim.
//! - Route actions of a flow (`*alt`, `*skip-to`, …) are added to its
//!   owner's commands, because a run accepts only an agent's commands as
//!   actions.
//! - Flows that no agent's menu names run as a synthetic agent with the
//!   flow's id (format `bmad-v6-runner`), no persona.

pub mod agent;
pub mod agent_files;
pub mod compiled_agent;
pub mod config;
pub mod customize;
pub mod help;
pub mod layout;
pub mod markdown;
pub mod owner;
pub mod paths;
pub mod render;
pub mod resources;
pub mod skill;
pub mod steps;
pub mod team;
pub mod vars;
pub mod workflow_yaml;

use crate::ProjectParts;
use crate::bundle::{FlowSpec, StepSpec};
use crate::config::BmadConfig;
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::{SourceSnapshot, join_rel};
use layout::{Layout, file_name, is_workflow_file, parent};
use markdown::Markdown;
use paths::Tree;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use vars::Vars;

/// Loop guard of every imported flow (SPEC 1.2's default).
const MAX_VISITS: u32 = 10;

/// A flow being built: its spec (steps without agents yet) and what the
/// owner and resource passes need.
pub struct FlowDraft {
    pub spec: FlowSpec,
    /// The folder whose other files are the flow's resources.
    pub dir: String,
    /// Files that name this flow in a menu (`exec: …/workflow.md`, a SKILL.md).
    pub files: Vec<String>,
    /// Route actions its owner must accept.
    pub actions: BTreeSet<String>,
}

/// Reads the tree `files` holds (detected as `layout`) into agents and flows.
pub fn read(
    files: &SourceSnapshot,
    layout: &Layout,
    bmad: &BmadConfig,
    diags: &mut Diagnostics,
) -> ProjectParts {
    let modules = config::read_modules(files, &layout.modules, diags);
    let skill_modules =
        config::read_modules(files, &layout::other_module_dirs(files, layout), diags);
    let tree = Tree {
        files,
        install_dir: layout.install_dir,
        module_dirs: modules
            .iter()
            .map(|m| (m.code.clone(), m.dir.clone()))
            .collect(),
    };
    let manifests = config::skill_manifests(files, &layout.skills, diags);
    let manifest_modules = manifests
        .iter()
        .map(|(dir, code)| config::manifest_module(code, &join_rel(dir, config::SKILL_MANIFEST)));
    let all_modules: Vec<config::Module> = modules
        .iter()
        .chain(&skill_modules)
        .cloned()
        .chain(manifest_modules)
        .collect();
    let install_dir = layout.install_dir.unwrap_or(layout::INSTALL_DIR);
    let vars = config::module_vars(files, install_dir, &all_modules, bmad, diags);
    let core_vars = vars.get(config::CORE).cloned().unwrap_or_default();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut drafts: Vec<agent::AgentDraft> = Vec::new();
    let mut flows: BTreeMap<String, FlowDraft> = BTreeMap::new();

    for module in &modules {
        let module_vars = vars.get(&module.code).unwrap_or(&core_vars);
        read_module_agents(&tree, module, &mut drafts, &mut used, diags);
        read_module_workflows(&tree, module, module_vars, &mut flows, &mut used, diags);
    }
    check_rosters(&modules, &drafts, diags);
    // Rendered skills are read as BMAD's renderer makes them.
    let rendered = render::render_skills(&tree, &layout.skills, &manifests, &vars, diags);
    let rendered_files = (!rendered.is_empty()).then(|| files.with_texts(rendered));
    let files = rendered_files.as_ref().unwrap_or(files);
    let tree = Tree { files, ..tree };
    let skills = skill::read_skills(&tree, &layout.skills, &manifests, &vars, diags);
    // Every SKILL.md was read, the copies an install keeps once included.
    used.extend(layout.skills.iter().cloned());
    let mut aliases: BTreeMap<String, (String, String)> = BTreeMap::new();
    for s in skills {
        used.insert(s.rel.clone());
        let module_vars = vars.get(&s.module).unwrap_or(&core_vars);
        let meta = skill::skill_metadata(&s);
        match s.kind {
            skill::SkillKind::Agent(mut draft) => {
                draft.metadata.extend(meta);
                drafts.push(*draft);
            }
            skill::SkillKind::Shim(target) => {
                if let Some(target) = target {
                    aliases.insert(s.name.clone(), target);
                }
            }
            skill::SkillKind::Steps { rel, doc, first } => {
                used.insert(rel.clone());
                let mut vars = module_vars.clone();
                vars.set("skill-root", &s.dir);
                vars.set("skill-name", &s.name);
                vars.set("installed_path", &s.dir);
                // `{workflow.<key>}` in the workflow and its steps, as
                // BMAD's renderer fills them from the merged `[workflow]`.
                if let Some(workflow) = customize::merged(files, &s.dir, &s.name, "workflow", diags)
                {
                    skill::set_table_vars(&mut vars, "workflow", &workflow);
                }
                let vars = steps::front_matter_vars(&tree, &vars, &doc, &rel);
                let flow = step_flow(
                    &tree,
                    &s.name,
                    &rel,
                    &doc,
                    &vars,
                    first,
                    &s.description,
                    &mut used,
                    diags,
                );
                let place = FlowPlace {
                    dir: &s.dir,
                    files: vec![s.rel.clone(), s.dir.clone()],
                    metadata: meta,
                };
                insert_flow(&mut flows, flow, place, diags);
            }
            skill::SkillKind::Single { rel, text } => {
                used.insert(rel.clone());
                check_body(&tree, module_vars, &s.doc, &s.rel, diags);
                let flow = one_step_flow(&s.name, &s.description, &rel, text);
                let place = FlowPlace {
                    dir: &s.dir,
                    files: vec![s.rel.clone(), s.dir.clone()],
                    metadata: meta,
                };
                insert_flow(&mut flows, flow, place, diags);
            }
        }
    }
    for module in &modules {
        team::read_teams(files, module, &mut drafts, &flows, &mut used, diags);
    }
    let mut holders: BTreeMap<String, resources::Holder> = BTreeMap::new();
    for (name, flow) in &flows {
        holders
            .entry(flow.dir.clone())
            .or_insert_with(|| resources::Holder::Flow(name.clone()));
    }
    for draft in &drafts {
        // An agent file's sidecar folder, or an agent skill's own folder.
        let dir = match draft.source_stem() {
            Some(stem) => format!("{stem}-sidecar"),
            None => parent(&draft.source).to_string(),
        };
        holders
            .entry(dir)
            .or_insert_with(|| resources::Holder::Agent(draft.id.clone()));
    }
    let mut agent_resources =
        agent_files::collect(&tree, &vars, &drafts, &holders, &mut used, diags);
    for (holder, found) in resources::attach(&tree, layout, &holders, &mut used, diags) {
        match holder {
            resources::Holder::Flow(name) => {
                if let Some(flow) = flows.get_mut(&name) {
                    flow.spec
                        .metadata
                        .insert("resources".to_string(), json!(found));
                }
            }
            resources::Holder::Agent(id) => agent_resources.entry(id).or_default().extend(found),
        }
    }
    for draft in &mut drafts {
        if let Some(found) = agent_resources.remove(&draft.id) {
            draft.metadata.insert("resources".to_string(), json!(found));
        }
    }
    let help: Vec<help::HelpRow> = all_modules
        .iter()
        .flat_map(|m| help::read_help(files, &m.dir, &m.code, diags))
        .collect();
    let found = owner::Found {
        drafts,
        flows,
        aliases,
        help,
    };
    owner::assemble(&tree, &vars, found, diags)
}

/// `agents/**/*.agent.yaml` of one module, and the agents an install
/// compiled (`agents/**/<name>.md`, read when no `<name>.agent.yaml` sits
/// beside it); a duplicate id is an error.
fn read_module_agents(
    tree: &Tree<'_>,
    module: &config::Module,
    drafts: &mut Vec<agent::AgentDraft>,
    used: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
) {
    let prefix = format!("{}/agents/", module.dir.trim_end_matches('/'));
    let prefix = prefix.trim_start_matches('/');
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for rel in tree.files.paths().filter(|p| p.starts_with(prefix)) {
        let (stem, compiled) = match file_name(rel).strip_suffix(".agent.yaml") {
            Some(stem) => (stem, false),
            None => match file_name(rel).strip_suffix(".md") {
                Some(stem) => (stem, true),
                None => continue,
            },
        };
        let text = match tree.files.text(rel) {
            Ok(text) => text,
            Err(message) => {
                diags.warning("bmad-read", rel, Pos::new(1, 1), message);
                // Warned once: not again as a file no reader took.
                used.insert(rel.to_string());
                continue;
            }
        };
        if compiled && !compiled_agent::is_compiled_agent(text) {
            continue;
        }
        used.insert(rel.to_string());
        // The install's copy of a source agent, which is read from its YAML.
        if compiled
            && tree
                .files
                .is_file(&format!("{}/{stem}.agent.yaml", parent(rel)))
        {
            continue;
        }
        let stem = crate::bmad::valid_name_or_repaired(
            stem,
            "agent id (the file name)",
            rel,
            Pos::new(1, 1),
            diags,
        );
        let id = format!("{}/{stem}", module.code);
        let draft = if compiled {
            compiled_agent::read_compiled_agent(text, rel, id.clone(), &module.code, diags)
        } else {
            agent::read_agent_yaml(text, rel, id.clone(), &module.code, diags)
        };
        let Some(draft) = draft else {
            continue;
        };
        if let Some(first) = seen.get(&id) {
            diags.error(
                "duplicate-agent-id",
                rel,
                draft.pos,
                format!(
                    "agent id `{id}` twice in module `{}`: in {first} and in {rel}",
                    module.code
                ),
            );
            continue;
        }
        seen.insert(id, rel.to_string());
        drafts.push(draft);
    }
}

/// `module.yaml` `agents:` rosters: an entry naming no agent of the module
/// warns (the roster only fills gaps; agent files are the source).
fn check_rosters(
    modules: &[config::Module],
    drafts: &[agent::AgentDraft],
    diags: &mut Diagnostics,
) {
    for module in modules {
        for name in &module.roster {
            let short = name.trim_end_matches(".agent.yaml");
            let known = drafts
                .iter()
                .any(|d| d.module == module.code && d.id.rsplit('/').next() == Some(short));
            if !known {
                diags.warning(
                    "bmad-unknown-agent",
                    &module.file,
                    Pos::new(1, 1),
                    format!("the `agents` roster names `{name}`, which has no agent file in module `{}`", module.code),
                );
            }
        }
    }
}

/// `workflows/**/workflow*.{md,yaml}` and `tasks/*` of one module.
fn read_module_workflows(
    tree: &Tree<'_>,
    module: &config::Module,
    module_vars: &Vars,
    flows: &mut BTreeMap<String, FlowDraft>,
    used: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
) {
    let base = if module.dir.is_empty() {
        String::new()
    } else {
        format!("{}/", module.dir)
    };
    let mut rels: Vec<&str> = tree
        .files
        .paths()
        .filter(|p| p.starts_with(&base))
        .collect();
    // Workflows first: where a task and a workflow share an id (a 6.0 alpha
    // kept `tasks/retrospective.xml` beside `workflows/…/retrospective/`),
    // the workflow, which menus name, is the flow.
    rels.sort_by_key(|rel| parent(&rel[base.len()..]) == "tasks");
    for rel in rels {
        let local = &rel[base.len()..];
        let name = file_name(rel);
        let in_workflows = local.starts_with("workflows/") && is_workflow_file(name);
        let task = parent(local) == "tasks" && (name.ends_with(".xml") || name.ends_with(".md"));
        if !in_workflows && !task {
            continue;
        }
        used.insert(rel.to_string());
        if task && name == "workflow.xml" {
            // The engine contract bmad2pf implements itself (SPEC 1.7).
            continue;
        }
        let text = match tree.files.text(rel) {
            Ok(text) => text,
            Err(message) => {
                diags.warning("bmad-read", rel, Pos::new(1, 1), message);
                continue;
            }
        };
        let dir = parent(rel).to_string();
        let mut vars = module_vars.clone();
        vars.set("installed_path", &dir);
        let meta = || BTreeMap::from([("module".to_string(), json!(module.code))]);
        if name.ends_with(".yaml") {
            let Some(w) = workflow_yaml::read(tree, rel, text, module_vars, diags) else {
                continue;
            };
            used.extend(w.used.iter().cloned());
            let id = format!("{}/{}", module.code, w.name);
            let mut metadata = w.metadata;
            metadata.insert("kind".to_string(), json!("workflow-yaml"));
            metadata.insert("main_document".to_string(), json!(w.main_document));
            let flow = flow_spec(&id, &w.description, rel, vec![w.step], metadata);
            let place = FlowPlace {
                dir: &dir,
                files: vec![rel.to_string(), dir.clone()],
                metadata: meta(),
            };
            insert_flow(flows, flow, place, diags);
            continue;
        }
        let doc = markdown::read(text, rel, diags);
        let stem = name.trim_end_matches(".md").trim_end_matches(".xml");
        let default_name = match stem.strip_prefix("workflow-") {
            Some(n) => n.to_string(),
            None if task => stem.to_string(),
            None => file_name(&dir).to_string(),
        };
        let flow_name = if task {
            default_name
        } else {
            doc.field("name")
                .map_or(default_name, |n| crate::bmad::sanitize_name(&n))
        };
        let id = format!("{}/{flow_name}", module.code);
        let description = doc.field("description").unwrap_or_default();
        let vars = steps::front_matter_vars(tree, &vars, &doc, rel);
        let flow = match steps::first_named_step(tree, &doc, rel, &vars) {
            Some(first) if !task => step_flow(
                tree,
                &id,
                rel,
                &doc,
                &vars,
                first,
                &description,
                used,
                diags,
            ),
            _ => {
                check_body(tree, &vars, &doc, rel, diags);
                one_step_flow(&id, &description, rel, vars.substitute(doc.body.trim()))
            }
        };
        // A task's folder is every task's: the task is named by its file only.
        let files = if task {
            vec![rel.to_string()]
        } else {
            vec![rel.to_string(), dir.clone()]
        };
        let place = FlowPlace {
            dir: &dir,
            files,
            metadata: meta(),
        };
        insert_flow(flows, flow, place, diags);
    }
}

/// Adds a flow; a second flow of the same id is a warning and is dropped.
fn insert_flow(
    flows: &mut BTreeMap<String, FlowDraft>,
    mut spec: FlowSpec,
    place: FlowPlace<'_>,
    diags: &mut Diagnostics,
) {
    if let Some(first) = flows.get(&spec.name) {
        diags.warning(
            "bmad-duplicate-flow",
            &spec.source,
            Pos::new(1, 1),
            format!(
                "flow `{}` is also defined by {}: this one is ignored",
                spec.name, first.spec.source
            ),
        );
        return;
    }
    let actions = spec
        .steps
        .iter()
        .flat_map(|s| s.next.keys())
        .filter(|a| a.starts_with('*'))
        .cloned()
        .collect();
    spec.metadata.extend(place.metadata);
    flows.insert(
        spec.name.clone(),
        FlowDraft {
            spec,
            dir: place.dir.to_string(),
            files: place.files,
            actions,
        },
    );
}

/// Where a flow comes from: its folder, the files that name it, and
/// metadata of its source kind (its module among them).
struct FlowPlace<'a> {
    dir: &'a str,
    files: Vec<String>,
    metadata: BTreeMap<String, serde_json::Value>,
}

/// A step-file flow; a flow whose steps cannot be found is one step of the
/// workflow body.
#[allow(clippy::too_many_arguments)]
fn step_flow(
    tree: &Tree<'_>,
    id: &str,
    rel: &str,
    doc: &Markdown,
    vars: &Vars,
    first: (String, Pos),
    description: &str,
    used: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
) -> FlowSpec {
    check_body(tree, vars, doc, rel, diags);
    let input = steps::StepFlow {
        id,
        rel,
        doc,
        vars,
        first,
    };
    let Some(built) = steps::build(tree, &input, diags) else {
        return one_step_flow(id, description, rel, vars.substitute(doc.body.trim()));
    };
    used.extend(built.used.iter().cloned());
    let mut metadata = BTreeMap::from([
        ("kind".to_string(), json!("step-file")),
        ("main_document".to_string(), json!(built.main_document)),
        ("step_folder".to_string(), json!(built.folder)),
    ]);
    let handoffs: Vec<String> = ["editWorkflow", "validateWorkflow"]
        .iter()
        .filter_map(|k| doc.field(k))
        .map(|v| tree.resolve(&v, parent(rel), vars))
        .filter(|p| parent(p) != built.folder)
        .collect();
    if !handoffs.is_empty() {
        metadata.insert("suggests".to_string(), json!(handoffs));
    }
    flow_spec(id, description, rel, built.steps, metadata)
}

/// A flow of imported steps, with the importer's loop guard.
fn flow_spec(
    id: &str,
    description: &str,
    rel: &str,
    steps: Vec<StepSpec>,
    metadata: BTreeMap<String, serde_json::Value>,
) -> FlowSpec {
    FlowSpec {
        name: id.to_string(),
        description: description.to_string(),
        source: rel.to_string(),
        steps,
        max_visits: MAX_VISITS,
        metadata,
    }
}

/// A flow of one step whose task is `text` (a task, a single-file skill, a
/// workflow whose steps are missing).
fn one_step_flow(id: &str, description: &str, rel: &str, text: String) -> FlowSpec {
    let step_id = crate::bmad::sanitize_name(id.rsplit('/').next().unwrap_or(id));
    let document = step_id.clone();
    let waits = steps::waits(&text);
    let mut step_meta = BTreeMap::from([
        ("source".to_string(), json!(rel)),
        (
            "prompt".to_string(),
            json!(format!("{}\n\n{text}", steps::RUNTIME_NOTE)),
        ),
    ]);
    if !waits.is_empty() {
        step_meta.insert("waits".to_string(), json!(waits));
    }
    let step = StepSpec {
        id: step_id,
        agents: Vec::new(),
        next: BTreeMap::new(),
        creates: vec![document.clone()],
        requires: Vec::new(),
        updates: Vec::new(),
        gate: None,
        metadata: step_meta,
    };
    let metadata = BTreeMap::from([
        ("kind".to_string(), json!("one-step")),
        ("main_document".to_string(), json!(document)),
    ]);
    flow_spec(id, description, rel, vec![step], metadata)
}

/// Checks a workflow or skill body: install paths naming no file, and a
/// `{x}` near a known variable name (a typo more often than not).
fn check_body(tree: &Tree<'_>, vars: &Vars, doc: &Markdown, rel: &str, diags: &mut Diagnostics) {
    tree.check_install_paths(&doc.body, rel, doc.body_line, vars, diags);
    for (line, written, known) in vars.near_misses(&doc.body) {
        diags
            .warning(
                "bmad-variable",
                rel,
                Pos::new(doc.body_line + line - 1, 1),
                format!("unknown variable `{{{written}}}`: left for the model"),
            )
            .hint = Some(format!("did you mean `{{{known}}}`?"));
    }
}

#[cfg(test)]
mod props;
