//! Serves a source directory over HTTP: compiles it, starts an engine with
//! its runtime.yaml (plus environment overrides such as `PORT` and
//! `LOG_LEVEL`), and serves the API until Ctrl-C or SIGTERM.
//!
//! A small stand-in for `bmad2pf serve --src DIR`, handy for trying the
//! server alone and used by `bench/http.sh` when the CLI has no `serve`:
//!
//! ```text
//! cargo run --release -p bmad2pf-server --example serve -- examples/planning
//! ```

use bmad2pf_compiler::compile::compile;
use bmad2pf_engine::Engine;
use bmad2pf_server::{ServeOptions, serve, shutdown_signal};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("serve: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), Error> {
    let src = std::env::args().nth(1).ok_or("usage: serve <source-dir>")?;
    let compilation = compile(Path::new(&src));
    for diagnostic in compilation.diagnostics.iter() {
        eprintln!("{diagnostic}");
    }
    let bundle = compilation.bundle.ok_or("the sources have errors")?;
    let mut config = compilation.runtime;
    config.apply_env(std::env::vars())?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.logging.level))
        .with_writer(std::io::stderr)
        .init();
    let env = |name: &str| std::env::var(name).ok();
    let api_key = ServeOptions::api_key_from_env(&config, &env)?;
    let engine = Engine::start(Arc::new(bundle), config, &env).await?;
    let options = ServeOptions {
        api_key,
        ..ServeOptions::default()
    };
    serve(options, Arc::new(engine), shutdown_signal()).await?;
    Ok(())
}
