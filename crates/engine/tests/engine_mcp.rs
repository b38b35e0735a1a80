//! Tools from MCP servers in a run: a real MCP server written here with the
//! official SDK (`rmcp`), reached over stdio (this test program started
//! again as the server, see [`SERVE_STDIO`]) and over streamable HTTP on
//! loopback; the model is a local OpenAI-compatible server playing scripted
//! replies that call the server's tools.
//!
//! This file has its own `main` (`harness = false` in Cargo.toml): started
//! with [`SERVE_STDIO`] set, the program is the stdio MCP server and
//! nothing else may write to its stdout, which the test harness would.
//! Otherwise it runs the tests below in order; arguments that are not
//! flags keep the tests whose name contains one of them.

mod llm_common;

use bmad2pf_compiler::bundle::Bundle;
use bmad2pf_compiler::compile;
use bmad2pf_compiler::config::{ProviderKind, RuntimeConfig};
use bmad2pf_engine::Engine;
use bmad2pf_engine::outcome::{RunOutcome, RunRequest, RunStatus};
use bmad2pf_engine::runs::RunMode;
use bmad2pf_engine::tools::{ServerCheck, check_mcp_tools};
use llm_common::{VendorServer, text_reply, tool_call_reply};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Set (to anything) in the environment of this program to make it the
/// stdio MCP server. The engine sets it through tools.yaml's `env`.
const SERVE_STDIO: &str = "BMAD2PF_TEST_SERVE_MCP";

type Test = fn() -> Pin<Box<dyn Future<Output = ()>>>;

fn main() {
    if std::env::var_os(SERVE_STDIO).is_some() {
        serve_stdio();
        return;
    }
    /// Each test function with its name.
    macro_rules! tests {
        ($($test:ident),+ $(,)?) => {
            [$((stringify!($test), (|| Box::pin($test())) as Test)),+]
        };
    }
    let tests = tests![
        an_agent_calls_the_tools_of_a_stdio_server,
        an_agent_calls_one_tool_of_a_streamable_http_server,
        a_server_killed_mid_call_fails_the_agent_naming_it,
        a_server_that_does_not_answer_fails_the_agent_at_its_time_out,
        a_server_down_at_start_degrades_health_until_it_comes_back,
        the_tool_check_holds_the_names_agents_use_against_the_server,
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let chosen = tests.iter().filter(|(name, _)| {
        filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
    });
    let mut ran = 0;
    for (name, test) in chosen {
        println!("test {name} ...");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        runtime.block_on(test());
        runtime.shutdown_timeout(Duration::from_secs(5));
        println!("test {name} ... ok");
        ran += 1;
    }
    println!("test result: ok. {ran} passed");
}

// ---- the MCP server -------------------------------------------------------

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct AddArgs {
    /// The first number.
    a: i64,
    /// The second number.
    b: i64,
}

/// A small server with one tool of each behaviour the tests need.
#[derive(Clone)]
struct NotesServer {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl NotesServer {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Adds two integers.")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "The value of NOTE_PREFIX in the server's environment.")]
    fn prefix(&self) -> String {
        std::env::var("NOTE_PREFIX").unwrap_or_else(|_| "unset".into())
    }

    #[tool(
        description = "Writes the server's process id to the file PID_FILE names, then never answers."
    )]
    async fn stall(&self) -> String {
        if let Ok(path) = std::env::var("PID_FILE") {
            let _ = std::fs::write(path, std::process::id().to_string());
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "too late".into()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotesServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// This program as the stdio server: serves until the client goes away.
fn serve_stdio() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        let running = NotesServer::new()
            .serve(rmcp::transport::stdio())
            .await
            .unwrap_or_else(|e| panic!("serve stdio: {e}"));
        let _ = running.waiting().await;
    });
}

/// The server over streamable HTTP at `/mcp` on `listener`, recording the
/// `x-test-key` header of each request.
fn serve_http(listener: tokio::net::TcpListener, keys: Arc<Mutex<Vec<String>>>) {
    let service: StreamableHttpService<NotesServer, LocalSessionManager> =
        StreamableHttpService::new(
            || Ok(NotesServer::new()),
            Arc::default(),
            StreamableHttpServerConfig::default(),
        );
    let router =
        axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let keys = keys.clone();
                    async move {
                        if let Some(key) = request.headers().get("x-test-key") {
                            let key = key.to_str().unwrap_or_default().to_string();
                            keys.lock().unwrap_or_else(|e| e.into_inner()).push(key);
                        }
                        next.run(request).await
                    }
                },
            ));
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
}

// ---- the project and the engine --------------------------------------------

struct Setup {
    _dir: tempfile::TempDir,
    engine: Engine,
}

/// A project whose agent `researcher` has `agent_tools`, with `tools_yaml`, compiled.
fn project(tools_yaml: &str, agent_tools: &str) -> (tempfile::TempDir, Bundle) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let src = dir.path().join("src");
    write(&src.join("tools.yaml"), tools_yaml);
    write(
        &src.join("agents/researcher.md"),
        &format!(
            "---\nid: researcher\ntools: [{agent_tools}]\nretry_count: 0\n---\nResearch {{{{ input }}}}.\n"
        ),
    );
    let compiled = compile(&src);
    let problems: Vec<String> = compiled
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    let bundle = compiled
        .bundle
        .unwrap_or_else(|| panic!("compiles: {problems:#?}"));
    (dir, bundle)
}

