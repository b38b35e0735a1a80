//! Running the server: bind, accept, serve connections, shut down gracefully.
//!
//! Shutdown is explicit: when the `shutdown` future given to [`serve`]
//! completes (usually [`shutdown_signal`], SIGINT or SIGTERM), the listener
//! stops accepting and requests in flight are allowed to finish while the
//! engine shuts its runs down (SPEC 8.1): no queued run starts, running
//! runs get `runs.shutdown_grace_s` to end, the rest are marked. Streamed
//! runs and followers' streams end with that; a connection still open
//! [`LINGER`] after the runs have stopped is dropped. Then the engine is
//! shut down, which waits for running agents and leaves every store write
//! durable.
//!
//! The accept loop is ours rather than `axum::serve`, which sets no timer:
//! a client that opened a connection and never finished its request head
//! (slowloris) kept the connection and its file descriptor forever.
//! Connections are served by hyper-util's auto builder, as `axum::serve`
//! did: HTTP/1.1 with keep-alive, and HTTP/2 for clients that speak it from
//! the first byte (prior knowledge; there is no TLS, so no ALPN). No option
//! of axum's was lost: it set neither TCP_NODELAY nor any timeout.
//!
//! **Header-read timeout** ([`ServeOptions::header_read_timeout`], 30 s by
//! default, no runtime.yaml key): a connection is closed when it has no
//! request in flight and has not delivered a complete request head within
//! that time. Concretely:
//! - before the first bytes, while the protocol is not yet known (nothing
//!   sent, or a prefix of the HTTP/2 preface), the connection waits at most
//!   the timeout; then
//! - hyper's HTTP/1 `header_read_timeout` bounds each request head, counted
//!   from when hyper starts reading it: for the first request from the end
//!   of the wait above (so a head that trickles in can take up to twice the
//!   timeout from the accept), for the next ones from the end of the previous
//!   response;
//! - and every connection, HTTP/1 or HTTP/2, that has had no request in
//!   flight for the timeout — since the wait above, or since its last
//!   response ended — is shut down gracefully: this is the idle keep-alive
//!   timeout. HTTP/1 closes at once; HTTP/2 sends GOAWAY and closes when
//!   the client has answered its PING and the streams it opened meanwhile
//!   are answered. hyper has no idle timer for HTTP/2 (its keep-alive pings
//!   only detect dead peers), so the accept loop counts each connection's
//!   requests in flight itself. A connection still open and idle a further
//!   timeout after a graceful shutdown (a client that never answers the
//!   PING) is dropped; that also holds after a server shutdown.
//!
//! It never cuts a request already being answered (a streamed run can last
//! an hour): a request is in flight from when its head arrived until its
//! response body has been sent or dropped, not only until the handler
//! returned. A request body that stalls gets the same bound between two of
//! its reads (tower-http's `RequestBodyTimeout`): the read fails, the
//! request is answered 400 `unreadable_body`, and a shutdown does not wait
//! on it.
//!
//! 30 s is hyper's own default. A real client sends its head in one write,
//! so 30 s only matters on a badly stalled link; as the keep-alive idle
//! timeout it is long enough for clients that reuse connections between
//! calls. A load balancer that keeps idle upstream connections longer
//! (AWS ALB: 60 s) must be set below it, or it may reuse a connection the
//! server just closed (a 502 at the balancer).
//!
//! Accept errors never stop the server: a connection reset before it was
//! accepted is skipped, anything else (EMFILE when out of file descriptors)
//! is logged and accepting pauses for [`ACCEPT_BACKOFF`], since retrying at
//! once would fail the same way in a busy loop.

use crate::error::ServerError;
use crate::router;
use crate::state::AppState;
use axum::Router;
use axum::body::{Body, Bytes};
use bmad2pf_compiler::config::RuntimeConfig;
use bmad2pf_engine::Engine;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_http::timeout::RequestBodyTimeout;

/// The default of [`ServeOptions::header_read_timeout`] (see the module doc).
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long accepting pauses after an accept error that is not about one
/// connection (EMFILE, ENFILE, ENOBUFS…).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How long connections may stay open at a shutdown once the runs have
/// stopped: their last responses are being written.
const LINGER: Duration = Duration::from_secs(5);

/// The first bytes of every HTTP/2 connection (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often a connection whose first bytes are a prefix of [`H2_PREFACE`]
/// is looked at again (peeking does not wait for more bytes).
const PREFACE_POLL: Duration = Duration::from_millis(20);

