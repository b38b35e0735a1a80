//! TOML files of skills and installs: `customize.toml` with its override
//! layers, and the install's `config.toml` layers (SPEC 1.7).
//!
//! A skill's `[agent]` or `[workflow]` table is merged base →
//! `_bmad/custom/<skill>.toml` → `_bmad/custom/<skill>.user.toml`: scalars
//! override, tables deep-merge, arrays of tables keyed by `code` or `id`
//! replace matching entries and append the rest, other arrays append.
//! A file that is not TOML is a located warning and counts as absent.

use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::SourceSnapshot;
use toml::{Table, Value};

/// Folders an override file may be in, in order: an install's, and the
/// same folder at the root of a source tree.
const CUSTOM_DIRS: [&str; 2] = ["_bmad/custom", "custom"];

/// Reads the TOML file `rel` when it exists; `None` (with a warning) when
/// it is not TOML.
pub fn read_table(files: &SourceSnapshot, rel: &str, diags: &mut Diagnostics) -> Option<Table> {
    if !files.is_file(rel) {
        return None;
    }
    let text = match files.text(rel) {
        Ok(text) => text,
        Err(message) => {
            diags.warning("bmad-read", rel, Pos::new(1, 1), message);
            return None;
        }
    };
    match text.parse::<Table>() {
        Ok(table) => Some(table),
        Err(e) => {
            let pos = e
                .span()
                .map_or(Pos::new(1, 1), |span| pos_of(text, span.start));
            diags.warning(
                "bmad-toml",
                rel,
                pos,
                format!("not TOML, ignored: {}", e.message()),
            );
            None
        }
    }
}

/// 1-based line and column of byte `offset` of `text`.
fn pos_of(text: &str, offset: usize) -> Pos {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    Pos::new(line, col)
}

/// The `[table]` of `<skill_dir>/customize.toml` merged with the skill's
/// override files; `None` when the base file has no such table.
pub fn merged(
    files: &SourceSnapshot,
    skill_dir: &str,
    skill: &str,
    table: &str,
    diags: &mut Diagnostics,
) -> Option<Table> {
    let base = read_table(
        files,
        &crate::sourcefs::join_rel(skill_dir, "customize.toml"),
        diags,
    )?;
    let mut merged = match base.get(table) {
        Some(Value::Table(t)) => t.clone(),
        _ => return None,
    };
    for dir in CUSTOM_DIRS {
        for name in [format!("{skill}.toml"), format!("{skill}.user.toml")] {
            let rel = format!("{dir}/{name}");
            if let Some(Value::Table(over)) =
                read_table(files, &rel, diags).and_then(|mut t| t.remove(table))
            {
                merge_tables(&mut merged, over);
            }
        }
    }
    Some(merged)
}

/// Merges `over` into `base` with the override rules of the module docs.
pub fn merge_tables(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_tables(b, o),
            (Some(Value::Array(b)), Value::Array(o)) => merge_arrays(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn merge_arrays(base: &mut Vec<Value>, over: Vec<Value>) {
    for item in over {
        let key = entry_key(&item);
        let existing = key.and_then(|k| base.iter().position(|b| entry_key(b) == Some(k)));
        match existing {
            Some(i) => base[i] = item,
            None => base.push(item),
        }
    }
}

/// The `code` or `id` of an array-of-tables entry.
fn entry_key(value: &Value) -> Option<(&'static str, &str)> {
    let table = value.as_table()?;
    ["code", "id"]
        .into_iter()
        .find_map(|k| table.get(k).and_then(Value::as_str).map(|v| (k, v)))
}

/// The text of a TOML value for prompts: strings as written, arrays as
/// `- ` bullets, empty as `_None._`, tables as `key: value` lines.
pub fn value_text(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| format!("- {}", value_text(item)))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Table(t) => t
            .iter()
            .map(|(k, v)| format!("{k}: {}", value_text(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        other => scalar_text(other).unwrap_or_default(),
    };
    if text.trim().is_empty() {
        "_None._".to_string()
    } else {
        text
    }
}

/// Scalars of a table as (name, text) pairs (nested tables and arrays skipped).
pub fn scalars(table: &Table) -> impl Iterator<Item = (&str, String)> {
    table
        .iter()
        .filter_map(|(k, v)| scalar_text(v).map(|t| (k.as_str(), t)))
}

/// The text of a scalar TOML value.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Datetime(d) => Some(d.to_string()),
        Value::Array(_) | Value::Table(_) => None,
    }
}

/// A TOML value as JSON, for metadata.
pub fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<Table, String> {
        text.parse::<Table>().map_err(|e| e.to_string())
    }

    #[test]
    fn merge_rules() -> Result<(), String> {
        let mut base = table(
            "name = 'a'\nfacts = ['x']\n[persona]\nrole = 'r'\nstyle = 's'\n[[menu]]\ncode = 'CP'\ndescription = 'old'\n",
        )?;
        let over = table(
            "name = 'b'\nfacts = ['y']\n[persona]\nstyle = 't'\n[[menu]]\ncode = 'CP'\ndescription = 'new'\n[[menu]]\ncode = 'ZZ'\n",
        )?;
        merge_tables(&mut base, over);
        assert_eq!(base["name"].as_str(), Some("b"));
        assert_eq!(value_text(&base["facts"]), "- x\n- y");
        assert_eq!(base["persona"]["role"].as_str(), Some("r"));
        assert_eq!(base["persona"]["style"].as_str(), Some("t"));
        let menu = base["menu"].as_array().ok_or("menu")?;
        assert_eq!(menu.len(), 2);
        assert_eq!(menu[0]["description"].as_str(), Some("new"));
        assert_eq!(value_text(&Value::Array(Vec::new())), "_None._");
        Ok(())
    }

    #[test]
    fn positions_of_errors() {
        assert_eq!(pos_of("a\nbc", 3), Pos::new(2, 2));
        assert_eq!(pos_of("a", 99), Pos::new(1, 2));
    }
}
