//! The BMAD-METHOD v4 importer: a real BMAD core directory (or an installed
//! project with `.bmad-core/` and expansion packs) read as agents and flows.
//!
//! BMAD v4 files were written for chat assistants, not for a compiler, and
//! the published packs are loose: YAML hidden in a Markdown fence, commands in
//! five shapes, workflow steps in four different places, dependency names with
//! or without extensions. This importer absorbs all of that. Its one rule:
//! anything it does not understand is a **warning** naming the file (and
//! kept as metadata where it can be), never a failed compile. The only error
//! is a duplicate agent id within one pack, which would make references
//! ambiguous.
//!
//! # Layout
//! - [`packs`]: finding the packs of a tree, qualifying ids, resolving references.
//! - [`agent`]: `agents/*.md` → an agent draft (fenced YAML, commands, persona, prompt).
//! - [`resources`]: dependency lookup (`tasks`, `templates`, `checklists`, `data`, `utils`).
//! - [`template`]: `*-tmpl.yaml` → the Markdown outline the agent fills.
//! - [`workflow`]: `workflows/*.yaml` → flows.
//! - [`team`]: `agent-teams/*.yaml` → checked, and recorded on the agents.
//!
//! # Decisions (also in docs/bmad-v4.md)
//! - **Qualified ids.** When one tree holds several packs, agents and flows of
//!   every pack except the core are named `<pack>/<id>`, where `<pack>` is the
//!   pack folder's name with leading dots removed (`.bmad-2d-phaser-game-dev`
//!   → `bmad-2d-phaser-game-dev/game-designer`). The core (`.bmad-core`,
//!   `bmad-core`, or the source root itself) keeps bare ids. A tree with one
//!   pack never qualifies. An unqualified reference resolves in its own pack
//!   first (by id, then by file stem), then in the core, then in the one
//!   other pack that has it.
//! - **Flow names.** A workflow file with one step list gives a flow named by
//!   the workflow id (or the file stem); with several lists each flow is
//!   `<id>.<key>` (`game-prototype.game_jam_sequence`, `<id>.<phase>`). The
//!   dot is outside SPEC 1.2's flow-name pattern on purpose: it cannot clash
//!   with a preprocessing flow name.
//! - **Steps.** Step ids are `step-<n>` (1-based) in list order; BMAD step
//!   names (`step: concept_definition`, `- project_setup_guidance: …`) go to
//!   metadata `step`. `max_visits` is 10.
//! - **Documents.** Names are kept as written (`prd.md`). A name that is not a
//!   valid document id (`prototype-stories/`) is reduced to one (warning, the
//!   original under `<field>_as_written`). Parenthesised qualifiers
//!   (`v0_prompt (optional)`) go to `<field>_qualifiers`. A `requires` or
//!   `updates` name is a document only when it looks like a file (has an
//!   extension) or an earlier step of the same flow creates it; otherwise
//!   (`all_artifacts_in_project`) it is a precondition kept in
//!   `<field>_other`, because no step would ever produce it.
//! - **Teams** are checked (unknown agents and workflows are warnings) and
//!   recorded as `teams` in each member agent's metadata; they create no flow.
//! - **Prompt template.** Built from variables only (`persona`, `commands`,
//!   `tasks`, `templates`, `checklists`, `docs`, `input`): resource text is
//!   never placed inside it, so `{{` in a task cannot be rendered. The agent
//!   file's Markdown outside the YAML block (activation boilerplate) is not
//!   imported. A section whose variable is empty is left out.
//! - **Project configuration.** An agent whose file or resources name
//!   `core-config.yaml` (tasks such as `create-next-story.md` load it and
//!   halt without it) gets the pack's `core-config.yaml` (or `.yml`; the
//!   pack's, else the core's) as a `data` resource, because the model reads
//!   no files.

pub mod agent;
pub mod packs;
pub mod resources;
pub mod team;
pub mod template;
pub mod v6;
pub mod workflow;

