//! Diagnostics: every problem the compiler finds, with where it is.
//!
//! The compiler never stops at the first problem. Each stage pushes
//! [`Diagnostic`]s into a [`Diagnostics`] list and carries on with what it
//! could understand, so `validate` reports everything in one pass. A
//! diagnostic renders as `path:line:col: error[code]: message`, followed by
//! an optional hint line; `--format json` serialises the same fields.

use serde::Serialize;
use std::fmt;

/// How bad a problem is: errors stop the bundle from being written, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A position in a source file, 1-based like editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const fn new(line: u32, col: u32) -> Self {
        Self { line, col }
    }
}

/// One problem in the sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable, greppable name for the kind of problem, e.g. `unknown-key`.
    pub code: &'static str,
    /// Path of the file, relative to the source directory, with `/` separators.
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
    /// What the user probably meant or should do, when we can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Attaches a hint (builder style).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {level}[{}]: {}",
            self.file, self.line, self.col, self.code, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// The problems found so far, in the order they were found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error and returns it, so that a caller can set its `hint`.
    pub fn error(
        &mut self,
        code: &'static str,
        file: &str,
        pos: Pos,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Severity::Error, code, file, pos, message.into())
    }

    pub fn warning(
        &mut self,
        code: &'static str,
        file: &str,
        pos: Pos,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Severity::Warning, code, file, pos, message.into())
    }

    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        file: &str,
        pos: Pos,
        message: String,
    ) -> &mut Diagnostic {
        self.items.push(Diagnostic {
            severity,
            code,
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            message,
            hint: None,
        });
        let last = self.items.len() - 1;
        &mut self.items[last]
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Sorts by file, then position, so output is stable whatever order files
    /// were read in; a diagnostic reported twice is kept once.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (&a.file, a.line, a.col, a.severity, a.code, &a.message)
                .cmp(&(&b.file, b.line, b.col, b.severity, b.code, &b.message))
        });
        // A file read for two purposes (a skill's customize.toml, for its
        // agent and its workflow tables) reports its problem once.
        self.items.dedup();
    }
}

/// The closest known name to `unknown`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    unknown: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = unknown.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorting_keeps_one_of_identical_reports() {
        let mut d = Diagnostics::new();
        for file in ["b.toml", "a.toml", "b.toml"] {
            d.warning("bmad-toml", file, Pos::new(1, 1), "not TOML");
        }
        d.warning("bmad-toml", "b.toml", Pos::new(2, 1), "not TOML");
        d.sort();
        let kept: Vec<(&str, u32)> = d.iter().map(|x| (x.file.as_str(), x.line)).collect();
        assert_eq!(kept, [("a.toml", 1), ("b.toml", 1), ("b.toml", 2)]);
    }

    #[test]
    fn renders_position_code_and_hint() {
        let mut d = Diagnostics::new();
        d.error(
            "unknown-key",
            "agents/pm.md",
            Pos::new(3, 1),
            "unknown key `tols`",
        )
        .hint = Some("did you mean `tools`?".into());
        let text = d.iter().next().map(ToString::to_string).unwrap_or_default();
        assert_eq!(
            text,
            "agents/pm.md:3:1: error[unknown-key]: unknown key `tols`\n  = hint: did you mean `tools`?"
        );
        assert!(d.has_errors());
        assert_eq!(d.warning_count(), 0);
    }

    #[test]
    fn suggests_only_close_names() {
        let known = ["tools", "tasks", "templates"];
        assert_eq!(did_you_mean("tols", known), Some("tools"));
        assert_eq!(did_you_mean("zzzzzz", known), None);
    }
}
