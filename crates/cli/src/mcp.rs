//! `bmad2pf mcp`: bmad2pf as a Model Context Protocol server on stdin and
//! stdout, for a coding assistant that starts it as a child process (see
//! docs/mcp.md). Stdout carries protocol messages only; compile
//! diagnostics and logs go to stderr.
//!
//! It serves until the client closes stdin or the process gets SIGTERM or
//! SIGINT, then shuts its runs down the way `serve` does (SPEC 8.1): no
//! queued run starts (they stay queued for the next process on the store),
//! running ones get `runs.shutdown_grace_s` to end, the rest are marked
//! `interrupted_by_restart` with `details.graceful`, and their claims are
//! released. Without that a run would stay `running`, its story blocked
//! (`run_in_progress`), until another process's sweep found its claim
//! stale.

use crate::Outcome;
use crate::runtime::{BundleArgs, StartError, init_logging, start_engine, tokio_runtime};
use bmad2pf_server::shutdown_signal;
use clap::Args;

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    bundle: BundleArgs,
}

pub fn run(args: &McpArgs) -> Outcome {
    StartError::finish(serve(args).map(|()| Outcome::Success))
}

fn serve(args: &McpArgs) -> Result<(), StartError> {
    let loaded = args.bundle.load()?;
    // Quiet unless LOG_LEVEL says otherwise: a client shows this stderr
    // to its user, if anywhere.
    init_logging(&loaded.config, true);
    let runtime = tokio_runtime()?;
    let served = runtime.block_on(async {
        let engine = start_engine(loaded).await?;
        // A long-lived process, like `serve`: it runs what dead processes queued.
        engine.take_over_queued_runs();
        let served = bmad2pf_mcp::serve_stdio(engine.clone(), shutdown_signal()).await;
        engine.stop_runs().await;
        engine.shutdown().await;
        served.map_err(|e| StartError {
            message: format!("MCP over stdio failed: {e}"),
            invalid_sources: false,
        })
    });
    // Everything is stored by now. A read of stdin may still be pending on
    // a blocking thread (stdin is no pipe, and the session ended on a
    // signal); it must not hold the exit.
    runtime.shutdown_background();
    served
}
