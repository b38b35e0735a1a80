//! The two ways bmad2pf speaks MCP: over stdio, for a client that starts
//! `bmad2pf mcp` as its child process, and over streamable HTTP, the
//! service the HTTP server mounts at `/mcp`. Both check what the client
//! sends before the SDK does (`incoming.rs`), so that nothing a client
//! sends stops the server and every request is answered with its id.

use crate::http::McpHttpService;
use crate::server::{EngineSource, McpServer};
use crate::stdio::StdioTransport;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService, stdio_pipes};
use std::future::Future;
use std::sync::Arc;

/// Serves MCP on this process's stdin and stdout until the client closes
/// stdin or `shutdown` completes (SIGTERM, say), whichever comes first.
/// Stdout carries protocol messages only: logs go to stderr.
///
/// It returns as soon as the session has ended: calls still waiting for a
/// run are dropped unanswered (the client has gone, or is being stopped).
/// The runs themselves go on in the engine; the caller stops them
/// ([`Engine::stop_runs`](bmad2pf_engine::Engine::stop_runs)).
pub async fn serve_stdio(
    engines: impl EngineSource,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let (read, write) = stdio_pipes();
    let handshake = McpServer::new(engines).serve(StdioTransport::new(read, write));
    let service = tokio::select! {
        service = handshake => service.map_err(std::io::Error::other)?,
        () = &mut shutdown => return Ok(()),
    };
    let session = service.cancellation_token();
    let mut ended = std::pin::pin!(service.waiting());
    tokio::select! {
        ended = &mut ended => {
            ended.map_err(std::io::Error::other)?;
        }
        () = &mut shutdown => {
            session.cancel();
            ended.await.map_err(std::io::Error::other)?;
        }
    }
    Ok(())
}

/// The streamable HTTP service, one MCP session per client, each over the
/// engine `engines` hands out at its requests.
///
/// `any_host`: accept every `Host` header. Without it only loopback hosts
/// are (the SDK's guard against DNS rebinding, which matters for a server
/// without a key on a developer's machine); a server that requires an API
/// key is protected by the key instead, and may be reached by any name.
pub fn streamable_http_service(engines: impl EngineSource, any_host: bool) -> McpHttpService {
    let config = StreamableHttpServerConfig::default();
    let config = if any_host {
        config.disable_allowed_hosts()
    } else {
        config
    };
    let max_body_bytes = config.max_request_body_bytes;
    let server = McpServer::new(engines);
    let sdk = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    McpHttpService::new(sdk, max_body_bytes)
}
