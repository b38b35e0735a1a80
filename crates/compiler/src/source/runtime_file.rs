//! `runtime.yaml` → [`RuntimeConfig`], with a position for every problem.
//!
//! serde alone would stop at the first bad key and forget where it was, so
//! the file is walked as a [`Node`] tree against the JSON form of
//! [`RuntimeConfig::default()`]: a key that is not there is `unknown-key`
//! (with "did you mean", at any depth); a section that is not a map, or a
//! value serde refuses (checked one leaf at a time, in an otherwise default
//! config), is an error at that value naming the dotted key. Then a few
//! rules serde cannot express: `openai_compatible` needs `llm.base_url`,
//! and the value rules of [`RuntimeConfig::rule_breaches`] (temperatures
//! and rates in range, sizes at least 1), which environment overrides are
//! held to as well.
//!
//! `runtime.yaml` at the source root wins; `config/runtime.yaml` is read
//! when the root has none. An empty file is valid (all defaults).

use crate::config::{ProviderKind, RuntimeConfig};
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs;
use crate::yaml::{self, Node, Value, check_keys};
use std::path::Path;

/// Where runtime.yaml is looked for, in order.
pub const RUNTIME_FILES: [&str; 2] = ["runtime.yaml", "config/runtime.yaml"];

/// The runtime configuration of a source directory: the config (defaults
/// where the file is silent or absent) and the file's text, when there is one.
pub fn read_runtime(src: &Path, diags: &mut Diagnostics) -> (RuntimeConfig, Option<String>) {
    let present: Vec<&str> = RUNTIME_FILES
        .iter()
        .copied()
        .filter(|f| src.join(f).is_file())
        .collect();
    let Some(&file) = present.first() else {
        return (RuntimeConfig::default(), None);
    };
    for ignored in &present[1..] {
        diags.warning(
            "ignored-file",
            ignored,
            Pos::new(1, 1),
            format!("{ignored} is ignored because {file} exists"),
        );
    }
    match sourcefs::read_text(src, file) {
        Ok(text) => (parse_runtime(&text, file, diags), Some(text)),
        Err(message) => {
            diags.error("io-error", file, Pos::new(1, 1), message);
            (RuntimeConfig::default(), None)
        }
    }
}

/// Parses runtime.yaml text. On errors (reported to `diags`) the values
/// that could be read are kept and the rest are defaults.
pub fn parse_runtime(text: &str, file: &str, diags: &mut Diagnostics) -> RuntimeConfig {
    let Some(root) = yaml::parse(text, file, 0, diags) else {
        return RuntimeConfig::default();
    };
    let defaults = match serde_json::to_value(RuntimeConfig::default()) {
        Ok(tree) => tree,
        Err(e) => {
            diags.error(
                "internal",
                file,
                root.pos,
                format!("cannot describe the runtime defaults: {e}"),
            );
            return RuntimeConfig::default();
        }
    };
    let mut merged = defaults.clone();
    let mut walk = Walk {
        file,
        diags,
        defaults: &defaults,
    };
    walk.section(&root, &mut Vec::new(), &mut merged);
    let config = match serde_json::from_value::<RuntimeConfig>(merged) {
        Ok(config) => config,
        Err(e) => {
            diags.error("bad-value", file, root.pos, format!("runtime.yaml: {e}"));
            return RuntimeConfig::default();
        }
    };
    check_rules(&config, &root, file, diags);
    config
}

struct Walk<'a> {
    file: &'a str,
    diags: &'a mut Diagnostics,
    /// The JSON form of the defaults: its shape says which keys exist.
    defaults: &'a serde_json::Value,
}

impl Walk<'_> {
    fn section(&mut self, node: &Node, path: &mut Vec<String>, merged: &mut serde_json::Value) {
        let entries = match &node.value {
            Value::Null => return,
            Value::Map(entries) => entries,
            _ => {
                let name = if path.is_empty() {
                    "runtime.yaml".to_string()
                } else {
                    format!("`{}`", path.join("."))
                };
                self.diags.error(
                    "wrong-type",
                    self.file,
                    node.pos,
                    format!("{name} must be a map, found {}", node.type_name()),
                );
                return;
            }
        };
        let Some(template) = lookup(self.defaults, path).and_then(serde_json::Value::as_object)
        else {
            return;
        };
        // An empty map by default (`pricing`, `bmad.vars`) takes any key:
        // each entry is checked as a value of its own.
        if template.is_empty() {
            for (key, value) in entries {
                path.push(key.name.clone());
                self.leaf(value, path, merged);
                path.pop();
            }
            return;
        }
        let known: Vec<&str> = template.keys().map(String::as_str).collect();
        let what = if path.is_empty() {
            "runtime.yaml".to_string()
        } else {
            format!("runtime.yaml section `{}`", path.join("."))
        };
        check_keys(entries, &known, &what, self.file, self.diags);
        for (key, value) in entries {
            let Some(default) = template.get(&key.name) else {
                continue;
            };
            path.push(key.name.clone());
            if default.is_object() {
                self.section(value, path, merged);
            } else {
                self.leaf(value, path, merged);
            }
            path.pop();
        }
    }

    /// Checks one value by deserialising the defaults with only it changed,
    /// so the error names this key and nothing else.
    fn leaf(&mut self, node: &Node, path: &[String], merged: &mut serde_json::Value) {
        let value = node.to_json();
        let mut probe = self.defaults.clone();
        set(&mut probe, path, value.clone());
        match serde_json::from_value::<RuntimeConfig>(probe) {
            Ok(_) => set(merged, path, value),
            Err(e) => {
                self.diags.error(
                    "bad-value",
                    self.file,
                    node.pos,
                    format!("`{}`: {e}", path.join(".")),
                );
            }
        }
    }
}

