//! The `bmad2pf` binary: argument parsing and wiring, nothing else.
//!
//! Commands live in their own modules ([`generate`], [`validate`],
//! [`graph`], [`run`], [`resume`], [`cancel`], [`exec`], [`serve`],
//! [`mcp`], [`backup`]); they share the way problems are reported ([`report`]), the
//! progress lines on stderr ([`progress`]) and, for the commands that
//! execute agents, bundle loading and configuration ([`runtime`]). `run`
//! and `resume` follow a run the same way ([`follow`]), show it the same
//! way ([`run_text`]) and ask a person on the terminal ([`ask`]). The
//! contract is SPEC sections 2 and 8.3:
//!
//! - exit code 0: success; 1: invalid sources (or `--check` found the output
//!   out of date), or a failed run; 2: usage or I/O error (clap's own usage
//!   errors exit 2 too); 3: a run that is pending, or an execute that needs
//!   input (not a failure, not a success: documents are missing); 4: a run
//!   that waits for a person's answer (`bmad2pf resume` gives it); 130:
//!   Ctrl-C (the run is cancelled);
//! - results go to stdout, progress and diagnostics to stderr, except with
//!   `--format json`, where one JSON document on stdout carries the
//!   diagnostics and the result (shape documented in [`report`]).

mod ask;
mod backup;
mod cancel;
mod exec;
mod follow;
mod generate;
mod graph;
mod mcp;
mod progress;
mod project;
mod report;
mod resume;
mod run;
mod run_text;
mod runtime;
mod serve;
mod validate;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Compile BMAD-style agent definitions (Markdown + YAML) into a deterministic bundle.
///
/// `bmad2pf --src DIR --out DIR` is short for `bmad2pf generate --src DIR --out DIR`.
#[derive(Debug, Parser)]
#[command(
    name = "bmad2pf",
    version,
    args_conflicts_with_subcommands = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `generate`'s arguments, for the short form without a command name.
    #[command(flatten)]
    generate: Option<GenerateArgs>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile a source directory into a bundle directory.
    Generate(GenerateArgs),
    /// Check a source directory and report every problem; writes nothing.
    Validate(ValidateArgs),
    /// Print the Mermaid diagram of the flows to stdout.
    Graph(GraphArgs),
    /// Run a flow for a story; agents may ask you on the terminal (exit 0
    /// success, 1 error, 3 pending, 4 waits for an answer, 130 Ctrl-C).
    Run(run::RunArgs),
    /// Answer a question of a run that waits, then follow it like `run`.
    Resume(resume::ResumeArgs),
    /// Execute one agent statelessly (exit 0 completed, 1 failed, 3 needs input).
    Exec(exec::ExecArgs),
    /// Serve the REST API.
    Serve(serve::ServeArgs),
    /// Serve MCP (Model Context Protocol) on stdin/stdout, for a coding assistant.
    Mcp(mcp::McpArgs),
    /// Copy the embedded store to a new file, consistently, while it is in use.
    Backup(backup::BackupArgs),
    /// Cancel a queued, running or waiting run, in whichever process runs it.
    Cancel(cancel::CancelArgs),
}

/// Arguments of `generate` (and of the short form).
#[derive(Debug, Args)]
struct GenerateArgs {
    /// Source directory (agents/*.md, workflow.yaml… or a BMAD v4 core).
    #[arg(long, value_name = "DIR")]
    src: PathBuf,
    /// Output directory; replaced as a whole except its runtime.yaml.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Write nothing; report whether the output is up to date (exit 1 if not).
    #[arg(long)]
    check: bool,
    /// Also print per-file detail.
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,
    /// Print no progress (diagnostics and results are still printed).
    #[arg(short, long)]
    quiet: bool,
    /// How to print diagnostics and results.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Source directory to check.
    #[arg(long, value_name = "DIR")]
    src: PathBuf,
    /// Also connect to each MCP server of tools.yaml and check that the
    /// tools agents name exist (without it, no server is contacted).
    #[arg(long)]
    check_tools: bool,
    /// How to print diagnostics and the result.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Args)]
struct GraphArgs {
    /// Source directory to compile.
    #[arg(long, value_name = "DIR")]
    src: PathBuf,
    /// Only this flow (default: every flow).
    #[arg(long, value_name = "NAME")]
    flow: Option<String>,
}

/// Output format of diagnostics and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Human-readable lines; diagnostics on stderr.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// How a command ended, mapped to the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    /// Invalid sources, or `--check` found differences.
    Invalid,
    /// Usage or I/O error.
    Failure,
    /// A run waits for documents; an execute needs input.
    Pending,
    /// Stopped by Ctrl-C (the run is cancelled, its documents kept).
    Interrupted,
    /// The run waits for a person's answer (`bmad2pf resume` continues it).
    WaitsForAnswer,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Invalid => ExitCode::from(1),
            Outcome::Failure => ExitCode::from(2),
            Outcome::Pending => ExitCode::from(3),
            Outcome::Interrupted => ExitCode::from(130),
            Outcome::WaitsForAnswer => ExitCode::from(4),
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version exit 0 (clap's convention).
    let cli = Cli::parse();
    let outcome = match (cli.command, cli.generate) {
        (Some(Command::Generate(args)), _) | (None, Some(args)) => generate::run(&args),
        (Some(Command::Validate(args)), _) => validate::run(&args),
        (Some(Command::Graph(args)), _) => graph::run(&args),
        (Some(Command::Run(args)), _) => run::run(&args),
        (Some(Command::Resume(args)), _) => resume::run(&args),
        (Some(Command::Exec(args)), _) => exec::run(&args),
        (Some(Command::Serve(args)), _) => serve::run(&args),
        (Some(Command::Mcp(args)), _) => mcp::run(&args),
        (Some(Command::Backup(args)), _) => backup::run(&args),
        (Some(Command::Cancel(args)), _) => cancel::run(&args),
        // `arg_required_else_help` makes clap print the help before we get here.
        (None, None) => Outcome::Failure,
    };
    outcome.into()
}
