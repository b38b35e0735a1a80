//! bmad2pf as an MCP server, driven by the official SDK's client over both
//! transports: the real `bmad2pf mcp` binary over stdio, and `/mcp` of a
//! real `bmad2pf serve` (with an API key) over streamable HTTP. Both run
//! the same scenario on the shipped examples/planning with the mock LLM:
//! the tools and their schemas, a flow run to completion with progress
//! notifications, its document as a resource and through `read_document`,
//! an interactive run whose question is answered, a second run of a
//! story's flow refused while the first waits, a run polled with `get_run`
//! after the call's wait limit, stateless execute, and bad arguments
//! answered with MCP errors while the server keeps serving. Raw lines and
//! bodies then test what the SDK's client never sends: notifications before
//! `initialize`, params that do not fit their method, malformed HTTP
//! bodies; and the stdio server's shutdown on a closed stdin or SIGTERM,
//! which must leave no run `running`.

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

/// `bmad2pf mcp` driven line by line, for what the SDK's client never sends.
struct RawStdio {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    replies: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl RawStdio {
    fn start(cwd: &Path, env: &[(&str, &str)]) -> Result<Self, Box<dyn std::error::Error>> {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
            .current_dir(cwd)
            .arg("mcp")
            .arg("--src")
            .arg(planning())
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let replies = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        Ok(Self {
            child,
            stdin,
            replies,
        })
    }

    async fn send(&mut self, message: Value) -> TestResult {
        let stdin = self.stdin.as_mut().ok_or("stdin is closed")?;
        tokio::io::AsyncWriteExt::write_all(stdin, format!("{message}\n").as_bytes()).await?;
        Ok(())
    }

    /// The next message the server writes.
    async fn reply(&mut self) -> Result<Value, Box<dyn std::error::Error>> {
        let line =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.replies.next_line())
                .await??
                .ok_or("the server closed stdout")?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn initialize(&mut self) -> Result<Value, Box<dyn std::error::Error>> {
        self.send(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
        )
        .await?;
        let reply = self.reply().await?;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(reply)
    }

    /// The answer to one request.
    async fn request(
        &mut self,
        id: u64,
        method: &str,
        params: Value,
    ) -> Result<Value, Box<dyn std::error::Error>> {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let reply = self.reply().await?;
        assert_eq!(reply["id"], id, "{reply}");
        Ok(reply)
    }

    /// Closes stdin and waits for the process to exit.
    async fn close(&mut self) -> Result<std::process::ExitStatus, Box<dyn std::error::Error>> {
        drop(self.stdin.take());
        self.exit().await
    }

    async fn exit(&mut self) -> Result<std::process::ExitStatus, Box<dyn std::error::Error>> {
        Ok(tokio::time::timeout(std::time::Duration::from_secs(60), self.child.wait()).await??)
    }
}

#[tokio::test]
async fn over_stdio_notifications_before_initialize_and_malformed_params_stop_nothing() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let mut server = RawStdio::start(dir.path(), &[])?;
    // What some clients send too early: the SDK's handshake ended the
    // process on it (exit 2).
    server
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await?;
    server
        .send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}))
        .await?;
    // An initialize refused for its params, then the notification anyway.
    let refused = server
        .request(1, "initialize", json!({"protocolVersion": "2025-06-18"}))
        .await?;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    server
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await?;
    let initialized = server.initialize().await?;
    assert_eq!(
        initialized["result"]["serverInfo"]["name"], "bmad2pf",
        "{initialized}"
    );

    // Params that do not fit a known method: invalid params, to the id
    // (they were "method not found", or an answer without the id).
    for (id, method, params) in [
        (2, "tools/call", Value::Null),
        (3, "tools/call", json!({"arguments": {}})),
        (
            4,
            "tools/call",
            json!({"name": "get_run", "arguments": [1]}),
        ),
        (5, "tools/call", json!("x")),
        (6, "tools/list", json!([1, 2])),
        (7, "resources/read", json!({})),
        (8, "resources/read", json!({"uri": 5})),
        (9, "tools/list", json!({"cursor": 5})),
        (10, "tools/list", json!({"cursor": "next"})),
        (11, "resources/list", json!({"cursor": "next"})),
        (12, "resources/templates/list", json!({"cursor": "next"})),
    ] {
        let reply = server.request(id, method, params.clone()).await?;
        assert_eq!(reply["error"]["code"], -32602, "{method} {params}: {reply}");
        assert!(reply["error"]["data"]["problems"].is_array(), "{reply}");
    }
    // Tool arguments that fit the schema: 1.0 is an integer.
    let polled = server
        .request(
            13,
            "tools/call",
            json!({"name": "list_runs", "arguments": {"limit": 1.0}}),
        )
        .await?;
    assert_eq!(polled["result"]["isError"], false, "{polled}");
    let too_big = server
        .request(14, "tools/call", json!({"name": "read_document",
            "arguments": {"story_id": "s", "name": "prd", "version": 18_446_744_073_709_551_615_u64}}))
        .await?;
    assert_eq!(too_big["error"]["code"], -32602, "{too_big}");
    assert!(too_big["error"]["data"]["problems"].is_array(), "{too_big}");

    let pong = server.request(15, "ping", json!({})).await?;
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert!(server.close().await?.success());
    Ok(())
}

