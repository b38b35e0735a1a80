//! The bundle: everything the engine needs to run a project, as plain data.
//!
//! This is the only thing the compiler hands on. It is serialised to
//! `bundle.json` (sorted maps, no timestamps, so identical sources give
//! identical bytes) and read back by `bmad2pf serve --bundle`. Resources are
//! inlined, templates are already converted to Jinja syntax, flows only name
//! agents that exist: the engine does no parsing and no path lookups.
//!
//! Bump [`SCHEMA_VERSION`] whenever a field changes meaning or is removed.
//!
//! Every struct declares its fields in the sorted order of their JSON
//! names, and free-form JSON fields are written through
//! `sorted_json`: serialising a bundle gives its keys in sorted
//! order at every depth, so bundle.json is printed straight from these
//! types, with no sorted copy of the bundle in between. Keep new fields in
//! that order (a test of the bundle writer checks it).

use crate::sorted_json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the bundle format written by this compiler.
pub const SCHEMA_VERSION: u32 = 1;

/// The flow name every project has unless workflow.yaml says otherwise.
pub const DEFAULT_FLOW: &str = "default";

/// Step target that finishes a flow (`next: {"*approve": end}`).
pub const END_STEP: &str = "end";

/// A compiled project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub agents: BTreeMap<String, AgentSpec>,
    pub flows: BTreeMap<String, FlowSpec>,
    /// `bmad2pf <version>` of the compiler that wrote it.
    pub generator: String,
    /// Which source layout was read.
    pub layout: SourceLayout,
    pub schema_version: u32,
    /// sha256 over every source file (relative path and bytes, in path order).
    pub source_hash: String,
    pub tools: BTreeMap<String, ToolSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceLayout {
    /// `agents/*.md` with YAML front matter, optional workflow.yaml / tools.yaml.
    Preprocessing,
    /// A BMAD-METHOD v4 core (or installed project / expansion pack) directory.
    BmadV4,
    /// A project installed by BMAD v6 or later: `_bmad/` plus `.<tool>/skills/` (SPEC 1.7).
    BmadInstall,
    /// A BMAD v6 module tree: folders with `module.yaml`, agents and workflows.
    BmadV6,
    /// A tree of BMAD skills (folders holding a `SKILL.md`).
    BmadSkills,
    /// A v6 module tree that also holds skills.
    BmadV6Skills,
}

/// One agent, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    #[serde(default)]
    pub checklists: Vec<Resource>,
    /// The agent's possible actions, e.g. `*approve`.
    #[serde(default)]
    pub commands: Vec<Command>,
    #[serde(default)]
    pub creates: Vec<String>,
    /// BMAD `data` and `utils` dependencies.
    #[serde(default)]
    pub data: Vec<Resource>,
    pub description: String,
    pub error_handling: ErrorHandling,
    /// `1.0`, `2.0` (preprocessing front matter) or `bmad-v4`.
    pub format_version: String,
    /// Unique id; in multi-pack BMAD trees qualified as `pack/id`.
    pub id: String,
    #[serde(default)]
    pub llm: LlmOverride,
    pub memory_scope: MemoryScope,
    /// Source fields kept for reference but not acted on (BMAD `icon`,
    /// `whenToUse`, `customization`, unknown v4 keys…).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "sorted_json::value_map"
    )]
    pub metadata: BTreeMap<String, serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "sorted_json::optional_value"
    )]
    pub output_schema: Option<serde_json::Value>,
    #[serde(default)]
    pub parallel: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<Persona>,
    /// The prompt body, in Jinja syntax (legacy `{input}` already converted).
    pub prompt_template: String,
    #[serde(default)]
    pub reads: Vec<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    /// Extra attempts after the first; `None` when the agent does not say,
    /// so runtime.yaml's `llm.max_retries` applies (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
    /// Multi-step agents; empty means one LLM call.
    #[serde(default)]
    pub sequence: Vec<SequenceStep>,
    /// Source file, relative to the source directory.
    pub source: String,
    #[serde(default)]
    pub tasks: Vec<Resource>,
    #[serde(default)]
    pub templates: Vec<Resource>,
    /// Seconds per LLM attempt; `None` when the agent does not say, so
    /// runtime.yaml's `llm.timeout` applies (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Names of builtin or tools.yaml tools.
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub updates: Vec<String>,
    #[serde(default)]
    pub wait_for: WaitFor,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub core_principles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// A free-text persona (a string in the front matter, or a personas/ file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A task, checklist, template or data file, inlined verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// The text given to the LLM (YAML templates already rendered to a Markdown outline).
    pub content: String,
    /// The name as the agent wrote it (`create-doc`, `prd-tmpl.yaml`).
    pub name: String,
    /// The file it resolved to, relative to the source directory.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    #[serde(default)]
    pub description: String,
    /// With the leading star: `*approve`.
    pub name: String,
}

