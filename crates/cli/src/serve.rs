//! `bmad2pf serve`: the REST API over a bundle (SPEC 5), until SIGINT/SIGTERM.
//!
//! With `--watch` (sources only) the source directory is checked once a
//! second; when a file changed it is compiled again and, if it compiles,
//! a new engine on the same stores replaces the old one between requests
//! (requests already running finish on the old one). A broken edit is
//! logged with its diagnostics and the last good bundle keeps serving.
//! runtime.yaml changes need a restart: stores and ports are not moved live.

use crate::Outcome;
use crate::runtime::{
    BundleArgs, StartError, compile_sources, env_var, init_logging, start_engine, tokio_runtime,
};
use bmad2pf_compiler::config::RuntimeConfig;
use bmad2pf_compiler::sourcefs::walk_files;
use bmad2pf_engine::Engine;
use bmad2pf_server::{AppState, ServeOptions, serve_state, shutdown_signal};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    bundle: BundleArgs,
    /// Address to listen on (overrides server.host).
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Port to listen on (overrides server.port and PORT).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Recompile the sources when they change and swap the bundle in (with --src).
    #[arg(long, requires = "src")]
    watch: bool,
}

pub fn run(args: &ServeArgs) -> Outcome {
    StartError::finish(serve(args).map(|()| Outcome::Success))
}

fn serve(args: &ServeArgs) -> Result<(), StartError> {
    let loaded = args.bundle.load()?;
    init_logging(&loaded.config, false);
    let config = loaded.config.clone();
    let api_key = ServeOptions::api_key_from_env(&config, &env_var).map_err(|e| StartError {
        message: e.to_string(),
        invalid_sources: false,
    })?;
    let options = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        api_key: api_key.clone(),
        ..ServeOptions::default()
    };
    let runtime = tokio_runtime()?;
    runtime.block_on(async {
        let engine = start_engine(loaded).await?;
        engine.take_over_queued_runs();
        let state = AppState::new(engine, api_key);
        if let (true, Some(src)) = (args.watch, &args.bundle.src) {
            tokio::spawn(watch(src.clone(), config, state.clone()));
        }
        serve_state(options, state, shutdown_signal())
            .await
            .map_err(|e| StartError {
                message: e.to_string(),
                invalid_sources: false,
            })
    })
}

/// A cheap summary of the source tree: every file's path, size and mtime.
fn fingerprint(src: &Path, data_dirs: &[PathBuf]) -> Vec<(String, u64, Option<SystemTime>)> {
    walk_files(src, data_dirs)
        .into_iter()
        .map(|rel| {
            let meta = std::fs::metadata(src.join(&rel)).ok();
            let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (rel, size, modified)
        })
        .collect()
}

async fn watch(src: PathBuf, config: RuntimeConfig, state: AppState) {
    let data_dirs = config.data_dirs();
    let fingerprint_of = |src: PathBuf| {
        let data_dirs = data_dirs.clone();
        async move {
            tokio::task::spawn_blocking(move || fingerprint(&src, &data_dirs))
                .await
                .ok()
        }
    };
    let mut last = fingerprint_of(src.clone()).await;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let now = fingerprint_of(src.clone()).await;
        if now == last {
            continue;
        }
        last = now;
        tracing::info!(src = %src.display(), "sources changed; recompiling");
        let dir = src.clone();
        let compiled = tokio::task::spawn_blocking(move || compile_sources(&dir)).await;
        let bundle = match compiled {
            Ok(Ok((bundle, _, _))) => bundle,
            Ok(Err(error)) => {
                tracing::error!(
                    error = error.message,
                    "the edited sources do not compile; still serving the last good bundle"
                );
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "recompiling failed; still serving the last good bundle");
                continue;
            }
        };
        let stores = state.engine().stores();
        match Engine::with_stores(Arc::new(bundle), config.clone(), stores, &env_var) {
            Ok(engine) => {
                engine.take_over_queued_runs();
                let agents = engine.bundle().agents.len();
                state.replace_engine(Arc::new(engine));
                tracing::info!(agents, "new bundle is serving");
            }
            Err(error) => {
                tracing::error!(%error, "the new bundle cannot start; still serving the last good bundle")
            }
        }
    }
}