/// `env` as an environment lookup.
fn lookup(env: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// An engine on [`project`], the model at `llm`, and `env` as its environment.
async fn setup(
    tools_yaml: &str,
    agent_tools: &str,
    llm: &VendorServer,
    env: &[(&str, &str)],
) -> Setup {
    let (dir, bundle) = project(tools_yaml, agent_tools);
    let mut config = RuntimeConfig::default();
    config.docs.path = dir.path().join("docs").display().to_string();
    config.memory.path = dir.path().join("memory").display().to_string();
    config.llm.provider = ProviderKind::OpenaiCompatible;
    config.llm.base_url = Some(format!("{}/v1", llm.url));
    let engine = Engine::start(Arc::new(bundle), config, &lookup(env))
        .await
        .unwrap_or_else(|e| panic!("engine: {e}"));
    Setup { _dir: dir, engine }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// tools.yaml with the stdio server `notes` (this program), `extra` added to its entry.
fn stdio_tools(extra: &str) -> String {
    let program = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    format!(
        "tools:\n  notes:\n    kind: mcp\n    command: [{:?}]\n{extra}",
        program.display().to_string()
    )
}

async fn run(engine: &Engine) -> RunOutcome {
    let request = RunRequest {
        flow: "default".into(),
        story_id: "s".into(),
        input: "numbers".into(),
        force: true,
        budget: None,
    };
    // A guard against a hang, far above every time-out these tests set.
    tokio::time::timeout(
        Duration::from_secs(120),
        engine.run(request, RunMode::Headless, None),
    )
    .await
    .unwrap_or_else(|_| panic!("the run did not end"))
    .unwrap_or_else(|e| panic!("run: {e}"))
    .outcome
}

/// The tool results the engine sent back to the model, in order.
fn tool_results(llm: &VendorServer) -> Vec<String> {
    let requests = llm.requests();
    let last = requests
        .last()
        .map(|r| r.body["messages"].clone())
        .unwrap_or_default();
    last.as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The functions offered to the model in its first request, by name.
fn offered(llm: &VendorServer) -> Vec<Value> {
    llm.requests()[0].body["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `/health`'s entry for MCP server `notes`, once it is no longer connecting.
async fn notes_health(engine: &Engine) -> Result<(), String> {
    for _ in 0..200 {
        let found = engine
            .health()
            .await
            .into_iter()
            .find(|(name, _)| name == "mcp:notes")
            .map(|(_, health)| health)
            .unwrap_or_else(|| panic!("no mcp:notes in the health report"));
        match found {
            Err(why) if why == "connecting" || why == "not connected yet" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
    panic!("mcp:notes kept connecting")
}

// ---- the tests --------------------------------------------------------------

async fn an_agent_calls_the_tools_of_a_stdio_server() {
    let llm = VendorServer::start(vec![
        tool_call_reply(&[
            ("notes__add", json!({"a": 2, "b": 40})),
            ("notes__prefix", json!({})),
        ]),
        text_reply("The sum is 42."),
    ])
    .await;
    let tools = stdio_tools(&format!(
        "    env: {{{SERVE_STDIO}: \"1\", NOTE_PREFIX: {{env: TEST_NOTE_PREFIX, prefix: \"n-\"}}}}\n"
    ));
    let s = setup(&tools, "notes", &llm, &[("TEST_NOTE_PREFIX", "7")]).await;
    assert_eq!(notes_health(&s.engine).await, Ok(()));
    let outcome = run(&s.engine).await;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    assert_eq!(tool_results(&llm), ["42", "n-7"]);
    // Every tool of the server, under its function name, with the server's schema.
    let functions = offered(&llm);
    let names: Vec<&str> = functions
        .iter()
        .filter_map(|f| f["function"]["name"].as_str())
        .collect();
    assert_eq!(names, ["notes__add", "notes__prefix", "notes__stall"]);
    let add = &functions[0]["function"];
    assert_eq!(add["description"], "Adds two integers.");
    assert_eq!(
        add["parameters"]["properties"]["a"]["description"],
        "The first number."
    );
    assert_eq!(add["parameters"]["required"], json!(["a", "b"]));
}

async fn an_agent_calls_one_tool_of_a_streamable_http_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("address: {e}"));
    let keys = Arc::new(Mutex::new(Vec::new()));
    serve_http(listener, keys.clone());
    let llm = VendorServer::start(vec![
        tool_call_reply(&[
            ("notes__add", json!({"a": 1, "b": 2})),
            // Not one the agent named: refused, and the model is told so.
            ("notes__prefix", json!({})),
            // Wrong arguments: the server's error goes back to the model.
            ("notes__add", json!({"a": "one"})),
        ]),
        text_reply("3."),
    ])
    .await;
    let tools = format!(
        "tools:\n  notes:\n    kind: mcp\n    url: http://{address}/mcp\n    headers: {{X-Test-Key: {{env: TEST_KEY}}}}\n"
    );
    let s = setup(&tools, "notes.add", &llm, &[("TEST_KEY", "k-1")]).await;
    let outcome = run(&s.engine).await;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    let results = tool_results(&llm);
    assert_eq!(results[0], "3");
    assert_eq!(
        results[1],
        "error: tool `notes__prefix` is not available to this agent"
    );
    assert!(
        results[2].starts_with("error: ") && results[2].contains("notes"),
        "{results:?}"
    );
    let names: Vec<Value> = offered(&llm)
        .iter()
        .map(|f| f["function"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("notes__add")]);
    let keys = keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k == "k-1"),
        "{keys:?}"
    );
}

async fn a_server_killed_mid_call_fails_the_agent_naming_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let pid_file = dir.path().join("server.pid");
    let llm = VendorServer::start(vec![tool_call_reply(&[("notes__stall", json!({}))])]).await;
    let tools = stdio_tools(&format!(
        "    env: {{{SERVE_STDIO}: \"1\", PID_FILE: {:?}}}\n    timeout: 600\n",
        pid_file.display().to_string()
    ));
    let s = setup(&tools, "notes", &llm, &[]).await;
    let engine = Arc::new(s.engine);
    let running = tokio::spawn({
        let engine = engine.clone();
        async move { run(&engine).await }
    });
    let pid = loop {
        match std::fs::read_to_string(&pid_file) {
            Ok(pid) if !pid.is_empty() => break pid,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(killed.success());
    // The call was allowed 600 s; the run ends as soon as the server is gone.
    let outcome = running.await.unwrap_or_else(|e| panic!("run task: {e}"));
    assert_eq!(outcome.status, RunStatus::Error, "{outcome:#?}");
    let error = &outcome.errors["researcher"];
    assert!(
        error.starts_with("tool_failed: ") && error.contains("MCP server `notes`"),
        "{error}"
    );
    // Asked once, never again after the server died.
    assert_eq!(llm.requests().len(), 1);
}

async fn a_server_that_does_not_answer_fails_the_agent_at_its_time_out() {
    let llm = VendorServer::start(vec![tool_call_reply(&[("notes__stall", json!({}))])]).await;
    let tools = stdio_tools(&format!(
        "    env: {{{SERVE_STDIO}: \"1\"}}\n    timeout: 1\n"
    ));
    let s = setup(&tools, "notes", &llm, &[]).await;
    let outcome = run(&s.engine).await;
    assert_eq!(outcome.status, RunStatus::Error, "{outcome:#?}");
    assert_eq!(
        outcome.errors["researcher"],
        "tool_failed: MCP server `notes` did not answer `stall` within 1 s"
    );
}

async fn a_server_down_at_start_degrades_health_until_it_comes_back() {
    // A port nothing listens on, for now.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("address: {e}"));
    drop(listener);
    let llm = VendorServer::start(vec![
        tool_call_reply(&[("notes__add", json!({"a": 20, "b": 22}))]),
        text_reply("42."),
    ])
    .await;
    let tools = format!(
        "tools:\n  notes:\n    kind: mcp\n    url: http://{address}/mcp\n    connect_timeout: 5\n"
    );
    let s = setup(&tools, "notes", &llm, &[]).await;
    let down = notes_health(&s.engine).await;
    assert!(
        matches!(&down, Err(why) if why.starts_with("cannot start an MCP session")),
        "{down:?}"
    );
    // The agent that needs it fails naming it, before any model call.
    let outcome = run(&s.engine).await;
    assert_eq!(outcome.status, RunStatus::Error, "{outcome:#?}");
    let error = &outcome.errors["researcher"];
    assert!(
        error.starts_with("tool_failed: MCP server `notes` cannot start an MCP session"),
        "{error}"
    );
    assert!(llm.requests().is_empty());
    // The server comes up; the next run connects to it.
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("bind {address}: {e}"));
    serve_http(listener, Arc::default());
    let outcome = run(&s.engine).await;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    assert_eq!(tool_results(&llm), ["42"]);
    assert_eq!(notes_health(&s.engine).await, Ok(()));
}

async fn the_tool_check_holds_the_names_agents_use_against_the_server() {
    let tools = stdio_tools(&format!("    env: {{{SERVE_STDIO}: \"1\"}}\n"));
    let (_dir, bundle) = project(&tools, "notes.add, notes.subtract");
    let check = check_mcp_tools(&bundle, &lookup(&[]))
        .await
        .unwrap_or_else(|e| panic!("check: {e}"));
    assert_eq!(
        check.servers,
        [ServerCheck {
            server: "notes".into(),
            tools: Ok(vec!["add".into(), "prefix".into(), "stall".into()]),
        }]
    );
    assert_eq!(
        check.problems,
        [
            "agent `researcher` names `notes.subtract`, but MCP server `notes` has no tool `subtract`; it has: add, prefix, stall"
        ]
    );
}
