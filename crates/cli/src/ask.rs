//! Asking a person on the terminal (SPEC 8.3): one open interrupt of a run,
//! asked inline on stderr, read from stdin, turned into the [`Answer`] a
//! resume takes.
//!
//! By kind: `ask` shows the prompt and takes a line of text (asked again
//! while it is empty); `choose` lists the options numbered and takes the
//! number or the option's exact text; `approve` takes y or n, then, on a
//! rejection, an optional line of feedback. The end of input (Ctrl-D) at
//! any of these gives no answer: the caller leaves the run interrupted.
//!
//! Lines are read on a thread of their own and handed over a channel, so
//! that waiting for a person never blocks the async runtime: Ctrl-C is
//! still heard while a question waits, and the process exits without
//! waiting for a read that will never return.

use bmad2pf_engine::runs::interrupts::{Answer, Decision, Interrupt, InterruptKind};
use std::io::{BufRead, IsTerminal};
use tokio::sync::mpsc;

/// The lines a person types on stdin, as they come.
pub struct Keyboard {
    /// Closed at the end of input (or when stdin cannot be read).
    lines: mpsc::UnboundedReceiver<String>,
}

impl Keyboard {
    /// Whether a person can be asked here: stdin and stderr are terminals
    /// (stdout may be a pipe: it carries the outcome).
    pub fn is_available() -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    /// Starts reading stdin.
    pub fn open() -> std::io::Result<Self> {
        let (sender, lines) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut bytes = Vec::new();
                loop {
                    bytes.clear();
                    match stdin.read_until(b'\n', &mut bytes) {
                        // The end of input, or a terminal that went away.
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            // A stray byte that is not UTF-8 is no reason to end the input.
                            let line = String::from_utf8_lossy(&bytes).trim().to_string();
                            if sender.send(line).is_err() {
                                break;
                            }
                        }
                    }
                }
            })?;
        Ok(Self { lines })
    }

    /// Asks `interrupt` until the reply fits it; `None` at the end of input.
    pub async fn ask(&mut self, interrupt: &Interrupt) -> Option<Answer> {
        eprintln!();
        eprintln!("? {} asks ({}):", interrupt.agent, interrupt.id);
        for line in interrupt.prompt.lines() {
            eprintln!("  {line}");
        }
        if let Some(documents) = interrupt.documents.as_ref().filter(|d| !d.is_empty()) {
            eprintln!("  documents: {}", documents.join(", "));
        }
        let answer = |answer: Option<String>, decision, feedback| Answer {
            interrupt_id: interrupt.id.clone(),
            answer,
            decision,
            feedback,
        };
        match interrupt.kind {
            InterruptKind::Ask => loop {
                let text = self.line("> ").await?;
                if !text.is_empty() {
                    return Some(answer(Some(text), None, None));
                }
                eprintln!(
                    "  (an answer is needed: type it, then Enter; Ctrl-D leaves the run waiting)"
                );
            },
            InterruptKind::Choose => {
                let options = interrupt.options.as_deref().unwrap_or_default();
                for (number, option) in options.iter().enumerate() {
                    eprintln!("  {}) {option}", number + 1);
                }
                let prompt = format!("choose 1-{}: ", options.len());
                loop {
                    let text = self.line(&prompt).await?;
                    if let Some(option) = chosen(options, &text) {
                        return Some(answer(Some(option.to_string()), None, None));
                    }
                    eprintln!(
                        "  (type a number from 1 to {}, or an option exactly as listed)",
                        options.len()
                    );
                }
            }
            InterruptKind::Approve => loop {
                let text = self.line("approve? [y/n]: ").await?;
                match text.to_lowercase().as_str() {
                    "y" | "yes" => return Some(answer(None, Some(Decision::Approve), None)),
                    "n" | "no" => {
                        let feedback = self.line("feedback (optional, Enter for none): ").await?;
                        let feedback = Some(feedback).filter(|f| !f.is_empty());
                        return Some(answer(None, Some(Decision::Reject), feedback));
                    }
                    _ => eprintln!("  (type y to approve or n to reject)"),
                }
            },
        }
    }

    /// Shows `prompt` and waits for the next line, trimmed.
    async fn line(&mut self, prompt: &str) -> Option<String> {
        eprint!("{prompt}");
        self.lines.recv().await
    }
}