/// The status of `run_id` as another process on `cwd`'s store sees it.
async fn stored_run(cwd: &Path, run_id: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let mut other = RawStdio::start(cwd, &[])?;
    other.initialize().await?;
    let reply = other
        .request(
            1,
            "tools/call",
            json!({"name": "get_run", "arguments": {"run_id": run_id}}),
        )
        .await?;
    other.close().await?;
    Ok(reply["result"]["structuredContent"].clone())
}

/// Starts a `run_brief` that is still going when the call answers.
async fn start_a_run(server: &mut RawStdio) -> Result<String, Box<dyn std::error::Error>> {
    server.initialize().await?;
    let started = server
        .request(
            1,
            "tools/call",
            json!({"name": "run_brief",
            "arguments": {"story_id": "s1", "input": "an idea", "wait_s": 0}}),
        )
        .await?;
    let run = &started["result"]["structuredContent"];
    assert!(
        run["status"] == "queued" || run["status"] == "running",
        "{started}"
    );
    Ok(run["run_id"].as_str().ok_or("a run id")?.to_string())
}

#[tokio::test]
async fn over_stdio_a_closed_stdin_lets_running_runs_end_before_the_exit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = RawStdio::start(dir.path(), &[("BMAD2PF_LLM_MOCK_LATENCY_MS", "1500")])?;
    let run_id = start_a_run(&mut server).await?;
    // The client goes away: the run gets runs.shutdown_grace_s (30 s) to
    // end, and does; it was left `running`, its claim held.
    assert!(server.close().await?.success());
    let run = stored_run(dir.path(), &run_id).await?;
    assert_eq!(run["status"], "success", "{run}");
    Ok(())
}

#[tokio::test]
async fn over_stdio_sigterm_marks_the_runs_that_outlast_the_grace() -> TestResult {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir()?;
    let mut server = RawStdio::start(
        dir.path(),
        &[
            ("BMAD2PF_LLM_MOCK_LATENCY_MS", "60000"),
            ("BMAD2PF_RUNS_SHUTDOWN_GRACE_S", "1"),
        ],
    )?;
    let run_id = start_a_run(&mut server).await?;
    let pid = server.child.id().ok_or("no pid")?;
    kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGTERM)?;
    assert!(server.exit().await?.success());
    let run = stored_run(dir.path(), &run_id).await?;
    assert_eq!(run["status"], "error", "{run}");
    assert_eq!(run["error_code"], "interrupted_by_restart", "{run}");
    Ok(())
}

#[tokio::test]
async fn over_http_a_malformed_body_is_400_with_a_json_rpc_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = serve(dir.path(), false)?;
    let url = format!("{}/mcp", server.base);
    let client = common::http_client()?;
    for (body, code) in [
        (&b"not json"[..], -32700),
        (b"{\"a\":\"\xff\"}", -32700),
        (b"", -32700),
        (b"{\"foo\":1}", -32600),
        (
            b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
            -32600,
        ),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":\"x\"}",
            -32602,
        ),
    ] {
        let answer = client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        let shown = String::from_utf8_lossy(body).into_owned();
        assert_eq!(answer.status(), reqwest::StatusCode::BAD_REQUEST, "{shown}");
        let error: Value = answer.json().await?;
        assert_eq!(error["jsonrpc"], "2.0", "{shown}: {error}");
        assert_eq!(error["error"]["code"], code, "{shown}: {error}");
        if code == -32602 {
            assert_eq!(error["id"], 7, "{error}");
        }
    }
    // The right body still reaches the SDK.
    assert_eq!(
        initialize(&url, None).await?.status(),
        reqwest::StatusCode::OK
    );
    Ok(())
}