use crate::ProjectParts;
use crate::bundle::{AgentSpec, ErrorHandling, LlmOverride, MemoryScope, WaitFor};
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::{SourceSnapshot, join_rel};
use crate::yaml::{self, Node, Value};
use packs::{AgentIndex, Pack};
use resources::ResourceLoader;
use std::collections::{BTreeMap, BTreeSet};

/// True when the source directory read into `files` looks like a BMAD v4
/// tree: `agents/*.md` holding a fenced YAML block with an `agent:` map, or
/// an installed project with a `.bmad-core/` folder and/or expansion-pack
/// folders beside it. Deciding the layout reads no file a second time.
pub fn is_bmad_snapshot(files: &SourceSnapshot) -> bool {
    !packs::discover_in(files).is_empty()
}

/// Reads the whole BMAD tree from its snapshot into agents and flows: no
/// file is read from the disk a second time, and looking a dependency up
/// costs no system call. Every problem goes to `diags` with `file:line:col`
/// (paths relative to the source root, `/` separators); only duplicate
/// agent ids within one pack are errors.
pub fn read(files: &SourceSnapshot, diags: &mut Diagnostics) -> ProjectParts {
    let packs = packs::discover_in(files);
    let mut parts = ProjectParts::default();
    if packs.is_empty() {
        diags.warning(
            "bmad-empty",
            ".",
            Pos::new(1, 1),
            "no BMAD v4 pack found: expected agents/*.md with a ```yaml block holding an `agent:` map, or a .bmad-core/ folder",
        );
        return parts;
    }
    let multi = packs.len() > 1;
    let mut loader = ResourceLoader::new(files);
    let mut index = AgentIndex::new(&packs);

    for (pack_no, pack) in packs.iter().enumerate() {
        read_pack_agents(
            files,
            pack,
            pack_no,
            &packs,
            multi,
            &mut loader,
            &mut index,
            &mut parts,
            diags,
        );
    }
    for (pack_no, pack) in packs.iter().enumerate() {
        workflow::read_pack_workflows(files, pack, pack_no, multi, &index, &mut parts, diags);
    }
    for (pack_no, pack) in packs.iter().enumerate() {
        team::read_pack_teams(
            files, pack, pack_no, &packs, multi, &index, &mut parts, diags,
        );
    }
    parts
}

/// Reads `agents/*.md` of one pack into `parts.agents`.
#[allow(clippy::too_many_arguments)]
fn read_pack_agents(
    files: &SourceSnapshot,
    pack: &Pack,
    pack_no: usize,
    packs: &[Pack],
    multi: bool,
    loader: &mut ResourceLoader<'_>,
    index: &mut AgentIndex,
    parts: &mut ProjectParts,
    diags: &mut Diagnostics,
) {
    let agents_dir = join_rel(&pack.dir, "agents");
    let search_bases = packs::search_bases(files, pack, packs);
    // bare id → file that defined it first, for the duplicate-id error.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let skipped = "not a Markdown file: ignored (BMAD agents are agents/*.md)";
    for_each_file(
        files,
        &agents_dir,
        &[".md"],
        skipped,
        diags,
        |file, diags| {
            let Some(draft) = agent::parse_agent(file.text, &file.rel, diags) else {
                return;
            };
            let rel = file.rel;
            if let Some(first) = seen.get(&draft.id) {
                diags
                    .error(
                        "duplicate-agent-id",
                        &rel,
                        draft.id_pos,
                        format!(
                            "duplicate agent id `{}`: defined in {first} and in {rel}",
                            draft.id
                        ),
                    )
                    .hint = Some("give one of them another `agent.id`".to_string());
                return;
            }
            seen.insert(draft.id.clone(), rel.clone());
            let qualified = pack.qualify(&draft.id, multi);
            index.insert(pack_no, &draft.id, &file.stem, &qualified);
            let mut spec = build_agent(
                draft,
                qualified.clone(),
                &rel,
                pack,
                multi,
                &search_bases,
                loader,
                diags,
            );
            // The agent's activation steps and tasks load the project's
            // `core-config.yaml` (and halt without it), but the model reads
            // no files: it is inlined as data when the agent names it.
            let names_config = |text: &str| text.contains("core-config.y");
            let named = names_config(file.text)
                || (spec.tasks.iter())
                    .chain(&spec.checklists)
                    .chain(&spec.data)
                    .any(|r| names_config(&r.content));
            if named && let Some(config) = loader.core_config(&search_bases, diags) {
                spec.data.push(config);
            }
            parts.agents.insert(qualified, spec);
        },
    );
}

