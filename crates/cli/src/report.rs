//! Reporting what a command found: diagnostics, errors and results.
//!
//! In text mode diagnostics go to stderr as they are (`path:line:col:
//! error[code]: message` and a hint line), followed by a summary line such
//! as `error: 3 errors, 1 warning`; errors that are not about the sources
//! (I/O, usage) are printed as `error: <message>`; results go to stdout.
//!
//! With `--format json`, stdout receives exactly one JSON document when the
//! command ends:
//!
//! ```json
//! {
//!   "ok": false,
//!   "diagnostics": [{"severity": "error", "code": "unknown-key", "file": "agents/pm.md",
//!                    "line": 3, "col": 1, "message": "…", "hint": "…"}],
//!   "summary": {"errors": 1, "warnings": 0},
//!   "error": "…"
//! }
//! ```
//!
//! `ok` is true exactly when the exit code is 0. `summary` also has `agents`
//! and `flows` when the sources compiled, and `layout` (as `validate`'s
//! summary line shows it) for a BMAD v6 / skills tree. `error` is present only for a
//! failure that is not a diagnostic (I/O, a missing source directory).
//! Commands add their result under one more key: `output` for `generate`,
//! `check` for `generate --check` (see [`crate::generate`]).

use crate::{Format, Outcome};
use bmad2pf_compiler::bundle::Bundle;
use bmad2pf_compiler::diag::Diagnostics;
use serde_json::{Map, Value, json};
use std::io::Write;

/// Collects a command's report and prints it in the chosen format.
#[derive(Debug)]
pub struct Reporter {
    format: Format,
    /// The JSON document being built (unused in text mode).
    document: Map<String, Value>,
}

impl Reporter {
    pub fn new(format: Format) -> Self {
        let mut document = Map::new();
        // Placeholder so `ok` comes first; set for real in `finish`.
        document.insert("ok".into(), Value::Bool(false));
        document.insert("diagnostics".into(), json!([]));
        document.insert("summary".into(), json!({"errors": 0, "warnings": 0}));
        Self { format, document }
    }

    /// Reports the diagnostics of a compile, and what was compiled when it succeeded.
    pub fn diagnostics(&mut self, diags: &Diagnostics, bundle: Option<&Bundle>) {
        let errors = diags.error_count();
        let warnings = diags.warning_count();
        let mut summary = json!({"errors": errors, "warnings": warnings});
        if let Some(bundle) = bundle {
            summary["agents"] = json!(bundle.agents.len());
            summary["flows"] = json!(bundle.flows.len());
            if let Some(layout) = bmad2pf_compiler::layout_summary(bundle) {
                summary["layout"] = json!(layout);
            }
        }
        match self.format {
            Format::Text => {
                for diagnostic in diags.iter() {
                    eprintln!("{diagnostic}");
                }
                if errors > 0 {
                    let mut line = format!("error: {}", plural(errors, "error"));
                    if warnings > 0 {
                        line.push_str(&format!(", {}", plural(warnings, "warning")));
                    }
                    eprintln!("{line}");
                } else if warnings > 0 {
                    eprintln!("warning: {}", plural(warnings, "warning"));
                }
            }
            Format::Json => {
                let list = serde_json::to_value(diags).unwrap_or_else(|_| json!([]));
                self.document.insert("diagnostics".into(), list);
                self.document.insert("summary".into(), summary);
            }
        }
    }

    /// Reports a failure that is not about the sources (I/O, usage).
    pub fn error(&mut self, message: impl std::fmt::Display) {
        match self.format {
            Format::Text => eprintln!("error: {message}"),
            Format::Json => {
                self.document
                    .insert("error".into(), Value::String(message.to_string()));
            }
        }
    }

    /// Records a command's result under `key` (JSON mode only; text-mode
    /// commands print their own result lines with [`stdout`]).
    pub fn result(&mut self, key: &str, value: Value) {
        self.document.insert(key.into(), value);
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Ends the command: in JSON mode prints the document with `ok`.
    pub fn finish(mut self, outcome: Outcome) -> Outcome {
        if self.format == Format::Text {
            return outcome;
        }
        self.document
            .insert("ok".into(), Value::Bool(outcome == Outcome::Success));
        let text = serde_json::to_string_pretty(&Value::Object(self.document))
            .unwrap_or_else(|e| format!("{{\"ok\": false, \"error\": \"{e}\"}}"));
        match stdout(&text) {
            Ok(()) => outcome,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Writes `text` and a newline to stdout. A closed pipe (`bmad2pf graph |
/// head`) is not an error worth a panic: it is reported to the caller.
pub fn stdout(text: &str) -> std::io::Result<()> {
    line_to(std::io::stdout().lock(), text)
}

/// [`stdout`] for stderr: a reader that went away (a closed pipe) is
/// reported, not a panic as with `eprintln!`.
pub fn stderr(text: &str) -> std::io::Result<()> {
    line_to(std::io::stderr().lock(), text)
}

fn line_to(mut out: impl Write, text: &str) -> std::io::Result<()> {
    writeln!(out, "{text}")?;
    out.flush()
}

/// `1 error`, `3 errors`.
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
