//! `bmad2pf validate --check-tools`: the MCP tools agents name, held
//! against what the servers list.
//!
//! The compiler cannot know an MCP server's tools (the server may be
//! offline at compile time), so this check is asked for, not implied: it
//! connects to every server of the bundle, lists its tools, and reports each
//! server that cannot be reached and each `server.tool` (in an agent's
//! `tools` or a `tool_call` step) that its server does not list.

use super::mcp::{McpServers, tool_names};
use bmad2pf_compiler::bundle::{Bundle, ToolKind};
use std::collections::BTreeMap;

/// What one MCP server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCheck {
    pub server: String,
    /// Its tools' names, or why it could not be reached.
    pub tools: Result<Vec<String>, String>,
}

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCheck {
    /// Every MCP server of the bundle, by name.
    pub servers: Vec<ServerCheck>,
    /// Each problem found, naming the agent or server; none when all is well.
    pub problems: Vec<String>,
}

/// Connects to every MCP server of `bundle` (its connect time-out bounds
/// each) and checks the tools agents name. `env` reads the variables the
/// servers' `env` and `headers` refer to; an unset one is the `Err`.
pub async fn check_mcp_tools(
    bundle: &Bundle,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ToolCheck, String> {
    let servers = McpServers::new(&bundle.tools, env)?;
    let answers = futures::future::join_all(servers.all().map(|server| async move {
        let tools = match server.tools().await {
            Ok(tools) => Ok(tools.iter().map(|t| t.name.to_string()).collect()),
            Err(e) => Err(e.to_string()),
        };
        ServerCheck {
            server: server.name().to_string(),
            tools,
        }
    }))
    .await;
    let mut check = ToolCheck::default();
    for answer in &answers {
        if let Err(why) = &answer.tools {
            check.problems.push(why.clone());
        }
    }
    let listed: BTreeMap<&str, &Vec<String>> = answers
        .iter()
        .filter_map(|a| Some((a.server.as_str(), a.tools.as_ref().ok()?)))
        .collect();
    for agent in bundle.agents.values() {
        let named = agent
            .tools
            .iter()
            .chain(agent.sequence.iter().filter_map(|step| step.tool.as_ref()));
        for name in named {
            if bundle
                .tools
                .get(name)
                .is_some_and(|spec| spec.kind != ToolKind::Mcp)
            {
                continue;
            }
            let Some((server, Some(tool))) = servers.reference(name) else {
                continue;
            };
            let Some(tools) = listed.get(server.name()) else {
                continue; // the server's own problem is reported once
            };
            if !tools.iter().any(|t| t == tool) {
                let problem = format!(
                    "agent `{}` names `{name}`, but MCP server `{}` has no tool `{tool}`; it has: {}",
                    agent.id,
                    server.name(),
                    tool_names(tools.iter().map(String::as_str))
                );
                if !check.problems.contains(&problem) {
                    check.problems.push(problem);
                }
            }
        }
    }
    check.servers = answers;
    Ok(check)
}
