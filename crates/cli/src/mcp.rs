//! `bmad2pf mcp`: bmad2pf as a Model Context Protocol server on stdin and
//! stdout, for a coding assistant that starts it as a child process (see
//! docs/mcp.md). Stdout carries protocol messages only; compile
//! diagnostics and logs go to stderr. It serves until the client closes
//! stdin, then lets running agents finish their model calls.

use crate::Outcome;
use crate::runtime::{BundleArgs, StartError, init_logging, start_engine, tokio_runtime};
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
    runtime.block_on(async {
        let engine = start_engine(loaded).await?;
        // A long-lived process, like `serve`: it runs what dead processes queued.
        engine.take_over_queued_runs();
        let served = bmad2pf_mcp::serve_stdio(engine.clone()).await;
        engine.shutdown().await;
        served.map_err(|e| StartError {
            message: format!("MCP over stdio failed: {e}"),
            invalid_sources: false,
        })
    })
}
