//! Tools from MCP servers in a run: a real MCP server written here with the
//! official SDK (`rmcp`), reached over stdio (this test program started
//! again as the server, see [`SERVE_STDIO`]) and over streamable HTTP on
//! loopback, plain and over TLS with a CA and certificate made by the test
//! ([`TestPki`]); the model is a local OpenAI-compatible server playing scripted
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
        an_agent_calls_an_https_server_its_ca_file_trusts,
        an_https_server_whose_certificate_is_not_trusted_fails_the_agent_naming_it,
        a_ca_file_that_is_not_a_certificate_stops_the_engine_naming_it,
        a_redirect_is_followed_on_the_server_only,
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
    let router = notes_router(keys);
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
}

/// The server's routes: streamable HTTP at `/mcp`, recording the
/// `x-test-key` header of each request in `keys`.
fn notes_router(keys: Arc<Mutex<Vec<String>>>) -> axum::Router {
    let service: StreamableHttpService<NotesServer, LocalSessionManager> =
        StreamableHttpService::new(
            || Ok(NotesServer::new()),
            Arc::default(),
            StreamableHttpServerConfig::default(),
        );
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
        ))
}

// ---- the server over https --------------------------------------------------

/// A CA made for one test, and the TLS set-up of a server whose certificate
/// (for 127.0.0.1) that CA issued.
struct TestPki {
    /// The CA's certificate, as a `ca_file` holds it.
    ca_pem: String,
    server_tls: Arc<rustls::ServerConfig>,
}

impl TestPki {
    /// A CA named `ca_name` and a server certificate it issued.
    fn new(ca_name: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap_or_else(|e| panic!("CA params: {e}"));
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)
            .unwrap_or_else(|e| panic!("CA certificate: {e}"));
        let server_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
        let server_certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .and_then(|params| params.signed_by(&server_key, &ca))
            .unwrap_or_else(|e| panic!("server certificate: {e}"));
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der());
        let mut server_tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(vec![server_certificate.der().clone()], key.into())
        })
        .unwrap_or_else(|e| panic!("server TLS: {e}"));
        server_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            ca_pem: ca.pem(),
            server_tls: Arc::new(server_tls),
        }
    }
}

/// The server over streamable HTTP in TLS at `/mcp` on `listener`, with
/// `pki`'s server certificate.
fn serve_https(listener: tokio::net::TcpListener, pki: &TestPki) {
    let router = notes_router(Arc::default());
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_tls.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
}

/// A loopback listener and its `https://…/mcp` URL.
async fn https_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("address: {e}"));
    (listener, format!("https://{address}/mcp"))
}

// ---- the project and the engine --------------------------------------------

struct Setup {
    _dir: tempfile::TempDir,
    engine: Engine,
}

/// A project whose agent `researcher` has `agent_tools`, with `tools_yaml`
/// and the other source `files` (path, text), compiled.
fn project(
    tools_yaml: &str,
    agent_tools: &str,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, Bundle) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let src = dir.path().join("src");
    write(&src.join("tools.yaml"), tools_yaml);
    for (path, text) in files {
        write(&src.join(path), text);
    }
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

/// An engine on [`project`] (without other files), the model at `llm`, and
/// `env` as its environment.
async fn setup(
    tools_yaml: &str,
    agent_tools: &str,
    llm: &VendorServer,
    env: &[(&str, &str)],
) -> Setup {
    setup_with_files(tools_yaml, agent_tools, &[], llm, env).await
}

/// [`setup`] with other source `files`.
async fn setup_with_files(
    tools_yaml: &str,
    agent_tools: &str,
    files: &[(&str, &str)],
    llm: &VendorServer,
    env: &[(&str, &str)],
) -> Setup {
    let (dir, bundle) = project(tools_yaml, agent_tools, files);
    let engine = start(&dir, bundle, llm, env)
        .await
        .unwrap_or_else(|e| panic!("engine: {e}"));
    Setup { _dir: dir, engine }
}

