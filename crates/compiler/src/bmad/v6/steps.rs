//! Step-file workflows → flow steps (SPEC 1.7, "Step-file flows").
//!
//! A v6 `workflow.md` (or a skill's SKILL.md / `workflow.md`) names its
//! first step file; the folder of that file holds the steps. Each step file
//! becomes one step, named by its stem; the chain is read from
//! `nextStepFile`, else from the lowest-numbered later sibling the body
//! names, else from `nextStepFile_*`. Every other sibling a step names is a
//! route (`*alt`, `*skip-to`, `*mode-a`, or the target's stem less
//! `step-NN-`); routes back are loops, bounded by the flow's `max_visits`.
//! Steps reached from nowhere are warned and left out; a chain that names a
//! missing file warns and ends there.

use super::layout::{file_name, parent};
use super::markdown::{self, Markdown};
use super::paths::Tree;
use super::vars::Vars;
use crate::bmad::sanitize_name;
use crate::bundle::{END_STEP, StepSpec};
use crate::diag::{Diagnostics, Pos};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What every BMAD step's prompt starts with: who does what of the BMAD
/// engine's bookkeeping, and how to ask a person.
pub const RUNTIME_NOTE: &str = "You are running one step of a BMAD workflow inside bmad2pf. \
The step's instructions are below; the workflow file is shown for context only: do not load \
other step files, bmad2pf runs the next step itself. bmad2pf keeps the output document \
(your reply is appended to it), its `stepsCompleted` and the order of steps: do not write \
them yourself. When the step tells you to ask, show a menu or wait for the user, call the \
`ask_human` tool with the question and the menu's options; never end a reply to wait. \
When no person is available, proceed on assumptions you state in your reply. Paths are \
relative to the project root.";

/// Front-matter keys a workflow names its first step with, in order of preference.
const FIRST_STEP_KEYS: [&str; 3] = ["nextStep", "editWorkflow", "validateWorkflow"];
/// Front-matter keys that lead to another folder or workflow: hand-offs.
const HANDOFF_KEYS: [&str; 2] = ["validationFlow", "validationWorkflow"];

/// A step file's number: (`x-` prefix, `NN`, letter).
type StepKey = (String, u32, String);

/// The step file a workflow names first: the path as resolved and where it
/// is named. Front matter first (`nextStep`, …, then any value naming a
/// `step-*.md`), then the body.
pub fn first_named_step(
    tree: &Tree<'_>,
    doc: &Markdown,
    rel: &str,
    vars: &Vars,
) -> Option<(String, Pos)> {
    let base = parent(rel);
    let by_key = FIRST_STEP_KEYS
        .iter()
        .filter_map(|k| doc.field(k).map(|v| (v, doc.key_pos(k))))
        .chain(
            doc.fields
                .iter()
                .filter_map(|(k, v)| v.scalar_text().map(|t| (t, k.pos))),
        )
        .find(|(value, _)| is_step_name(file_name(value.trim())));
    if let Some((value, pos)) = by_key {
        return Some((tree.resolve(&value, base, vars), pos));
    }
    named_files(&doc.body)
        .into_iter()
        .find(|(path, _)| is_step_name(file_name(path)))
        .map(|(path, line)| {
            (
                tree.resolve(&path, base, vars),
                Pos::new(doc.body_line + line - 1, 1),
            )
        })
}

/// `step-*.md`, not a `*-continue.md` resume file.
fn is_step_name(name: &str) -> bool {
    name.starts_with("step-") && name.ends_with(".md")
}

/// What [`build`] needs of the flow.
pub struct StepFlow<'a> {
    pub id: &'a str,
    /// The workflow (or SKILL.md) file and its text.
    pub rel: &'a str,
    pub doc: &'a Markdown,
    pub vars: &'a Vars,
    /// The first step file as named (see [`first_named_step`]).
    pub first: (String, Pos),
}

/// The steps of a step-file flow (agents not yet filled in) and what the
/// flow learned: its main document, resume files, the folder.
pub struct BuiltSteps {
    pub steps: Vec<StepSpec>,
    pub main_document: String,
    pub folder: String,
    /// Every file read as a step or resume file.
    pub used: Vec<String>,
}

/// One step file, read.
struct StepFile {
    rel: String,
    stem: String,
    key: StepKey,
    doc: Markdown,
}