/// Where an agent's memory lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "namespace")]
pub enum MemoryScope {
    /// One scope per agent and story.
    Isolated,
    /// `shared` is `Shared("default")`.
    Shared(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub docs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceStep {
    pub action: SequenceAction,
    /// Checklist name for `checklist`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checklist: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Document name for `create_document` / `update_document`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    pub step: String,
    /// Jinja prompt for `llm_call`, content template for `create_document` /
    /// `update_document`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Tool name for `tool_call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SequenceAction {
    LlmCall,
    CreateDocument,
    UpdateDocument,
    ToolCall,
    Checklist,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorHandling {
    /// A failure fails the run.
    Stop,
    /// A failure is recorded and the flow goes on.
    Continue,
    /// A placeholder result marked as fallback is written.
    Fallback,
}

/// Per-agent LLM settings; `None` means "use runtime.yaml".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

/// A named flow: steps run in order, `next` may route on actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    #[serde(default)]
    pub description: String,
    /// How often one step may run in one run (loop guard).
    pub max_visits: u32,
    /// Kept from the source, not acted on: a BMAD workflow's other fields
    /// (`type`, `project_types`, `flow_diagram`, `decision_guidance`, …).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "sorted_json::value_map"
    )]
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub name: String,
    /// Where it came from: `workflow.yaml`, a BMAD workflow file, or `derived`
    /// (computed from the agents' dependencies).
    pub source: String,
    pub steps: Vec<StepSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Agents run by this step. Empty for a human step (BMAD entries with no
    /// agent): it only waits for `requires`.
    pub agents: Vec<String>,
    /// Documents this step creates in addition to its agents' own `creates`
    /// (BMAD workflow entries name them per step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub creates: Vec<String>,
    /// A person's approval before or after the step (SPEC 8.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<StepGate>,
    /// Unique within the flow; `step-<n>` when the source gave none.
    pub id: String,
    /// Kept from the source, not acted on: `condition`, `optional_steps`,
    /// `repeats`, `notes`, loose values such as `agent: various`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "sorted_json::value_map"
    )]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// action (`*revise`, `default`) → step id or [`END_STEP`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub next: BTreeMap<String, String>,
    /// Documents this step needs in addition to its agents' `requires`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Documents this step updates (BMAD `updates`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<String>,
}

/// An approval gate on a step (workflow.yaml `approve`, `approve_prompt`,
/// `on_reject`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepGate {
    /// Where a rejection goes: a step id of the flow or `end`. Without it,
    /// a rejection before the step ends the run `cancelled`, and one after
    /// it runs the step again with the person's feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_reject: Option<String>,
    /// What the person is asked; a default names the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub when: GateWhen,
}

/// When a gate asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateWhen {
    /// Before the step's agents start: approval runs the step.
    Before,
    /// Once the step's agents are done: approval keeps the step's action.
    After,
}

