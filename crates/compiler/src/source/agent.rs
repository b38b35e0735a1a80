//! One `agents/<name>.md` file → one [`AgentSpec`].
//!
//! The file is `---` fenced YAML front matter, then the Markdown prompt
//! body. Every field of SPEC 1.1 is read here with its type, default and
//! rule; see the [module docs](super) for the decisions the spec leaves open
//! (2.0-only fields, persona files, output schema files, sequence fields).
//! Checks that need the whole project (duplicate ids, `wait_for.agents`
//! naming a real agent, dependency cycles) happen in [`super`] and
//! [`super::workflow`], using the [`DepRef`] positions recorded here.

use super::fields::{FieldReader, is_doc_name, is_name, is_resource_name};
use super::mcp::{self, ToolReference};
use super::template::{PROMPT_VARIABLES, check_template, convert_legacy};
use crate::bundle::{
    AgentSpec, BUILTIN_TOOLS, Command, ErrorHandling, LlmOverride, MemoryScope, Persona, Resource,
    SequenceAction, SequenceStep, ToolKind, ToolSpec, WaitFor,
};
use crate::config::ProviderKind;
use crate::diag::{Diagnostics, Pos, did_you_mean};
use crate::sourcefs::SourceSnapshot;
use crate::yaml::{self, Key, Node, Value, check_keys};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Front matter keys of format 1.0.
pub const V1_FIELDS: [&str; 10] = [
    "id",
    "description",
    "persona",
    "tasks",
    "checklists",
    "templates",
    "commands",
    "creates",
    "requires",
    "format_version",
];

/// Keys whose presence makes a file format 2.0.
pub const V2_ONLY_FIELDS: [&str; 12] = [
    "tools",
    "memory_scope",
    "wait_for",
    "reads",
    "updates",
    "parallel",
    "sequence",
    "timeout",
    "retry_count",
    "error_handling",
    "llm",
    "output_schema",
];

/// Persona map keys.
const PERSONA_FIELDS: [&str; 5] = ["role", "style", "identity", "focus", "core_principles"];
const SEQUENCE_FIELDS: [&str; 7] = [
    "step",
    "action",
    "condition",
    "template",
    "tool",
    "document",
    "checklist",
];
const SEQUENCE_ACTIONS: [&str; 5] = [
    "llm_call",
    "create_document",
    "update_document",
    "tool_call",
    "checklist",
];
/// Extra variable sequence step templates and conditions may read: the
/// outputs of the agent's earlier steps, step name → text.
pub const SEQUENCE_VARIABLE: &str = "steps";
/// Above this many characters a string persona gets a warning: long
/// personas belong in `personas/`.
pub const PERSONA_WARN_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 500;

/// How one agent depends on others, with where the source says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepKind {
    /// `wait_for.agents`: the named agent must be done first.
    Agent,
    /// `requires` or `wait_for.docs`: whoever creates the document goes first.
    Doc,
}

/// One dependency reference, kept for cross-agent checks and cycle reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepRef {
    pub kind: DepKind,
    pub name: String,
    pub pos: Pos,
}

/// An agent file read on its own, before project-wide checks.
#[derive(Debug, Clone)]
pub struct ParsedAgent {
    pub spec: AgentSpec,
    /// Where the id was written (the `id` value, or the start of the file
    /// when the id comes from the file name).
    pub id_pos: Pos,
    pub deps: Vec<DepRef>,
    /// The prompt preview ([`crate::prompt::preview`]), rendered right
    /// after the template check from the same parse, when the context asks
    /// for previews and the template parses.
    pub preview: Option<Result<String, String>>,
}

/// What reading an agent needs from the rest of the project, plus caches
/// shared by the agent files one thread reads (each thread has its own).
pub struct AgentContext<'a> {
    files: &'a SourceSnapshot,
    tools: &'a BTreeMap<String, ToolSpec>,
    env: minijinja::Environment<'static>,
    /// Resource path → content, so a task used by 500 agents is read once.
    resources: HashMap<String, Result<String, String>>,
    /// Render each agent's prompt preview while its template is parsed.
    previews: bool,
}

impl<'a> AgentContext<'a> {
    /// `files` is the source directory (resources are looked up in it);
    /// `tools` are the tools.yaml declarations.
    pub fn new(files: &'a SourceSnapshot, tools: &'a BTreeMap<String, ToolSpec>) -> Self {
        Self {
            files,
            tools,
            env: crate::prompt::environment(),
            resources: HashMap::new(),
            previews: false,
        }
    }

    /// Also renders every agent's prompt preview ([`ParsedAgent::preview`]).
    pub fn with_previews(mut self) -> Self {
        self.previews = true;
        self
    }