/// Builds the steps of `flow`; `None` (with a warning) when its first step
/// file cannot be found.
pub fn build(tree: &Tree<'_>, flow: &StepFlow<'_>, diags: &mut Diagnostics) -> Option<BuiltSteps> {
    let (named, named_pos) = &flow.first;
    let folder = if tree.files.is_file(named) {
        parent(named).to_string()
    } else {
        let found = tree.find_by_name(parent(flow.rel), file_name(named));
        let Some(first) = found.first() else {
            diags.warning(
                "bmad-missing-file",
                flow.rel,
                *named_pos,
                format!("first step `{named}` names no file: the workflow has no steps"),
            );
            return None;
        };
        diags.warning(
            "bmad-step-path",
            flow.rel,
            *named_pos,
            format!("first step `{named}` is not there; found it as `{first}`"),
        );
        parent(first).to_string()
    };
    let mut used = Vec::new();
    let mut steps: Vec<StepFile> = Vec::new();
    for name in tree.files.list_files(&folder) {
        let rel = crate::sourcefs::join_rel(&folder, &name);
        if name.ends_with("-continue.md") {
            used.push(rel);
            continue;
        }
        if !is_step_name(&name) {
            continue;
        }
        let stem = name.trim_end_matches(".md").to_string();
        let Some(key) = step_key(&stem) else {
            diags.warning(
                "bmad-step-number",
                &rel,
                Pos::new(1, 1),
                "step file without a number (`step-NN-…`): ordered after the numbered ones",
            );
            let key = (String::from("~"), u32::MAX, stem.clone());
            push_step(tree, &rel, stem, key, &mut steps, diags);
            used.push(rel);
            continue;
        };
        push_step(tree, &rel, stem, key, &mut steps, diags);
        used.push(rel);
    }
    steps.sort_by(|a, b| (&a.key, &a.stem).cmp(&(&b.key, &b.stem)));
    let Some(first) = steps.first() else {
        diags.warning(
            "bmad-missing-file",
            flow.rel,
            *named_pos,
            format!("`{folder}` holds no step file: the workflow is one step of its own text"),
        );
        return None;
    };
    if file_name(named) != file_name(&first.rel) {
        diags.warning(
            "bmad-first-step",
            flow.rel,
            *named_pos,
            format!(
                "the workflow names `{}` first, but the lowest-numbered step is `{}`: starting there",
                file_name(named),
                first.stem
            ),
        );
    }

    let by_name: BTreeMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (file_name(&s.rel), i))
        .collect();
    let mut links: Vec<Links> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        // The step's own front-matter names are known variables of its body.
        let mut known = flow.vars.clone();
        for (key, _) in &step.doc.fields {
            known.set(&key.name, "");
        }
        super::check_body(tree, &known, &step.doc, &step.rel, diags);
        links.push(step_links(tree, flow, &steps, &by_name, i, step, diags));
    }
    let reachable = reachable(&links);
    for (i, step) in steps.iter().enumerate() {
        if !reachable.contains(&i) {
            diags.warning(
                "bmad-unreachable-step",
                &step.rel,
                Pos::new(1, 1),
                format!(
                    "step `{}` of flow `{}` is reached from no other step: it never runs",
                    step.stem, flow.id
                ),
            );
        }
    }
    let main_document = main_document(flow, &steps[0].doc);
    let mut specs = Vec::new();
    for (i, (step, link)) in steps.iter().zip(&links).enumerate() {
        if !reachable.contains(&i) {
            continue;
        }
        let mut next = BTreeMap::new();
        next.insert(
            "default".to_string(),
            link.next
                .map_or(END_STEP.to_string(), |j| steps[j].stem.clone()),
        );
        for (action, j) in &link.routes {
            next.insert(action.clone(), steps[*j].stem.clone());
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("source".to_string(), json!(step.rel));
        let (mut prompt, inlined) = step_prompt(tree, flow, step, diags);
        used.extend(inlined);
        if !link.routes.is_empty() {
            // The step text says "load step-02b-…"; in bmad2pf that is a route.
            prompt.push_str("\n\n## Other steps\n\nWhen the step sends you to another step file, end your reply with the line that names it:\n");
            for (action, j) in &link.routes {
                prompt.push_str(&format!("- `ACTION: {action}` → {}\n", steps[*j].stem));
            }
        }
        metadata.insert("prompt".to_string(), json!(prompt));
        let waits = waits(&step.doc.body);
        if !waits.is_empty() {
            metadata.insert("waits".to_string(), json!(waits));
        }
        if !link.suggests.is_empty() {
            metadata.insert("suggests".to_string(), json!(link.suggests));
        }
        if !step.doc.fields.is_empty() {
            let fm: serde_json::Map<String, Json> = step
                .doc
                .fields
                .iter()
                .map(|(k, v)| (k.name.clone(), v.to_json()))
                .collect();
            metadata.insert("front_matter".to_string(), Json::Object(fm));
        }
        let first = specs.is_empty();
        specs.push(StepSpec {
            id: step.stem.clone(),
            agents: Vec::new(),
            next,
            creates: if first {
                vec![main_document.clone()]
            } else {
                Vec::new()
            },
            requires: Vec::new(),
            updates: if first {
                Vec::new()
            } else {
                vec![main_document.clone()]
            },
            gate: None,
            metadata,
        });
    }
    Some(BuiltSteps {
        steps: specs,
        main_document,
        folder,
        used,
    })
}

