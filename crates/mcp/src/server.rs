//! `McpServer`: the SDK's server handler over the engine. It answers
//! `tools/list` from the bundle's catalog, runs `tools/call` through the
//! catalog's action for the tool, and serves documents as resources.
//!
//! Each request is served through [`guarded`], so a bug that panics
//! answers an MCP internal error instead of no answer at all.
//!
//! The engine is fetched from an [`EngineSource`] at the start of each
//! request, so a server that swaps its engine (`serve --watch`) offers the
//! new bundle's tools to the next request, and a request finishes on the
//! engine it started with.

use crate::arguments::Arguments;
use crate::catalog::{Action, Catalog};
use crate::documents;
use crate::errors::guarded;
use crate::execute;
use crate::runs::{self, Progress};
use bmad2pf_engine::Engine;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use std::sync::Arc;

/// Where the MCP server gets the engine for a request.
pub trait EngineSource: Send + Sync + 'static {
    /// The engine requests should use now.
    fn engine(&self) -> Arc<Engine>;
}

/// One engine for the life of the process (`bmad2pf mcp`).
impl EngineSource for Arc<Engine> {
    fn engine(&self) -> Arc<Engine> {
        Arc::clone(self)
    }
}

/// The MCP server: tools and resources over the engine. Cheap to clone
/// (the streamable HTTP transport makes one per session).
#[derive(Clone)]
pub struct McpServer {
    engines: Arc<dyn EngineSource>,
}

/// Told to clients at `initialize`, for the model that reads the tools.
const INSTRUCTIONS: &str = "bmad2pf runs multi-agent planning flows. Start one with a \
`run_<flow>` tool (a story id names the work; its documents are kept per story). A run that \
is still going when the call returns is polled with `get_run`; a run that stops with \
`questions` waits for a person: ask the user, then call `answer_question`. Documents a run \
wrote are read with `read_document` or as `doc://{story}/{name}` resources. `execute_<agent>` \
runs one agent on documents you supply, without storing anything.";

impl McpServer {
    pub fn new(engines: impl EngineSource) -> Self {
        Self {
            engines: Arc::new(engines),
        }
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResult, McpError> {
        let engine = self.engines.engine();
        let catalog = Catalog::of(&engine);
        let entry = catalog.find(&request.name).ok_or_else(|| {
            McpError::invalid_params(
                format!(
                    "unknown tool `{}`; tools/list names the tools of this bundle",
                    request.name
                ),
                None,
            )
        })?;
        let arguments = Arguments::check(&request.name, &entry.tool, request.arguments)?;
        let progress = Progress::for_request(&context);
        match &entry.action {
            Action::RunFlow(flow) => runs::run_flow(&engine, flow, arguments, progress).await,
            Action::GetRun => runs::get_run(&engine, arguments, progress).await,
            Action::ListRuns => runs::list_runs(&engine, arguments).await,
            Action::AnswerQuestion => runs::answer_question(&engine, arguments, progress).await,
            Action::ExecuteAgent(agent) => execute::execute_agent(&engine, agent, arguments).await,
            Action::ReadDocument => documents::read_document(&engine, arguments).await,
        }
    }
}

/// Every list of this server comes in one page and no cursor is ever
/// handed out, so any cursor a client sends is invalid (the MCP spec asks
/// for `invalid params` then).
fn refuse_cursor(request: Option<PaginatedRequestParams>) -> Result<(), McpError> {
    match request.and_then(|request| request.cursor) {
        Some(cursor) => Err(McpError::invalid_params(
            format!(
                "unknown cursor `{cursor}`: this server lists everything in one page and hands out no cursors"
            ),
            Some(serde_json::json!({
                "problems": [{"path": "/params/cursor", "message": "unknown cursor"}],
            })),
        )),
        None => Ok(()),
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("bmad2pf", env!("CARGO_PKG_VERSION")).with_title("bmad2pf"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        refuse_cursor(request)?;
        guarded(async {
            let catalog = Catalog::of(&self.engines.engine());
            Ok(ListToolsResult::with_all_items(catalog.tools()))
        })
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        guarded(self.call(request, context)).await.map(Into::into)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        refuse_cursor(request)?;
        guarded(async {
            let resources = documents::list(&self.engines.engine()).await?;
            Ok(ListResourcesResult::with_all_items(resources))
        })
        .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        refuse_cursor(request)?;
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            documents::template(),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        guarded(documents::read(&self.engines.engine(), &request.uri))
            .await
            .map(Into::into)
    }
}
