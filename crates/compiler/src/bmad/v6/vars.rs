//! Variables of BMAD text and their substitution (SPEC 1.7, "Variables").
//!
//! BMAD text is not rendered as Jinja (but for BMAD's own rendered
//! skills, see [`super::render`]). Instead, at compile time, `{x}`,
//! `{{x}}` and `{{.x}}` (and `{{ config.x }}`) are replaced when `x` is known from the config
//! layers, and everything else (`{date}`, `{{project_name}}`, handlebars
//! blocks, JSON braces) stays as written for the model. A [`Vars`] is one
//! set of layers; later [`Vars::set`] calls win, so callers add the layers
//! in SPEC order (built-ins, module.yaml, config files, `bmad.vars`, the
//! flow's own keys).
//!
//! `{project-root}` is replaced by `bmad.project_root` when runtime.yaml sets
//! it; otherwise `{project-root}/` is dropped, so paths read project-relative
//! and the bundle does not depend on the directory it was compiled in. For
//! the same reason `{directory_name}` (the project folder's name, BMAD's
//! default project name) is known only from `bmad.project_root`.

use std::collections::BTreeMap;

/// The built-in variable naming the project root.
pub const PROJECT_ROOT: &str = "project-root";
/// The built-in variable naming the install folder, which BMAD-METHOD
/// wrote as `{project-root}/{bmad_folder}/<m>/…` before 6.0.
const BMAD_FOLDER: &str = "bmad_folder";
/// The built-in variable naming the project folder (the last segment of
/// the project root).
const DIRECTORY_NAME: &str = "directory_name";

/// How deep variables named inside variables' values are replaced.
const MAX_NESTING: usize = 8;
/// Longest a value may grow to by the variables it names.
const MAX_VALUE_BYTES: usize = 64 * 1024;
/// How much longer than its text a substitution may grow.
const MAX_GROWTH_BYTES: usize = 64 * 1024 * 1024;

/// How BMAD's rendered skills name a config value: `{{ config.<key> }}`.
const CONFIG_PREFIX: &str = "config.";

/// Shortest `{x}` checked for being a near miss of a known name.
const NEAR_MISS_MIN_CHARS: usize = 6;

/// A set of known variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    values: BTreeMap<String, String>,
}

impl Vars {
    /// The built-in layer: `{project-root}` (see the module docs; BMAD's
    /// own text sometimes spells it `{project_root}`) and `{bmad_folder}`
    /// (`install_dir`: `_bmad`, or `bmad` in a project a 6.0 alpha installed),
    /// and with a project root, `{directory_name}`.
    pub fn new(project_root: Option<&str>, install_dir: &str) -> Self {
        let mut vars = Self::default();
        vars.set(PROJECT_ROOT, project_root.unwrap_or_default());
        vars.set("project_root", project_root.unwrap_or_default());
        vars.set(BMAD_FOLDER, install_dir);
        let folder = project_root
            .and_then(|root| {
                root.trim_end_matches(['/', '\\'])
                    .rsplit(['/', '\\'])
                    .next()
            })
            .filter(|name| !name.is_empty());
        if let Some(folder) = folder {
            vars.set(DIRECTORY_NAME, folder);
        }
        vars
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_string(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every variable, by name.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// A value as a config file writes it: `{config_source}:key` is the
    /// config's `key` (`None` when no layer sets it), other text is substituted.
    pub fn config_value(&self, raw: &str) -> Option<String> {
        match raw.strip_prefix("{config_source}:") {
            Some(key) => self.get(key.trim()).map(str::to_string),
            None => Some(self.substitute(raw)),
        }
    }

    /// `text` with every known `{x}`, `{{x}}` and `{{.x}}` replaced. A value
    /// may name variables itself (a module's `sprint_artifacts` default is
    /// `{output_folder}/sprint-artifacts`, and `output_folder` may come from
    /// a later layer): those are replaced too, down to [`MAX_NESTING`]
    /// levels, so a cycle ends. Growth is bounded, so that sources cannot
    /// make it run away: a value whose replacement would pass
    /// [`MAX_VALUE_BYTES`] goes in as written, and past [`MAX_GROWTH_BYTES`]
    /// more than `text` the rest of `text` is left as written.
    pub fn substitute(&self, text: &str) -> String {
        self.expand(
            text,
            MAX_NESTING,
            text.len().saturating_add(MAX_GROWTH_BYTES),
        )
        .unwrap_or_else(|partial| partial)
    }

    /// `text` with its placeholders replaced; `Err` with what was done,
    /// the rest of `text` as written, once the result passes `cap` bytes.
    fn expand(&self, text: &str, levels: usize, cap: usize) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('{') {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            if out.len() > cap {
                out.push_str(rest);
                return Err(out);
            }
            match self.placeholder(rest) {
                Some((len, value)) => {
                    let mut after = &rest[len..];
                    if value.is_empty() && after.starts_with('/') {
                        // `{project-root}/x` with no root set: project-relative `x`.
                        after = &after[1..];
                    }
                    let nested = (levels > 0 && value.contains('{'))
                        .then(|| self.expand(value, levels - 1, MAX_VALUE_BYTES).ok())
                        .flatten();
                    out.push_str(nested.as_deref().unwrap_or(value));
                    rest = after;
                }
                None => {
                    out.push('{');
                    rest = &rest[1..];
                }
            }
        }
        out.push_str(rest);
        if out.len() > cap { Err(out) } else { Ok(out) }
    }

    /// The known placeholder `text` starts with: its length and value.
    /// `config.<key>` (BMAD's rendered skills write `{{ config.<key> }}`)
    /// is the config value `<key>` when no variable has that whole name.
    fn placeholder<'s>(&'s self, text: &str) -> Option<(usize, &'s str)> {
        let (name, len) = placeholder_name(text)?;
        self.get(name)
            .or_else(|| self.get(name.strip_prefix(CONFIG_PREFIX)?))
            .map(|value| (len, value))
    }

