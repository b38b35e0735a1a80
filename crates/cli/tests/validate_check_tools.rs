//! `bmad2pf validate --check-tools` as a real process: without the flag no
//! MCP server is contacted (one that is offline does not matter); with it,
//! a server that cannot be reached fails the check, named, in text and in
//! JSON. (The check against a live server's tool list is tested in the
//! engine, `engine_mcp`, with a real MCP server.)

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn validate(src: &Path, extra: &[&str]) -> Result<Output, std::io::Error> {
    Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
        .arg("validate")
        .arg("--src")
        .arg(src)
        .args(extra)
        .output()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sources whose agent names `notes.add` of an MCP server at `url`, and
/// whose second server is a program that does not exist.
fn write_sources(src: &Path, url: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(src.join("agents"))?;
    std::fs::write(
        src.join("tools.yaml"),
        format!(
            "tools:\n  notes:\n    kind: mcp\n    url: {url}\n    connect_timeout: 5\n  local:\n    kind: mcp\n    command: [/nonexistent/mcp-server]\n"
        ),
    )?;
    std::fs::write(
        src.join("agents/pm.md"),
        "---\nid: pm\ntools: [notes.add, local]\n---\nPlan.\n",
    )
}

#[test]
fn servers_are_contacted_only_when_asked() -> TestResult {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src, &format!("http://127.0.0.1:{port}/mcp"))?;

    let offline = validate(&src, &[])?;
    assert_eq!(offline.status.code(), Some(0), "{}", text(&offline.stderr));
    assert_eq!(text(&offline.stdout), "valid: 1 agent, 1 flow\n");

    let checked = validate(&src, &["--check-tools"])?;
    assert_eq!(checked.status.code(), Some(1));
    let stderr = text(&checked.stderr);
    assert!(
        stderr.contains("error: MCP server `notes` cannot start an MCP session"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: MCP server `local` cannot start \"/nonexistent/mcp-server\""),
        "{stderr}"
    );

    let json = validate(&src, &["--check-tools", "--format", "json"])?;
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(report["ok"], false);
    let check = &report["tool_check"];
    assert_eq!(check["servers"]["notes"]["ok"], false);
    assert_eq!(check["servers"]["local"]["ok"], false);
    assert_eq!(check["problems"].as_array().map(Vec::len), Some(2));
    Ok(())
}
