//! A run as `run` and `resume` show it on the terminal: the progress line
//! of each agent event (stderr), the outcome table (stdout) with the
//! questions a headless run answered on assumptions, and the open
//! interrupts of a run that waits for a person, each with the exact
//! `bmad2pf resume …` command that answers it.

use crate::runtime::BundleArgs;
use bmad2pf_compiler::config::ServerConfig;
use bmad2pf_engine::outcome::{ProgressStatus, RunEvent};
use bmad2pf_engine::runs::Run;
use bmad2pf_engine::runs::interrupts::{Interrupt, InterruptKind};

/// The run's open interrupts, oldest first: the order they are asked in,
/// and the one `resume` answers when `--interrupt` is not given.
pub fn open_interrupts(run: &Run) -> Vec<&Interrupt> {
    let mut open: Vec<&Interrupt> = run.interrupts.iter().filter(|i| i.is_open()).collect();
    open.sort_by_key(|i| i.created_at);
    open
}

/// `  analyst                  completed (12 ms)`, for a progress event.
pub fn progress_line(event: &RunEvent) -> Option<String> {
    let RunEvent::Progress {
        agent,
        status,
        duration_ms,
        ..
    } = event
    else {
        return None;
    };
    let word = match status {
        ProgressStatus::Started => "started",
        ProgressStatus::Completed => "completed",
        ProgressStatus::Failed => "FAILED",
        ProgressStatus::Skipped => "up to date",
        ProgressStatus::Waiting => "waiting for documents",
        ProgressStatus::Interrupted => "waiting for an answer",
        ProgressStatus::Cancelled => "cancelled",
    };
    Some(match duration_ms {
        Some(ms) if *status != ProgressStatus::Started => format!("  {agent:<24} {word} ({ms} ms)"),
        _ => format!("  {agent:<24} {word}"),
    })
}

/// The outcome table: the run's status, one line per agent, what it
/// waits for, its errors and the questions it answered on assumptions.
pub fn outcome(run: &Run) -> String {
    let outcome = &run.outcome;
    let mut lines = vec![format!(
        "run {}: {} in {} ms",
        outcome.run_id,
        outcome.status.as_str(),
        outcome.duration_ms
    )];
    for (agent, result) in &outcome.results {
        let status = serde_json::to_value(result.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        lines.push(format!(
            "  {agent:<24} {status:<10} {:<32} {} ms, {} → {} tokens",
            result.document.as_deref().unwrap_or("-"),
            result.duration_ms,
            result.usage.input_tokens,
            result.usage.output_tokens
        ));
    }
    if !outcome.pending_docs.is_empty() {
        lines.push(format!(
            "pending: waiting for {}; add them (PUT /doc/<story>__<name>, or a file in the docs directory) and run again",
            outcome.pending_docs.join(", ")
        ));
    }
    for (who, message) in &outcome.errors {
        lines.push(format!("error: {who}: {message}"));
    }
    if !run.open_questions.is_empty() {
        lines.push("open questions (headless: no person was asked; the agents proceeded on assumptions they state):".into());
        for question in &run.open_questions {
            let step = question
                .step
                .as_deref()
                .map(|s| format!(" (step {s})"))
                .unwrap_or_default();
            lines.push(format!(
                "  {}{step}, {}: {}",
                question.agent,
                kind_word(question.kind),
                question.prompt
            ));
            if let Some(options) = &question.options {
                lines.push(format!("    options: {}", options.join(" | ")));
            }
            if let Some(assumed) = &question.assumed {
                lines.push(format!("    assumed: {assumed}"));
            }
        }
    }
    lines.join("\n")
}

/// The open interrupts, each with the commands that answer it; `bundle`
/// is repeated in them, as `resume` needs the same bundle as the run.
pub fn waiting(run: &Run, bundle: &BundleArgs) -> Vec<String> {
    let open = open_interrupts(run);
    let mut lines = vec![format!(
        "waiting for a person: {} open question(s); answer one with `bmad2pf resume`, or stop the run with `bmad2pf cancel {}`",
        open.len(),
        run.outcome.run_id
    )];
    let flags = bundle_flags(bundle);
    for interrupt in open {
        lines.push(format!(
            "  {}  {} (step {}), {}",
            interrupt.id,
            interrupt.agent,
            interrupt.step,
            kind_word(interrupt.kind)
        ));
        for line in interrupt.prompt.lines() {
            lines.push(format!("    {line}"));
        }
        if let Some(options) = &interrupt.options {
            for (number, option) in options.iter().enumerate() {
                lines.push(format!("    {}) {option}", number + 1));
            }
        }
        if let Some(documents) = interrupt.documents.as_ref().filter(|d| !d.is_empty()) {
            lines.push(format!("    documents: {}", documents.join(", ")));
        }
        let command = format!(
            "bmad2pf resume {} --interrupt {}",
            run.outcome.run_id, interrupt.id
        );
        match interrupt.kind {
            InterruptKind::Ask => {
                lines.push(format!(
                    "    answer: {command} --answer 'YOUR ANSWER'{flags}"
                ));
            }
            InterruptKind::Choose => {
                lines.push(format!(
                    "    answer: {command} --answer 'ONE OF THE OPTIONS'{flags}"
                ));
            }
            InterruptKind::Approve => {
                lines.push(format!("    approve: {command} --approve{flags}"));
                lines.push(format!(
                    "    reject:  {command} --reject --feedback 'WHY'{flags}   (--feedback may be left out)"
                ));
            }
        }
    }
    lines
}

fn kind_word(kind: InterruptKind) -> &'static str {
    match kind {
        InterruptKind::Ask => "ask",
        InterruptKind::Choose => "choose",
        InterruptKind::Approve => "approve",
    }
}

/// `text` as one word for a POSIX shell: as it is when it is plainly safe,
/// else in single quotes.
/// Where to watch `run` in the web console: the `serve` command on the
/// same bundle and store, and the run's page at the address `server` binds.
pub fn console_hint(run: &Run, bundle: &BundleArgs, server: &ServerConfig) -> String {
    // A server bound to every interface is reached on the loopback here.
    let host = match server.host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        host => host,
    };
    format!(
        "watch it in the web console: bmad2pf serve{}, then http://{host}:{}/#/runs/{}",
        bundle_flags(bundle),
        server.port,
        run.outcome.run_id
    )
}

/// The command-line flags naming `bundle` (` --src DIR`…), shell-quoted.
fn bundle_flags(bundle: &BundleArgs) -> String {
    bundle
        .flags()
        .iter()
        .map(|(flag, path)| format!(" {flag} {}", shell_word(&path.to_string_lossy())))
        .collect()
}

fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_word("examples/planning"), "examples/planning");
        assert_eq!(shell_word("my docs/src"), "'my docs/src'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
