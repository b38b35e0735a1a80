//! What `run`, `resume`, `cancel`, `exec` and `serve` share: loading a bundle (compiled from
//! `--src` or read from `--bundle`), the runtime configuration, logging and
//! the engine.
//!
//! Configuration, lowest to highest precedence: the defaults; the
//! runtime.yaml of the sources (`--src`) or of the bundle directory
//! (`--bundle`); the file given with `--config`; environment overrides
//! (`PORT`, `LOG_LEVEL`, `BMAD2PF_<SECTION>_<KEY>`…). Relative paths in it
//! resolve against the working directory.

use crate::Outcome;
use bmad2pf_compiler::bundle::Bundle;
use bmad2pf_compiler::config::{LogFormat, RuntimeConfig};
use bmad2pf_compiler::diag::{Diagnostics, Severity};
use bmad2pf_compiler::{compile, parse_runtime};
use bmad2pf_engine::Engine;
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the bundle comes from, and which runtime.yaml to use.
#[derive(Debug, Args, Clone)]
pub struct BundleArgs {
    /// A bundle directory written by `generate`.
    #[arg(long, value_name = "DIR", conflicts_with = "src")]
    pub bundle: Option<PathBuf>,
    /// A source directory, compiled on the fly.
    #[arg(long, value_name = "DIR")]
    pub src: Option<PathBuf>,
    /// A runtime.yaml to use instead of the one beside the sources or bundle.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Why a command could not start: printed as `error: …`, exit code 1 for
/// sources with errors, 2 for everything else.
pub struct StartError {
    pub message: String,
    pub invalid_sources: bool,
}

impl StartError {
    /// Ends a command that failed before it could do its work: the message
    /// on stderr, exit 1 for invalid sources, 2 for anything else.
    pub fn finish(result: Result<Outcome, StartError>) -> Outcome {
        result.unwrap_or_else(|error| {
            eprintln!("error: {}", error.message);
            if error.invalid_sources {
                Outcome::Invalid
            } else {
                Outcome::Failure
            }
        })
    }

    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            invalid_sources: false,
        }
    }
}

/// The bundle and the configuration to run it with.
pub struct Loaded {
    pub bundle: Bundle,
    pub config: RuntimeConfig,
}

pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Most warnings a command that runs the sources prints one by one; past
/// it (a real BMAD tree has dozens, the same at every run) they are
/// counted, and `validate` lists them.
const LISTED_WARNINGS: usize = 10;

/// Compiles `src`, printing its errors and its warnings (or, past
/// [`LISTED_WARNINGS`], how many there are) to stderr.
pub fn compile_sources(src: &Path) -> Result<(Bundle, RuntimeConfig, Option<String>), StartError> {
    if !src.is_dir() {
        return Err(StartError::usage(format!(
            "source directory {} does not exist",
            src.display()
        )));
    }
    let compilation = compile(src);
    let diagnostics = &compilation.diagnostics;
    let warnings = diagnostics.warning_count();
    let list_warnings = warnings <= LISTED_WARNINGS;
    for diagnostic in diagnostics.iter() {
        if list_warnings || diagnostic.severity == Severity::Error {
            eprintln!("{diagnostic}");
        }
    }
    if !list_warnings {
        eprintln!(
            "warning: {warnings} warnings in the sources; `bmad2pf validate --src {}` lists them",
            src.display()
        );
    }
    match compilation.bundle {
        Some(bundle) => Ok((bundle, compilation.runtime, compilation.runtime_yaml)),
        None => Err(StartError {
            message: format!(
                "{} has {} error(s); nothing was run",
                src.display(),
                compilation.diagnostics.error_count()
            ),
            invalid_sources: true,
        }),
    }
}

/// Parses a runtime.yaml file, printing its diagnostics.
fn read_runtime_file(path: &Path) -> Result<RuntimeConfig, StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::usage(format!("cannot read {}: {e}", path.display())))?;
    let mut diags = Diagnostics::new();
    let config = parse_runtime(&text, &path.display().to_string(), &mut diags);
    for diagnostic in diags.iter() {
        eprintln!("{diagnostic}");
    }
    if diags.has_errors() {
        return Err(StartError {
            message: format!("{} is not a valid runtime.yaml", path.display()),
            invalid_sources: true,
        });
    }
    Ok(config)
}

impl BundleArgs {
    /// These flags as they were given, for a command printed for the
    /// person to run next (`bmad2pf resume …` needs the same bundle).
    pub fn flags(&self) -> Vec<(&'static str, &Path)> {
        [
            ("--bundle", &self.bundle),
            ("--src", &self.src),
            ("--config", &self.config),
        ]
        .into_iter()
        .filter_map(|(flag, path)| path.as_deref().map(|path| (flag, path)))
        .collect()
    }

    /// Loads the bundle and the configuration, environment overrides applied.
    pub fn load(&self) -> Result<Loaded, StartError> {
        let (bundle, mut config) = match (&self.bundle, &self.src) {
            (Some(dir), _) => {
                let path = dir.join("bundle.json");
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    StartError::usage(format!("cannot read {}: {e}", path.display()))
                })?;
                let bundle = Bundle::from_json(&text).map_err(StartError::usage)?;
                let runtime = dir.join("runtime.yaml");
                let config = if runtime.is_file() {
                    read_runtime_file(&runtime)?
                } else {
                    RuntimeConfig::default()
                };
                (bundle, config)
            }
            (None, Some(src)) => {
                let (bundle, config, _) = compile_sources(src)?;
                (bundle, config)
            }
            (None, None) => {
                return Err(StartError::usage(
                    "give --src DIR (sources) or --bundle DIR (a generated bundle)",
                ));
            }
        };
        if let Some(path) = &self.config {
            config = read_runtime_file(path)?;
        }
        config
            .apply_env(std::env::vars())
            .map_err(|e| StartError::usage(e.to_string()))?;
        Ok(Loaded { bundle, config })
    }

    /// Only the runtime configuration, for a command that uses the store
    /// but runs no agent (`backup`): as [`load`](Self::load) finds it, or
    /// from `--config` alone, without sources or a bundle.
    pub fn load_config(&self) -> Result<RuntimeConfig, StartError> {
        match (&self.config, &self.bundle, &self.src) {
            (Some(path), None, None) => {
                let mut config = read_runtime_file(path)?;
                config
                    .apply_env(std::env::vars())
                    .map_err(|e| StartError::usage(e.to_string()))?;
                Ok(config)
            }
            (None, None, None) => Err(StartError::usage(
                "give --src DIR, --bundle DIR or --config FILE (the store's paths come from runtime.yaml)",
            )),
            _ => Ok(self.load()?.config),
        }
    }
}

/// Starts logging to stderr as `logging:` says (`serve`), or quieter for
/// one-shot commands, whose stderr is for progress.
pub fn init_logging(config: &RuntimeConfig, one_shot: bool) {
    let level = if one_shot && std::env::var_os("LOG_LEVEL").is_none() {
        "warn".to_string()
    } else {
        config.logging.level.clone()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match (config.logging.format, one_shot) {
        (LogFormat::Json, false) => builder.json().try_init(),
        _ => builder.try_init(),
    };
    if installed.is_err() {
        eprintln!("warning: logging was already set up");
    }
}

pub async fn start_engine(loaded: Loaded) -> Result<Arc<Engine>, StartError> {
    Engine::start(Arc::new(loaded.bundle), loaded.config, &env_var)
        .await
        .map(Arc::new)
        .map_err(|e| StartError::usage(format!("cannot start the engine: {e}")))
}

pub fn tokio_runtime() -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::usage(format!("cannot start the async runtime: {e}")))
}
