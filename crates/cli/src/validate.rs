//! `bmad2pf validate`: compile the sources, report every problem, write nothing.
//!
//! Exit 0 when there is no error (warnings allowed), 1 when there is one,
//! 2 when the source directory cannot be read. On success, text mode
//! prints `valid: N agents, M flows` on stdout; for a BMAD v6 / skills
//! tree the line adds the layout and its counts in parentheses.
//!
//! `--check-tools` then connects to every MCP server of tools.yaml (each
//! within its connect time-out), prints `mcp server NAME: N tools` for
//! each, and fails (exit 1) when a server cannot be reached or lacks a tool
//! an agent names; JSON mode reports it under `tool_check`.

use crate::progress::Progress;
use crate::project::compile_project;
use crate::report::{Reporter, plural, stdout};
use crate::runtime::{env_var, tokio_runtime};
use crate::{Outcome, ValidateArgs};
use bmad2pf_compiler::bundle::Bundle;
use bmad2pf_compiler::{CompileOptions, layout_summary};
use bmad2pf_engine::tools::{ToolCheck, check_mcp_tools};
use serde_json::json;

pub fn run(args: &ValidateArgs) -> Outcome {
    let mut reporter = Reporter::new(args.format);
    // With the previews, so that `validate` reports exactly what `generate`
    // would (a prompt that cannot be rendered is an error of both).
    let project = match compile_project(
        &args.src,
        CompileOptions { previews: true },
        &mut reporter,
        &Progress::silent(),
    ) {
        Ok(project) => project,
        Err(outcome) => return reporter.finish(outcome),
    };
    let mut outcome = Outcome::Success;
    if !reporter.is_json() {
        let mut line = format!(
            "valid: {}, {}",
            plural(project.bundle.agents.len(), "agent"),
            plural(project.bundle.flows.len(), "flow")
        );
        if let Some(layout) = layout_summary(&project.bundle) {
            line.push_str(&format!(" ({layout})"));
        }
        if let Err(e) = stdout(&line) {
            reporter.error(format!("cannot write to stdout: {e}"));
            outcome = Outcome::Failure;
        }
    }
    if args.check_tools && outcome == Outcome::Success {
        outcome = check_tools(&project.bundle, &mut reporter);
    }
    reporter.finish(outcome)
}

/// `--check-tools`: asks the MCP servers, reports what they said.
fn check_tools(bundle: &Bundle, reporter: &mut Reporter) -> Outcome {
    let check = tokio_runtime()
        .map_err(|e| e.message)
        .and_then(|runtime| runtime.block_on(check_mcp_tools(bundle, &env_var)));
    let check: ToolCheck = match check {
        Ok(check) => check,
        Err(message) => {
            reporter.error(format!("--check-tools: {message}"));
            return Outcome::Invalid;
        }
    };
    if reporter.is_json() {
        let servers: serde_json::Map<String, serde_json::Value> = check
            .servers
            .iter()
            .map(|s| {
                let answer = match &s.tools {
                    Ok(tools) => json!({"ok": true, "tools": tools}),
                    Err(why) => json!({"ok": false, "error": why}),
                };
                (s.server.clone(), answer)
            })
            .collect();
        reporter.result(
            "tool_check",
            json!({"servers": servers, "problems": check.problems}),
        );
    } else {
        for server in &check.servers {
            if let Ok(tools) = &server.tools {
                let line = format!(
                    "mcp server {}: {}",
                    server.server,
                    plural(tools.len(), "tool")
                );
                if stdout(&line).is_err() {
                    return Outcome::Failure;
                }
            }
        }
        for problem in &check.problems {
            eprintln!("error: {problem}");
        }
    }
    if check.problems.is_empty() {
        Outcome::Success
    } else {
        Outcome::Invalid
    }
}
