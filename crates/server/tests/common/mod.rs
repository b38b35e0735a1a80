//! Test harness: a real engine (file stores in a temp dir, mock LLM) behind
//! the real router on 127.0.0.1:0, driven over HTTP.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use bmad2pf_compiler::bundle::{
    AgentSpec, Bundle, ErrorHandling, FlowSpec, LlmOverride, MemoryScope, SourceLayout, StepSpec,
    WaitFor,
};
use bmad2pf_compiler::config::{RuntimeConfig, WebhooksConfig};
use bmad2pf_engine::Engine;
use bmad2pf_server::{AppState, ServeOptions, serve_on};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Asserts that `response` has `status` and returns its JSON body.
pub async fn json_with(
    response: reqwest::Response,
    status: reqwest::StatusCode,
) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
    let url = response.url().clone();
    let actual = response.status();
    let text = response.text().await?;
    assert_eq!(actual, status, "{url}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Sends `request`, asserts that the answer has `status` and returns its
/// JSON body.
pub async fn call(
    request: reqwest::RequestBuilder,
    status: reqwest::StatusCode,
) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
    json_with(request.send().await?, status).await
}

/// Asserts that `response` is an error of `status` with the SPEC error
/// shape and `code`, and returns its body for further checks.
pub async fn assert_error(
    response: reqwest::Response,
    status: reqwest::StatusCode,
    code: &str,
) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
    let url = response.url().clone();
    let body = json_with(response, status).await?;
    assert_eq!(error_code(&body), code, "{url}: {body}");
    Ok(body)
}

/// Asserts the SPEC error shape and returns its code.
pub fn error_code(body: &serde_json::Value) -> &str {
    assert!(
        body["error"]["message"].is_string(),
        "not the error shape: {body}"
    );
    body["error"]["code"].as_str().unwrap_or_default()
}

/// An agent with the defaults the compiler would give it.
pub fn agent(id: &str, requires: &[&str]) -> AgentSpec {
    AgentSpec {
        id: id.into(),
        format_version: "2.0".into(),
        source: format!("agents/{id}.md"),
        description: format!("The {id}"),
        persona: None,
        tasks: vec![],
        checklists: vec![],
        templates: vec![],
        data: vec![],
        commands: vec![],
        tools: vec![],
        memory_scope: MemoryScope::Isolated,
        wait_for: WaitFor::default(),
        creates: vec![],
        requires: requires.iter().map(|s| s.to_string()).collect(),
        reads: vec![],
        updates: vec![],
        parallel: false,
        sequence: vec![],
        timeout_s: Some(30),
        retry_count: Some(0),
        error_handling: ErrorHandling::Stop,
        llm: LlmOverride::default(),
        output_schema: None,
        prompt_template: "You are the {{ agent.id }}. Task: {{ input }}".into(),
        metadata: BTreeMap::new(),
    }
}

fn step(id: &str, agent: &str) -> StepSpec {
    StepSpec {
        id: id.into(),
        agents: vec![agent.into()],
        next: BTreeMap::new(),
        creates: vec![],
        requires: vec![],
        updates: vec![],
        gate: None,
        metadata: BTreeMap::new(),
    }
}

/// Two agents in one flow `default`: analyst, then pm (which needs the analyst's document).
pub fn bundle(flow_names: &[&str]) -> Bundle {
    let agents = [agent("analyst", &[]), agent("pm", &["analyst"])];
    let flows = flow_names
        .iter()
        .map(|name| {
            let flow = FlowSpec {
                name: name.to_string(),
                description: "Plan a story".into(),
                source: "workflow.yaml".into(),
                steps: vec![step("step-1", "analyst"), step("step-2", "pm")],
                max_visits: 10,
                metadata: BTreeMap::new(),
            };
            (name.to_string(), flow)
        })
        .collect();
    Bundle {
        schema_version: 1,
        generator: "bmad2pf test".into(),
        source_hash: "0123abcd".into(),
        layout: SourceLayout::Preprocessing,
        agents: agents.into_iter().map(|a| (a.id.clone(), a)).collect(),
        flows,
        tools: BTreeMap::new(),
    }
}

/// How a test server is set up.
#[derive(Default)]
pub struct Setup {
    pub latency_ms: u64,
    pub api_key: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub cors_origins: Vec<String>,
    /// Overrides the server's header-read timeout (30 s).
    pub header_read_timeout: Option<std::time::Duration>,
    /// Overrides `runs.max_running_runs` and `runs.max_queued_runs`.
    pub max_running_runs: Option<usize>,
    pub max_queued_runs: Option<usize>,
    /// runtime.yaml `webhooks`.
    pub webhooks: WebhooksConfig,
    /// The value of the variable `webhooks.secret_env` names (unset when `None`).
    pub webhook_secret: Option<String>,
    /// Gives the analyst the `ask_human` tool: on the mock, it asks once.
    pub analyst_asks: bool,
    /// An agent beside the flow's two, in no flow.
    pub extra_agent: Option<AgentSpec>,
}

