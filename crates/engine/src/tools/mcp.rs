//! Tools from MCP servers (tools.yaml `kind: mcp`), through the official
//! Rust SDK's client (`rmcp`).
//!
//! Each declared server is one [`McpServer`]: a process spoken to over its
//! stdio, or a streamable HTTP endpoint (`http://` or `https://`, through
//! the client of [`super::mcp_http`]). The engine connects to every server
//! when it starts and lists its tools ([`McpServers::connect_all`]); a server
//! that is down then is logged and shown on `/health`, not fatal. The
//! connection is kept and shared by every agent; one that has gone (the
//! process died, a call timed out) is made again on the next use, so a
//! server that comes back is used again without a restart.
//!
//! Nothing here waits without a bound: connecting and listing the tools
//! share the server's connect time-out, each call has its call time-out.
//! When a server cannot be reached or does not answer, the error
//! ([`ToolError::Unavailable`]) names the server, and the agent that needed
//! it fails rather than carrying on without its tools. A call the server
//! answers with an error (a tool error, bad arguments) goes back to the
//! model like any other tool's failure.

use super::{MAX_TOOL_OUTPUT_BYTES, ToolError};
use crate::llm::ToolDefinition;
use bmad2pf_compiler::bundle::{
    DEFAULT_MCP_CONNECT_TIMEOUT_S, MCP_FUNCTION_SEPARATOR, MCP_TOOL_SEPARATOR, ToolKind, ToolSpec,
    is_function_name, mcp_function_name,
};
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, Tool};
use rmcp::service::{ClientInitializeError, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{Peer, ServiceError, ServiceExt};
use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The least time between two reconnections started by health checks.
const HEALTH_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// Every MCP server of a bundle, by name.
pub(crate) struct McpServers {
    servers: BTreeMap<String, Arc<McpServer>>,
}

/// How to reach one server, with the values of its `env`/`headers` resolved.
enum Endpoint {
    /// A process started from this argv, with these variables added to its environment.
    Stdio {
        argv: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// A streamable HTTP endpoint, the headers every request carries, and
    /// the client that sends them (with the server's TLS trust).
    Http {
        url: String,
        headers: HashMap<HeaderName, HeaderValue>,
        client: reqwest::Client,
    },
}

/// One MCP server and its connection.
pub(crate) struct McpServer {
    name: String,
    endpoint: Endpoint,
    connect_timeout: Duration,
    call_timeout: Duration,
    /// Held while connecting, so concurrent users wait for one attempt
    /// instead of starting one each.
    state: tokio::sync::Mutex<State>,
    /// Connection attempts started so far. A user that waited for the lock
    /// while another made an attempt takes that attempt's outcome rather
    /// than making one more, so waiting is bounded by one connect time-out.
    attempts: AtomicU64,
    /// Whether a background reconnection (started by a health check) is under way.
    reconnecting: AtomicBool,
}

enum State {
    /// No attempt made yet.
    Idle,
    Up(Connection),
    /// The last attempt failed, or the connection broke; why.
    Down(String),
}

struct Connection {
    /// The attempt that made it, so a failure seen on an older connection
    /// does not drop a newer one.
    attempt: u64,
    /// Keeps the client running (dropping it closes the session and, for
    /// stdio, ends the process).
    client: RunningService<RoleClient, ClientConfig>,
    /// The server's tools, as listed when connecting.
    tools: Arc<Vec<Tool>>,
}

/// What a user of a connection needs, taken out of the lock.
struct Link {
    attempt: u64,
    peer: Peer<RoleClient>,
    tools: Arc<Vec<Tool>>,
}

impl Connection {
    fn link(&self) -> Link {
        Link {
            attempt: self.attempt,
            peer: self.client.peer().clone(),
            tools: self.tools.clone(),
        }
    }

    fn is_alive(&self) -> bool {
        !self.client.is_closed() && !self.client.peer().is_transport_closed()
    }
}

impl McpServers {
    /// The servers declared in `tools`; `env` reads the variables their
    /// `env` and `headers` refer to. An unset variable or a value that is
    /// not a valid header is an error naming the server, at start-up.
    pub fn new(
        tools: &BTreeMap<String, ToolSpec>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let servers = tools
            .values()
            .filter(|spec| spec.kind == ToolKind::Mcp)
            .map(|spec| {
                let server = McpServer::new(spec, env)
                    .map_err(|e| format!("MCP server `{}` (tools.yaml): {e}", spec.name))?;
                Ok((spec.name.clone(), Arc::new(server)))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { servers })
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<McpServer>> {
        self.servers.values()
    }

    /// The server `name` refers to, and the tool when it names one:
    /// `server` (no tool), `server.tool` or `server__tool`.
    pub fn reference<'n>(&self, name: &'n str) -> Option<(&Arc<McpServer>, Option<&'n str>)> {
        if let Some(server) = self.servers.get(name) {
            return Some((server, None));
        }
        let (server, tool) = name
            .split_once(MCP_TOOL_SEPARATOR)
            .or_else(|| name.split_once(MCP_FUNCTION_SEPARATOR))?;
        Some((self.servers.get(server)?, Some(tool)))
    }

    /// Connects to every server in the background and lists its tools, so
    /// they are ready before the first agent needs them.
    pub fn connect_all(&self) {
        for server in self.servers.values() {
            let server = server.clone();
            tokio::spawn(async move {
                match server.tools().await {
                    Ok(tools) => tracing::info!(
                        server = server.name,
                        tools = tools.len(),
                        "MCP server connected"
                    ),
                    Err(error) => {
                        tracing::warn!(server = server.name, %error, "MCP server is down")
                    }
                }
            });
        }
    }

    /// Each server's health, as `mcp:<name>`: up, or why not. Never waits
    /// for a connection: a server being connected reports that, and a
    /// server that is down is tried again in the background (at most every
    /// few seconds), so a later check sees it back.
    pub fn health(&self) -> Vec<(String, Result<(), String>)> {
        self.servers
            .values()
            .map(|server| (format!("mcp:{}", server.name), server.health()))
            .collect()
    }
}

impl McpServer {
    fn new(spec: &ToolSpec, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let endpoint = match &spec.url {
            Some(url) => {
                let mut headers = HashMap::new();
                for (name, value) in &spec.headers {
                    let header = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| format!("header `{name}`: {e}"))?;
                    let value = HeaderValue::from_str(&value.resolve(env)?)
                        .map_err(|e| format!("header `{name}`: {e}"))?;
                    headers.insert(header, value);
                }
                Endpoint::Http {
                    url: url.clone(),
                    headers,
                    client: super::mcp_http::http_client(spec.ca_file.as_ref())?,
                }
            }
            None => {
                let env = spec
                    .env
                    .iter()
                    .map(|(name, value)| Ok((name.clone(), value.resolve(env)?)))
                    .collect::<Result<_, String>>()?;
                Endpoint::Stdio {
                    argv: spec.command.clone(),
                    env,
                }
            }
        };
        Ok(Self {
            name: spec.name.clone(),
            endpoint,
            connect_timeout: Duration::from_secs(
                spec.connect_timeout_s
                    .unwrap_or(DEFAULT_MCP_CONNECT_TIMEOUT_S),
            ),
            call_timeout: Duration::from_secs(spec.timeout_s),
            state: tokio::sync::Mutex::new(State::Idle),
            attempts: AtomicU64::new(0),
            reconnecting: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's tools, connecting first when there is no live connection.
    pub async fn tools(&self) -> Result<Arc<Vec<Tool>>, ToolError> {
        self.connection().await.map(|link| link.tools)
    }

    /// Function definitions for the server's tools (`only`: just that one),
    /// under the names the model calls them by. Tools whose name cannot be
    /// a function name are left out (and logged).
    pub async fn definitions(&self, only: Option<&str>) -> Result<Vec<ToolDefinition>, ToolError> {
        let tools = self.tools().await?;
        if let Some(wanted) = only
            && !tools.iter().any(|tool| tool.name == wanted)
        {
            return Err(self.unavailable(format!(
                "has no tool `{wanted}`; it has: {}",
                tool_names(tools.iter().map(|t| t.name.as_ref()))
            )));
        }
        Ok(tools
            .iter()
            .filter(|tool| only.is_none_or(|wanted| tool.name == wanted))
            .filter_map(|tool| {
                let function = mcp_function_name(&self.name, &tool.name);
                if !is_function_name(&function) {
                    tracing::warn!(
                        server = self.name,
                        tool = %tool.name,
                        "MCP tool left out: `{function}` is not a valid function name"
                    );
                    return None;
                }
                Some(ToolDefinition {
                    name: function,
                    description: tool
                        .description
                        .as_deref()
                        .or(tool.title.as_deref())
                        .unwrap_or_default()
                        .to_string(),
                    parameters: serde_json::Value::Object(tool.input_schema.as_ref().clone()),
                })
            })
            .collect())
    }

    /// Calls `tool` with the model's arguments, within the call time-out.
    pub async fn call(&self, tool: &str, args: &serde_json::Value) -> Result<String, ToolError> {
        let arguments = match args {
            serde_json::Value::Object(map) => map.clone(),
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                return Err(ToolError::BadArguments(format!(
                    "arguments must be a JSON object, found {other}"
                )));
            }
        };
        let link = self.connection().await?;
        let request = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let answer = tokio::time::timeout(self.call_timeout, link.peer.call_tool(request)).await;
        let result = match answer {
            Err(_) => {
                let why = format!(
                    "did not answer `{tool}` within {} s",
                    self.call_timeout.as_secs()
                );
                self.drop_connection(link.attempt, &why).await;
                return Err(self.unavailable(why));
            }
            // The server answered, with an error of its own (unknown tool,
            // bad arguments): the model may correct itself.
            Ok(Err(ServiceError::McpError(error))) => {
                return Err(ToolError::Failed(format!(
                    "MCP server `{}` refused `{tool}`: {}",
                    self.name, error.message
                )));
            }
            Ok(Err(error)) => {
                let why = format!("failed during `{tool}`: {error}");
                self.drop_connection(link.attempt, &why).await;
                return Err(self.unavailable(why));
            }
            Ok(Ok(result)) => result,
        };
        let text = result_text(&result);
        if result.is_error == Some(true) {
            return Err(ToolError::Failed(format!(
                "MCP server `{}`: `{tool}` failed: {text}",
                self.name
            )));
        }
        Ok(text)
    }

    /// A live connection: the one kept, or a new one.
    async fn connection(&self) -> Result<Link, ToolError> {
        let attempts_before = self.attempts.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        match &*state {
            State::Up(connection) if connection.is_alive() => return Ok(connection.link()),
            // Another user's attempt failed while this one waited: its answer is this one's.
            State::Down(why) if self.attempts.load(Ordering::Acquire) != attempts_before => {
                return Err(self.unavailable(why.clone()));
            }
            _ => {}
        }
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match tokio::time::timeout(self.connect_timeout, self.connect(attempt)).await {
            Ok(Ok(connection)) => {
                let link = connection.link();
                *state = State::Up(connection);
                Ok(link)
            }
            Ok(Err(why)) => {
                *state = State::Down(why.clone());
                Err(self.unavailable(why))
            }
            Err(_) => {
                let why = format!(
                    "did not connect and list its tools within {} s",
                    self.connect_timeout.as_secs()
                );
                *state = State::Down(why.clone());
                Err(self.unavailable(why))
            }
        }
    }

    /// Starts a session (the process, or the HTTP session) and lists the tools.
    async fn connect(&self, attempt: u64) -> Result<Connection, String> {
        let identity = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("bmad2pf", env!("CARGO_PKG_VERSION")),
        );
        let client = match &self.endpoint {
            Endpoint::Stdio { argv, env } => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| "its command is empty".to_string())?;
                let mut command = tokio::process::Command::new(program);
                command.args(args).envs(env.iter().cloned());
                let transport = TokioChildProcess::new(command)
                    .map_err(|e| format!("cannot start {program:?}: {e}"))?;
                identity.serve(transport).await
            }
            Endpoint::Http {
                url,
                headers,
                client,
            } => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(headers.clone());
                identity
                    .serve(StreamableHttpClientTransport::with_client(
                        client.clone(),
                        config,
                    ))
                    .await
            }
        }
        .map_err(|e| format!("cannot start an MCP session: {}", session_error(&e)))?;
        let tools = client
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| format!("cannot list its tools: {e}"))?;
        Ok(Connection {
            attempt,
            client,
            tools: Arc::new(tools),
        })
    }

    /// Forgets the connection made by `attempt`, which failed, so the next
    /// use makes a new one (a newer connection is kept).
    async fn drop_connection(&self, attempt: u64, why: &str) {
        let mut state = self.state.lock().await;
        if matches!(&*state, State::Up(connection) if connection.attempt == attempt) {
            *state = State::Down(why.to_string());
        }
    }

    fn health(self: &Arc<Self>) -> Result<(), String> {
        let Ok(state) = self.state.try_lock() else {
            return Err("connecting".into());
        };
        let why = match &*state {
            State::Up(connection) if connection.is_alive() => return Ok(()),
            State::Up(_) => "the connection closed".to_string(),
            State::Down(why) => why.clone(),
            State::Idle => "not connected yet".to_string(),
        };
        drop(state);
        if !self.reconnecting.swap(true, Ordering::AcqRel) {
            let server = self.clone();
            tokio::spawn(async move {
                match server.tools().await {
                    Ok(_) => tracing::info!(server = server.name, "MCP server reconnected"),
                    // Health checks come often (load balancers): a server
                    // that is still down is tried again after a pause, not
                    // on every check.
                    Err(_) => tokio::time::sleep(HEALTH_RECONNECT_PAUSE).await,
                }
                server.reconnecting.store(false, Ordering::Release);
            });
        }
        Err(why)
    }

    fn unavailable(&self, why: String) -> ToolError {
        ToolError::Unavailable(format!("MCP server `{}` {why}", self.name))
    }
}

