//! `tools.yaml` → [`ToolSpec`]s.
//!
//! ```yaml
//! tools:
//!   word_count: {kind: builtin}
//!   search: {kind: http, method: GET, url: "http://wiki.local/search?q={{ query }}",
//!            parameters: {type: object, properties: {query: {type: string}}}, timeout: 10}
//!   lint: {kind: command, command: ["markdownlint", "--stdin"], timeout: 10}
//!   tracker: {kind: mcp, command: ["tracker-mcp"], env: {TOKEN: {env: TRACKER_TOKEN}}}
//!   wiki: {kind: mcp, url: "https://wiki.local/mcp", ca_file: certs/ca.pem, connect_timeout: 5, timeout: 60}
//! ```
//!
//! Rules: tool names match `^[A-Za-z][A-Za-z0-9_-]*$` (at most 64
//! characters: LLM function-call names); `kind` is required; a `builtin`
//! must be one of [`BUILTIN_TOOLS`] and other kinds may not reuse a builtin
//! name; `parameters` is a JSON Schema object (default: an object with no
//! properties); `http` needs an `http(s)://` `url`, a Jinja template that
//! may only read the declared parameters, and a `method` (default GET);
//! `command` is an argv list, never a shell string; `timeout` is seconds
//! (default [`DEFAULT_TOOL_TIMEOUT_S`]). `mcp` declares an MCP server, read
//! by [`super::mcp`] (its `ca_file` from `files`). Keys that belong to another kind are errors, as are
//! unknown keys.

use super::fields::{FieldReader, is_name};
use super::template::check_template;
use crate::bundle::{BUILTIN_TOOLS, ToolKind, ToolSpec};
use crate::diag::{Diagnostics, did_you_mean};
use crate::sourcefs::SourceSnapshot;
use crate::yaml::{self, Key, Node, Value, check_keys};
use std::collections::BTreeMap;

pub const DEFAULT_TOOL_TIMEOUT_S: u64 = 30;
const HTTP_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const ALL_KEYS: [&str; 11] = [
    "kind",
    "description",
    "parameters",
    "method",
    "url",
    "command",
    "timeout",
    "env",
    "headers",
    "connect_timeout",
    "ca_file",
];
const KINDS: [&str; 4] = ["builtin", "http", "command", "mcp"];

/// Reads tools.yaml text; `file` names it in diagnostics, and `files` holds
/// the source files it may name (an MCP server's `ca_file`).
pub fn parse_tools(
    text: &str,
    file: &str,
    files: &SourceSnapshot,
    diags: &mut Diagnostics,
) -> BTreeMap<String, ToolSpec> {
    let mut out = BTreeMap::new();
    let Some(root) = yaml::parse(text, file, 0, diags) else {
        return out;
    };
    let mut r = FieldReader::new(file, diags);
    let Some(top) = r.map(&root, "tools.yaml") else {
        return out;
    };
    check_keys(top, &["tools"], "tools.yaml", file, r.diags);
    let Some(tools) = top
        .iter()
        .find(|(k, _)| k.name == "tools")
        .and_then(|(_, v)| r.map(v, "tools"))
    else {
        return out;
    };
    let env = crate::prompt::environment();
    for (key, node) in tools {
        if let Some(spec) = parse_tool(&mut r, &env, files, key, node) {
            out.insert(spec.name.clone(), spec);
        }
    }
    out
}