pub struct TestServer {
    pub base: String,
    pub address: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    /// Holds the stores' directories (`data/…`) and an `outside` sibling
    /// that traversal attempts would hit.
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// An engine on file stores under `dir/data`, with the mock LLM;
/// `configure` adjusts the runtime config first.
pub async fn engine(
    dir: &std::path::Path,
    configure: impl FnOnce(&mut RuntimeConfig),
    flows: &[&str],
) -> Result<Engine, Box<dyn std::error::Error + Send + Sync>> {
    engine_of(dir, configure, bundle(flows), &|_| None).await
}

/// [`engine`] running `bundle`, with `env` as its environment (API keys,
/// the webhook secret).
async fn engine_of(
    dir: &std::path::Path,
    configure: impl FnOnce(&mut RuntimeConfig),
    bundle: Bundle,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Engine, Box<dyn std::error::Error + Send + Sync>> {
    let mut config = RuntimeConfig::default();
    let data = dir.join("data");
    config.docs.path = data.join("docs").display().to_string();
    config.memory.path = data.join("memory").display().to_string();
    configure(&mut config);
    Ok(Engine::start(Arc::new(bundle), config, env).await?)
}

impl TestServer {
    pub async fn start(setup: Setup) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("outside"))?;
        let configure = |config: &mut RuntimeConfig| {
            config.llm.mock.latency_ms = setup.latency_ms;
            if let Some(max) = setup.max_body_bytes {
                config.server.max_body_bytes = max;
            }
            config.server.cors_origins = setup.cors_origins;
            if let Some(max) = setup.max_running_runs {
                config.runs.max_running_runs = max;
            }
            if let Some(max) = setup.max_queued_runs {
                config.runs.max_queued_runs = max;
            }
            config.webhooks = setup.webhooks.clone();
        };
        let mut bundle = bundle(&["default"]);
        if setup.analyst_asks
            && let Some(analyst) = bundle.agents.get_mut("analyst")
        {
            analyst.tools = vec!["ask_human".into()];
        }
        if let Some(extra) = setup.extra_agent {
            bundle.agents.insert(extra.id.clone(), extra);
        }
        let secret_env = setup.webhooks.secret_env.clone();
        let secret = setup.webhook_secret.clone();
        let env = move |name: &str| secret.clone().filter(|_| name == secret_env);
        let engine = engine_of(dir.path(), configure, bundle, &env).await?;
        // As `bmad2pf serve` does: a server takes over the queued runs of
        // dead processes and sends webhooks.
        engine.take_over_queued_runs();
        let state = AppState::new(Arc::new(engine), setup.api_key);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let serving = state.clone();
        let mut options = ServeOptions::default();
        if let Some(timeout) = setup.header_read_timeout {
            options.header_read_timeout = timeout;
        }
        let task = tokio::spawn(async move {
            let stopped = serve_on(listener, serving, &options, async {
                let _ = rx.await;
            })
            .await;
            if let Err(error) = stopped {
                eprintln!("server failed: {error}");
            }
        });
        Ok(Self {
            base: format!("http://{address}"),
            address,
            client: http_client()?,
            state,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> Result<String, reqwest::Error> {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await
    }

    /// Sends the request line and headers exactly as given (no client-side
    /// path normalisation) and returns the status code and the body.
    pub async fn raw(
        &self,
        method: &str,
        target: &str,
        body: &str,
    ) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/markdown\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let response = self.raw_bytes(request.as_bytes()).await?;
        Ok((response.status, response.body))
    }

    /// Writes `request` (request line, headers and whatever body bytes the
    /// test wants, honest or not) on a fresh connection and reads one
    /// response with [`read_response`].
    pub async fn raw_bytes(
        &self,
        request: &[u8],
    ) -> Result<RawResponse, Box<dyn std::error::Error + Send + Sync>> {
        let mut stream = TcpStream::connect(self.address).await?;
        stream.write_all(request).await?;
        read_response(&mut stream).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Signals shutdown (like SIGTERM) without waiting; returns the server task.
    pub fn begin_shutdown(&mut self) -> Option<JoinHandle<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take()
    }
}

/// Reads one response off `stream`: the head, then as many body bytes as
/// its `content-length` says (or up to the end of the stream without one).
/// It does not wait for the server to read the rest of a body it was
/// promised, and leaves the connection usable for the next request.
pub async fn read_response(
    stream: &mut TcpStream,
) -> Result<RawResponse, Box<dyn std::error::Error + Send + Sync>> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed before a response head".into());
        }
        received.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    let mut body = received[head_end + 4..].to_vec();
    while length.is_none_or(|length| body.len() < length) {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// A response read off a raw connection by [`read_response`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One parsed Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `id:` line, when there is one.
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// A minimal SSE reader over a streaming reqwest response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event called `name` (others skipped), or `None` at the end.
    pub async fn next_named(
        &mut self,
        name: &str,
    ) -> Result<Option<SseEvent>, Box<dyn std::error::Error + Send + Sync>> {
        while let Some(event) = self.next().await? {
            if event.event == name {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// The next event (comments skipped), or `None` at the end of the stream.
    pub async fn next(
        &mut self,
    ) -> Result<Option<SseEvent>, Box<dyn std::error::Error + Send + Sync>> {
        loop {
            if let Some((block, rest)) = self.buffer.split_once("\n\n") {
                let (block, rest) = (block.to_string(), rest.to_string());
                self.buffer = rest;
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut is_comment_only = true;
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = id.parse().ok();
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        event.event = name.to_string();
                        is_comment_only = false;
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data.push_str(data);
                        is_comment_only = false;
                    }
                }
                if is_comment_only {
                    continue;
                }
                return Ok(Some(event));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                None => return Ok(None),
            }
        }
    }
}

/// A client builder for the tests' requests. reqwest is built without a
/// TLS crypto provider of its own (the engine hands its clients a
/// configuration), so ring is installed as this process's provider first.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A client for the tests' requests (see [`http_client_builder`]).
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    http_client_builder().build()
}