    fn read_resource(&mut self, rel: &str) -> Result<String, String> {
        let files = self.files;
        self.resources
            .entry(rel.to_string())
            .or_insert_with(|| files.text(rel).map(str::to_string))
            .clone()
    }

    /// Why `name` cannot be used as a tool, if it cannot: the error code,
    /// the message, and a close name when there is one. `single`: a
    /// `tool_call` step, which calls one tool, so an MCP server's tool must
    /// be named (`server.tool`) rather than the whole server.
    fn tool_problem(&self, name: &str, single: bool) -> Option<ToolProblem> {
        if BUILTIN_TOOLS.contains(&name) {
            return None;
        }
        let problem = |message: String, hint: Option<String>| {
            Some(ToolProblem {
                code: "bad-tool",
                message,
                hint,
            })
        };
        match mcp::reference(self.tools, name) {
            ToolReference::Declared
                if single
                    && self
                        .tools
                        .get(name)
                        .is_some_and(|t| t.kind == ToolKind::Mcp) =>
            {
                problem(
                    format!("`{name}` is an MCP server; a `tool_call` step calls one of its tools"),
                    Some(format!("write `{name}.<tool>`")),
                )
            }
            ToolReference::Declared | ToolReference::ServerTool => None,
            ToolReference::Bad(message) => problem(message, None),
            ToolReference::Unknown => Some(ToolProblem {
                code: "unknown-tool",
                message: format!("unknown tool `{name}`"),
                hint: did_you_mean(name, self.tool_names()).map(|c| format!("did you mean `{c}`?")),
            }),
        }
    }

    fn tool_names(&self) -> impl Iterator<Item = &str> {
        BUILTIN_TOOLS
            .iter()
            .copied()
            .chain(self.tools.keys().map(String::as_str))
    }
}

/// A name that cannot be used as a tool ([`AgentContext::tool_problem`]).
struct ToolProblem {
    code: &'static str,
    message: String,
    hint: Option<String>,
}

/// The two parts of a Markdown file with `---` front matter (an agent file
/// here; BMAD v6 step files and skills too).
pub(crate) struct Parts<'t> {
    pub(crate) front_matter: &'t str,
    /// Lines before the front matter text (the opening fence), for positions.
    pub(crate) front_matter_offset: u32,
    pub(crate) body: &'t str,
    /// Line of the file where the body starts.
    pub(crate) body_line: u32,
}

/// Splits `---` front matter from the body (`\n` line ends expected).
pub(crate) fn split_front_matter(text: &str) -> Result<Parts<'_>, &'static str> {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "---" {
        return Err("an agent file must start with `---` front matter");
    }
    let start = first.len();
    let mut offset = start;
    let mut line_no: u32 = 1;
    for line in lines {
        line_no += 1;
        if line.trim_end() == "---" {
            return Ok(Parts {
                front_matter: &text[start..offset],
                front_matter_offset: 1,
                body: &text[offset + line.len()..],
                body_line: line_no + 1,
            });
        }
        offset += line.len();
    }
    Err("the front matter is not closed by a `---` line")
}

/// Reads one agent file. `file` is its path relative to the source
/// directory (`agents/pm.md`); the default id is its file stem. Returns
/// `None` only when nothing usable could be read (no front matter, invalid
/// YAML); every problem is in `diags`.
pub fn parse_agent(
    ctx: &mut AgentContext<'_>,
    file: &str,
    text: &str,
    diags: &mut Diagnostics,
) -> Option<ParsedAgent> {
    let normalized;
    let text = if text.contains('\r') {
        normalized = text.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        text
    };
    let parts = match split_front_matter(text) {
        Ok(parts) => parts,
        Err(message) => {
            diags
                .error("front-matter", file, Pos::new(1, 1), message)
                .hint = Some("write `---`, the YAML fields (id: …), `---`, then the prompt".into());
            return None;
        }
    };
    let node = yaml::parse(parts.front_matter, file, parts.front_matter_offset, diags)?;
    let empty = Vec::new();
    let entries: &[(Key, Node)] = match &node.value {
        Value::Map(entries) => entries,
        Value::Null => &empty,
        _ => {
            FieldReader::new(file, diags).wrong_type(&node, "front matter", "a map of fields");
            return None;
        }
    };
    let known: Vec<&str> = V1_FIELDS.iter().chain(&V2_ONLY_FIELDS).copied().collect();
    check_keys(entries, &known, "agent front matter", file, diags);
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(file);
    let mut reader = AgentReader {
        ctx,
        r: FieldReader::new(file, diags),
        file,
        deps: Vec::new(),
    };
    Some(reader.read(entries, stem, &parts))
}