/// A tool the LLM may call or a `tool_call` step may invoke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// For an `mcp` server over `https://`: a private CA trusted for this
    /// server besides the usual roots (tools.yaml `ca_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<CaFile>,
    /// For `command`, and for an `mcp` server started as a process: the
    /// argv (never a shell string). For an `mcp` server over streamable
    /// HTTP, `url` is its endpoint instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// For `mcp`: seconds to connect to the server and list its tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_s: Option<u64>,
    #[serde(default)]
    pub description: String,
    /// For an `mcp` server started as a process: variables added to its environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, SettingValue>,
    /// For an `mcp` server over streamable HTTP: headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, SettingValue>,
    pub kind: ToolKind,
    /// For `http`: method and URL template (Jinja over the arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub name: String,
    /// JSON Schema of the arguments.
    #[serde(serialize_with = "sorted_json::value")]
    pub parameters: serde_json::Value,
    /// Seconds one call may take (for `mcp`: one `tools/call`).
    pub timeout_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A PEM file of CA certificates, inlined from the source directory so a
/// bundle runs without its sources. Certificates are public: nothing secret
/// reaches the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaFile {
    /// The file, relative to the source directory.
    pub path: String,
    /// Its text: one or more PEM `CERTIFICATE` blocks.
    pub pem: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    Builtin,
    Http,
    Command,
    /// An MCP server: every tool it lists, each offered as `<server>__<tool>`.
    Mcp,
}

/// A value handed to an MCP server (an environment variable of its process,
/// an HTTP header): written in tools.yaml, or read from an environment
/// variable of bmad2pf when the server is connected, so secrets stay out of
/// the sources and the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SettingValue {
    Text(String),
    FromEnv(EnvReference),
}

/// `{env: NAME, prefix: "Bearer "}`: the variable's value after `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvReference {
    pub env: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

impl SettingValue {
    /// The value, looking variables up with `env`; the error names the unset variable.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        match self {
            Self::Text(text) => Ok(text.clone()),
            Self::FromEnv(reference) => env(&reference.env)
                .map(|value| format!("{}{value}", reference.prefix))
                .ok_or_else(|| format!("environment variable `{}` is not set", reference.env)),
        }
    }
}

/// Seconds to connect to an MCP server and list its tools, unless tools.yaml's `connect_timeout` says otherwise.
pub const DEFAULT_MCP_CONNECT_TIMEOUT_S: u64 = 10;

/// Separates an MCP server's name from one of its tools in an agent's
/// `tools` and in `tool_call` steps: `tracker.create_issue`.
pub const MCP_TOOL_SEPARATOR: char = '.';

/// Separates them in the function name the model sees,
/// `tracker__create_issue` (function names may not contain dots).
pub const MCP_FUNCTION_SEPARATOR: &str = "__";

/// The function name the model calls an MCP server's tool by.
pub fn mcp_function_name(server: &str, tool: &str) -> String {
    format!("{server}{MCP_FUNCTION_SEPARATOR}{tool}")
}

/// Whether `name` may be a function name for the LLM providers:
/// `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Tools every project has without declaring them.
pub const BUILTIN_TOOLS: [&str; 8] = [
    "ask_human",
    "current_time",
    "memory_get",
    "memory_set",
    "read_doc",
    "read_resource",
    "word_count",
    "write_doc",
];

impl Bundle {
    /// Reads `bundle.json` text, refusing other schema versions with a clear message.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let probe: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("bundle.json is not JSON: {e}"))?;
        let version = probe
            .get("schema_version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(SCHEMA_VERSION)) {
            return Err(format!(
                "bundle.json has schema_version {}, this bmad2pf reads {SCHEMA_VERSION}: regenerate it with `bmad2pf generate`",
                version.map_or_else(|| "none".to_string(), |v| v.to_string())
            ));
        }
        serde_json::from_value(probe)
            .map_err(|e| format!("bundle.json does not match the schema: {e}"))
    }
}

impl AgentSpec {
    /// Name of the agent's default output document: its id lower-cased,
    /// with a pack qualifier's `/` turned into `.` (document names have no `/`).
    pub fn default_output(&self) -> String {
        self.id.to_ascii_lowercase().replace('/', ".")
    }

    /// Documents this agent produces: its `creates`, or its default output
    /// when it creates nothing.
    pub fn outputs(&self) -> Vec<String> {
        if self.creates.is_empty() {
            vec![self.default_output()]
        } else {
            self.creates.clone()
        }
    }
}
