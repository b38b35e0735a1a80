//! Tools an agent may call: the builtins, those declared in tools.yaml, and
//! the tools of the MCP servers declared there ([`mcp`]).
//!
//! A [`ToolBox`] is built once per engine from the bundle. During a run an
//! agent's tools are offered to the LLM as function definitions
//! ([`ToolBox::definitions`]); when the model calls one, [`ToolBox::call`]
//! runs it with a [`ToolContext`] naming the story and the agent's memory
//! scope. Builtins work on the stores directly (not on a run's memory
//! cache), so a value a tool writes is durable at once.
//!
//! Builtins: `word_count {text}`, `current_time {}`, `read_doc {name}`,
//! `write_doc {name, content}`, `memory_get {key}`, `memory_set {key, value}`,
//! `read_resource {path}` (and `ask_human`, which the conversation answers).
//! Documents are addressed by short name within the run's story, like
//! `creates`/`requires` names.
//!
//! `read_resource` reads a file of the running flow's BMAD workflow or
//! skill (flow metadata `resources`, SPEC 1.7: data, references, assets),
//! or one of the calling agent's own (agent metadata `resources`: a v6
//! agent's sidecar folder, the files its menu and instructions name). Its
//! path is found as written in the resources (`<flow>/<path>`), without
//! the flow's prefix, or as the step's text names it (any path that ends
//! with a resource's own path, e.g. `src/bbq/workflows/plan-menu/data/cuts.csv`
//! for `bbq/plan-menu/data/cuts.csv`); a path matching none or several is
//! an error listing the candidates, which the model may correct.
//!
//! An agent names an MCP server's tools as `server` (all of them) or
//! `server.tool` (one); the model sees and calls each as `server__tool`.
//! Most failures of a tool go back to the model as the tool's answer, which
//! it may act on; a server that cannot be reached
//! ([`ToolError::Unavailable`]) ends the agent instead.

mod external;
mod mcp;
mod mcp_check;
mod mcp_http;

pub use mcp_check::{ServerCheck, ToolCheck, check_mcp_tools};

use crate::llm::ToolDefinition;
use crate::outbound;
use crate::store::{DocStore, DocWriter, MemoryKey, MemoryScope, MemoryStore, doc_id};
use bmad2pf_compiler::bundle::{MCP_TOOL_SEPARATOR, ToolKind, ToolSpec};
use mcp::{McpServer, McpServers};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Most bytes of output a tool call keeps; more is cut off.
pub const MAX_TOOL_OUTPUT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool `{0}`")]
    Unknown(String),
    #[error("bad arguments: {0}")]
    BadArguments(String),
    #[error("tool timed out after {0} s")]
    Timeout(u64),
    #[error("{0}")]
    Failed(String),
    /// The tool cannot be used at all (an MCP server that is down or does
    /// not answer): the agent fails rather than the model carrying on.
    #[error("{0}")]
    Unavailable(String),
}

/// What a tool call may touch: the run's story and the calling agent's memory.
#[derive(Clone)]
pub struct ToolContext {
    pub story_id: String,
    pub memory_scope: MemoryScope,
    pub docs: Arc<dyn DocStore>,
    pub memory: Arc<dyn MemoryStore>,
    /// Who the documents written through `write_doc` are recorded as written by.
    pub writer: DocWriter,
    /// The files `read_resource` reads: path → content (the flow's and the
    /// agent's metadata `resources`; empty when neither has any).
    pub resources: Arc<BTreeMap<String, String>>,
}

/// Every tool of a bundle, ready to call.
pub struct ToolBox {
    declared: BTreeMap<String, ToolSpec>,
    /// For `http` tools, made at the first call (most bundles have none).
    http: OnceLock<Result<reqwest::Client, String>>,
    mcp: McpServers,
}

impl ToolBox {
    /// The tools of `declared`; `env` reads the environment variables MCP
    /// servers' `env` and `headers` refer to (an unset one is an error here).
    /// No server is contacted yet: see [`connect_mcp_servers`](Self::connect_mcp_servers).
    pub fn new(
        declared: &BTreeMap<String, ToolSpec>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        Ok(Self {
            declared: declared.clone(),
            http: OnceLock::new(),
            mcp: McpServers::new(declared, env)?,
        })
    }

    /// Connects to every MCP server in the background and lists its tools.
    pub fn connect_mcp_servers(&self) {
        self.mcp.connect_all();
    }

    /// Each MCP server's health, as `mcp:<name>` (see [`McpServers::health`]).
    pub fn mcp_health(&self) -> Vec<(String, Result<(), String>)> {
        self.mcp.health()
    }

