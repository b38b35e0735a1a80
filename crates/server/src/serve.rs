//! Running the server: bind, serve, and shut down gracefully.
//!
//! Shutdown is explicit: when the `shutdown` future given to [`serve`]
//! completes (usually [`shutdown_signal`], SIGINT or SIGTERM), the listener
//! stops accepting, requests in flight — streamed runs included — are
//! allowed to finish, and then the engine is shut down, which waits for
//! running agents and leaves every store write durable.

use crate::error::ServerError;
use crate::router;
use crate::state::AppState;
use bmad2pf_compiler::config::RuntimeConfig;
use bmad2pf_engine::Engine;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How to serve, beyond what `runtime.yaml` says.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Overrides `server.host` (e.g. `--host`).
    pub host: Option<String>,
    /// Overrides `server.port` (e.g. `--port`; `PORT` is already applied to
    /// the config by `RuntimeConfig::apply_env`). `Some(0)` picks a free port.
    pub port: Option<u16>,
    /// The API key's value, when `server.api_key_env` is set; see [`ServeOptions::api_key_from_env`].
    pub api_key: Option<String>,
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
    let host = options.host.unwrap_or(config.host);
    let port = options.port.unwrap_or(config.port);
    let address = format!("{host}:{port}");
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| ServerError::Bind { address, source })?;
    serve_on(listener, state, shutdown).await
}

/// Serves on a listener the caller bound (tests bind `127.0.0.1:0`).
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
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
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)?;
    tracing::info!("HTTP server stopped; shutting the engine down");
    state.engine().shutdown().await;
    tracing::info!("engine stopped; stores flushed");
    Ok(())
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
