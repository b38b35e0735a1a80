//! Modules and their configuration: `module.yaml` (code, variables, agent
//! rosters) and the config layers that give each module its [`Vars`]
//! (SPEC 1.7, "Variables", layers 1–5).

use super::customize::{read_table, scalars};
use super::layout::{MODULE_CONFIG_FILES, ModuleDir};
use super::vars::Vars;
use crate::bmad::parse_yaml_lenient;
use crate::config::BmadConfig;
use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::{SourceSnapshot, join_rel};
use crate::yaml::Node;
use std::collections::BTreeMap;

/// The module every other module falls back to.
pub const CORE: &str = "core";

/// One module, read.
#[derive(Debug, Clone)]
pub struct Module {
    /// `module.yaml` `code`, else the folder name.
    pub code: String,
    pub dir: String,
    /// Its configuration file (`module.yaml`), tree-relative.
    pub file: String,
    /// `module.yaml` prompt variables: name → `default` expanded, `result` applied.
    pub vars: Vec<(String, String)>,
    /// `module.yaml` `agents:` roster entries (names), to fill gaps.
    pub roster: Vec<String>,
}

/// Reads the configuration file of each module folder: its `module.yaml`,
/// or before 6.0 its `_module-installer/install-config.yaml` (the same keys).
pub fn read_modules(
    files: &SourceSnapshot,
    dirs: &[ModuleDir],
    diags: &mut Diagnostics,
) -> Vec<Module> {
    dirs.iter()
        .map(|dir| {
            let rel = MODULE_CONFIG_FILES
                .iter()
                .map(|config| join_rel(&dir.dir, config))
                .find(|rel| files.is_file(rel))
                .unwrap_or_else(|| join_rel(&dir.dir, MODULE_CONFIG_FILES[0]));
            let root = files
                .text(&rel)
                .ok()
                .and_then(|text| parse_yaml_lenient(text, &rel, 0, diags));
            let mut module = module_from_yaml(root.as_ref(), dir, rel);
            // The code names the module's agents and flows (`code/name`).
            let pos = root
                .as_ref()
                .and_then(|r| r.get("code"))
                .map_or(Pos::new(1, 1), |code| code.pos);
            module.code = crate::bmad::valid_name_or_repaired(
                &module.code,
                "module code",
                &module.file,
                pos,
                diags,
            );
            module
        })
        .collect()
}

/// A skill's own module manifest (BMAD 6.12 on: `module = "method"`): the
/// module the skill belongs to, in trees that have no `module.yaml`.
pub const SKILL_MANIFEST: &str = "module-manifest.toml";

/// The module each skill folder's manifest names, by folder.
pub fn skill_manifests(
    files: &SourceSnapshot,
    skill_files: &[String],
    diags: &mut Diagnostics,
) -> BTreeMap<String, String> {
    skill_files
        .iter()
        .filter_map(|skill| {
            let dir = super::layout::parent(skill);
            let code = read_table(files, &join_rel(dir, SKILL_MANIFEST), diags)?
                .get("module")?
                .as_str()?
                .trim()
                .to_string();
            (!code.is_empty()).then(|| (dir.to_string(), code))
        })
        .collect()
}

/// A module known only from skills' manifests: no variables of its own,
/// but its config layers (`_bmad/<code>/config.yaml`, `[modules.<code>]`) apply.
pub fn manifest_module(code: &str, manifest: &str) -> Module {
    Module {
        code: code.to_string(),
        dir: String::new(),
        file: manifest.to_string(),
        vars: Vec::new(),
        roster: Vec::new(),
    }
}

/// The `code` of `module.yaml` text, if it has one (skills find their module by it).
/// Repaired as [`read_modules`] repairs it (which warns).
pub fn module_code(files: &SourceSnapshot, rel: &str, diags: &mut Diagnostics) -> Option<String> {
    let text = files.text(rel).ok()?;
    let code = parse_yaml_lenient(text, rel, 0, diags)?
        .get("code")?
        .scalar_text()?;
    Some(if crate::bmad::is_valid_name(&code) {
        code
    } else {
        crate::bmad::sanitize_name(&code)
    })
}