    /// Function definitions for the named tools (unknown names are skipped;
    /// the compiler has already rejected them). An MCP server is asked for
    /// its tools, connecting if need be; one that cannot be reached, or
    /// lacks a tool named `server.tool`, is an error naming it.
    pub async fn definitions(&self, names: &[String]) -> Result<Vec<ToolDefinition>, ToolError> {
        let mut definitions = Vec::new();
        for name in names {
            if let Some((server, tool)) = self.mcp_reference(name) {
                definitions.extend(server.definitions(tool).await?);
                continue;
            }
            match self.declared.get(name) {
                Some(spec) if spec.kind != ToolKind::Builtin => {
                    definitions.push(ToolDefinition {
                        name: spec.name.clone(),
                        description: spec.description.clone(),
                        parameters: spec.parameters.clone(),
                    });
                }
                _ => definitions.extend(builtin_definition(name)),
            }
        }
        Ok(definitions)
    }

    /// Whether `function`, a name the model called, is one of the tools
    /// `allowed` names: the name itself, or an MCP server's tool
    /// (`server__tool`) of a server or `server.tool` in `allowed`.
    pub fn allows(&self, allowed: &[String], function: &str) -> bool {
        if allowed.iter().any(|name| name == function) {
            return true;
        }
        match self.mcp_reference(function) {
            Some((server, Some(tool))) => allowed.iter().any(|name| {
                name == server.name()
                    || name.split_once(MCP_TOOL_SEPARATOR) == Some((server.name(), tool))
            }),
            _ => false,
        }
    }

    /// Runs one tool call and returns its text output. `name` is a tool's
    /// name, or an MCP server's tool as `server.tool` or `server__tool`.
    pub async fn call(
        &self,
        name: &str,
        args: &Value,
        ctx: &ToolContext,
    ) -> Result<String, ToolError> {
        if let Some((server, tool)) = self.mcp_reference(name) {
            let tool = tool.ok_or_else(|| {
                ToolError::Failed(format!("`{name}` is an MCP server; call one of its tools"))
            })?;
            return server.call(tool, args).await;
        }
        match self.declared.get(name) {
            Some(spec) if spec.kind == ToolKind::Http => {
                let http = self
                    .http
                    .get_or_init(outbound::client)
                    .as_ref()
                    .map_err(|e| {
                        ToolError::Failed(format!("cannot set up the HTTP client: {e}"))
                    })?;
                external::call_http(http, spec, args).await
            }
            Some(spec) if spec.kind == ToolKind::Command => {
                external::call_command(spec, args).await
            }
            _ => call_builtin(name, args, ctx).await,
        }
    }

    /// The MCP server `name` refers to, and the tool when it names one
    /// (see [`McpServers::reference`]); never a tool of another kind.
    fn mcp_reference<'n>(&self, name: &'n str) -> Option<(&Arc<McpServer>, Option<&'n str>)> {
        match self.declared.get(name) {
            Some(spec) if spec.kind != ToolKind::Mcp => None,
            _ => self.mcp.reference(name),
        }
    }
}

fn builtin_definition(name: &str) -> Option<ToolDefinition> {
    let (description, parameters) = match name {
        "word_count" => (
            "Counts the words of a text.",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        ),
        "current_time" => (
            "The current time (UTC, RFC 3339) and unix milliseconds.",
            json!({"type": "object", "properties": {}}),
        ),
        "read_doc" => (
            "Reads a document of this story by name.",
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        ),
        "write_doc" => (
            "Writes (replaces) a document of this story.",
            json!({"type": "object", "properties": {"name": {"type": "string"}, "content": {"type": "string"}}, "required": ["name", "content"]}),
        ),
        "memory_get" => (
            "Reads a value from this agent's memory.",
            json!({"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}),
        ),
        "memory_set" => (
            "Stores a JSON value in this agent's memory.",
            json!({"type": "object", "properties": {"key": {"type": "string"}, "value": {}}, "required": ["key", "value"]}),
        ),
        READ_RESOURCE => (
            "Reads a file of this workflow or of your own (data, references, assets, memories) by the path the instructions give.",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        ),
        crate::runs::interrupts::ASK_HUMAN => (
            "Asks the person you work for a question and waits for the answer: free text (ask), one of several options (choose), or approve/reject (approve).",
            crate::runs::interrupts::ask_human_parameters(),
        ),
        _ => return None,
    };
    Some(ToolDefinition {
        name: name.to_string(),
        description: description.to_string(),
        parameters,
    })
}

fn string_arg<'a>(args: &'a Value, field: &str) -> Result<&'a str, ToolError> {
    args.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::BadArguments(format!("`{field}` must be a string")))
}

