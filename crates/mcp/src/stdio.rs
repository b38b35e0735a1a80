//! The stdio transport: newline-delimited JSON-RPC on the process's stdin
//! and stdout, read line by line by this crate so that nothing a client
//! sends can end the session.
//!
//! The SDK's own stdio transport hands every line that parses to the SDK,
//! and the SDK's handshake ends the whole session when the first message is
//! not a request (a `notifications/initialized` sent too early, a
//! `notifications/cancelled`, a stray response): the process would exit.
//! Here each line is sorted by [`Incoming::check`] first:
//! - a message is passed on — but until the session has begun (the server
//!   has answered `initialize`, or, in the stateless revision, a first
//!   request), only requests are: a notification or a response then is
//!   dropped, as notifications get no answer;
//! - a message that is refused (bad params of a known method, JSON that is
//!   no JSON-RPC message) is answered with the error, to its id when it has
//!   one, and the session goes on;
//! - a line that is not JSON is dropped without an answer, as the SDKs do:
//!   an answer to garbage can start an error storm with a peer that echoes
//!   it, and there is no id to answer to.
//!
//! Writing is the SDK's own line writer (its framing and its lock, so an
//! answer from here never interleaves with the SDK's).

use crate::incoming::Incoming;
use futures::future::BoxFuture;
use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, ServerJsonRpcMessage, ServerResult};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::{AsyncRwTransport, DEFAULT_MAX_LINE_LENGTH};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};

/// The server's end of a stdio session.
pub struct StdioTransport<R: AsyncRead, W: AsyncWrite> {
    lines: LineReader<R>,
    /// The SDK's writer; its reading half reads nothing.
    writer: AsyncRwTransport<RoleServer, tokio::io::Empty, W>,
    /// Set when the server sends what only a begun session sends; until
    /// then the SDK's handshake takes requests only.
    session_begun: Arc<AtomicBool>,
    /// An error answer being written. Kept here, not awaited on the spot
    /// only, because `receive` is cancelled whenever the SDK has something
    /// else to do: the next call finishes writing it.
    answering: Option<BoxFuture<'static, io::Result<()>>>,
}

impl<R, W> StdioTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    pub fn new(read: R, write: W) -> Self {
        Self {
            lines: LineReader::new(read, DEFAULT_MAX_LINE_LENGTH),
            writer: AsyncRwTransport::new_server(tokio::io::empty(), write),
            session_begun: Arc::new(AtomicBool::new(false)),
            answering: None,
        }
    }

    /// Whether the SDK can take `message` now.
    fn takes(&self, message: &ClientJsonRpcMessage) -> bool {
        self.session_begun.load(Ordering::Acquire) || matches!(message, JsonRpcMessage::Request(_))
    }
}

/// Whether sending `message` shows that the session has begun: the
/// handshake only answers `ping` (an empty result), discovery, and errors,
/// and sends nothing else before it has answered `initialize`.
fn begins_session(message: &ServerJsonRpcMessage) -> bool {
    match message {
        JsonRpcMessage::Response(response) => !matches!(
            response.result,
            ServerResult::EmptyResult(_) | ServerResult::DiscoverResult(_)
        ),
        JsonRpcMessage::Request(_) | JsonRpcMessage::Notification(_) => true,
        _ => false,
    }
}

impl<R, W> Transport<RoleServer> for StdioTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if begins_session(&item) {
            self.session_begun.store(true, Ordering::Release);
        }
        self.writer.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if let Some(answering) = self.answering.as_mut() {
                let written = answering.await;
                self.answering = None;
                if let Err(error) = written {
                    tracing::error!(%error, "cannot write to stdout");
                    return None;
                }
            }
            let line = match self.lines.next().await {
                Ok(Some(line)) => line,
                Ok(None) => return None,
                Err(error) => {
                    tracing::error!(%error, "cannot read stdin");
                    return None;
                }
            };
            match Incoming::check(&line) {
                Incoming::Message(message) if self.takes(&message) => return Some(*message),
                Incoming::Message(message) => {
                    tracing::debug!(
                        ?message,
                        "dropped a message sent before initialize; only requests are taken then"
                    );
                }
                Incoming::Refused { id, error } => {
                    tracing::debug!(?id, %error.message, "refused a message");
                    let answer = ServerJsonRpcMessage::error(error, id);
                    self.answering = Some(Box::pin(self.writer.send(answer)));
                }
                Incoming::NotJson(reason) => {
                    tracing::debug!(reason, "dropped a line that is not JSON");
                }
                Incoming::UnfitNotification(reason) => {
                    tracing::debug!(reason, "dropped a notification that does not fit");
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        if let Some(answering) = self.answering.take() {
            answering.await?;
        }
        self.writer.close().await
    }
}