/// The option that `text` picks: its number (from 1) or its exact text.
fn chosen<'a>(options: &'a [String], text: &str) -> Option<&'a str> {
    let by_number = text
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| options.get(i));
    by_number
        .or_else(|| options.iter().find(|o| *o == text))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::{Keyboard, chosen};
    use bmad2pf_engine::runs::interrupts::{
        Answer, Decision, Interrupt, InterruptKind, InterruptSource, InterruptStatus,
    };
    use tokio::sync::mpsc;

    fn question(kind: InterruptKind, options: Option<&[&str]>) -> Interrupt {
        Interrupt {
            id: "int-0123456789abcdef".into(),
            agent: "po".into(),
            step: "review".into(),
            kind,
            prompt: "Ship it?".into(),
            options: options.map(|o| o.iter().map(|o| o.to_string()).collect()),
            documents: None,
            source: InterruptSource::Tool,
            status: InterruptStatus::Open,
            created_at: 0,
            answered_at: None,
            answer: None,
        }
    }

    /// What `interrupt` gets from a person who types `typed`, line by line,
    /// then ends the input.
    fn asked(interrupt: &Interrupt, typed: &[&str]) -> Option<Answer> {
        let (keys, lines) = mpsc::unbounded_channel();
        for line in typed {
            keys.send(line.to_string()).ok()?;
        }
        drop(keys);
        let runtime = tokio::runtime::Builder::new_current_thread().build().ok()?;
        runtime.block_on(Keyboard { lines }.ask(interrupt))
    }

    #[test]
    fn each_kind_is_asked_until_the_reply_fits_it() {
        let ask = question(InterruptKind::Ask, None);
        let answer = asked(&ask, &["", "Families first"]);
        assert_eq!(
            answer.and_then(|a| a.answer).as_deref(),
            Some("Families first")
        );

        let choose = question(InterruptKind::Choose, Some(&["Rust", "Go"]));
        let answer = asked(&choose, &["3", "Go"]);
        assert_eq!(answer.and_then(|a| a.answer).as_deref(), Some("Go"));

        let approve = question(InterruptKind::Approve, None);
        let approved = asked(&approve, &["maybe", "Y"]);
        assert_eq!(
            approved.as_ref().and_then(|a| a.decision),
            Some(Decision::Approve)
        );
        assert_eq!(approved.and_then(|a| a.feedback), None);
        let rejected = asked(&approve, &["n", "too vague"]);
        assert_eq!(
            rejected.as_ref().and_then(|a| a.decision),
            Some(Decision::Reject)
        );
        assert_eq!(
            rejected.and_then(|a| a.feedback).as_deref(),
            Some("too vague")
        );
        let bare = asked(&approve, &["no", ""]);
        assert_eq!(
            bare.as_ref().and_then(|a| a.decision),
            Some(Decision::Reject)
        );
        assert_eq!(bare.and_then(|a| a.feedback), None);
    }

    #[test]
    fn the_end_of_input_gives_no_answer() {
        assert_eq!(asked(&question(InterruptKind::Ask, None), &[""]), None);
        let approve = question(InterruptKind::Approve, None);
        assert_eq!(asked(&approve, &["n"]), None, "no feedback line either");
    }

    #[test]
    fn an_option_is_chosen_by_number_or_exact_text() {
        let options = vec!["Rust".to_string(), "Go".to_string(), "1".to_string()];
        assert_eq!(chosen(&options, "2"), Some("Go"));
        assert_eq!(chosen(&options, "Rust"), Some("Rust"));
        // A number picks by the listed numbers first, even where an option reads like one.
        assert_eq!(chosen(&options, "1"), Some("Rust"));
        for refused in ["0", "4", "go", "", "-1"] {
            assert_eq!(chosen(&options, refused), None, "{refused}");
        }
    }
}
