//! `bmad2pf generate` (and the short form `bmad2pf --src DIR --out DIR`).
//!
//! Compiles the sources and swaps the bundle into `--out` atomically; with
//! any error, nothing is written. `--check` writes nothing and compares:
//! it prints `up to date` (exit 0) or one `<status> <path>` line per
//! differing file on stdout (exit 1), where status is `missing`, `changed`
//! or `stale` (a file a run would remove). runtime.yaml only counts when it
//! is missing, since the user owns it once written.
//!
//! JSON results (besides the common keys of [`crate::report`]):
//! `"output": {"dir", "files": [{"path", "size"}], "runtime_yaml": "written" | "kept"}`
//! after a write, `"check": {"up_to_date", "differences": [{"path", "status"}]}`
//! with `--check`. `openapi.json` is the document `bmad2pf serve` serves
//! for this bundle (built by the server crate).

use crate::progress::{Progress, millis};
use crate::project::{Project, compile_project};
use crate::report::{Reporter, plural, stdout};
use crate::{GenerateArgs, Outcome};
use bmad2pf_compiler::CompileOptions;
use bmad2pf_compiler::output::{self, BundleContents, OutputError, RenderedBundle};
use serde_json::json;
use std::time::Instant;

pub fn run(args: &GenerateArgs) -> Outcome {
    let progress = Progress::new(args.quiet, args.verbose);
    let mut reporter = Reporter::new(args.format);
    let outcome = match compile_project(
        &args.src,
        CompileOptions { previews: true },
        &mut reporter,
        &progress,
    ) {
        Ok(project) => {
            let started = Instant::now();
            let openapi = bmad2pf_server::openapi_document(&project.bundle, &project.config);
            match render(&project, &openapi) {
                Ok(rendered) => {
                    progress.phase("render", started.elapsed());
                    if args.check {
                        check(args, &rendered, &mut reporter)
                    } else {
                        write(args, &project, &rendered, &mut reporter, &progress)
                    }
                }
                Err(e) => {
                    reporter.error(e);
                    Outcome::Failure
                }
            }
        }
        Err(outcome) => outcome,
    };
    reporter.finish(outcome)
}

/// The bundle's files in memory (JSON, schema, graph, prompts, manifest);
/// prompt files borrow the project's previews.
fn render<'p>(
    project: &'p Project,
    openapi: &'p serde_json::Value,
) -> Result<RenderedBundle<'p>, OutputError> {
    output::render(&BundleContents {
        bundle: &project.bundle,
        prompts: &project.prompts,
        runtime_yaml: project.runtime_yaml.as_deref(),
        openapi: Some(openapi),
    })
}

fn write(
    args: &GenerateArgs,
    project: &Project,
    rendered: &RenderedBundle<'_>,
    reporter: &mut Reporter,
    progress: &Progress,
) -> Outcome {
    let started = Instant::now();
    let report = match output::write_rendered(&args.out, rendered) {
        Ok(report) => report,
        Err(e) => {
            reporter.error(e);
            return Outcome::Failure;
        }
    };
    progress.phase("write", started.elapsed());
    for (path, size) in &report.files {
        progress.detail(&format!("{path} ({size} bytes)"));
    }
    progress.detail(&format!(
        "{} unchanged since the previous bundle",
        plural(report.reused, "file")
    ));
    let runtime = if report.runtime_written {
        "written"
    } else {
        "kept"
    };
    progress.detail(&format!(
        "{} {}",
        if report.runtime_written {
            "wrote"
        } else {
            "kept"
        },
        output::RUNTIME_FILE
    ));

    let bundle = &project.bundle;
    progress.line(&format!(
        "compiled {}, {} in {} → {}/",
        plural(bundle.agents.len(), "agent"),
        plural(bundle.flows.len(), "flow"),
        millis(progress.elapsed()).trim_start(),
        args.out.display()
    ));
    let files: Vec<_> = report
        .files
        .iter()
        .map(|(path, size)| json!({"path": path, "size": size}))
        .collect();
    reporter.result(
        "output",
        json!({"dir": args.out.display().to_string(), "files": files, "runtime_yaml": runtime}),
    );
    Outcome::Success
}

fn check(args: &GenerateArgs, rendered: &RenderedBundle<'_>, reporter: &mut Reporter) -> Outcome {
    let result = match output::check_rendered(&args.out, rendered) {
        Ok(result) => result,
        Err(e) => {
            reporter.error(e);
            return Outcome::Failure;
        }
    };
    let differences: Vec<_> = result
        .differences
        .iter()
        .map(|(path, status)| json!({"path": path, "status": status.as_str()}))
        .collect();
    reporter.result(
        "check",
        json!({"up_to_date": result.is_up_to_date(), "differences": differences}),
    );
    if !reporter.is_json() {
        let text = if result.is_up_to_date() {
            "up to date".to_string()
        } else {
            result
                .differences
                .iter()
                .map(|(path, status)| format!("{:<8} {path}", status.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if let Err(e) = stdout(&text) {
            reporter.error(format!("cannot write to stdout: {e}"));
            return Outcome::Failure;
        }
    }
    if result.is_up_to_date() {
        Outcome::Success
    } else {
        Outcome::Invalid
    }
}
