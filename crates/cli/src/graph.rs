//! `bmad2pf graph`: the Mermaid diagram of the flows on stdout.
//!
//! The same text as the bundle's graph.mmd (or one flow of it with
//! `--flow`). Diagnostics go to stderr; invalid sources exit 1, an unknown
//! flow name exits 2 with the list of flows.

use crate::progress::Progress;
use crate::project::compile_project;
use crate::report::{Reporter, stdout};
use crate::{Format, GraphArgs, Outcome};
use bmad2pf_compiler::CompileOptions;
use bmad2pf_compiler::output;

pub fn run(args: &GraphArgs) -> Outcome {
    let mut reporter = Reporter::new(Format::Text);
    let project = match compile_project(
        &args.src,
        CompileOptions::default(),
        &mut reporter,
        &Progress::silent(),
    ) {
        Ok(project) => project,
        Err(outcome) => return outcome,
    };
    let text = match &args.flow {
        None => output::graph(&project.bundle),
        Some(name) => match output::graph_of_flow(&project.bundle, name) {
            Ok(text) => text,
            Err(e) => {
                reporter.error(e);
                return Outcome::Failure;
            }
        },
    };
    match stdout(text.trim_end()) {
        Ok(()) => Outcome::Success,
        // The reader went away (`| head`): what it read is all it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Success,
        Err(e) => {
            reporter.error(format!("cannot write to stdout: {e}"));
            Outcome::Failure
        }
    }
}