/// Turns a parsed agent into its [`AgentSpec`], looking up its dependencies.
#[allow(clippy::too_many_arguments)]
fn build_agent(
    draft: agent::AgentDraft,
    id: String,
    rel: &str,
    pack: &Pack,
    multi: bool,
    search_bases: &[String],
    loader: &mut ResourceLoader<'_>,
    diags: &mut Diagnostics,
) -> AgentSpec {
    let mut metadata = draft.metadata;
    if multi {
        metadata.insert(
            "pack".to_string(),
            serde_json::Value::String(pack.name.clone()),
        );
    }
    let prompt_template = agent::prompt_template(&draft.display_name, &id);
    let mut spec = bmad_agent(id, "bmad-v4", rel, prompt_template);
    spec.description = draft.description;
    spec.persona = draft.persona;
    spec.commands = draft.commands;
    spec.metadata = metadata;
    let mut taken: BTreeSet<(resources::DependencyKind, String)> = BTreeSet::new();
    for dep in &draft.dependencies {
        let Some(resource) = loader.resolve(dep, search_bases, rel, diags) else {
            continue;
        };
        if !taken.insert((dep.kind, resource.path.clone())) {
            continue;
        }
        let list = match dep.kind {
            resources::DependencyKind::Tasks => &mut spec.tasks,
            resources::DependencyKind::Templates => &mut spec.templates,
            resources::DependencyKind::Checklists => &mut spec.checklists,
            resources::DependencyKind::Data | resources::DependencyKind::Utils => &mut spec.data,
        };
        list.push(resource);
    }
    spec
}

/// A BMAD agent with every field at its default: one LLM call, isolated
/// memory, `stop` on failure; the readers fill in what their files say.
pub(crate) fn bmad_agent(
    id: String,
    format_version: &str,
    source: &str,
    prompt_template: String,
) -> AgentSpec {
    AgentSpec {
        id,
        format_version: format_version.to_string(),
        source: source.to_string(),
        description: String::new(),
        persona: None,
        tasks: Vec::new(),
        checklists: Vec::new(),
        templates: Vec::new(),
        data: Vec::new(),
        commands: Vec::new(),
        tools: Vec::new(),
        memory_scope: MemoryScope::Isolated,
        wait_for: WaitFor::default(),
        creates: Vec::new(),
        requires: Vec::new(),
        reads: Vec::new(),
        updates: Vec::new(),
        parallel: false,
        sequence: Vec::new(),
        timeout_s: None,
        retry_count: None,
        error_handling: ErrorHandling::Stop,
        llm: LlmOverride::default(),
        output_schema: None,
        prompt_template,
        metadata: BTreeMap::new(),
    }
}

/// The extensions of the YAML files of a pack (workflows, teams).
const YAML_FILES: &[&str] = &[".yaml", ".yml"];

/// One file of a pack folder, as text borrowed from the snapshot.
struct PackFile<'a> {
    /// The file name without the extension it was picked for.
    stem: String,
    /// Path relative to the source root (`/` separators).
    rel: String,
    text: &'a str,
}