/// How to serve, beyond what `runtime.yaml` says.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Overrides `server.host` (e.g. `--host`).
    pub host: Option<String>,
    /// Overrides `server.port` (e.g. `--port`; `PORT` is already applied to
    /// the config by `RuntimeConfig::apply_env`). `Some(0)` picks a free port.
    pub port: Option<u16>,
    /// The API key's value, when `server.api_key_env` is set; see [`ServeOptions::api_key_from_env`].
    pub api_key: Option<String>,
    /// How long a connection with no request in flight may take to deliver
    /// a complete request head, idle keep-alive included (see the module
    /// doc). Not in runtime.yaml; tests shorten it.
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            api_key: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

impl ServeOptions {
    /// Reads the API key from the variable `server.api_key_env` names, through
    /// the caller's environment lookup (the only env read of the server).
    /// A named variable that is unset or empty is an error: the server must
    /// not silently run open.
    pub fn api_key_from_env(
        config: &RuntimeConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, ServerError> {
        let Some(var) = &config.server.api_key_env else {
            return Ok(None);
        };
        match env(var) {
            Some(key) if !key.trim().is_empty() => Ok(Some(key)),
            _ => Err(ServerError::MissingApiKey { var: var.clone() }),
        }
    }
}

/// Serves the API for `engine` until `shutdown` completes, then drains
/// requests and shuts the engine down.
pub async fn serve(
    options: ServeOptions,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = AppState::new(engine, options.api_key.clone());
    serve_state(options, state, shutdown).await
}

/// Like [`serve`], on a state the caller keeps a clone of — to swap the
/// engine with [`AppState::replace_engine`] while serving (`--watch`).
/// `options.api_key` is not used: the state already holds the key.
pub async fn serve_state(
    options: ServeOptions,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let config = state.engine().config().server.clone();
    let host = options.host.clone().unwrap_or(config.host);
    let port = options.port.unwrap_or(config.port);
    let address = format!("{host}:{port}");
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| ServerError::Bind { address, source })?;
    serve_on(listener, state, &options, shutdown).await
}

/// Serves on a listener the caller bound (tests bind `127.0.0.1:0`).
/// Of `options` only the connection settings are used: the listener is
/// bound and the state holds the key.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = listener.local_addr().map_err(|source| ServerError::Bind {
        address: "the given listener".into(),
        source,
    })?;
    let app = router(state.clone())?;
    {
        let engine = state.engine();
        let bundle = engine.bundle();
        tracing::info!(
            address = %local,
            agents = bundle.agents.len(),
            flows = bundle.flows.len(),
            source_hash = %bundle.source_hash,
            auth = state.api_key().is_some(),
            "bmad2pf serving on http://{local} ({} agents, {} flows)",
            bundle.agents.len(),
            bundle.flows.len(),
        );
        tracing::info!("console: http://{local}/");
    }
    let engine = state.engine();
    let (runs_stopped, mut stopped) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        tokio::spawn(async move {
            engine.stop_runs().await;
            runs_stopped.send_replace(true);
        });
    };
    accept_until(
        listener,
        app,
        options.header_read_timeout,
        signal,
        stopped.clone(),
    )
    .await;
    // The connections may all have closed before the runs stopped.
    let _ = stopped.wait_for(|stopped| *stopped).await;
    tracing::info!("HTTP server stopped; shutting the engine down");
    state.engine().shutdown().await;
    tracing::info!("engine stopped");
    Ok(())
}

/// Accepts connections until `shutdown` completes, then closes the
/// listener, asks every connection to finish (idle ones close at once,
/// busy ones after their response) and waits for them all — at most
/// [`LINGER`] after `runs_stopped` turns true.
async fn accept_until(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
    mut runs_stopped: watch::Receiver<bool>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let (stop_all, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Responses are written as they are made (SSE events one by
                // one): without this, Nagle's algorithm holds a small write
                // back until the client's delayed ACK, some 40 ms.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "TCP_NODELAY not set");
                }
                connections.spawn(connection(
                    stream,
                    app.clone(),
                    header_read_timeout,
                    stop.clone(),
                ));
                tracing::trace!(%peer, "connection accepted");
            }
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                tracing::error!(%error, "cannot accept connections; retrying in {ACCEPT_BACKOFF:?}");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
        while let Some(ended) = connections.try_join_next() {
            log_panic(ended);
        }
    }
    drop(listener);
    stop_all.send_replace(true);
    while let Some(ended) = connections.try_join_next() {
        log_panic(ended);
    }
    tracing::info!(
        connections = connections.len(),
        "not accepting connections; draining requests"
    );
    let drained = async {
        while let Some(ended) = connections.join_next().await {
            log_panic(ended);
        }
    };
    let cut = async {
        if runs_stopped.wait_for(|stopped| *stopped).await.is_ok() {
            tokio::time::sleep(LINGER).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = drained => {}
        () = cut => {
            tracing::warn!(
                connections = connections.len(),
                "connections still open after the runs stopped; dropped"
            );
            connections.abort_all();
        }
    }
}

