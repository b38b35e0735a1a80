//! The two ways bmad2pf speaks MCP: over stdio, for a client that starts
//! `bmad2pf mcp` as its child process, and over streamable HTTP, the
//! service the HTTP server mounts at `/mcp`.

use crate::server::{EngineSource, McpServer};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService, stdio_pipes};
use std::sync::Arc;

/// Serves MCP on this process's stdin and stdout until the client closes
/// them. Stdout carries protocol messages only: logs go to stderr.
pub async fn serve_stdio(engines: impl EngineSource) -> std::io::Result<()> {
    let service = McpServer::new(engines)
        .serve(stdio_pipes())
        .await
        .map_err(std::io::Error::other)?;
    service.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

/// The streamable HTTP service, one MCP session per client, each over the
/// engine `engines` hands out at its requests.
///
/// `any_host`: accept every `Host` header. Without it only loopback hosts
/// are (the SDK's guard against DNS rebinding, which matters for a server
/// without a key on a developer's machine); a server that requires an API
/// key is protected by the key instead, and may be reached by any name.
pub fn streamable_http_service(
    engines: impl EngineSource,
    any_host: bool,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default();
    let config = if any_host {
        config.disable_allowed_hosts()
    } else {
        config
    };
    let server = McpServer::new(engines);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