fn parse_tool(
    r: &mut FieldReader<'_>,
    env: &minijinja::Environment<'_>,
    files: &SourceSnapshot,
    key: &Key,
    node: &Node,
) -> Option<ToolSpec> {
    let name = key.name.clone();
    if !is_name(&name) || name.len() > 64 {
        r.diags.error(
            "bad-tool",
            r.file,
            key.pos,
            format!(
                "tool name `{name}` must match ^[A-Za-z][A-Za-z0-9_-]*$ (at most 64 characters)"
            ),
        );
    }
    let entries = r.map(node, &format!("tools.{name}"))?;
    check_keys(
        entries,
        &ALL_KEYS,
        &format!("tool `{name}`"),
        r.file,
        r.diags,
    );
    let get = |field: &str| entries.iter().find(|(k, _)| k.name == field);
    let Some((_, kind_node)) = get("kind") else {
        r.missing(node.pos, "kind", &format!("tool `{name}`"));
        return None;
    };
    let kind_text = r.string(kind_node, &format!("tools.{name}.kind"))?;
    let kind = match kind_text.as_str() {
        "builtin" => ToolKind::Builtin,
        "http" => ToolKind::Http,
        "command" => ToolKind::Command,
        "mcp" => ToolKind::Mcp,
        other => {
            let hint = did_you_mean(other, KINDS).map_or_else(
                || format!("one of: {}", KINDS.join(", ")),
                |c| format!("did you mean `{c}`?"),
            );
            r.bad_value(
                kind_node.pos,
                format!("tool kind `{other}` is not builtin, http, command or mcp"),
            )
            .hint = Some(hint);
            return None;
        }
    };
    let applicable: &[&str] = match kind {
        ToolKind::Builtin => &["kind", "description", "parameters"],
        ToolKind::Http => &[
            "kind",
            "description",
            "parameters",
            "method",
            "url",
            "timeout",
        ],
        ToolKind::Command => &["kind", "description", "parameters", "command", "timeout"],
        ToolKind::Mcp => &super::mcp::KEYS,
    };
    for (k, _) in entries {
        if ALL_KEYS.contains(&k.name.as_str()) && !applicable.contains(&k.name.as_str()) {
            r.diags.error(
                "field-not-applicable",
                r.file,
                k.pos,
                format!("`{}` does not apply to a `{kind_text}` tool", k.name),
            );
        }
    }
    let is_builtin_name = BUILTIN_TOOLS.contains(&name.as_str());
    match kind {
        ToolKind::Builtin if !is_builtin_name => {
            let hint = did_you_mean(&name, BUILTIN_TOOLS).map_or_else(
                || format!("builtins: {}", BUILTIN_TOOLS.join(", ")),
                |c| format!("did you mean `{c}`?"),
            );
            r.diags
                .error(
                    "unknown-builtin",
                    r.file,
                    key.pos,
                    format!("`{name}` is not a builtin tool"),
                )
                .hint = Some(hint);
        }
        ToolKind::Http | ToolKind::Command | ToolKind::Mcp if is_builtin_name => {
            r.diags.error(
                "bad-tool",
                r.file,
                key.pos,
                format!("`{name}` is a builtin tool; give this tool another name"),
            );
        }
        _ => {}
    }
    let description = get("description")
        .and_then(|(_, v)| r.optional_string(v, &format!("tools.{name}.description")))
        .unwrap_or_default();
    let parameters = match get("parameters") {
        Some((_, v)) => parameters(r, v, &name)?,
        None => serde_json::json!({"type": "object", "properties": {}}),
    };
    let timeout_s = get("timeout")
        .and_then(|(_, v)| r.integer(v, &format!("tools.{name}.timeout"), 1, 3600))
        .map_or(DEFAULT_TOOL_TIMEOUT_S, |t| t as u64);
    let mut spec = ToolSpec {
        name: name.clone(),
        kind,
        description,
        parameters,
        method: None,
        url: None,
        command: Vec::new(),
        timeout_s,
        env: BTreeMap::new(),
        headers: BTreeMap::new(),
        connect_timeout_s: None,
        ca_file: None,
    };
    match kind {
        ToolKind::Builtin => {}
        ToolKind::Http => {
            spec.method = Some(method(r, get("method").map(|(_, v)| v), &name)?);
            let Some((_, url_node)) = get("url") else {
                r.missing(node.pos, "url", &format!("http tool `{name}`"));
                return None;
            };
            let url = r.string(url_node, &format!("tools.{name}.url"))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                r.bad_value(
                    url_node.pos,
                    format!("tool `{name}`: url must start with http:// or https://"),
                );
            }
            let params = parameter_names(&spec.parameters);
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            check_template(
                env,
                &url,
                r.file,
                url_node.pos.line,
                &params,
                &format!("url of tool `{name}`"),
                r.diags,
            );
            spec.url = Some(url);
        }
        ToolKind::Command => {
            let Some((_, cmd_node)) = get("command") else {
                r.missing(node.pos, "command", &format!("command tool `{name}`"));
                return None;
            };
            spec.command = argv(r, cmd_node, &name)?;
        }
        ToolKind::Mcp => super::mcp::read_server(r, files, entries, key, node, &mut spec)?,
    }
    Some(spec)
}

fn parameters(r: &mut FieldReader<'_>, node: &Node, name: &str) -> Option<serde_json::Value> {
    if node.as_map().is_none() {
        r.wrong_type(
            node,
            &format!("tools.{name}.parameters"),
            "a JSON Schema map",
        );
        return None;
    }
    let schema = node.to_json();
    match schema.get("type") {
        None => {}
        Some(serde_json::Value::String(t)) if t == "object" => {}
        Some(other) => {
            r.bad_value(
                node.pos,
                format!("tool `{name}`: parameters must describe an object (`type: object`), found type {other}"),
            );
            return None;
        }
    }
    Some(schema)
}

/// Property names of a parameters schema, the variables a URL template may use.
fn parameter_names(schema: &serde_json::Value) -> Vec<String> {
    schema
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

fn method(r: &mut FieldReader<'_>, node: Option<&Node>, name: &str) -> Option<String> {
    let Some(node) = node else {
        return Some("GET".into());
    };
    let method = r
        .string(node, &format!("tools.{name}.method"))?
        .to_ascii_uppercase();
    if !HTTP_METHODS.contains(&method.as_str()) {
        r.bad_value(
            node.pos,
            format!(
                "tool `{name}`: method `{method}` is not one of {}",
                HTTP_METHODS.join(", ")
            ),
        );
        return None;
    }
    Some(method)
}

pub(super) fn argv(r: &mut FieldReader<'_>, node: &Node, name: &str) -> Option<Vec<String>> {
    if let Value::Str(text) = &node.value {
        let as_list: Vec<String> = text.split_whitespace().map(|w| format!("{w:?}")).collect();
        r.wrong_type(
            node,
            &format!("tools.{name}.command"),
            "a list of arguments (argv)",
        )
        .hint = Some(format!(
            "commands are never run through a shell; write command: [{}]",
            as_list.join(", ")
        ));
        return None;
    }
    let args: Vec<String> = r
        .string_list(node, &format!("tools.{name}.command"))
        .into_iter()
        .map(|(arg, _)| arg)
        .collect();
    if args.first().is_none_or(|program| program.trim().is_empty()) {
        r.bad_value(
            node.pos,
            format!("tool `{name}`: command needs a program name as its first argument"),
        );
        return None;
    }
    Some(args)
}