/// An error of one connection that had not been accepted yet: skip it.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended {
        tracing::error!(%error, "a connection task panicked");
    }
}

/// Serves one connection until it ends, or until it has had no request in
/// flight for `header_read_timeout` or `stop` turns true: then it finishes
/// what it is answering and closes, or is dropped when still idle a
/// timeout later.
async fn connection(
    stream: TcpStream,
    app: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let known = tokio::select! {
        known = protocol_known(&stream, Instant::now() + header_read_timeout) => known,
        () = stopping(&mut stop) => false,
    };
    if !known {
        return;
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // The same bound for a request body that stalls: a read that waits
    // longer than the timeout for its next bytes fails (400
    // `unreadable_body`), so the handler ends instead of waiting forever.
    let app = TowerToHyperService::new(RequestBodyTimeout::new(app, header_read_timeout));
    let activity = Arc::new(Activity::new());
    let requests = Arc::clone(&activity);
    let service = service_fn(move |request| {
        let counted = InFlight::begin(&requests);
        let response = app.call(request);
        async move {
            response
                .await
                .map(|response| response.map(|body| counted.hold(body)))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            () = stopping(&mut stop), if !closing => {}
            () = idle_for(&activity, header_read_timeout) => {
                if closing {
                    // Asked to close and still idle a timeout later: an
                    // HTTP/2 client that never answers the PING of the
                    // graceful shutdown would keep it open forever.
                    tracing::debug!("connection idle after a graceful shutdown; dropped");
                    return;
                }
            }
        }
        conn.as_mut().graceful_shutdown();
        closing = true;
    };
    if let Err(error) = ended {
        // Header-read timeouts, malformed requests, clients gone: theirs.
        tracing::debug!(error = %error, "connection ended with an error");
    }
}

/// Completes when the server stops accepting (or is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The borrow `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Completes once a connection has had no request in flight for
/// `timeout`, counted from the call or from the end of its last request.
/// It looks only when the timeout could have run out, so requests cost the
/// connection's task no wake-up and no timer of their own.
async fn idle_for(activity: &Activity, timeout: Duration) {
    let mut deadline = Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(deadline).await;
        let now = Instant::now();
        deadline = if activity.in_flight.load(Ordering::Acquire) > 0 {
            now + timeout
        } else {
            let idle_since = activity.opened
                + Duration::from_millis(activity.last_end_ms.load(Ordering::Acquire));
            let due = idle_since + timeout;
            if due <= now {
                return;
            }
            due
        };
    }
}

/// What the idle timer of a connection reads: its requests in flight and
/// when the last one ended.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the last request ended, ms after `opened`.
    last_end_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }
}

/// One request in flight on a connection, counted from the call of the
/// service until the response body that holds it (see [`InFlight::hold`])
/// has been sent or dropped — an SSE body can stream for an hour.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(activity))
    }

    fn hold(self, body: Body) -> CountedBody {
        CountedBody {
            body,
            _in_flight: self,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let ended = u64::try_from(activity.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        // The end time first: a timer that sees no request in flight then
        // also sees when it ended.
        activity.last_end_ms.fetch_max(ended, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight.
struct CountedBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Waits, until `deadline` at most, for the first bytes of a connection to
/// tell HTTP/1 from HTTP/2 — what the auto builder reads before any timer
/// of hyper's runs. False when the client sent too little in time, closed,
/// or failed.
async fn protocol_known(stream: &TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; H2_PREFACE.len()];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return false,
            Ok(Ok(n)) if n == first.len() || first[..n] != H2_PREFACE[..n] => return true,
            Ok(Ok(_)) if Instant::now() >= deadline => return false,
            Ok(Ok(_)) => {
                tokio::time::sleep_until(deadline.min(Instant::now() + PREFACE_POLL)).await
            }
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (containers, systemd).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received; draining requests"),
        () = terminate => tracing::info!("SIGTERM received; draining requests"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_but_unset_key_refuses_to_start() {
        let mut config = RuntimeConfig::default();
        assert!(matches!(
            ServeOptions::api_key_from_env(&config, &|_| None),
            Ok(None)
        ));
        config.server.api_key_env = Some("BMAD2PF_KEY".into());
        assert!(matches!(
            ServeOptions::api_key_from_env(&config, &|_| None),
            Err(ServerError::MissingApiKey { var }) if var == "BMAD2PF_KEY"
        ));
        assert!(ServeOptions::api_key_from_env(&config, &|_| Some(" ".into())).is_err());
        let key = ServeOptions::api_key_from_env(&config, &|name| {
            (name == "BMAD2PF_KEY").then(|| "k".into())
        });
        assert!(matches!(key, Ok(Some(k)) if k == "k"));
    }
}