/// Reads `\n`-terminated lines, none longer than a limit: a longer one is
/// skipped (logged) without being held in memory, and the reading goes on.
///
/// Cancellation-safe: the transport's `receive` is dropped whenever the
/// service has something else to do, so a partly read line is kept in the
/// struct and the next call goes on with it.
struct LineReader<R> {
    read: BufReader<R>,
    line: Vec<u8>,
    max_len: usize,
    /// Skipping the rest of a line that was too long.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(read: R, max_len: usize) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            max_len,
            skipping: false,
        }
    }

    /// The next line that is not blank, without its `\n` (or `\r\n`);
    /// `None` at the end of the input (a last line without `\n` included:
    /// a client that closes mid-line sent no message).
    async fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                return Ok(None);
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let take = newline.map_or(available.len(), |at| at + 1);
            if !self.skipping {
                if self.line.len().saturating_add(take) > self.max_len {
                    tracing::error!(
                        max_len = self.max_len,
                        "a message is longer than the line limit; skipped"
                    );
                    self.line.clear();
                    self.skipping = true;
                } else {
                    self.line.extend_from_slice(&available[..take]);
                }
            }
            self.read.consume(take);
            if newline.is_none() {
                continue;
            }
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.is_empty() {
                return Ok(Some(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::{ServerHandler, ServiceExt};
    use serde_json::{Value, json};
    use tokio::io::AsyncWriteExt;

    /// A server with nothing to offer: the session is what is tested.
    struct Bare;
    impl ServerHandler for Bare {}

    #[tokio::test]
    async fn notifications_before_initialize_and_bad_params_do_not_end_the_session()
    -> Result<(), Box<dyn std::error::Error>> {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server);
        tokio::spawn(async move {
            if let Ok(service) = Bare
                .serve(StdioTransport::new(server_read, server_write))
                .await
            {
                let _ = service.waiting().await;
            }
        });
        let (client_read, mut client_write) = tokio::io::split(client);
        let mut replies = BufReader::new(client_read).lines();
        let mut exchange = async |lines: &[Value]| -> Result<Value, Box<dyn std::error::Error>> {
            for line in lines {
                client_write
                    .write_all(format!("{line}\n").as_bytes())
                    .await?;
            }
            let reply = replies.next_line().await?.ok_or("the server hung up")?;
            Ok(serde_json::from_str(&reply)?)
        };
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
        let reply = exchange(&[
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}}),
            json!({"jsonrpc": "2.0", "id": 9, "result": {}}),
            initialize,
        ])
        .await?;
        assert_eq!(reply["id"], 1, "{reply}");
        assert!(reply["result"]["protocolVersion"].is_string(), "{reply}");
        let reply = exchange(&[
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": "x"}),
        ])
        .await?;
        assert_eq!(reply["id"], 2, "{reply}");
        assert_eq!(reply["error"]["code"], -32602, "{reply}");
        let reply = exchange(&[json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})]).await?;
        assert_eq!(reply, json!({"jsonrpc": "2.0", "id": 3, "result": {}}));
        Ok(())
    }

    #[tokio::test]
    async fn lines_are_read_whole_and_a_too_long_one_is_skipped() -> io::Result<()> {
        let (mut client, server) = tokio::io::duplex(64);
        let mut lines = LineReader::new(server, 10);
        tokio::spawn(async move {
            let _ = client
                .write_all(b"short\r\n\nwaytoolongforthelimit\nnext\nunended")
                .await;
        });
        assert_eq!(lines.next().await?, Some(b"short".to_vec()));
        assert_eq!(lines.next().await?, Some(b"next".to_vec()));
        assert_eq!(lines.next().await?, None);
        Ok(())
    }
}