fn lookup<'v>(tree: &'v serde_json::Value, path: &[String]) -> Option<&'v serde_json::Value> {
    path.iter().try_fold(tree, |node, key| node.get(key))
}

fn set(tree: &mut serde_json::Value, path: &[String], value: serde_json::Value) {
    let mut node = tree;
    for key in path {
        node = &mut node[key.as_str()];
    }
    *node = value;
}

/// The position of a dotted key's value, or of the closest parent that exists.
fn pos_of(root: &Node, path: &[&str]) -> Pos {
    let mut node = root;
    for key in path {
        match node.get(key) {
            Some(child) => node = child,
            None => break,
        }
    }
    node.pos
}

fn check_rules(config: &RuntimeConfig, root: &Node, file: &str, diags: &mut Diagnostics) {
    let llm = &config.llm;
    if llm.provider == ProviderKind::OpenaiCompatible
        && llm.base_url.as_deref().is_none_or(str::is_empty)
    {
        diags
            .error(
                "missing-field",
                file,
                pos_of(root, &["llm", "provider"]),
                "`llm.provider: openai_compatible` needs `llm.base_url`",
            )
            .hint = Some("e.g. base_url: http://127.0.0.1:11434/v1 for Ollama".into());
    }
    for breach in config.rule_breaches() {
        let path: Vec<&str> = breach.path.iter().map(String::as_str).collect();
        diags.error("bad-value", file, pos_of(root, &path), breach.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnMissingDoc;

    fn parse(text: &str) -> (RuntimeConfig, Vec<crate::diag::Diagnostic>) {
        let mut d = Diagnostics::new();
        let c = parse_runtime(text, "runtime.yaml", &mut d);
        (c, d.iter().cloned().collect())
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let (c, d) = parse("");
        assert!(d.is_empty());
        assert_eq!(c, RuntimeConfig::default());
    }

    #[test]
    fn reads_values_and_keeps_defaults() {
        let (c, d) = parse(
            "llm:\n  provider: openai\n  model: gpt-4o\nserver: {port: 9000}\non_missing_doc: skip\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.llm.provider, ProviderKind::Openai);
        assert_eq!(c.llm.model, "gpt-4o");
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.on_missing_doc, OnMissingDoc::Skip);
        assert_eq!(c.llm.temperature, Some(0.2));
    }

    #[test]
    fn a_null_temperature_is_none_sent() {
        let (c, d) = parse("llm:\n  provider: openai\n  temperature: null\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.llm.temperature, None);
    }

    #[test]
    fn bad_values_name_the_key_and_position() {
        let (c, d) = parse("server:\n  port: eighty\nllm:\n  provider: openia\n  temperature: 3\n");
        let found: Vec<(&str, u32, bool)> = d
            .iter()
            .map(|x| (x.code, x.line, x.message.contains('`')))
            .collect();
        assert_eq!(
            found,
            vec![
                ("bad-value", 2, true),
                ("bad-value", 4, true),
                ("bad-value", 5, true)
            ]
        );
        assert!(
            d[0].message.starts_with("`server.port`"),
            "{}",
            d[0].message
        );
        assert_eq!(c.server.port, 8000);
    }

    #[test]
    fn free_maps_take_any_key_and_check_each_value() {
        let (c, d) = parse(
            "pricing:\n  gpt-4o: {input_per_mtok: 2.5, output_per_mtok: 10}\n  bad: {input_per_mtok: 1}\n  neg: {input_per_mtok: -1, output_per_mtok: 1}\nbmad:\n  vars: {user_name: Ada}\n",
        );
        let found: Vec<(&str, u32)> = d.iter().map(|x| (x.code, x.line)).collect();
        assert_eq!(found, vec![("bad-value", 3), ("bad-value", 4)], "{d:?}");
        assert!(
            d[0].message.starts_with("`pricing.bad`"),
            "{}",
            d[0].message
        );
        assert_eq!(c.pricing["gpt-4o"].output_per_mtok, 10.0);
        assert!(!c.pricing.contains_key("bad"));
        assert_eq!(c.bmad.vars["user_name"], "Ada");
    }

    #[test]
    fn openai_compatible_needs_base_url() {
        let (_, d) = parse("llm: {provider: openai_compatible}\n");
        assert_eq!(d.first().map(|x| x.code), Some("missing-field"));
    }
}
