//! MCP servers in tools.yaml (`kind: mcp`) and the names agents give their
//! tools: what a good declaration compiles to, and each mistake reported
//! with its code, file and line.

use bmad2pf_compiler::bundle::{CaFile, EnvReference, SettingValue, ToolKind};
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
    errors_with_files(tools, agent, &[])
}

/// [`errors`] with other source `files` (path, text).
fn errors_with_files(
    tools: &str,
    agent: &str,
    files: &[(&str, &str)],
) -> Vec<(&'static str, String, u32)> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(dir.path(), "tools.yaml", tools);
    write(dir.path(), "agents/pm.md", agent);
    for (path, text) in files {
        write(dir.path(), path, text);
    }
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

/// A self-signed CA certificate, in PEM, and the PEM of its private key.
fn test_ca() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap_or_else(|e| panic!("params: {e}"));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let certificate = params
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("certificate: {e}"));
    (certificate.pem(), key.serialize_pem())
}

#[test]
fn an_https_server_s_ca_file_is_checked_and_inlined_into_the_bundle() {
    let (ca, _) = test_ca();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        dir.path(),
        "tools.yaml",
        "tools:\n  wiki:\n    kind: mcp\n    url: https://wiki.internal/mcp\n    ca_file: ./certs/ca.pem\n  public:\n    kind: mcp\n    url: https://mcp.example.com/mcp\n",
    );
    write(dir.path(), "certs/ca.pem", &ca);
    write(
        dir.path(),
        "agents/pm.md",
        "---\ntools: [wiki, public]\n---\nPlan.\n",
    );
    let c = compile(dir.path());
    let Some(bundle) = c.bundle else {
        let rendered: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
        panic!("no bundle:\n{}", rendered.join("\n"));
    };
    assert_eq!(
        bundle.tools["wiki"].ca_file,
        Some(CaFile {
            path: "certs/ca.pem".into(),
            pem: ca
        })
    );
    assert_eq!(
        bundle.tools["wiki"].url.as_deref(),
        Some("https://wiki.internal/mcp")
    );
    // Without `ca_file`, the usual roots alone.
    assert_eq!(bundle.tools["public"].ca_file, None);
}

#[test]
fn mistakes_in_a_ca_file_are_reported_on_its_line() {
    let (ca, key) = test_ca();
    let tools = "tools:
  missing:
    kind: mcp
    url: https://h/mcp
    ca_file: certs/none.pem
  not_pem:
    kind: mcp
    url: https://h/mcp
    ca_file: notes.txt
  broken:
    kind: mcp
    url: https://h/mcp
    ca_file: broken.pem
  with_key:
    kind: mcp
    url: https://h/mcp
    ca_file: with-key.pem
  absolute:
    kind: mcp
    url: https://h/mcp
    ca_file: /etc/ssl/certs/ca.pem
  outside:
    kind: mcp
    url: https://h/mcp
    ca_file: ../ca.pem
  plain_http:
    kind: mcp
    url: http://h/mcp
    ca_file: ca.pem
  stdio:
    kind: mcp
    command: [a]
    ca_file: ca.pem
  listed:
    kind: mcp
    url: https://h/mcp
    ca_file: [ca.pem]
";
    let with_key = format!("{ca}{key}");
    let files = [
        ("ca.pem", ca.as_str()),
        ("notes.txt", "not a certificate\n"),
        (
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
        ("with-key.pem", with_key.as_str()),
    ];
    let found = errors_with_files(tools, "---\nid: pm\n---\nPlan.\n", &files);
    let at = |code: &'static str, line: u32| (code, "tools.yaml".to_string(), line);
    assert_eq!(
        found,
        [
            at("bad-ca-file", 5),           // no such file
            at("bad-ca-file", 9),           // no PEM certificate in it
            at("bad-ca-file", 13),          // a certificate that does not parse
            at("bad-ca-file", 17),          // a private key
            at("bad-ca-file", 21),          // an absolute path
            at("bad-ca-file", 25),          // outside the source directory
            at("field-not-applicable", 29), // http://
            at("field-not-applicable", 33), // stdio
            at("wrong-type", 37),           // not a string
        ]
    );
}

#[test]
fn a_ca_file_error_names_the_server_and_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        dir.path(),
        "tools.yaml",
        "tools:\n  wiki:\n    kind: mcp\n    url: https://h/mcp\n    ca_file: certs/ca.pem\n",
    );
    write(dir.path(), "certs/ca.pem", "hello\n");
    write(dir.path(), "agents/pm.md", "---\nid: pm\n---\nPlan.\n");
    let c = compile(dir.path());
    let messages: Vec<String> = c.diagnostics.iter().map(|d| d.message.clone()).collect();
    assert_eq!(
        messages,
        [
            "MCP server `wiki`: ca_file: `certs/ca.pem` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
        ]
    );
}
