//! Prompt bodies: legacy placeholder conversion and compile-time template checks.
//!
//! Agent bodies are Jinja templates rendered at run time (see [`crate::prompt`]).
//! Two things happen at compile time so that run time has nothing to parse:
//!
//! - [`convert_legacy`] rewrites the old single-brace placeholders
//!   (`{persona}`, `{input}` …, only the names in [`LEGACY_PLACEHOLDERS`]) to
//!   `{{ name }}`. Any other brace — a JSON example, `{foo}` — stays as
//!   written, and existing `{{ … }}` is left alone.
//! - [`check_template`] parses the converted body with the same minijinja
//!   settings the engine renders with, reports syntax errors at the line in
//!   the source file, and checks that the template only reads the variables
//!   SPEC 1.1 provides ([`PROMPT_VARIABLES`]).

use crate::diag::{Diagnostics, Pos, did_you_mean};
use minijinja::{Environment, Template};

/// The single-brace placeholders older agent files use.
pub const LEGACY_PLACEHOLDERS: [&str; 7] = [
    "persona",
    "tasks",
    "checklists",
    "templates",
    "commands",
    "input",
    "story_id",
];

/// Variables a prompt template may read (SPEC 1.1).
pub const PROMPT_VARIABLES: [&str; 11] = [
    "input",
    "story_id",
    "agent",
    "persona",
    "tasks",
    "checklists",
    "templates",
    "commands",
    "docs",
    "memory",
    "context",
];

/// Rewrites `{name}` to `{{ name }}` for the legacy names only. A brace that
/// is part of `{{` / `}}` is never touched, so Jinja text stays as it is.
pub fn convert_legacy(body: &str) -> String {
    let bytes = body.as_bytes();
    let mut out = String::with_capacity(body.len() + 16);
    let mut copied = 0;
    let mut i = 0;
    while let Some(offset) = body[i..].find('{') {
        let open = i + offset;
        i = open + 1;
        if open > 0 && bytes[open - 1] == b'{' {
            continue;
        }
        let Some(len) = body[open + 1..].find('}') else {
            break;
        };
        let name = &body[open + 1..open + 1 + len];
        let close = open + 1 + len;
        let doubled_close = bytes.get(close + 1) == Some(&b'}');
        if LEGACY_PLACEHOLDERS.contains(&name) && !doubled_close {
            out.push_str(&body[copied..open]);
            out.push_str("{{ ");
            out.push_str(name);
            out.push_str(" }}");
            copied = close + 1;
            i = close + 1;
        }
    }
    out.push_str(&body[copied..]);
    out
}

/// Parses `template` and checks the variables it reads; returns the parsed
/// template when it parses (unknown variables are reported, not fatal), so
/// a caller that renders it next does not parse it again.
///
/// `first_line` is the line in `file` where the template text starts, so
/// positions point into the source file. `allowed` is the variable set;
/// environment globals (`range`, `namespace` …) are always allowed.
pub fn check_template<'env, 'source>(
    env: &'env Environment<'env>,
    template: &'source str,
    file: &str,
    first_line: u32,
    allowed: &[&str],
    what: &str,
    diags: &mut Diagnostics,
) -> Option<Template<'env, 'source>> {
    let parsed = match env.template_from_str(template) {
        Ok(parsed) => parsed,
        Err(err) => {
            let line = err.line().map_or(0, |l| l.saturating_sub(1) as u32);
            let detail = err.detail().unwrap_or("");
            diags
                .error(
                    "template-syntax",
                    file,
                    Pos::new(first_line + line, 1),
                    format!("{what}: {}: {detail}", err.kind()),
                )
                .hint = Some(
                "templates use Jinja syntax ({{ input }}, {% for … %}); write {{ '{{' }} for a literal `{{`"
                    .into(),
            );
            return None;
        }
    };
    let mut unknown: Vec<String> = parsed
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !allowed.contains(&name.as_str()))
        .filter(|name| !env.globals().any(|(global, _)| global == name))
        .collect();
    unknown.sort();
    for name in unknown {
        let (line, col) = position_of_word(template, &name).unwrap_or((0, 1));
        let diag = diags.error(
            "unknown-variable",
            file,
            Pos::new(first_line + line, col),
            format!("{what} uses unknown variable `{name}`"),
        );
        diag.hint = Some(match did_you_mean(&name, allowed.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("available: {}", allowed.join(", ")),
        });
    }
    Some(parsed)
}

/// Zero-based line and one-based column of the first whole-word occurrence of `word`.
fn position_of_word(text: &str, word: &str) -> Option<(u32, u32)> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(offset) = text[from..].find(word) {
        let start = from + offset;
        let end = start + word.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line = text[..start].matches('\n').count() as u32;
            return Some((line, text[line_start..start].chars().count() as u32 + 1));
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_only_legacy_names() {
        let body = "Hi {persona}. In: {input} {story_id}\nJSON: {\"a\": {\"b\": 1}} {foo} {{ input }} {{input}}";
        assert_eq!(
            convert_legacy(body),
            "Hi {{ persona }}. In: {{ input }} {{ story_id }}\nJSON: {\"a\": {\"b\": 1}} {foo} {{ input }} {{input}}"
        );
        assert_eq!(convert_legacy("{input"), "{input");
        assert_eq!(convert_legacy("{{input}"), "{{input}");
        assert_eq!(convert_legacy("é{tasks}ü"), "é{{ tasks }}ü");
    }

    #[test]
    fn reports_syntax_errors_at_file_lines() {
        let env = crate::prompt::environment();
        let mut d = Diagnostics::new();
        check_template(
            &env,
            "a\nb\n{% if %}\n",
            "agents/x.md",
            5,
            &PROMPT_VARIABLES,
            "prompt",
            &mut d,
        );
        let diag = d.iter().next().cloned();
        let diag = diag.unwrap_or_else(|| panic!("one diagnostic"));
        assert_eq!((diag.code, diag.line), ("template-syntax", 7));
    }

    #[test]
    fn reports_unknown_variables_with_suggestion() {
        let env = crate::prompt::environment();
        let mut d = Diagnostics::new();
        let body = "{{ input }}\n{% for x in range(3) %}{{ loop.index }}{% endfor %}\n{{ persna }}";
        check_template(&env, body, "a.md", 3, &PROMPT_VARIABLES, "prompt", &mut d);
        let diags: Vec<_> = d.iter().cloned().collect();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!((diags[0].code, diags[0].line), ("unknown-variable", 5));
        assert_eq!(diags[0].hint.as_deref(), Some("did you mean `persona`?"));
    }
}