fn push_step(
    tree: &Tree<'_>,
    rel: &str,
    stem: String,
    key: StepKey,
    steps: &mut Vec<StepFile>,
    diags: &mut Diagnostics,
) {
    match tree.files.text(rel) {
        Ok(text) => steps.push(StepFile {
            rel: rel.to_string(),
            stem,
            key,
            doc: markdown::read(text, rel, diags),
        }),
        Err(message) => {
            diags.warning("bmad-read", rel, Pos::new(1, 1), message);
        }
    }
}

/// `step-[x-]NN[letter][-rest]` → its number key.
fn step_key(stem: &str) -> Option<StepKey> {
    let rest = stem.strip_prefix("step-")?;
    let (prefix, rest) = match rest.as_bytes() {
        [p, b'-', ..] if p.is_ascii_alphabetic() => (rest[..1].to_string(), &rest[2..]),
        _ => (String::new(), rest),
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let number = digits.parse().ok()?;
    let letter: String = rest[digits.len()..]
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    Some((prefix, number, letter))
}

/// The stem less `step-[x-]NN[letter]-`: `step-02b-ai-recommended` → `ai-recommended`.
fn stem_label(stem: &str) -> String {
    let Some(rest) = stem.strip_prefix("step-") else {
        return stem.to_string();
    };
    let rest = match rest.as_bytes() {
        [p, b'-', ..] if p.is_ascii_alphabetic() => &rest[2..],
        _ => rest,
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    let label = rest.trim_start_matches('-');
    if label.is_empty() {
        stem.to_string()
    } else {
        label.to_string()
    }
}

/// Where a step goes.
struct Links {
    next: Option<usize>,
    /// action → step index.
    routes: Vec<(String, usize)>,
    suggests: Vec<String>,
}

/// Reads the links of step `i`: its front-matter `*StepFile` keys and the
/// sibling step files its body names.
fn step_links(
    tree: &Tree<'_>,
    flow: &StepFlow<'_>,
    steps: &[StepFile],
    by_name: &BTreeMap<&str, usize>,
    i: usize,
    step: &StepFile,
    diags: &mut Diagnostics,
) -> Links {
    let dir = parent(&step.rel);
    let mut keyed: Vec<(String, usize, Pos)> = Vec::new();
    let mut next_key: Option<usize> = None;
    let mut broken_next = false;
    let mut suggests = Vec::new();
    for (key, value) in &step.doc.fields {
        let Some(text) = value.scalar_text() else {
            continue;
        };
        let is_step_key = key.name.contains("StepFile");
        let handoff = HANDOFF_KEYS.contains(&key.name.as_str());
        if !is_step_key && !handoff {
            continue;
        }
        let path = tree.resolve(&text, dir, flow.vars);
        let sibling = by_name.get(file_name(&path)).copied();
        match (sibling, handoff) {
            (Some(j), false) if parent(&path) == dir || !tree.files.is_file(&path) => {
                if key.name == "nextStepFile" {
                    next_key = Some(j);
                } else {
                    keyed.push((key.name.clone(), j, key.pos));
                }
            }
            _ if tree.files.is_file(&path) => suggests.push(path),
            _ => {
                if key.name == "nextStepFile" {
                    broken_next = true;
                }
                diags.warning(
                    "bmad-missing-file",
                    &step.rel,
                    key.pos,
                    format!(
                        "`{}` names `{text}`, which is no file{}",
                        key.name,
                        if key.name == "nextStepFile" {
                            ": the flow ends here"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
    }
    let other_keyed: BTreeSet<usize> = keyed.iter().map(|(_, j, _)| *j).collect();
    let mut body_named: Vec<usize> = Vec::new();
    for (path, line) in named_files(&step.doc.body) {
        let name = file_name(&path);
        match by_name.get(name) {
            Some(&j) if j != i && !body_named.contains(&j) => body_named.push(j),
            Some(_) => {}
            None if is_step_name(name) => {
                let resolved = tree.resolve(&path, dir, flow.vars);
                if tree.files.is_file(&resolved) {
                    suggests.push(resolved);
                } else {
                    diags.warning(
                        "bmad-missing-file",
                        &step.rel,
                        Pos::new(step.doc.body_line + line - 1, 1),
                        format!("names `{path}`, which is no step file here"),
                    );
                }
            }
            None => {}
        }
    }
    let next = if broken_next {
        None
    } else {
        next_key
            .or_else(|| {
                body_named
                    .iter()
                    .copied()
                    .filter(|j| steps[*j].key > step.key && !other_keyed.contains(j))
                    .min_by(|a, b| steps[*a].key.cmp(&steps[*b].key))
            })
            .or_else(|| {
                keyed
                    .iter()
                    .filter(|(k, _, _)| k.starts_with("nextStepFile_"))
                    .map(|(_, j, _)| *j)
                    .min_by(|a, b| steps[*a].key.cmp(&steps[*b].key))
            })
    };
    let mut routes: Vec<(String, usize)> = Vec::new();
    let mut add = |action: String, j: usize| {
        if Some(j) != next && j != i && !routes.iter().any(|(a, t)| *a == action || *t == j) {
            routes.push((action, j));
        }
    };
    for (key, j, _) in &keyed {
        add(key_action(key, &steps[*j].stem), *j);
    }
    for j in body_named {
        add(
            format!("*{}", sanitize_name(&stem_label(&steps[j].stem))),
            j,
        );
    }
    suggests.sort();
    suggests.dedup();
    Links {
        next,
        routes,
        suggests,
    }
}

/// The action of a route named by a front-matter key.
fn key_action(key: &str, target_stem: &str) -> String {
    match key {
        "altStepFile" => "*alt".to_string(),
        "skipToStepFile" => "*skip-to".to_string(),
        _ => match key.strip_prefix("nextStepFile_") {
            Some(mode) => format!("*{}", kebab(mode)),
            None => format!("*{}", sanitize_name(&stem_label(target_stem))),
        },
    }
}

/// `modeA` → `mode-a`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    sanitize_name(&out)
}

/// Indices of the steps reached from the first one.
fn reachable(links: &[Links]) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([0]);
    while let Some(i) = queue.pop_front() {
        if i >= links.len() || !seen.insert(i) {
            continue;
        }
        queue.extend(links[i].next);
        queue.extend(links[i].routes.iter().map(|(_, j)| *j));
    }
    seen
}

/// Files a text names: tokens ending in `.md`, `.yaml`, `.csv`, `.xml`
/// (quotes, brackets and `:` end a token), with their 1-based line.
pub fn named_files(text: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for token in line.split(|c: char| c.is_whitespace() || "()[]<>'\"`,|*:".contains(c)) {
            let token = token.trim_end_matches(['.', ';']);
            let token = token.strip_suffix(".md.").unwrap_or(token);
            if [".md", ".yaml", ".csv", ".xml"]
                .iter()
                .any(|e| token.ends_with(e))
                && token.len() > 3
            {
                out.push((token.to_string(), i as u32 + 1));
            }
        }
    }
    out
}

/// The main document's name (SPEC 1.7, "Documents").
pub fn main_document(flow: &StepFlow<'_>, first_step: &Markdown) -> String {
    for doc in [flow.doc, first_step] {
        for key in ["outputFile", "wipFile", "default_output_file"] {
            if let Some(v) = doc.field(key)
                && let Some(name) = doc_name(&v)
            {
                return name;
            }
        }
        for (key, _) in &doc.fields {
            if let Some(name) = key.name.strip_suffix("_output_path") {
                return sanitize_name(name);
            }
        }
    }
    for text in [&flow.doc.body, &first_step.body] {
        for (path, _) in named_files(text) {
            let in_output = path.contains("_artifacts}/") || path.contains("output_folder}/");
            if in_output && let Some(name) = doc_name(&path) {
                return name;
            }
        }
    }
    sanitize_name(flow.id.rsplit('/').next().unwrap_or(flow.id))
}

/// The document name of an output path: its file name less `.md` and
/// placeholders (`product-brief-{{project_name}}-{{date}}.md` → `product-brief`).
pub fn doc_name(path: &str) -> Option<String> {
    let name = file_name(path.trim().trim_matches(['\'', '"']));
    let stem = name.strip_suffix(".md").unwrap_or(name);
    let mut out = String::new();
    let mut depth: u32 = 0;
    for c in stem.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let trimmed = out.trim_matches(['-', '_', '.']);
    (!trimmed.is_empty()).then(|| sanitize_name(trimmed))
}

/// Where a step waits for a person (SPEC 1.7, "People in the loop"):
/// `menu:<options>`, `ask`, `template-output`, `halt`.
pub fn waits(body: &str) -> Vec<String> {
    let mut options = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut in_code = false;
    for line in body.lines() {
        // A fenced block shows an example (a report template's `[X] issues`).
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let mut rest = line;
        while let Some(at) = rest.find('[').filter(|_| !in_code) {
            rest = &rest[at + 1..];
            if let Some((opt, _)) = rest.split_once(']')
                && opt.len() == 1
                && opt.chars().all(|c| c.is_ascii_uppercase())
            {
                options.insert(opt.to_string());
            }
        }
        if line.contains("<ask") {
            kinds.insert("ask".to_string());
        }
        if line.contains("<template-output") {
            kinds.insert("template-output".to_string());
        }
        let lower = line.to_ascii_lowercase();
        if lower.contains("halt") && lower.contains("wait") {
            kinds.insert("halt".to_string());
        }
    }
    let mut out = Vec::new();
    if !options.is_empty() {
        out.push(format!(
            "menu:{}",
            options.into_iter().collect::<Vec<_>>().join(",")
        ));
    }
    out.extend(kinds);
    out
}

/// `base` with the scalar values of the front matter of `doc` (the file
/// `rel`) over it (SPEC 1.7, variables, layer 6): each value substituted
/// with `base`, and one that looks like a path resolved from the file.
pub fn front_matter_vars(tree: &Tree<'_>, base: &Vars, doc: &Markdown, rel: &str) -> Vars {
    let dir = parent(rel);
    let mut vars = base.clone();
    for (key, value) in &doc.fields {
        if let Some(text) = value.scalar_text() {
            let looks_like_path = text.contains('/') || text.ends_with(".md");
            let value = if looks_like_path {
                let beside = tree.resolve(&text, dir, base);
                // `./x.md` in a step may mean the workflow's folder (a
                // skill's root), as the workflow file itself writes it.
                let from_flow = base
                    .get("installed_path")
                    .filter(|_| !tree.files.is_file(&beside) && !text.starts_with('{'))
                    .map(|flow_dir| tree.resolve(&text, flow_dir, base))
                    .filter(|path| tree.files.is_file(path));
                from_flow.unwrap_or(beside)
            } else {
                base.substitute(&text)
            };
            vars.set(&key.name, value);
        }
    }
    vars
}

/// A step's task prompt: the runtime note, the workflow body, the step body,
/// with known variables substituted (the step's front-matter values over
/// the flow's variables, see [`front_matter_vars`]), then the templates and
/// checklists its front matter names, inlined. Also returns the files
/// inlined.
fn step_prompt(
    tree: &Tree<'_>,
    flow: &StepFlow<'_>,
    step: &StepFile,
    diags: &mut Diagnostics,
) -> (String, Vec<String>) {
    let vars = front_matter_vars(tree, flow.vars, &step.doc, &step.rel);
    let mut inlined = Vec::new();
    for (key, value) in &step.doc.fields {
        let lower = key.name.to_ascii_lowercase();
        let Some(path) = vars
            .get(&key.name)
            .filter(|_| value.scalar_text().is_some())
        else {
            continue;
        };
        if !(lower.contains("template") || lower.contains("checklist")) {
            continue;
        }
        if tree.files.is_file(path) {
            inlined.push((key.name.clone(), path.to_string()));
        } else if !path.contains('*') && tree.below_module_folder(path) {
            // A missing template in a module folder is a missing file; a
            // path elsewhere (where the run writes its output) is not.
            diags.warning(
                "bmad-missing-file",
                &step.rel,
                step.doc.key_pos(&key.name),
                format!(
                    "`{}` names `{path}`, which is no file: not inlined",
                    key.name
                ),
            );
        }
    }
    let mut prompt = format!(
        "{RUNTIME_NOTE}\n\n## Workflow `{}` ({})\n\n{}\n\n## Step `{}` ({})\n\n{}",
        flow.id,
        flow.rel,
        flow.vars.substitute(flow.doc.body.trim()),
        step.stem,
        step.rel,
        vars.substitute(step.doc.body.trim()),
    );
    let mut used = Vec::new();
    for (key, path) in inlined {
        if let Ok(content) = tree.files.text(&path) {
            prompt.push_str(&format!(
                "\n\n## `{key}` ({path})\n\n{}",
                vars.substitute(content.trim())
            ));
            used.push(path);
        }
    }
    (prompt, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_labels_and_actions() {
        assert_eq!(step_key("step-02b-x"), Some((String::new(), 2, "b".into())));
        assert_eq!(
            step_key("step-e-01-init"),
            Some(("e".into(), 1, String::new()))
        );
        assert_eq!(step_key("step-x"), None);
        assert_eq!(stem_label("step-02b-ai-recommended"), "ai-recommended");
        assert_eq!(stem_label("step-e-01-oneshot"), "oneshot");
        assert_eq!(key_action("nextStepFile_modeA", "s"), "*mode-a");
        assert_eq!(key_action("altStepFile", "s"), "*alt");
        assert_eq!(key_action("continueStepFile", "step-03-go-on"), "*go-on");
    }

    #[test]
    fn a_workflows_front_matter_names_variables_of_its_body_and_steps() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = [
            ("src/bmm/module.yaml", "code: bmm\nname: Method\n"),
            (
                "src/bmm/workflows/brief/workflow.md",
                "---\nname: brief\ndescription: A brief\nprojectRoot: '{project-root}'\nmain_config: '{project-root}/_bmad/bmm/config.yaml'\n---\nCheck `{projectRoot}/_bmad/bmm/data/x.csv`.\nThen read fully and follow: `./steps/step-01-start.md`\n",
            ),
            (
                "src/bmm/workflows/brief/steps/step-01-start.md",
                "---\nname: start\ndescription: Start\n---\nLoad `{main_config}`.\n",
            ),
        ];
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap_or(dir.path()))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        }
        let compiled = crate::compile::compile(dir.path());
        let variables: Vec<String> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.code == "bmad-variable")
            .map(ToString::to_string)
            .collect();
        assert!(variables.is_empty(), "{variables:#?}");
        let bundle = compiled.bundle.unwrap_or_else(|| panic!("compiles"));
        let prompt = bundle.flows["bmm/brief"].steps[0].metadata["prompt"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            prompt.contains("Check `_bmad/bmm/data/x.csv`")
                && prompt.contains("Load `src/bmm/config.yaml`"),
            "{prompt}"
        );
    }

    #[test]
    fn names_docs_and_waits() {
        assert_eq!(
            named_files("load ./step-03-x.md then\n[[bmad-snapshot:step-02-plan.md]] (`a.csv`)."),
            vec![
                ("./step-03-x.md".to_string(), 1),
                ("step-02-plan.md".to_string(), 2),
                ("a.csv".to_string(), 2)
            ]
        );
        assert_eq!(
            doc_name("{planning_artifacts}/product-brief-{{project_name}}-{{date}}.md").as_deref(),
            Some("product-brief")
        );
        assert_eq!(
            waits(
                "[A] Advanced [P] Party [C] Continue\n<ask>Which?</ask>\nHALT and wait for input"
            ),
            ["menu:A,C,P", "ask", "halt"]
        );
        // A report template shown in a fenced block has no menu.
        let example =
            "Write the report:\n```markdown\nFound [X] issues in [Y] areas.\n```\n[C] Continue";
        assert_eq!(waits(example), ["menu:C"]);
    }
}
