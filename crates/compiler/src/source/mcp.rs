//! tools.yaml's MCP servers (`kind: mcp`) and the names agents give their tools.
//!
//! ```yaml
//! tools:
//!   tracker:                         # started as a process, spoken to over stdio
//!     kind: mcp
//!     command: ["tracker-mcp", "--project", "web"]
//!     env: {TRACKER_TOKEN: {env: TRACKER_TOKEN}, LOG: quiet}
//!   wiki:                            # streamable HTTP
//!     kind: mcp
//!     url: "https://wiki.local/mcp"
//!     headers: {Authorization: {env: WIKI_TOKEN, prefix: "Bearer "}}
//!     ca_file: certs/internal-ca.pem # a private CA, besides the usual roots
//!     connect_timeout: 5             # seconds to connect and list tools (default 10)
//!     timeout: 60                    # seconds one call may take (default 30)
//! ```
//!
//! A server has `command` (an argv, as for `command` tools) or `url`
//! (`http://` or `https://`), not both; `env` goes with `command`,
//! `headers` with `url`, and `ca_file` with an `https://` url (read and
//! checked by [`super::ca_file`]). A value is a string, or `{env: NAME, prefix: ...}`
//! to read bmad2pf's environment variable `NAME` when the server is
//! connected (the bundle keeps the reference, never the secret). The server's
//! tools, their descriptions and input schemas come from the server itself,
//! so `description` and `parameters` do not apply.
//!
//! An agent names a server's tools in its `tools` as `tracker` (all of them)
//! or `tracker.create_issue` (one); the model sees each as the function
//! `tracker__create_issue`, which is why a server's name may not contain
//! `__`. Whether the tool exists is only known to the server:
//! `bmad2pf validate --check-tools` asks it.

use super::ca_file::read_ca_file;
use super::fields::FieldReader;
use crate::bundle::{
    DEFAULT_MCP_CONNECT_TIMEOUT_S, EnvReference, MCP_FUNCTION_SEPARATOR, MCP_TOOL_SEPARATOR,
    SettingValue, ToolKind, ToolSpec, is_function_name, mcp_function_name,
};
use crate::sourcefs::SourceSnapshot;
use crate::yaml::{Key, Node, Value, check_keys};
use std::collections::BTreeMap;

/// The keys an MCP server's declaration may have.
pub(super) const KEYS: [&str; 8] = [
    "kind",
    "command",
    "url",
    "env",
    "headers",
    "timeout",
    "connect_timeout",
    "ca_file",
];

/// Reads the transport of MCP server `key` into `spec` (its `timeout` is
/// already read); `None` when it has none to use. `files` holds the file
/// `ca_file` names.
pub(super) fn read_server(
    r: &mut FieldReader<'_>,
    files: &SourceSnapshot,
    entries: &[(Key, Node)],
    key: &Key,
    node: &Node,
    spec: &mut ToolSpec,
) -> Option<()> {
    let name = key.name.clone();
    if name.contains(MCP_FUNCTION_SEPARATOR) {
        r.diags
            .error(
                "bad-tool",
                r.file,
                key.pos,
                format!("MCP server name `{name}` may not contain `{MCP_FUNCTION_SEPARATOR}`"),
            )
            .hint = Some(format!(
            "the model calls its tools `{}`, so `{MCP_FUNCTION_SEPARATOR}` separates the server from the tool",
            mcp_function_name(&name, "<tool>")
        ));
    }
    let get = |field: &str| entries.iter().find(|(k, _)| k.name == field);
    spec.connect_timeout_s = Some(
        get("connect_timeout")
            .and_then(|(_, v)| r.integer(v, &format!("tools.{name}.connect_timeout"), 1, 600))
            .map_or(DEFAULT_MCP_CONNECT_TIMEOUT_S, |t| t as u64),
    );
    let only_with = |r: &mut FieldReader<'_>, field: &str, transport: &str| {
        if let Some((k, _)) = get(field) {
            r.diags.error(
                "field-not-applicable",
                r.file,
                k.pos,
                format!("`{field}` applies to an MCP server reached by `{transport}`"),
            );
        }
    };
    match (get("command"), get("url")) {
        (Some((command_key, _)), Some(_)) => {
            r.bad_value(
                command_key.pos,
                format!("MCP server `{name}` has both `command` and `url`; give one"),
            );
            None
        }
        (None, None) => {
            r.missing(
                node.pos,
                "command` or `url",
                &format!("MCP server `{name}`"),
            );
            None
        }
        (Some((_, command)), None) => {
            only_with(r, "headers", "url");
            only_with(r, "ca_file", "url");
            spec.command = super::tools::argv(r, command, &name)?;
            if let Some((_, env)) = get("env") {
                spec.env = values(r, env, &format!("tools.{name}.env"), is_env_name)?;
            }
            Some(())
        }
        (None, Some((_, url_node))) => {
            only_with(r, "env", "command");
            let url = r.string(url_node, &format!("tools.{name}.url"))?;
            let https = url.starts_with("https://");
            if !https && !url.starts_with("http://") {
                r.bad_value(
                    url_node.pos,
                    format!("MCP server `{name}`: url must start with http:// or https://"),
                );
                return None;
            }
            spec.url = Some(url);
            if let Some((_, headers)) = get("headers") {
                spec.headers =
                    values(r, headers, &format!("tools.{name}.headers"), is_header_name)?;
            }
            if let Some((ca_key, ca_node)) = get("ca_file") {
                if !https {
                    r.diags.error(
                        "field-not-applicable",
                        r.file,
                        ca_key.pos,
                        format!("`ca_file` applies to an https:// url; MCP server `{name}` is reached over http://"),
                    );
                    return None;
                }
                let path = r.string(ca_node, &format!("tools.{name}.ca_file"))?;
                match read_ca_file(files, &path) {
                    Ok(ca_file) => spec.ca_file = Some(ca_file),
                    Err(why) => {
                        r.diags.error(
                            "bad-ca-file",
                            r.file,
                            ca_node.pos,
                            format!("MCP server `{name}`: ca_file: {why}"),
                        );
                        return None;
                    }
                }
            }
            Some(())
        }
    }
}