struct AgentReader<'c, 'a, 'd> {
    ctx: &'c mut AgentContext<'a>,
    r: FieldReader<'d>,
    file: &'d str,
    deps: Vec<DepRef>,
}

impl AgentReader<'_, '_, '_> {
    fn read(&mut self, entries: &[(Key, Node)], stem: &str, parts: &Parts<'_>) -> ParsedAgent {
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
        let (id, id_pos) = self.id(get("id"), stem);
        let format_version = self.format_version(entries, get("format_version"));
        let description = get("description")
            .and_then(|n| self.description(n))
            .unwrap_or_default();
        let persona = get("persona").and_then(|n| self.persona(n));
        let tasks = self.resources(get("tasks"), "tasks", "task");
        let checklists = self.resources(get("checklists"), "checklists", "checklist");
        let templates = self.resources(get("templates"), "templates", "template");
        let commands = get("commands")
            .map(|n| self.commands(n))
            .unwrap_or_default();
        let tools = get("tools").map(|n| self.tools(n)).unwrap_or_default();
        let memory_scope = get("memory_scope")
            .and_then(|n| self.memory_scope(n))
            .unwrap_or(MemoryScope::Isolated);
        let wait_for = get("wait_for")
            .map(|n| self.wait_for(n))
            .unwrap_or_default();
        let creates = self.doc_list(get("creates"), "creates");
        let requires = self.doc_list(get("requires"), "requires");
        for (name, pos) in &requires {
            self.deps.push(DepRef {
                kind: DepKind::Doc,
                name: name.clone(),
                pos: *pos,
            });
        }
        let reads = self.doc_list(get("reads"), "reads");
        let updates = self.doc_list(get("updates"), "updates");
        let parallel = get("parallel")
            .and_then(|n| self.r.boolean(n, "parallel"))
            .unwrap_or(false);
        let timeout_s = get("timeout")
            .and_then(|n| self.r.integer(n, "timeout", 1, 86_400))
            .map(|t| t as u64);
        let retry_count = get("retry_count")
            .and_then(|n| self.r.integer(n, "retry_count", 0, 100))
            .map(|t| t as u32);
        let error_handling = get("error_handling")
            .and_then(|n| self.error_handling(n))
            .unwrap_or(ErrorHandling::Stop);
        let llm = get("llm").map(|n| self.llm(n)).unwrap_or_default();
        let output_schema = get("output_schema").and_then(|n| self.output_schema(n));
        let prompt_template = self.body(parts);
        let sequence = get("sequence")
            .map(|n| self.sequence(n, &checklists))
            .unwrap_or_default();
        let spec = AgentSpec {
            id,
            format_version,
            source: self.file.to_string(),
            description,
            persona,
            tasks,
            checklists,
            templates,
            data: Vec::new(),
            commands,
            tools,
            memory_scope,
            wait_for,
            creates: names(creates),
            requires: names(requires),
            reads: names(reads),
            updates: names(updates),
            parallel,
            sequence,
            timeout_s,
            retry_count,
            error_handling,
            llm,
            output_schema,
            prompt_template,
            metadata: BTreeMap::new(),
        };
        let preview = self.check_prompt(&spec, parts.body_line);
        ParsedAgent {
            spec,
            id_pos,
            deps: std::mem::take(&mut self.deps),
            preview,
        }
    }

    fn id(&mut self, node: Option<&Node>, stem: &str) -> (String, Pos) {
        let (id, pos) = match node {
            Some(node) => match self.r.string(node, "id") {
                Some(id) => (id, node.pos),
                None => (stem.to_string(), node.pos),
            },
            None => (stem.to_string(), Pos::new(1, 1)),
        };
        if !is_name(&id) {
            let diag = self.r.diags.error(
                "bad-id",
                self.file,
                pos,
                format!("agent id `{id}` must match ^[A-Za-z][A-Za-z0-9_-]*$"),
            );
            if node.is_none() {
                diag.hint =
                    Some("the id defaults to the file name; set `id:` or rename the file".into());
            }
        }
        (id, pos)
    }

    fn format_version(&mut self, entries: &[(Key, Node)], stated: Option<&Node>) -> String {
        let first_v2 = entries
            .iter()
            .find(|(k, _)| V2_ONLY_FIELDS.contains(&k.name.as_str()))
            .map(|(k, _)| k);
        let detected = if first_v2.is_some() { "2.0" } else { "1.0" };
        let Some(node) = stated else {
            return detected.to_string();
        };
        let stated = match &node.value {
            Value::Str(s) if s == "1" || s == "1.0" => "1.0",
            Value::Str(s) if s == "2" || s == "2.0" => "2.0",
            Value::Int(1) => "1.0",
            Value::Int(2) => "2.0",
            Value::Float(f) if *f == 1.0 => "1.0",
            Value::Float(f) if *f == 2.0 => "2.0",
            _ => {
                self.r.bad_value(
                    node.pos,
                    format!(
                        "`format_version` must be 1.0 or 2.0, found {}",
                        node.scalar_text()
                            .unwrap_or_else(|| node.type_name().into())
                    ),
                );
                return detected.to_string();
            }
        };
        if let (Some(key), "1.0") = (first_v2, stated) {
            self.r
                .diags
                .error(
                    "format-version",
                    self.file,
                    node.pos,
                    format!(
                        "`format_version: 1.0` but `{}` (line {}) is a 2.0 field",
                        key.name, key.pos.line
                    ),
                )
                .hint = Some("set `format_version: 2.0` or remove it".into());
        }
        stated.to_string()
    }

    fn description(&mut self, node: &Node) -> Option<String> {
        let text = self.r.string(node, "description")?;
        let chars = text.chars().count();
        if chars > DESCRIPTION_MAX_CHARS {
            self.r
                .diags
                .error(
                    "too-long",
                    self.file,
                    node.pos,
                    format!("`description` has {chars} characters, at most {DESCRIPTION_MAX_CHARS} are allowed"),
                )
                .hint = Some("move the detail into the prompt body or the persona".into());
        }
        Some(text)
    }

    /// A persona string, a personas/ file name, or a persona map.
    fn persona(&mut self, node: &Node) -> Option<Persona> {
        match &node.value {
            Value::Str(text) => self.persona_string(text, node.pos),
            Value::Map(entries) => Some(persona_map(&mut self.r, entries)),
            Value::Null => None,
            _ => {
                self.r
                    .wrong_type(node, "persona", "a string, a personas/ file name or a map");
                None
            }
        }
    }

    fn persona_string(&mut self, text: &str, pos: Pos) -> Option<Persona> {
        const EXTS: [&str; 4] = [".md", ".yaml", ".yml", ".txt"];
        let single_word = !text.trim().is_empty() && !text.trim().contains(char::is_whitespace);
        if single_word && is_resource_name(text.trim()) {
            let name = text.trim();
            match self.ctx.files.find_resource(&["personas"], name, &EXTS) {
                Ok(path) => return self.persona_file(&path, pos),
                Err(tried) if EXTS.iter().any(|e| name.ends_with(e)) => {
                    self.missing_resource(pos, "persona file", name, &tried);
                    return None;
                }
                Err(_) => {}
            }
        }
        let chars = text.chars().count();
        if chars > PERSONA_WARN_CHARS {
            self.r
                .diags
                .warning(
                    "long-persona",
                    self.file,
                    pos,
                    format!("persona string has {chars} characters (more than {PERSONA_WARN_CHARS})"),
                )
                .hint = Some("use a persona map (role, style, identity, focus, core_principles) or a file in personas/".into());
        }
        Some(Persona {
            text: Some(text.to_string()),
            ..Persona::default()
        })
    }

    /// A personas/ file: YAML files hold a persona map, others free text.
    fn persona_file(&mut self, path: &str, pos: Pos) -> Option<Persona> {
        let text = match self.ctx.read_resource(path) {
            Ok(text) => text,
            Err(message) => {
                self.r.diags.error("io-error", self.file, pos, message);
                return None;
            }
        };
        if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
            return Some(Persona {
                text: Some(text),
                ..Persona::default()
            });
        }
        let node = yaml::parse(&text, path, 0, self.r.diags)?;
        match &node.value {
            Value::Map(entries) => Some(persona_map(
                &mut FieldReader::new(path, self.r.diags),
                entries,
            )),
            _ => {
                FieldReader::new(path, self.r.diags).wrong_type(&node, "persona file", "a map");
                None
            }
        }
    }

    /// `tasks` / `checklists` / `templates`: names resolved in their folder, inlined.
    fn resources(&mut self, node: Option<&Node>, dir: &str, what: &str) -> Vec<Resource> {
        let Some(node) = node else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, pos) in self.r.string_list(node, dir) {
            if !is_resource_name(&name) {
                self.r.bad_value(
                    pos,
                    format!("{what} name `{name}` must be a file name inside {dir}/"),
                );
                continue;
            }
            match self
                .ctx
                .files
                .find_resource(&[dir], &name, &[".md", ".yaml"])
            {
                Ok(path) => match self.ctx.read_resource(&path) {
                    Ok(content) => out.push(Resource {
                        name,
                        path,
                        content,
                    }),
                    Err(message) => {
                        self.r.diags.error("io-error", self.file, pos, message);
                    }
                },
                Err(tried) => self.missing_resource(pos, what, &name, &tried),
            }
        }
        out
    }

    fn missing_resource(&mut self, pos: Pos, what: &str, name: &str, tried: &[String]) {
        let dirs: Vec<&str> = tried
            .iter()
            .filter_map(|t| t.rsplit_once('/').map(|(d, _)| d))
            .fold(Vec::new(), |mut acc, d| {
                if !acc.contains(&d) {
                    acc.push(d);
                }
                acc
            });
        self.r
            .diags
            .error(
                "missing-resource",
                self.file,
                pos,
                format!("{what} `{name}` not found in {}/", dirs.join("/, ")),
            )
            .hint = Some(format!("looked for {}", tried.join(", ")));
    }

    /// `[*name, …]`, `[{*name: description}, …]` or `{*name: description}`.
    fn commands(&mut self, node: &Node) -> Vec<Command> {
        let mut raw: Vec<(String, Pos, String)> = Vec::new();
        match &node.value {
            Value::Null => {}
            Value::Seq(items) => {
                for item in items {
                    match &item.value {
                        Value::Str(name) => raw.push((name.clone(), item.pos, String::new())),
                        Value::Map(entries) if entries.len() == 1 => {
                            let (key, value) = &entries[0];
                            let desc = self.command_description(value, &key.name);
                            raw.push((key.name.clone(), key.pos, desc));
                        }
                        _ => {
                            self.r.wrong_type(
                                item,
                                "commands[]",
                                "a command name (`*name`) or a one-key map `*name: description`",
                            );
                        }
                    }
                }
            }
            Value::Map(entries) => {
                for (key, value) in entries {
                    let desc = self.command_description(value, &key.name);
                    raw.push((key.name.clone(), key.pos, desc));
                }
            }
            _ => {
                self.r.wrong_type(
                    node,
                    "commands",
                    "a list of `*name` or a map `*name: description`",
                );
            }
        }
        let mut out: Vec<Command> = Vec::with_capacity(raw.len());
        for (name, pos, description) in raw {
            if !name.strip_prefix('*').is_some_and(is_name) {
                let diag = self.r.diags.error(
                    "bad-command",
                    self.file,
                    pos,
                    format!("command `{name}` must match ^\\*[A-Za-z][A-Za-z0-9_-]*$"),
                );
                if is_name(&name) {
                    diag.hint = Some(format!(
                        "commands start with a star: `*{name}` (quote it in YAML: \"*{name}\")"
                    ));
                }
                continue;
            }
            if out.iter().any(|c| c.name == name) {
                self.r.diags.error(
                    "duplicate-command",
                    self.file,
                    pos,
                    format!("command `{name}` is listed twice"),
                );
                continue;
            }
            out.push(Command { name, description });
        }
        out
    }

    fn command_description(&mut self, node: &Node, name: &str) -> String {
        self.r
            .optional_string(node, &format!("commands.{name}"))
            .unwrap_or_default()
    }

    fn tools(&mut self, node: &Node) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (name, pos) in self.r.string_list(node, "tools") {
            if let Some(problem) = self.ctx.tool_problem(&name, false) {
                let hint = problem.hint.or_else(|| {
                    (problem.code == "unknown-tool").then(|| {
                        format!(
                            "builtin tools are {}; declare others in tools.yaml",
                            BUILTIN_TOOLS.join(", ")
                        )
                    })
                });
                self.r
                    .diags
                    .error(problem.code, self.file, pos, problem.message)
                    .hint = hint;
            } else if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    fn memory_scope(&mut self, node: &Node) -> Option<MemoryScope> {
        let text = self.r.string(node, "memory_scope")?;
        let scope = match text.as_str() {
            "isolated" => Some(MemoryScope::Isolated),
            "shared" => Some(MemoryScope::Shared("default".into())),
            other => other
                .strip_prefix("shared:")
                .filter(|ns| is_doc_name(ns) && !ns.contains('.'))
                .map(|ns| MemoryScope::Shared(ns.to_string())),
        };
        if scope.is_none() {
            self.r
                .diags
                .error(
                    "bad-memory-scope",
                    self.file,
                    node.pos,
                    format!("`memory_scope: {text}` is not a memory scope"),
                )
                .hint = Some(
                "use `isolated`, `shared` or `shared:<namespace>` (letters, digits, `_`, `-`)"
                    .into(),
            );
        }
        scope
    }

    fn wait_for(&mut self, node: &Node) -> WaitFor {
        let Some(entries) = self.r.map(node, "wait_for") else {
            return WaitFor::default();
        };
        check_keys(
            entries,
            &["docs", "agents"],
            "wait_for",
            self.file,
            self.r.diags,
        );
        let mut wait_for = WaitFor::default();
        for (key, value) in entries {
            match key.name.as_str() {
                "docs" => {
                    let docs = self.doc_list(Some(value), "wait_for.docs");
                    for (name, pos) in &docs {
                        self.deps.push(DepRef {
                            kind: DepKind::Doc,
                            name: name.clone(),
                            pos: *pos,
                        });
                    }
                    wait_for.docs = names(docs);
                }
                "agents" => {
                    let agents = self.r.string_list(value, "wait_for.agents");
                    for (name, pos) in &agents {
                        self.deps.push(DepRef {
                            kind: DepKind::Agent,
                            name: name.clone(),
                            pos: *pos,
                        });
                    }
                    wait_for.agents = names(agents);
                }
                _ => {}
            }
        }
        wait_for
    }

    /// A list of document names, each checked against the document-id rule.
    fn doc_list(&mut self, node: Option<&Node>, field: &str) -> Vec<(String, Pos)> {
        let Some(node) = node else {
            return Vec::new();
        };
        let mut out = self.r.string_list(node, field);
        out.retain(|(name, pos)| {
            let ok = is_doc_name(name);
            if !ok {
                self.r.diags.error(
                    "bad-doc-name",
                    self.file,
                    *pos,
                    format!("document name `{name}` in `{field}` must match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,199}}$"),
                );
            }
            ok
        });
        out
    }

    fn error_handling(&mut self, node: &Node) -> Option<ErrorHandling> {
        let text = self.r.string(node, "error_handling")?;
        match text.as_str() {
            "stop" => Some(ErrorHandling::Stop),
            "continue" => Some(ErrorHandling::Continue),
            "fallback" => Some(ErrorHandling::Fallback),
            other => {
                self.one_of(
                    node.pos,
                    "error_handling",
                    other,
                    &["stop", "continue", "fallback"],
                );
                None
            }
        }
    }

    /// Reports `value` not being one of `allowed`, with a suggestion.
    fn one_of(&mut self, pos: Pos, field: &str, value: &str, allowed: &[&str]) {
        let hint = match did_you_mean(value, allowed.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("one of: {}", allowed.join(", ")),
        };
        self.r
            .bad_value(
                pos,
                format!(
                    "`{field}` must be one of {}, found `{value}`",
                    allowed.join(", ")
                ),
            )
            .hint = Some(hint);
    }

    fn llm(&mut self, node: &Node) -> LlmOverride {
        let mut llm = LlmOverride::default();
        let Some(entries) = self.r.map(node, "llm") else {
            return llm;
        };
        check_keys(
            entries,
            &["provider", "model", "temperature", "max_tokens"],
            "llm",
            self.file,
            self.r.diags,
        );
        for (key, value) in entries {
            match key.name.as_str() {
                "provider" => {
                    let Some(name) = self.r.optional_string(value, "llm.provider") else {
                        continue;
                    };
                    if ProviderKind::parse(&name).is_some() {
                        llm.provider = Some(name);
                    } else {
                        let known = ["openai", "anthropic", "gemini", "openai_compatible", "mock"];
                        self.one_of(value.pos, "llm.provider", &name, &known);
                    }
                }
                "model" => llm.model = self.r.optional_string(value, "llm.model"),
                "temperature" if !value.is_null() => {
                    llm.temperature = self.r.number(value, "llm.temperature", 0.0, 2.0);
                }
                "max_tokens" if !value.is_null() => {
                    llm.max_tokens = self
                        .r
                        .integer(value, "llm.max_tokens", 1, i64::from(u32::MAX))
                        .map(|n| n as u32);
                }
                _ => {}
            }
        }
        llm
    }

    /// An inline schema map, or a `.json` / `.yaml` file in data/ or agents/.
    fn output_schema(&mut self, node: &Node) -> Option<serde_json::Value> {
        match &node.value {
            Value::Map(_) => Some(node.to_json()),
            Value::Null => None,
            Value::Str(name) => self.output_schema_file(name, node.pos),
            _ => {
                self.r.wrong_type(
                    node,
                    "output_schema",
                    "a JSON Schema map or a schema file name",
                );
                None
            }
        }
    }

    fn output_schema_file(&mut self, name: &str, pos: Pos) -> Option<serde_json::Value> {
        const EXTS: [&str; 3] = [".json", ".yaml", ".yml"];
        if !is_resource_name(name) {
            self.r.bad_value(
                pos,
                format!("output_schema file `{name}` must be a file name inside data/ or agents/"),
            );
            return None;
        }
        let path = match self
            .ctx
            .files
            .find_resource(&["data", "agents"], name, &EXTS)
        {
            Ok(path) => path,
            Err(tried) => {
                self.missing_resource(pos, "output_schema file", name, &tried);
                return None;
            }
        };
        let text = match self.ctx.read_resource(&path) {
            Ok(text) => text,
            Err(message) => {
                self.r.diags.error("io-error", self.file, pos, message);
                return None;
            }
        };
        let value = if path.ends_with(".json") {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(value) => value,
                Err(e) => {
                    self.r.diags.error(
                        "bad-schema",
                        &path,
                        Pos::new(e.line() as u32, e.column() as u32),
                        format!("output schema is not valid JSON: {e}"),
                    );
                    return None;
                }
            }
        } else {
            yaml::parse(&text, &path, 0, self.r.diags)?.to_json()
        };
        if !value.is_object() {
            self.r.diags.error(
                "bad-schema",
                &path,
                Pos::new(1, 1),
                "an output schema must be a JSON object (a JSON Schema)",
            );
            return None;
        }
        Some(value)
    }

    /// The prompt body with legacy placeholders converted (checked as a
    /// template by [`Self::check_prompt`] once the agent is complete).
    fn body(&mut self, parts: &Parts<'_>) -> String {
        if parts.body.trim().is_empty() {
            self.r.diags.warning(
                "empty-prompt",
                self.file,
                Pos::new(parts.body_line, 1),
                "the agent has no prompt body",
            );
        }
        convert_legacy(parts.body)
    }

    /// Checks the agent's prompt template and, when previews are asked
    /// for, renders the preview from the same parse.
    fn check_prompt(&mut self, spec: &AgentSpec, body_line: u32) -> Option<Result<String, String>> {
        let parsed = check_template(
            &self.ctx.env,
            &spec.prompt_template,
            self.file,
            body_line,
            &PROMPT_VARIABLES,
            "prompt",
            self.r.diags,
        )?;
        self.ctx
            .previews
            .then(|| crate::prompt::preview_parsed(&parsed, spec))
    }

    fn sequence(&mut self, node: &Node, checklists: &[Resource]) -> Vec<SequenceStep> {
        let items = match &node.value {
            Value::Null => return Vec::new(),
            Value::Seq(items) => items,
            _ => {
                self.r.wrong_type(node, "sequence", "a list of steps");
                return Vec::new();
            }
        };
        let mut out: Vec<SequenceStep> = Vec::with_capacity(items.len());
        for item in items {
            let Some(entries) = item.as_map() else {
                self.r
                    .wrong_type(item, "sequence[]", "a map {step, action, …}");
                continue;
            };
            check_keys(
                entries,
                &SEQUENCE_FIELDS,
                "sequence step",
                self.file,
                self.r.diags,
            );
            if let Some(step) = self.sequence_step(item, entries, checklists) {
                if out.iter().any(|s| s.step == step.step) {
                    self.r.diags.error(
                        "duplicate-step",
                        self.file,
                        item.pos,
                        format!("sequence step `{}` is defined twice", step.step),
                    );
                } else {
                    out.push(step);
                }
            }
        }
        out
    }

    fn sequence_step(
        &mut self,
        item: &Node,
        entries: &[(Key, Node)],
        checklists: &[Resource],
    ) -> Option<SequenceStep> {
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name);
        let step = match get("step") {
            Some((_, v)) => self.r.string(v, "sequence[].step"),
            None => {
                self.r.missing(item.pos, "step", "a sequence step");
                None
            }
        };
        let action = match get("action") {
            Some((_, v)) => self.sequence_action(v),
            None => {
                self.r.missing(item.pos, "action", "a sequence step");
                None
            }
        };
        let (step, action) = (step?, action?);
        let allowed: &[&str] = match action {
            SequenceAction::LlmCall => &["template"],
            SequenceAction::CreateDocument | SequenceAction::UpdateDocument => {
                &["template", "document"]
            }
            SequenceAction::ToolCall => &["tool"],
            SequenceAction::Checklist => &["checklist"],
        };
        for (key, _) in entries {
            let name = key.name.as_str();
            if ["template", "tool", "document", "checklist"].contains(&name)
                && !allowed.contains(&name)
            {
                self.r.diags.error(
                    "field-not-applicable",
                    self.file,
                    key.pos,
                    format!(
                        "`{name}` does not apply to a `{}` step",
                        action_name(action)
                    ),
                );
            }
        }
        // Fields that do not apply were reported above; they are not read further.
        let applicable = |name: &str| get(name).filter(|_| allowed.contains(&name));
        let mut variables: Vec<&str> = PROMPT_VARIABLES.to_vec();
        variables.push(SEQUENCE_VARIABLE);
        let condition = get("condition").and_then(|(_, v)| {
            let text = self.r.optional_string(v, "sequence[].condition")?;
            if let Err(e) = self.ctx.env.compile_expression(&text) {
                self.r.diags.error(
                    "template-syntax",
                    self.file,
                    v.pos,
                    format!(
                        "condition `{text}` is not a valid expression: {}",
                        e.detail().unwrap_or("syntax error")
                    ),
                );
            }
            Some(text)
        });
        let template = applicable("template").and_then(|(_, v)| {
            let text = convert_legacy(&self.r.optional_string(v, "sequence[].template")?);
            let what = format!("sequence step `{step}` template");
            check_template(
                &self.ctx.env,
                &text,
                self.file,
                v.pos.line,
                &variables,
                &what,
                self.r.diags,
            );
            Some(text)
        });
        let tool = applicable("tool").and_then(|(_, v)| {
            let name = self.r.string(v, "sequence[].tool")?;
            if let Some(problem) = self.ctx.tool_problem(&name, true) {
                self.r
                    .diags
                    .error(problem.code, self.file, v.pos, problem.message)
                    .hint = problem.hint;
            }
            Some(name)
        });
        if action == SequenceAction::ToolCall && get("tool").is_none() {
            self.r.missing(item.pos, "tool", "a `tool_call` step");
        }
        let document = applicable("document").and_then(|(_, v)| {
            let name = self.r.string(v, "sequence[].document")?;
            if !is_doc_name(&name) {
                self.r.diags.error(
                    "bad-doc-name",
                    self.file,
                    v.pos,
                    format!("`{name}` is not a valid document name"),
                );
            }
            Some(name)
        });
        let checklist = applicable("checklist").and_then(|(_, v)| {
            let name = self.r.string(v, "sequence[].checklist")?;
            if !checklists.iter().any(|c| c.name == name) {
                let listed: Vec<&str> = checklists.iter().map(|c| c.name.as_str()).collect();
                let hint = match did_you_mean(&name, listed.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => "list it under the agent's `checklists`".into(),
                };
                self.r
                    .diags
                    .error(
                        "unknown-checklist",
                        self.file,
                        v.pos,
                        format!("checklist `{name}` is not one of the agent's checklists"),
                    )
                    .hint = Some(hint);
            }
            Some(name)
        });
        if action == SequenceAction::Checklist && get("checklist").is_none() {
            self.r.missing(item.pos, "checklist", "a `checklist` step");
        }
        Some(SequenceStep {
            step,
            action,
            condition,
            template,
            tool,
            document,
            checklist,
        })
    }

    fn sequence_action(&mut self, node: &Node) -> Option<SequenceAction> {
        let text = self.r.string(node, "sequence[].action")?;
        let action = match text.as_str() {
            "llm_call" => SequenceAction::LlmCall,
            "create_document" => SequenceAction::CreateDocument,
            "update_document" => SequenceAction::UpdateDocument,
            "tool_call" => SequenceAction::ToolCall,
            "checklist" => SequenceAction::Checklist,
            other => {
                self.one_of(node.pos, "action", other, &SEQUENCE_ACTIONS);
                return None;
            }
        };
        Some(action)
    }
}

fn action_name(action: SequenceAction) -> &'static str {
    match action {
        SequenceAction::LlmCall => "llm_call",
        SequenceAction::CreateDocument => "create_document",
        SequenceAction::UpdateDocument => "update_document",
        SequenceAction::ToolCall => "tool_call",
        SequenceAction::Checklist => "checklist",
    }
}

/// Reads a persona map (role, style, identity, focus, core_principles).
fn persona_map(r: &mut FieldReader<'_>, entries: &[(Key, Node)]) -> Persona {
    check_keys(entries, &PERSONA_FIELDS, "persona", r.file, r.diags);
    let mut persona = Persona::default();
    for (key, value) in entries {
        let field = format!("persona.{}", key.name);
        match key.name.as_str() {
            "role" => persona.role = r.optional_string(value, &field),
            "style" => persona.style = r.optional_string(value, &field),
            "identity" => persona.identity = r.optional_string(value, &field),
            "focus" => persona.focus = r.optional_string(value, &field),
            "core_principles" => persona.core_principles = names(r.string_list(value, &field)),
            _ => {}
        }
    }
    persona
}

fn names(items: Vec<(String, Pos)>) -> Vec<String> {
    items.into_iter().map(|(name, _)| name).collect()
}