    /// `{x}` placeholders of `text` (6+ characters, unknown) within edit
    /// distance 2 of a known name: (1-based line, written, known name).
    pub fn near_misses(&self, text: &str) -> Vec<(u32, String, String)> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find('{') {
                rest = &rest[at..];
                let step = match placeholder_name(rest) {
                    Some((name, len)) => {
                        if name.len() >= NEAR_MISS_MIN_CHARS
                            && self.get(name).is_none()
                            && let Some(known) = self.values.keys().find(|k| {
                                k.len() >= NEAR_MISS_MIN_CHARS && strsim::levenshtein(k, name) <= 2
                            })
                        {
                            out.push((i as u32 + 1, name.to_string(), known.clone()));
                        }
                        len
                    }
                    None => 1,
                };
                rest = &rest[step..];
            }
        }
        out
    }
}

/// The variable name of the placeholder `text` starts with and the
/// placeholder's length: `{x}`, `{{x}}`, `{{ x }}`, `{{.x}}`. Names are
/// `[A-Za-z][A-Za-z0-9_.-]*`; anything else (`{{#if x}}`, JSON) is not one.
fn placeholder_name(text: &str) -> Option<(&str, usize)> {
    let (inner, len) = if let Some(rest) = text.strip_prefix("{{") {
        let end = rest.find("}}")?;
        let inner = rest[..end].trim();
        (inner.strip_prefix('.').unwrap_or(inner), end + 4)
    } else {
        let rest = &text[1..];
        let end = rest.find('}')?;
        (&rest[..end], end + 2)
    };
    let mut chars = inner.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    valid.then_some((inner, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmad::v6::layout::INSTALL_DIR;

    #[test]
    fn known_names_are_replaced_the_rest_stays() {
        let mut v = Vars::new(None, INSTALL_DIR);
        v.set("output_folder", "out");
        v.set("user_name", "Ada");
        assert_eq!(
            v.substitute("{project-root}/_bmad/x {output_folder}/a {{user_name}} {{.user_name}} {{ user_name }} {date} {{#if x}} {\"a\": 1} { { x } }"),
            "_bmad/x out/a Ada Ada Ada {date} {{#if x}} {\"a\": 1} { { x } }"
        );
        let rooted = Vars::new(Some("/work/grill"), INSTALL_DIR);
        assert_eq!(rooted.substitute("{project-root}/a"), "/work/grill/a");
        assert_eq!(rooted.substitute("{project_root}/a"), "/work/grill/a");
        // The project folder's name is known only from a project root.
        assert_eq!(rooted.substitute("{directory_name}"), "grill");
        let windows = Vars::new(Some("C:\\work\\grill\\"), INSTALL_DIR);
        assert_eq!(windows.substitute("{directory_name}"), "grill");
        assert_eq!(v.substitute("{directory_name}"), "{directory_name}");
        assert_eq!(
            v.config_value("{config_source}:user_name").as_deref(),
            Some("Ada")
        );
        assert_eq!(v.config_value("{config_source}:nope"), None);
        // Values naming variables, set in any order; a cycle stops.
        v.set("sprint_artifacts", "{output_folder}/sprint");
        v.set("output_folder", "docs");
        assert_eq!(
            v.substitute("{sprint_artifacts}/s.yaml"),
            "docs/sprint/s.yaml"
        );
        v.set("a", "<{b}>");
        v.set("b", "{a}");
        assert!(v.substitute("{a}").starts_with("<<<<"));
        // Values that multiply as they nest stop growing.
        v.set("x", "{y}".repeat(100));
        v.set("y", "{z}".repeat(100));
        v.set("z", "{w}".repeat(100));
        v.set("w", "www");
        let grown = v.substitute("{x}");
        assert!(grown.len() <= MAX_VALUE_BYTES, "{}", grown.len());
        assert!(grown.starts_with("{y}"));
        assert_eq!(v.substitute("{"), "{");
        assert_eq!(v.substitute("a{é}{{"), "a{é}{{");
    }

    #[test]
    fn config_names_a_config_value() {
        let mut v = Vars::new(None, INSTALL_DIR);
        v.set("planning_artifacts", "plans");
        v.set("config.own", "own value");
        assert_eq!(
            v.substitute("{{ config.planning_artifacts }}/a {{config.own}} {{ config.unknown }}"),
            "plans/a own value {{ config.unknown }}"
        );
    }

    #[test]
    fn near_misses_are_found() {
        let mut v = Vars::new(None, INSTALL_DIR);
        v.set("output_folder", "out");
        assert_eq!(
            v.near_misses("x\n{output_foldr} {outpt} {output_folder}"),
            vec![(2, "output_foldr".to_string(), "output_folder".to_string())]
        );
    }
}
