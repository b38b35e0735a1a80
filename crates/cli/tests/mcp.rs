//! bmad2pf as an MCP server, driven by the official SDK's client over both
//! transports: the real `bmad2pf mcp` binary over stdio, and `/mcp` of a
//! real `bmad2pf serve` (with an API key) over streamable HTTP. Both run
//! the same scenario on the shipped examples/planning with the mock LLM:
//! the tools and their schemas, a flow run to completion with progress
//! notifications, its document as a resource and through `read_document`,
//! an interactive run whose question is answered, a second run of a
//! story's flow refused while the first waits, a run polled with `get_run`
//! after the call's wait limit, stateless execute, and bad arguments
//! answered with MCP errors while the server keeps serving.

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ErrorCode, ProgressNotificationParam,
    ReadResourceRequestParams, ResourceContents,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
mod common;

use common::Server;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The shipped example; its stores land in `.bmad2pf/` of the working directory.
fn planning() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/planning")
}

/// A client that keeps the messages of the progress notifications it gets.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn progress(&self) -> Vec<String> {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(mut seen) = self.progress.lock() {
            seen.push(params.message.unwrap_or_default());
        }
    }
}

type Client = RunningService<RoleClient, Recorder>;

async fn call(
    client: &Client,
    tool: &str,
    arguments: Value,
) -> Result<CallToolResult, ServiceError> {
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
}

/// The structured answer of a call that succeeded.
async fn answer(
    client: &Client,
    tool: &str,
    arguments: Value,
) -> Result<Value, Box<dyn std::error::Error>> {
    let result = call(client, tool, arguments.clone()).await?;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} {arguments}: {result:?}"
    );
    result
        .structured_content
        .ok_or_else(|| format!("{tool} answered no structured content").into())
}

/// The MCP error a call was refused with.
async fn refusal(
    client: &Client,
    tool: &str,
    arguments: Value,
) -> Result<rmcp::ErrorData, Box<dyn std::error::Error>> {
    match call(client, tool, arguments.clone()).await {
        Err(ServiceError::McpError(error)) => Ok(error),
        other => Err(format!("{tool} {arguments} was not refused: {other:?}").into()),
    }
}

fn text_of(contents: &[ResourceContents]) -> String {
    contents
        .iter()
        .map(|c| match c {
            ResourceContents::TextResourceContents { text, .. } => text.clone(),
            _ => String::new(),
        })
        .collect()
}

