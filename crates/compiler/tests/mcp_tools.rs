//! MCP servers in tools.yaml (`kind: mcp`) and the names agents give their
//! tools: what a good declaration compiles to, and each mistake reported
//! with its code, file and line.

use bmad2pf_compiler::bundle::{EnvReference, SettingValue, ToolKind};
use bmad2pf_compiler::compile;
use bmad2pf_compiler::diag::Severity;
use std::path::Path;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// The errors of compiling `tools` and `agent` (agents/pm.md), as (code, file, line).
fn errors(tools: &str, agent: &str) -> Vec<(&'static str, String, u32)> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(dir.path(), "tools.yaml", tools);
    write(dir.path(), "agents/pm.md", agent);
    let c = compile(dir.path());
    let rendered: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
    println!("{}", rendered.join("\n"));
    c.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.code, d.file.clone(), d.line))
        .collect()
}

const TWO_SERVERS: &str = "tools:
  tracker:
    kind: mcp
    command: [tracker-mcp, --project, web]
    env:
      TRACKER_TOKEN: {env: BMAD_TRACKER_TOKEN}
      RETRIES: 3
  wiki:
    kind: mcp
    url: http://127.0.0.1:9/mcp
    headers: {Authorization: {env: WIKI_TOKEN, prefix: \"Bearer \"}}
    connect_timeout: 5
    timeout: 60
";

#[test]
fn servers_compile_into_the_bundle_and_agents_name_their_tools() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(dir.path(), "tools.yaml", TWO_SERVERS);
    write(
        dir.path(),
        "agents/pm.md",
        "---\ntools: [tracker, wiki.search]\nsequence:\n  - step: look\n    action: tool_call\n    tool: wiki.search\n---\nPlan.\n",
    );
    let c = compile(dir.path());
    let Some(bundle) = c.bundle else {
        let rendered: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
        panic!("no bundle:\n{}", rendered.join("\n"));
    };
    let tracker = &bundle.tools["tracker"];
    assert_eq!(tracker.kind, ToolKind::Mcp);
    assert_eq!(tracker.command, ["tracker-mcp", "--project", "web"]);
    assert_eq!(
        tracker.env["TRACKER_TOKEN"],
        SettingValue::FromEnv(EnvReference {
            env: "BMAD_TRACKER_TOKEN".into(),
            prefix: String::new()
        })
    );
    assert_eq!(tracker.env["RETRIES"], SettingValue::Text("3".into()));
    assert_eq!(tracker.connect_timeout_s, Some(10));
    assert_eq!(tracker.timeout_s, 30);
    let wiki = &bundle.tools["wiki"];
    assert_eq!(wiki.url.as_deref(), Some("http://127.0.0.1:9/mcp"));
    assert_eq!(
        wiki.headers["Authorization"].resolve(&|name| (name == "WIKI_TOKEN").then(|| "s3".into())),
        Ok("Bearer s3".to_string())
    );
    assert_eq!(
        wiki.headers["Authorization"].resolve(&|_| None),
        Err("environment variable `WIKI_TOKEN` is not set".to_string())
    );
    assert_eq!((wiki.connect_timeout_s, wiki.timeout_s), (Some(5), 60));
    assert_eq!(bundle.agents["pm"].tools, ["tracker", "wiki.search"]);
    // The secret itself never reaches the bundle, only the variable's name.
    let json = serde_json::to_string(&bundle).unwrap_or_default();
    assert!(json.contains("BMAD_TRACKER_TOKEN"), "{json}");
}

#[test]
fn mistakes_in_a_server_declaration_are_reported_where_they_are_written() {
    let tools = "tools:
  both:
    kind: mcp
    command: [a]
    url: http://h/mcp
  neither:
    kind: mcp
  ftp:
    kind: mcp
    url: ftp://h/mcp
  env_on_http:
    kind: mcp
    url: http://h/mcp
    env: {A: b}
  headers_on_stdio:
    kind: mcp
    command: [a]
    headers: {X-Key: b}
  described:
    kind: mcp
    command: [a]
    parameters: {type: object}
  two__parts:
    kind: mcp
    command: [a]
  bad_env:
    kind: mcp
    command: [a]
    env:
      1BAD: x
      TOKEN: {envv: T}
  slow:
    kind: mcp
    command: [a]
    connect_timeout: 0
  shell:
    kind: mcp
    command: tracker-mcp --stdio
  tls:
    kind: mcp
    url: https://h/mcp
";
    let found = errors(tools, "---\nid: pm\n---\nPlan.\n");
    let at = |code: &'static str, line: u32| (code, "tools.yaml".to_string(), line);
    assert_eq!(
        found,
        [
            at("bad-value", 4),             // both command and url
            at("missing-field", 7),         // neither
            at("bad-value", 10),            // ftp://
            at("field-not-applicable", 14), // env with url
            at("field-not-applicable", 18), // headers with command
            at("field-not-applicable", 22), // parameters come from the server
            at("bad-tool", 23),             // `__` in the name
            at("bad-value", 30),            // 1BAD
            at("missing-field", 31),        // no `env` in the reference
            at("unknown-key", 31),          // envv
            at("bad-value", 35),            // connect_timeout: 0
            at("wrong-type", 38),           // a shell string
            at("bad-value", 41),            // https is not implemented yet
        ]
    );
}

#[test]
fn agents_name_a_server_or_one_of_its_tools() {
    let tools = format!("{TWO_SERVERS}  lint:\n    kind: command\n    command: [markdownlint]\n");
    let agent = "---
id: pm
tools:
  - tracker
  - wiki.search
  - lint.fix
  - nosuch.tool
  - wiki.a.tool.name.that.makes.the.function.name.longer.than.sixty-four
sequence:
  - step: all
    action: tool_call
    tool: tracker
---
Plan.
";
    let found = errors(&tools, agent);
    let at = |code: &'static str, line: u32| (code, "agents/pm.md".to_string(), line);
    assert_eq!(
        found,
        [
            at("bad-tool", 6),     // lint is not an MCP server
            at("unknown-tool", 7), // no server `nosuch`
            at("bad-tool", 8),     // function name too long
            at("bad-tool", 12),    // a tool_call step calls one tool
        ]
    );
}
