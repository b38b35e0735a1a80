//! BMAD's rendered skills (6.12 on): a skill whose SKILL.md only runs
//! `render_skill.py` keeps its workflow and steps as Jinja templates, which
//! BMAD renders before each run from the skill's `[workflow]`
//! customization and the config. bmad2pf renders them once, at compile
//! time, the same way, with the customization the project has (the
//! per-run `--set` overrides BMAD's command takes do not exist here).
//!
//! The context is what the templates use: `workflow` (the merged
//! `[workflow]` table), `config` (the skill's module variables; an unknown
//! one is its `{key}` placeholder), `initiative_folder` (the config's
//! `output_folder`), `rendered("x.md")` (the name of the file to read
//! next, which is how the step-file reader finds the next step) and
//! `halt("why")` (a customization the template refuses). A list prints as
//! `- ` bullets, an empty one as `_None._`, as BMAD prints them. Single
//! braces pass through untouched, for the substitution that follows
//! (SPEC 1.7, "Variables"). Rendering is bounded like every template from
//! sources (`crate::template_limits`).
//!
//! A file that is not a Jinja template (the older token form of these
//! skills: `{{.x}}`, `[[bmad-snapshot:…]]`) is left as written; a template
//! that halts or fails warns and is left as written.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Object, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

use super::customize::{self, value_text};
use super::layout::{file_name, parent};
use super::markdown;
use super::paths::Tree;
use super::skill;
use super::vars::Vars;
use crate::diag::{Diagnostics, Pos};

/// What SKILL.md of a rendered skill runs.
const RENDERER: &str = "render_skill.py";

/// The rendered text of every template of the rendered skills among
/// `skill_files` (SKILL.md paths), by path; empty when there are none.
pub fn render_skills(
    tree: &Tree<'_>,
    skill_files: &[String],
    manifests: &BTreeMap<String, String>,
    vars: &BTreeMap<String, Vars>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, String> {
    let env = environment();
    let mut rendered = BTreeMap::new();
    // Module lookups warn in the skill reader; not twice.
    let mut quiet = Diagnostics::default();
    let mut module_cache = BTreeMap::new();
    for skill_file in skill_files {
        let Some(text) = tree
            .files
            .text(skill_file)
            .ok()
            .filter(|text| text.contains(RENDERER))
        else {
            continue;
        };
        let dir = parent(skill_file);
        // Customization files are named after the skill, as the reader names it.
        let name = markdown::read(text, skill_file, &mut quiet)
            .field("name")
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| file_name(dir).to_string());
        let module = skill::module_of(tree, dir, manifests, &mut module_cache, &mut quiet);
        let config = Config(
            vars.get(&module)
                .map(Vars::values)
                .cloned()
                .unwrap_or_default(),
        );
        let workflow = customize::merged(tree.files, dir, &name, "workflow", &mut quiet)
            .map(|table| customize::to_json(&toml::Value::Table(table)))
            .unwrap_or_default();
        let context = minijinja::context! {
            workflow => Value::from_serialize(&workflow),
            initiative_folder => config.value("output_folder"),
            config => Value::from_object(config),
        };
        for rel in tree.files.paths().filter(|p| is_template(p, dir)) {
            let Ok(text) = tree.files.text(rel) else {
                continue;
            };
            let Ok(template) = env.template_from_str(text) else {
                continue;
            };
            match crate::template_limits::render(&template, &context) {
                Ok(out) => {
                    rendered.insert(rel.to_string(), out);
                }
                Err(error) => {
                    diags.warning(
                        "bmad-render",
                        rel,
                        Pos::new(error.line().map_or(1, |l| u32::try_from(l).unwrap_or(1)), 1),
                        format!(
                            "rendering stopped ({}): the file is used as written",
                            crate::prompt::describe(&error)
                        ),
                    );
                }
            }
        }
    }
    rendered
}

/// The config as templates read it: a known value, else the `{key}`
/// placeholder, which then stays for the model as unknown variables do
/// (rather than an empty string that would turn `{{ config.x }}/a.md`
/// into `/a.md`).
#[derive(Debug)]
struct Config(BTreeMap<String, String>);

impl Config {
    fn value(&self, key: &str) -> String {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("{{{key}}}"))
    }
}

impl Object for Config {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(self.value(key.as_str()?)))
    }
}

/// A Markdown file of the skill in `dir` other than its SKILL.md.
fn is_template(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| rest.ends_with(".md") && rest != "SKILL.md")
}

/// Jinja as BMAD's renderer runs it: no escaping, lists print as bullets,
/// and an undefined value is an error, as it is there. Printed as nothing,
/// it would silently drop a `{{placeholder}}` left for the model outside
/// `{% raw %}`; as an error, the file is used as written, with a warning.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(|out, state, value| match value.kind() {
        ValueKind::Seq | ValueKind::Map => {
            let text = toml::Value::try_from(value)
                .map(|v| value_text(&v))
                .unwrap_or_else(|_| value.to_string());
            out.write_str(&text).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.add_function("rendered", |name: String| name);
    env.add_function("halt", |why: String| -> Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, why))
    });
    crate::template_limits::bound(&mut env);
    env
}