/// Everything a client does, the same over either transport.
async fn exercise(client: &Client, recorder: &Recorder) -> TestResult {
    // The tools of the bundle, with schemas from it.
    let tools = client.list_all_tools().await?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in [
        "run_planning",
        "run_brief",
        "run_kickoff",
        "execute_analyst",
        "execute_pm",
        "get_run",
        "list_runs",
        "answer_question",
        "read_document",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let schema_of = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .map(|t| Value::Object(t.input_schema.as_ref().clone()))
            .unwrap_or_default()
    };
    let run_brief = schema_of("run_brief");
    assert_eq!(run_brief["required"], json!(["story_id", "input"]));
    let story = &run_brief["properties"]["story_id"];
    assert_eq!(story["type"], "string");
    assert!(
        story["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("[A-Za-z0-9]")),
        "{story}"
    );
    assert!(story["description"].is_string());
    let execute_pm = schema_of("execute_pm");
    assert_eq!(execute_pm["required"], json!(["instruction", "documents"]));
    assert_eq!(
        execute_pm["properties"]["documents"]["required"],
        json!(["project-brief.md"])
    );
    assert_eq!(
        schema_of("get_run")["properties"]["run_id"]["pattern"],
        "^run-[0-9A-Fa-f]{16}$"
    );

    // A flow run to completion, with progress on the way.
    let done = answer(
        client,
        "run_brief",
        json!({"story_id": "s1", "input": "a todo app for families"}),
    )
    .await?;
    assert_eq!(done["status"], "success", "{done}");
    let document = &done["documents"][0];
    assert_eq!(document["name"], "project-brief");
    assert_eq!(document["uri"], "doc://s1/project-brief");
    assert!(
        document["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{done}"
    );
    let progress = recorder.progress();
    assert!(
        progress.iter().any(|m| m.starts_with("analyst: started")),
        "{progress:?}"
    );
    assert!(
        progress.iter().any(|m| m.starts_with("analyst: completed")),
        "{progress:?}"
    );
    let run_id = done["run_id"].as_str().ok_or("a run id")?;
    let polled = answer(client, "get_run", json!({"run_id": run_id})).await?;
    assert_eq!(polled["status"], "success");
    let listed = answer(
        client,
        "list_runs",
        json!({"story_id": "s1", "status": ["success"]}),
    )
    .await?;
    assert_eq!(listed["runs"][0]["run_id"], run_id, "{listed}");

    // Its document, as a resource and through the tool.
    let resources = client.list_all_resources().await?;
    assert!(
        resources.iter().any(|r| r.uri == "doc://s1/project-brief"),
        "{resources:?}"
    );
    let templates = client.list_all_resource_templates().await?;
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "doc://{story}/{name}")
    );
    let read = client
        .read_resource(ReadResourceRequestParams::new("doc://s1/project-brief"))
        .await?;
    let text = text_of(&read.contents);
    assert!(text.starts_with("mock reply"), "{text}");
    let tool_read = call(
        client,
        "read_document",
        json!({"story_id": "s1", "name": "project-brief.md"}),
    )
    .await?;
    let tool_text: String = tool_read
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    assert_eq!(tool_text, text);

    // An interactive run stops with its question; the answer finishes it.
    let asked = answer(
        client,
        "run_kickoff",
        json!({"story_id": "s2", "input": "a todo app"}),
    )
    .await?;
    assert_eq!(asked["status"], "interrupted", "{asked}");
    let question = &asked["questions"][0];
    assert_eq!(question["agent"], "interviewer");
    assert_eq!(question["kind"], "ask");
    let kickoff = asked["run_id"].as_str().ok_or("a run id")?;
    let interrupt = question["interrupt_id"].as_str().ok_or("an interrupt id")?;
    let answered = answer(
        client,
        "answer_question",
        json!({"run_id": kickoff, "interrupt_id": interrupt, "answer": "Families sharing chores"}),
    )
    .await?;
    assert_eq!(answered["status"], "success", "{answered}");
    assert_eq!(answered["documents"][0]["uri"], "doc://s2/kickoff-notes");
    // Answered once: a second answer is refused by the run's state, as a tool error.
    let again = call(
        client,
        "answer_question",
        json!({"run_id": kickoff, "interrupt_id": interrupt, "answer": "again"}),
    )
    .await?;
    assert_eq!(again.is_error, Some(true));
    assert_eq!(
        again.structured_content.unwrap_or_default()["error"]["code"],
        "not_interrupted"
    );

    // A story with a run waiting: a second run of the flow is refused as a
    // tool error that names the run in progress.
    let waiting = answer(
        client,
        "run_kickoff",
        json!({"story_id": "s5", "input": "x"}),
    )
    .await?;
    assert_eq!(waiting["status"], "interrupted", "{waiting}");
    let second = call(
        client,
        "run_kickoff",
        json!({"story_id": "s5", "input": "x"}),
    )
    .await?;
    assert_eq!(second.is_error, Some(true));
    let refused = second.structured_content.unwrap_or_default();
    assert_eq!(refused["error"]["code"], "run_in_progress", "{refused}");
    assert_eq!(refused["error"]["details"]["run_id"], waiting["run_id"]);

    // A wait limit: the call answers at once and `get_run` follows the run to its end.
    let started = answer(
        client,
        "run_planning",
        json!({"story_id": "s4", "input": "a todo app", "mode": "headless", "wait_s": 0}),
    )
    .await?;
    let planning_run = started["run_id"].as_str().ok_or("a run id")?;
    if started["status"] != "success" {
        assert!(
            started["next"]
                .as_str()
                .is_some_and(|n| n.contains("get_run")),
            "{started}"
        );
    }
    let finished = answer(
        client,
        "get_run",
        json!({"run_id": planning_run, "wait_s": 60}),
    )
    .await?;
    assert_eq!(finished["status"], "success", "{finished}");
    let written: Vec<&str> = finished["documents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for name in ["project-brief", "prd", "architecture"] {
        assert!(written.contains(&name), "{name} missing from {written:?}");
    }

    // Stateless execute: its answer, nothing stored.
    let executed = answer(
        client,
        "execute_pm",
        json!({"instruction": "Write the PRD", "documents": {"project-brief.md": "# Brief\nA todo app."}}),
    )
    .await?;
    assert_eq!(executed["status"], "completed", "{executed}");

    // Bad arguments: MCP errors naming the problem.
    for (tool, arguments, names) in [
        ("run_brief", json!({"input": "x"}), "story_id"),
        (
            "run_brief",
            json!({"story_id": "../up", "input": "x"}),
            "/story_id",
        ),
        ("run_brief", json!({"story_id": "s3", "input": 7}), "/input"),
        (
            "run_brief",
            json!({"story_id": "s3", "input": "x", "colour": "red"}),
            "colour",
        ),
        ("get_run", json!({"run_id": "run-nope"}), "/run_id"),
        (
            "get_run",
            json!({"run_id": "run-0000000000000000"}),
            "unknown run",
        ),
        ("execute_pm", json!({"instruction": "x"}), "documents"),
        (
            "read_document",
            json!({"story_id": "s1", "name": "nothing-here"}),
            "no document",
        ),
        (
            "answer_question",
            json!({"run_id": kickoff}),
            "interrupt_id",
        ),
    ] {
        let error = refusal(client, tool, arguments.clone()).await?;
        assert_eq!(
            error.code,
            ErrorCode::INVALID_PARAMS,
            "{tool} {arguments}: {error:?}"
        );
        assert!(
            error.message.contains(names),
            "{tool} {arguments}: {}",
            error.message
        );
    }
    let unknown = refusal(client, "run_nothing", json!({})).await?;
    assert!(unknown.message.contains("unknown tool"), "{unknown:?}");
    let bad_uri = client
        .read_resource(ReadResourceRequestParams::new("doc://../etc"))
        .await;
    assert!(
        matches!(bad_uri, Err(ServiceError::McpError(_))),
        "{bad_uri:?}"
    );
    let missing = client
        .read_resource(ReadResourceRequestParams::new("doc://s1/nothing-here"))
        .await;
    assert!(
        matches!(missing, Err(ServiceError::McpError(_))),
        "{missing:?}"
    );

    // Still serving.
    assert_eq!(client.list_all_tools().await?.len(), tools.len());
    Ok(())
}