async fn call_builtin(name: &str, args: &Value, ctx: &ToolContext) -> Result<String, ToolError> {
    let failed = |e: crate::store::StoreError| ToolError::Failed(e.to_string());
    let bad_id = |e: crate::store::IdError| ToolError::BadArguments(e.to_string());
    match name {
        "word_count" => Ok(string_arg(args, "text")?
            .split_whitespace()
            .count()
            .to_string()),
        "current_time" => {
            let now = std::time::SystemTime::now();
            let unix_ms = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            Ok(json!({"utc": humantime::format_rfc3339_seconds(now).to_string(), "unix_ms": unix_ms}).to_string())
        }
        "read_doc" => {
            let id = doc_id(&ctx.story_id, string_arg(args, "name")?).map_err(bad_id)?;
            match ctx.docs.get(&id).await.map_err(failed)? {
                Some(doc) => Ok(doc.content),
                None => Err(ToolError::Failed(format!("document `{id}` does not exist"))),
            }
        }
        "write_doc" => {
            let id = doc_id(&ctx.story_id, string_arg(args, "name")?).map_err(bad_id)?;
            let written = ctx
                .docs
                .put(&id, string_arg(args, "content")?, ctx.writer.clone())
                .await
                .map_err(failed)?;
            Ok(json!({"id": id.as_str(), "bytes": written.bytes}).to_string())
        }
        "memory_get" => {
            let key = MemoryKey::parse(string_arg(args, "key")?).map_err(bad_id)?;
            let value = ctx
                .memory
                .get(&ctx.memory_scope, &key)
                .await
                .map_err(failed)?;
            Ok(value.unwrap_or(Value::Null).to_string())
        }
        "memory_set" => {
            let key = MemoryKey::parse(string_arg(args, "key")?).map_err(bad_id)?;
            let value = args
                .get("value")
                .cloned()
                .ok_or_else(|| ToolError::BadArguments("`value` is required".into()))?;
            ctx.memory
                .set(&ctx.memory_scope, &key, value)
                .await
                .map_err(failed)?;
            Ok("ok".to_string())
        }
        READ_RESOURCE => read_resource(&ctx.resources, string_arg(args, "path")?),
        other => Err(ToolError::Unknown(other.to_string())),
    }
}

/// The builtin that reads a file of the running flow (module docs).
pub const READ_RESOURCE: &str = "read_resource";

fn read_resource(resources: &BTreeMap<String, String>, path: &str) -> Result<String, ToolError> {
    let wanted = path.trim().trim_start_matches("./").trim_start_matches('/');
    if let Some(text) = resources.get(wanted) {
        return Ok(text.clone());
    }
    // A resource's own path: its key less the flow's prefix (the key's
    // first segments up to the folder the file sits in are the flow id,
    // so try every suffix that starts at a segment).
    let matches_key = |key: &str| {
        let mut rest = key;
        while let Some((_, tail)) = rest.split_once('/') {
            if wanted == tail || wanted.ends_with(&format!("/{tail}")) {
                return true;
            }
            rest = tail;
        }
        false
    };
    let found: Vec<&String> = resources.keys().filter(|k| matches_key(k)).collect();
    match found.as_slice() {
        [key] => Ok(resources[*key].clone()),
        [] if resources.is_empty() => Err(ToolError::Failed(
            "there are no resources to read here".into(),
        )),
        [] => Err(ToolError::Failed(format!(
            "no resource `{wanted}`; there are: {}",
            listed(resources.keys())
        ))),
        several => Err(ToolError::Failed(format!(
            "`{wanted}` could be any of: {}; give the full path",
            listed(several.iter().copied())
        ))),
    }
}

/// At most 20 paths, comma-separated.
fn listed<'a>(paths: impl Iterator<Item = &'a String>) -> String {
    let paths: Vec<&str> = paths.map(String::as_str).collect();
    let shown = paths
        .iter()
        .take(20)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match paths.len() {
        0..=20 => shown,
        n => format!("{shown} … ({n} in all)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_is_found_by_any_path_that_names_it() {
        let resources = BTreeMap::from([
            (
                "bbq/plan-menu/data/cuts.csv".to_string(),
                "cut,minutes".to_string(),
            ),
            (
                "bbq/plan-menu/data/woods.csv".to_string(),
                "wood".to_string(),
            ),
            (
                "bbq/plan-menu/refs/woods.csv".to_string(),
                "other".to_string(),
            ),
        ]);
        for path in [
            "bbq/plan-menu/data/cuts.csv",
            "data/cuts.csv",
            "./data/cuts.csv",
            "cuts.csv",
            "src/bbq/workflows/plan-menu/data/cuts.csv",
        ] {
            assert_eq!(
                read_resource(&resources, path).as_deref(),
                Ok("cut,minutes"),
                "{path}"
            );
        }
        let several = read_resource(&resources, "woods.csv");
        assert!(
            matches!(&several, Err(ToolError::Failed(m)) if m.contains("data/woods.csv") && m.contains("refs/woods.csv")),
            "{several:?}"
        );
        let none = read_resource(&resources, "data/beer.csv");
        assert!(
            matches!(&none, Err(ToolError::Failed(m)) if m.contains("bbq/plan-menu/data/cuts.csv")),
            "{none:?}"
        );
        assert!(read_resource(&BTreeMap::new(), "x").is_err());
    }
}