/// An engine on `bundle`, its stores in `dir`, the model at `llm`.
async fn start(
    dir: &tempfile::TempDir,
    bundle: Bundle,
    llm: &VendorServer,
    env: &[(&str, &str)],
) -> Result<Engine, String> {
    let mut config = RuntimeConfig::default();
    config.docs.path = dir.path().join("docs").display().to_string();
    config.memory.path = dir.path().join("memory").display().to_string();
    config.llm.provider = ProviderKind::OpenaiCompatible;
    config.llm.base_url = Some(format!("{}/v1", llm.url));
    Engine::start(Arc::new(bundle), config, &lookup(env))
        .await
        .map_err(|e| e.to_string())
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
    no_session_with_notes(&s.engine, &llm).await;
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

/// A run whose agent needs the `notes` server, which cannot be reached:
/// the agent fails naming it, before any model call; its error.
async fn no_session_with_notes(engine: &Engine, llm: &VendorServer) -> String {
    let outcome = run(engine).await;
    assert_eq!(outcome.status, RunStatus::Error, "{outcome:#?}");
    let error = outcome.errors["researcher"].clone();
    assert!(
        error.starts_with("tool_failed: MCP server `notes` cannot start an MCP session"),
        "{error}"
    );
    assert!(llm.requests().is_empty());
    error
}

/// `validate --check-tools` on `bundle`: it reaches the `notes` server and
/// lists its tools; the problems it found.
async fn check_reaches_notes(bundle: &Bundle) -> Vec<String> {
    let check = check_mcp_tools(bundle, &lookup(&[]))
        .await
        .unwrap_or_else(|e| panic!("check: {e}"));
    assert_eq!(
        check.servers,
        [ServerCheck {
            server: "notes".into(),
            tools: Ok(vec!["add".into(), "prefix".into(), "stall".into()]),
        }]
    );
    check.problems
}

async fn the_tool_check_holds_the_names_agents_use_against_the_server() {
    let tools = stdio_tools(&format!("    env: {{{SERVE_STDIO}: \"1\"}}\n"));
    let (_dir, bundle) = project(&tools, "notes.add, notes.subtract", &[]);
    let problems = check_reaches_notes(&bundle).await;
    assert_eq!(
        problems,
        [
            "agent `researcher` names `notes.subtract`, but MCP server `notes` has no tool `subtract`; it has: add, prefix, stall"
        ]
    );
}

async fn an_agent_calls_an_https_server_its_ca_file_trusts() {
    let pki = TestPki::new("bmad2pf test CA");
    let (listener, url) = https_listener().await;
    serve_https(listener, &pki);
    let llm = VendorServer::start(vec![
        tool_call_reply(&[("notes__add", json!({"a": 5, "b": 6}))]),
        text_reply("11."),
    ])
    .await;
    let tools =
        format!("tools:\n  notes:\n    kind: mcp\n    url: {url}\n    ca_file: certs/ca.pem\n");
    let files = [("certs/ca.pem", pki.ca_pem.as_str())];
    let s = setup_with_files(&tools, "notes", &files, &llm, &[]).await;
    assert_eq!(notes_health(&s.engine).await, Ok(()));
    let outcome = run(&s.engine).await;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    assert_eq!(tool_results(&llm), ["11"]);
    // `validate --check-tools` reaches it the same way.
    let (_dir, bundle) = project(&tools, "notes.add", &files);
    let problems = check_reaches_notes(&bundle).await;
    assert!(problems.is_empty(), "{problems:?}");
}

async fn an_https_server_whose_certificate_is_not_trusted_fails_the_agent_naming_it() {
    let pki = TestPki::new("bmad2pf test CA");
    let (listener, url) = https_listener().await;
    serve_https(listener, &pki);
    let other_ca = TestPki::new("another CA").ca_pem;
    // Trusted by neither the usual roots nor another CA's file. The connect
    // time-out is far longer than a refused handshake takes: the error says
    // why the certificate was refused, not that time ran out.
    let without_ca_file =
        format!("tools:\n  notes:\n    kind: mcp\n    url: {url}\n    connect_timeout: 60\n");
    let with_other_ca = format!("{without_ca_file}    ca_file: other-ca.pem\n");
    for tools in [without_ca_file, with_other_ca] {
        let llm = VendorServer::start(vec![text_reply("never asked")]).await;
        let files = [("other-ca.pem", other_ca.as_str())];
        let s = setup_with_files(&tools, "notes", &files, &llm, &[]).await;
        let error = no_session_with_notes(&s.engine, &llm).await;
        assert!(
            error.contains("invalid peer certificate: UnknownIssuer"),
            "{error}"
        );
        let health = notes_health(&s.engine).await;
        assert!(
            matches!(&health, Err(why) if why.contains("UnknownIssuer")),
            "{health:?}"
        );
    }
}

async fn a_ca_file_that_is_not_a_certificate_stops_the_engine_naming_it() {
    let pki = TestPki::new("bmad2pf test CA");
    let tools =
        "tools:\n  notes:\n    kind: mcp\n    url: https://127.0.0.1:9/mcp\n    ca_file: ca.pem\n";
    let (dir, mut bundle) = project(tools, "notes", &[("ca.pem", pki.ca_pem.as_str())]);
    // The compiler checks the file; a bundle edited by hand is checked again at start.
    let Some(ca_file) = bundle
        .tools
        .get_mut("notes")
        .and_then(|spec| spec.ca_file.as_mut())
    else {
        panic!("the bundle has no ca_file for notes");
    };
    ca_file.pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
    let llm = VendorServer::start(vec![]).await;
    let Err(error) = start(&dir, bundle, &llm, &[]).await else {
        panic!("the engine started with a broken ca_file");
    };
    assert!(
        error.contains(
            "MCP server `notes` (tools.yaml): ca_file `ca.pem`: certificate 1 is not a valid X.509 certificate"
        ),
        "{error}"
    );
}

async fn a_redirect_is_followed_on_the_server_only() {
    /// Every request to this router is sent on to `to` with a 307.
    fn moved_to(to: String) -> axum::Router {
        axum::Router::new().fallback(move || {
            let to = to.clone();
            async move {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, to)],
                )
            }
        })
    }
    let server = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let server_address = server
        .local_addr()
        .unwrap_or_else(|e| panic!("address: {e}"));
    // `/moved` on the server itself, and another origin, both sending on to `/mcp`.
    let router = notes_router(Arc::default()).nest_service("/moved", moved_to("/mcp".into()));
    tokio::spawn(async move { axum::serve(server, router).await.ok() });
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let elsewhere_address = elsewhere
        .local_addr()
        .unwrap_or_else(|e| panic!("address: {e}"));
    let to_server = moved_to(format!("http://{server_address}/mcp"));
    tokio::spawn(async move { axum::serve(elsewhere, to_server).await.ok() });

    let llm = VendorServer::start(vec![
        tool_call_reply(&[("notes__add", json!({"a": 1, "b": 1}))]),
        text_reply("2."),
    ])
    .await;
    let tools =
        format!("tools:\n  notes:\n    kind: mcp\n    url: http://{server_address}/moved\n");
    let s = setup(&tools, "notes", &llm, &[]).await;
    let outcome = run(&s.engine).await;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    assert_eq!(tool_results(&llm), ["2"]);

    // Another host would be handed the session and the headers: not followed.
    let llm = VendorServer::start(vec![text_reply("never asked")]).await;
    let tools =
        format!("tools:\n  notes:\n    kind: mcp\n    url: http://{elsewhere_address}/mcp\n");
    let s = setup(&tools, "notes", &llm, &[]).await;
    no_session_with_notes(&s.engine, &llm).await;
}