/// Calls `each` with every file of the pack folder `dir` whose name ends
/// with one of `extensions` (any case), in name order. Any other file is
/// skipped with the warning `skipped` (hidden files silently), and a file
/// that cannot be read as UTF-8 text is skipped with a warning.
fn for_each_file(
    files: &SourceSnapshot,
    dir: &str,
    extensions: &[&str],
    skipped: &str,
    diags: &mut Diagnostics,
    mut each: impl FnMut(PackFile<'_>, &mut Diagnostics),
) {
    for name in files.list_files(dir) {
        let rel = join_rel(dir, &name);
        let lower = name.to_ascii_lowercase();
        let Some(ext) = extensions.iter().find(|ext| lower.ends_with(*ext)) else {
            if !name.starts_with('.') {
                diags.warning("bmad-skipped-file", &rel, Pos::new(1, 1), skipped);
            }
            continue;
        };
        match files.text(&rel) {
            Ok(text) => {
                let stem = name[..name.len() - ext.len()].to_string();
                each(PackFile { stem, rel, text }, diags);
            }
            Err(message) => {
                diags.warning("bmad-read", &rel, Pos::new(1, 1), message);
            }
        }
    }
}

/// Parses YAML leniently: problems the strict parser reports as errors
/// (syntax, duplicate keys) become warnings, because a BMAD file the
/// importer cannot read must never fail the compile.
pub(crate) fn parse_yaml_lenient(
    text: &str,
    file: &str,
    line_offset: u32,
    diags: &mut Diagnostics,
) -> Option<Node> {
    let mut scratch = Diagnostics::new();
    let node = yaml::parse(text, file, line_offset, &mut scratch);
    for d in scratch.iter() {
        diags
            .warning(d.code, &d.file, Pos::new(d.line, d.col), d.message.clone())
            .hint = d.hint.clone();
    }
    node
}

/// Flattens any YAML value to readable text: scalars as written, lists one
/// item per line, maps as `key: value` lines (nested values indented). Used
/// where BMAD puts prose in structured shapes (`- CRITICAL: do x` in a list
/// of principles is a one-key map to YAML).
pub(crate) fn node_text(node: &Node) -> String {
    match &node.value {
        Value::Null => String::new(),
        Value::Seq(items) => items
            .iter()
            .map(node_text)
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Map(entries) => entries
            .iter()
            .map(|(key, value)| {
                let inner = node_text(value);
                if inner.is_empty() {
                    key.name.clone()
                } else if matches!(value.value, Value::Seq(_) | Value::Map(_)) {
                    let indented: Vec<String> = inner.lines().map(|l| format!("  {l}")).collect();
                    format!("{}:\n{}", key.name, indented.join("\n"))
                } else {
                    format!("{}: {inner}", key.name)
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => node.scalar_text().unwrap_or_default(),
    }
}

/// True for names SPEC 1.1 accepts as ids: `^[A-Za-z][A-Za-z0-9_-]*$`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `raw` when it is a valid name, else [`sanitize_name`] of it with a
/// `bmad-invalid-id` warning at `pos` naming `what` it is ("agent id",
/// "skill name"…): an invalid id would compile, and fail every run later.
pub(crate) fn valid_name_or_repaired(
    raw: &str,
    what: &str,
    rel: &str,
    pos: Pos,
    diags: &mut Diagnostics,
) -> String {
    if is_valid_name(raw) {
        return raw.to_string();
    }
    let fixed = sanitize_name(raw);
    diags
        .warning(
            "bmad-invalid-id",
            rel,
            pos,
            format!("{what} `{raw}` is not a valid name: using `{fixed}`"),
        )
        .hint = Some("ids match ^[A-Za-z][A-Za-z0-9_-]*$".to_string());
    fixed
}

/// Makes `raw` a valid name: other characters become `-`, runs of `-` are
/// collapsed, and a name not starting with a letter gets `x-` in front.
/// Empty input gives `unnamed`.
pub(crate) fn sanitize_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.trim().chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "unnamed".to_string()
    } else if out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out
    } else {
        format!("x-{out}")
    }
}

#[cfg(test)]
mod tests;