#[tokio::test]
async fn over_stdio_the_binary_serves_every_tool_and_resource() -> TestResult {
    let dir = tempfile::tempdir()?;
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bmad2pf")).configure(|cmd| {
        cmd.current_dir(dir.path())
            .arg("mcp")
            .arg("--src")
            .arg(planning())
            .env("BMAD2PF_LLM_MOCK_LATENCY_MS", "0")
            .env("LOG_LEVEL", "info");
    });
    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve(TokioChildProcess::new(command)?)
        .await?;
    exercise(&client, &recorder).await?;
    client.cancel().await?;
    Ok(())
}

/// The API key the HTTP test's server requires.
const KEY: &str = "mcp-test-key";

/// Starts `serve` on a free port, with the API key [`KEY`] when `with_key`;
/// returns once it listens.
fn serve(cwd: &Path, with_key: bool) -> Result<Server, Box<dyn std::error::Error>> {
    let src = planning();
    let mut env = vec![("BMAD2PF_LLM_MOCK_LATENCY_MS", "0")];
    if with_key {
        env.extend([
            ("BMAD2PF_SERVER_API_KEY_ENV", "MCP_TEST_API_KEY"),
            ("MCP_TEST_API_KEY", KEY),
        ]);
    }
    common::serve(cwd, &["--src", src.to_str().unwrap_or_default()], &env)
}

/// A raw `initialize` POST to `url`, with `host` as the `Host` header if given.
async fn initialize(
    url: &str,
    host: Option<&str>,
) -> Result<reqwest::Response, Box<dyn std::error::Error>> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}});
    let mut request = common::http_client()?
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    Ok(request.send().await?)
}

#[tokio::test]
async fn over_http_without_a_key_only_loopback_host_names_are_answered() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = serve(dir.path(), false)?;
    let url = format!("{}/mcp", server.base);
    let local = initialize(&url, None).await?;
    assert_eq!(local.status(), reqwest::StatusCode::OK);
    // A page on another site whose name was rebound to 127.0.0.1 sends its own name.
    let rebound = initialize(&url, Some("attacker.example")).await?;
    assert!(rebound.status().is_client_error(), "{}", rebound.status());
    Ok(())
}

#[tokio::test]
async fn over_http_mcp_needs_the_key_and_serves_the_same() -> TestResult {
    // The SDK's default HTTP client (`from_uri`, `from_config`) uses the
    // process-wide crypto provider.
    common::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let server = serve(dir.path(), true)?;
    let url = format!("{}/mcp", server.base);

    // Without the key: 401, before any MCP.
    let refused = initialize(&url, None).await?;
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let unauthenticated = ().serve(StreamableHttpClientTransport::from_uri(url.as_str())).await;
    assert!(
        unauthenticated.is_err(),
        "a client without the key connects"
    );

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header(KEY),
    );
    let recorder = Recorder::default();
    let client = recorder.clone().serve(transport).await?;
    exercise(&client, &recorder).await?;
    client.cancel().await?;
    Ok(())
}