/// Why a session could not start, for people: a transport's error with
/// its causes (the SDK's own message names Rust types).
fn session_error(error: &ClientInitializeError) -> String {
    let ClientInitializeError::TransportError { error, .. } = error else {
        return error.to_string();
    };
    let mut text = error.error.to_string();
    // The streamable HTTP transport's client error does not hand on its
    // cause as `source()`: reach into it, so a refused certificate or
    // connection is named.
    let mut cause = match error
        .error
        .downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        Some(StreamableHttpError::Client(client)) => client.source(),
        _ => error.error.source(),
    };
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

/// A call's result as text for the model: its text blocks, else its
/// structured content, else the blocks as JSON; cut at [`MAX_TOOL_OUTPUT_BYTES`].
fn result_text(result: &rmcp::model::CallToolResult) -> String {
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.as_str()))
        .collect();
    let mut text = if !texts.is_empty() {
        texts.join("\n")
    } else if let Some(structured) = &result.structured_content {
        structured.to_string()
    } else {
        serde_json::to_string(&result.content).unwrap_or_default()
    };
    if text.len() > MAX_TOOL_OUTPUT_BYTES {
        let mut cut = MAX_TOOL_OUTPUT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// At most 20 tool names, comma-separated.
pub(super) fn tool_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let shown = names
        .iter()
        .take(20)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len() {
        0 => "no tools".into(),
        1..=20 => shown,
        n => format!("{shown} … ({n} in all)"),
    }
}