/// A map of names to [`SettingValue`]s; `name_ok` checks each name.
fn values(
    r: &mut FieldReader<'_>,
    node: &Node,
    field: &str,
    name_ok: fn(&str) -> bool,
) -> Option<BTreeMap<String, SettingValue>> {
    let entries = r.map(node, field)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, value) in entries {
        let at = format!("{field}.{}", key.name);
        if !name_ok(&key.name) {
            r.bad_value(
                key.pos,
                format!("`{}` is not a valid name in `{field}`", key.name),
            );
            ok = false;
            continue;
        }
        match setting(r, value, &at) {
            Some(setting) => {
                out.insert(key.name.clone(), setting);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A string (numbers and booleans as written) or `{env: NAME, prefix: TEXT}`.
fn setting(r: &mut FieldReader<'_>, node: &Node, field: &str) -> Option<SettingValue> {
    if let Some(entries) = node.as_map() {
        check_keys(entries, &["env", "prefix"], field, r.file, r.diags);
        let Some((_, variable)) = entries.iter().find(|(k, _)| k.name == "env") else {
            r.missing(node.pos, "env", &format!("`{field}`"));
            return None;
        };
        let env = r.string(variable, &format!("{field}.env"))?;
        if !is_env_name(&env) {
            r.bad_value(
                variable.pos,
                format!("`{env}` is not an environment variable name"),
            );
            return None;
        }
        let prefix = match entries.iter().find(|(k, _)| k.name == "prefix") {
            Some((_, v)) => r.string(v, &format!("{field}.prefix"))?,
            None => String::new(),
        };
        return Some(SettingValue::FromEnv(EnvReference { env, prefix }));
    }
    match &node.value {
        Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            node.scalar_text().map(SettingValue::Text)
        }
        _ => {
            r.wrong_type(node, field, "a string or {env: NAME}");
            None
        }
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An HTTP header name (RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// What a name in an agent's `tools` or a `tool_call` step refers to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToolReference {
    /// A builtin or a declared tool; for an MCP server, every tool it has.
    Declared,
    /// `server.tool`: one tool of a declared MCP server.
    ServerTool,
    /// Not a tool of this project.
    Unknown,
    /// `server.tool` that cannot be used, and why.
    Bad(String),
}

/// Reads `name` against the tools.yaml declarations (builtins are the caller's).
pub(crate) fn reference(tools: &BTreeMap<String, ToolSpec>, name: &str) -> ToolReference {
    if tools.contains_key(name) {
        return ToolReference::Declared;
    }
    let Some((server, tool)) = name.split_once(MCP_TOOL_SEPARATOR) else {
        return ToolReference::Unknown;
    };
    match tools.get(server) {
        Some(spec) if spec.kind == ToolKind::Mcp => {
            let function = mcp_function_name(server, tool);
            if is_function_name(&function) {
                ToolReference::ServerTool
            } else {
                ToolReference::Bad(format!(
                    "the model would call `{name}` as `{function}`, which is not a valid function name (letters, digits, `_` and `-`, at most 64 characters)"
                ))
            }
        }
        Some(_) => ToolReference::Bad(format!(
            "`{server}` is not an MCP server; only an MCP server's tools are named `server{MCP_TOOL_SEPARATOR}tool`"
        )),
        None => ToolReference::Unknown,
    }
}
