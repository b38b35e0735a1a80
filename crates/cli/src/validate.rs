//! `bmad2pf validate`: compile the sources, report every problem, write nothing.
//!
//! Exit 0 when there is no error (warnings allowed), 1 when there is one,
//! 2 when the source directory cannot be read. On success, text mode
//! prints `valid: N agents, M flows` on stdout; for a BMAD v6 / skills
//! tree the line adds the layout and its counts in parentheses.

use crate::progress::Progress;
use crate::project::compile_project;
use crate::report::{Reporter, plural, stdout};
use crate::{Outcome, ValidateArgs};
use bmad2pf_compiler::{CompileOptions, layout_summary};

pub fn run(args: &ValidateArgs) -> Outcome {
    let mut reporter = Reporter::new(args.format);
    // With the previews, so that `validate` reports exactly what `generate`
    // would (a prompt that cannot be rendered is an error of both).
    let project = match compile_project(
        &args.src,
        CompileOptions { previews: true },
        &mut reporter,
        &Progress::silent(),
    ) {
        Ok(project) => project,
        Err(outcome) => return reporter.finish(outcome),
    };
    let mut outcome = Outcome::Success;
    if !reporter.is_json() {
        let mut line = format!(
            "valid: {}, {}",
            plural(project.bundle.agents.len(), "agent"),
            plural(project.bundle.flows.len(), "flow")
        );
        if let Some(layout) = layout_summary(&project.bundle) {
            line.push_str(&format!(" ({layout})"));
        }
        if let Err(e) = stdout(&line) {
            reporter.error(format!("cannot write to stdout: {e}"));
            outcome = Outcome::Failure;
        }
    }
    reporter.finish(outcome)
}