fn module_from_yaml(root: Option<&Node>, dir: &ModuleDir, file: String) -> Module {
    let code = root
        .and_then(|r| r.get("code"))
        .and_then(Node::scalar_text)
        .unwrap_or_else(|| dir.name.clone());
    let mut raw: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    let mut roster = Vec::new();
    for (key, value) in root.and_then(Node::as_map).unwrap_or_default() {
        if key.name == "agents" {
            roster.extend(value.as_seq().unwrap_or_default().iter().filter_map(|a| {
                a.scalar_text()
                    .or_else(|| a.get("name").and_then(Node::scalar_text))
                    .or_else(|| a.get("code").and_then(Node::scalar_text))
            }));
            continue;
        }
        let default = value.get("default").and_then(Node::scalar_text);
        let result = value.get("result").and_then(Node::scalar_text);
        if default.is_some() || result.is_some() {
            raw.push((key.name.clone(), default, result));
        }
    }
    // `default` may name the other keys' raw defaults (`{output_folder}/x`).
    let mut defaults = Vars::default();
    for (name, default, _) in &raw {
        defaults.set(name, default.clone().unwrap_or_default());
    }
    let vars = raw
        .iter()
        .map(|(name, default, result)| {
            let value = defaults.substitute(default.as_deref().unwrap_or_default());
            let value = match result {
                Some(result) => result.replace("{value}", &value),
                None => value,
            };
            (name.clone(), defaults.substitute(&value))
        })
        .collect();
    Module {
        code,
        dir: dir.dir.clone(),
        file,
        vars,
        roster,
    }
}

/// Variables of every module, layered per SPEC 1.7 (built-ins, module.yaml
/// core then module, `_bmad/<m>/config.yaml` (`bmad/<m>/…` in a project a
/// 6.0 alpha installed: `install_dir`), the install's TOML configs,
/// runtime.yaml `bmad.vars`); per-flow keys are added by the flow readers.
pub fn module_vars(
    files: &SourceSnapshot,
    install_dir: &str,
    modules: &[Module],
    bmad: &BmadConfig,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Vars> {
    let core_vars: Vec<(String, String)> = modules
        .iter()
        .filter(|m| m.code == CORE)
        .flat_map(|m| m.vars.clone())
        .collect();
    let tomls: Vec<toml::Table> = [
        "_bmad/config.toml",
        "_bmad/config.user.toml",
        "_bmad/custom/config.toml",
        "_bmad/custom/config.user.toml",
    ]
    .iter()
    .filter_map(|rel| read_table(files, rel, diags))
    .collect();
    let config_yaml = |code: &str, diags: &mut Diagnostics| -> Vec<(String, String)> {
        let rel = format!("{install_dir}/{code}/config.yaml");
        let Ok(text) = files.text(&rel) else {
            return Vec::new();
        };
        parse_yaml_lenient(text, &rel, 0, diags)
            .as_ref()
            .and_then(Node::as_map)
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, v)| v.scalar_text().map(|t| (k.name.clone(), t)))
            .collect()
    };
    let core_config = config_yaml(CORE, diags);
    let mut out = BTreeMap::new();
    let mut codes: Vec<&str> = modules.iter().map(|m| m.code.as_str()).collect();
    codes.push(CORE);
    for code in codes {
        if out.contains_key(code) {
            continue;
        }
        let mut vars = Vars::new(bmad.project_root.as_deref(), install_dir);
        let own = modules
            .iter()
            .filter(|m| m.code == code && code != CORE)
            .flat_map(|m| m.vars.iter().cloned());
        // Each value is substituted as it is set, so `{project-root}/{value}`
        // results and values naming earlier layers read as final text.
        for (k, v) in core_vars.iter().cloned().chain(own) {
            let v = vars.substitute(&v);
            vars.set(&k, v);
        }
        let own_config = if code == CORE {
            Vec::new()
        } else {
            config_yaml(code, diags)
        };
        for (k, v) in core_config.iter().chain(&own_config) {
            let v = vars.substitute(v);
            vars.set(k, v);
        }
        for table in &tomls {
            let core = table.get("core").and_then(toml::Value::as_table);
            let own = table
                .get("modules")
                .and_then(|m| m.get(code))
                .and_then(toml::Value::as_table);
            for t in [core, own].into_iter().flatten() {
                for (k, v) in scalars(t) {
                    let v = vars.substitute(&v);
                    vars.set(k, v);
                }
            }
        }
        for (k, v) in &bmad.vars {
            let v = vars.substitute(v);
            vars.set(k, v);
        }
        out.insert(code.to_string(), vars);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_yaml_defaults_and_results() -> Result<(), String> {
        let mut d = Diagnostics::new();
        let root = crate::yaml::parse(
            "code: bmm\nname: B\nplanning_artifacts:\n  prompt: where?\n  default: '{output_folder}/planning'\n  result: '{project-root}/{value}'\noutput_folder:\n  default: out\nagents:\n  - pm\n  - name: dev\n",
            "module.yaml",
            0,
            &mut d,
        )
        .ok_or("yaml")?;
        let m = module_from_yaml(
            Some(&root),
            &ModuleDir {
                dir: "src/bmm".into(),
                name: "bmm".into(),
            },
            "src/bmm/module.yaml".into(),
        );
        assert_eq!(m.code, "bmm");
        assert_eq!(m.roster, ["pm", "dev"]);
        assert_eq!(
            m.vars,
            vec![
                (
                    "planning_artifacts".to_string(),
                    "{project-root}/out/planning".to_string()
                ),
                ("output_folder".to_string(), "out".to_string()),
            ]
        );
        Ok(())
    }
}
