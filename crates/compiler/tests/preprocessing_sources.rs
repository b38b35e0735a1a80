//! Focused behaviours of the preprocessing layout: legacy placeholder
//! conversion, the derived default flow, runtime.yaml positions, and the
//! smaller rules of SPEC 1.1 (defaults, personas, warnings, format 2.0).

use bmad2pf_compiler::bundle::{ErrorHandling, MemoryScope};
use bmad2pf_compiler::diag::{Diagnostic, Severity};
use bmad2pf_compiler::{Compilation, compile};
use std::path::Path;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// Compiles a tree given as (path, text) pairs.
fn compile_tree(files: &[(&str, &str)]) -> Compilation {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (rel, text) in files {
        write(dir.path(), rel, text);
    }
    compile(dir.path())
}

fn errors(c: &Compilation) -> Vec<Diagnostic> {
    c.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .cloned()
        .collect()
}

fn ok(c: &Compilation) -> &bmad2pf_compiler::bundle::Bundle {
    let rendered: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
    c.bundle
        .as_ref()
        .unwrap_or_else(|| panic!("no bundle:\n{}", rendered.join("\n")))
}

#[test]
fn legacy_placeholders_convert_and_json_braces_stay() {
    let body = "Role: {persona}\nDo: {tasks}\nIn: {input} for {story_id}\nReply as {\"status\": \"ok\", \"items\": [{\"id\": 1}]}\nKeep {other} and {{ input }} and {% if input %}x{% endif %}\n";
    let c = compile_tree(&[("agents/a.md", &format!("---\nid: a\n---\n{body}"))]);
    let b = ok(&c);
    assert_eq!(
        b.agents["a"].prompt_template,
        "Role: {{ persona }}\nDo: {{ tasks }}\nIn: {{ input }} for {{ story_id }}\nReply as {\"status\": \"ok\", \"items\": [{\"id\": 1}]}\nKeep {other} and {{ input }} and {% if input %}x{% endif %}\n"
    );
    assert_eq!(b.agents["a"].format_version, "1.0");
}

#[test]
fn derived_default_flow_is_topological_layers() {
    let c = compile_tree(&[
        ("agents/a.md", "---\ncreates: [x.md]\n---\nA\n"),
        ("agents/b.md", "---\nrequires: [x.md]\n---\nB\n"),
        ("agents/c.md", "---\nwait_for: {agents: [a]}\n---\nC\n"),
        (
            "agents/d.md",
            "---\nrequires: [b]\nwait_for: {docs: [outside.md]}\n---\nD\n",
        ),
        ("agents/e.md", "---\n---\nE\n"),
    ]);
    let b = ok(&c);
    let flow = &b.flows["default"];
    assert_eq!(flow.source, "derived");
    let layers: Vec<(&str, Vec<&str>)> = flow
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.agents.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        layers,
        vec![
            ("step-1", vec!["a", "e"]),
            ("step-2", vec!["b", "c"]),
            ("step-3", vec!["d"])
        ]
    );
    // Nobody creates outside.md: a warning at the reference, not an error.
    let warnings: Vec<(&str, &str, u32)> = c
        .diagnostics
        .iter()
        .map(|d| (d.code, d.file.as_str(), d.line))
        .collect();
    assert_eq!(warnings, vec![("missing-document", "agents/d.md", 3)]);
}

#[test]
fn runtime_unknown_nested_key_has_position_and_suggestion() {
    for file in ["runtime.yaml", "config/runtime.yaml"] {
        let c = compile_tree(&[
            ("agents/a.md", "---\n---\nA\n"),
            (
                file,
                "llm:\n  provider: mock\nmemory:\n  redis:\n    urll: redis://x\n",
            ),
        ]);
        let e = errors(&c);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            (e[0].code, e[0].file.as_str(), e[0].line, e[0].col),
            ("unknown-key", file, 5, 5)
        );
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `url`?"));
        assert!(e[0].message.contains("memory.redis"), "{}", e[0].message);
        assert!(c.runtime_yaml.is_some());
    }
}

#[test]
fn defaults_and_format_two_fields() {
    let c = compile_tree(&[
        (
            "agents/plain.md",
            "---\ndescription: Plain\n---\nHi {input}\n",
        ),
        (
            "agents/full.md",
            "---\nid: full\nmemory_scope: shared\ntimeout: 30\nretry_count: 0\nerror_handling: fallback\nllm: {provider: anthropic, model: claude}\noutput_schema: {type: object, properties: {action: {type: string}}}\n---\nHi\n",
        ),
    ]);
    let b = ok(&c);
    let plain = &b.agents["plain"];
    // Unset: runtime.yaml's llm.timeout / llm.max_retries apply at run time.
    assert_eq!((plain.timeout_s, plain.retry_count), (None, None));
    assert_eq!(plain.error_handling, ErrorHandling::Stop);
    assert_eq!(plain.memory_scope, MemoryScope::Isolated);
    assert_eq!(plain.format_version, "1.0");
    let full = &b.agents["full"];
    assert_eq!(full.format_version, "2.0");
    assert_eq!(full.memory_scope, MemoryScope::Shared("default".into()));
    assert_eq!((full.timeout_s, full.retry_count), (Some(30), Some(0)));
    assert_eq!(full.error_handling, ErrorHandling::Fallback);
    assert_eq!(full.llm.provider.as_deref(), Some("anthropic"));
    assert_eq!(
        full.output_schema.as_ref().map(|s| s["type"].clone()),
        Some(serde_json::json!("object"))
    );
}

#[test]
fn format_version_one_with_two_point_oh_fields_is_an_error() {
    let c = compile_tree(&[(
        "agents/a.md",
        "---\nformat_version: 1.0\nparallel: true\n---\nA\n",
    )]);
    let e = errors(&c);
    assert_eq!(
        e.iter().map(|d| (d.code, d.line)).collect::<Vec<_>>(),
        vec![("format-version", 2)]
    );
}

#[test]
fn long_persona_warns_and_description_over_500_fails() {
    let persona = "p".repeat(201);
    let description = "d".repeat(501);
    let c = compile_tree(&[(
        "agents/a.md",
        &format!("---\npersona: \"{persona}\"\ndescription: \"{description}\"\n---\nA\n"),
    )]);
    let codes: Vec<(Severity, &str)> = c.diagnostics.iter().map(|d| (d.severity, d.code)).collect();
    assert_eq!(
        codes,
        vec![
            (Severity::Warning, "long-persona"),
            (Severity::Error, "too-long")
        ]
    );
}

#[test]
fn persona_file_missing_names_the_folder() {
    let c = compile_tree(&[("agents/a.md", "---\npersona: ghost.md\n---\nA\n")]);
    let e = errors(&c);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].code, "missing-resource");
    assert!(e[0].message.contains("personas/"), "{}", e[0].message);
}

#[test]
fn next_on_unknown_command_and_bad_sequence_fields() {
    let c = compile_tree(&[
        (
            "agents/po.md",
            "---\ncommands: {\"*approve\": ok}\nsequence:\n  - step: s\n    action: tool_call\n    tool: word_count\n    checklist: x\n  - step: t\n    action: llm_cal\n---\nP\n",
        ),
        (
            "workflow.yaml",
            "flows:\n  f:\n    steps:\n      - agent: po\n        next: {\"*aprove\": end}\n",
        ),
    ]);
    let e: Vec<(&str, String, u32)> = errors(&c)
        .into_iter()
        .map(|d| (d.code, d.file, d.line))
        .collect();
    assert_eq!(
        e,
        vec![
            ("field-not-applicable", "agents/po.md".to_string(), 7),
            ("bad-value", "agents/po.md".to_string(), 9),
            ("unknown-action", "workflow.yaml".to_string(), 5),
        ]
    );
}

#[test]
fn many_agents_read_on_all_cores_report_like_one_by_one() {
    // Enough files for the reader to split them over threads: problems
    // spread from the first file to the last must still come out in file
    // order, and a duplicate id is reported on the later file.
    let mut files: Vec<(String, String)> = (0..120)
        .map(|i| {
            let id = format!("agent-{i:03}");
            (
                format!("agents/{id}.md"),
                format!("---\nid: {id}\n---\nHello {{{{ input }}}}\n"),
            )
        })
        .collect();
    files[3].1 = "---\nid: agent-003\ntols: [x]\n---\nA\n".into();
    files[64].1 = "no front matter".into();
    files[119].1 = "---\nid: agent-003\n---\n{{ persna }}\n".into();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let c = compile_tree(&refs);
    let found: Vec<(String, &str)> = errors(&c)
        .iter()
        .map(|d| (d.file.clone(), d.code))
        .collect();
    assert_eq!(
        found,
        [
            ("agents/agent-003.md".to_string(), "unknown-key"),
            ("agents/agent-064.md".to_string(), "front-matter"),
            ("agents/agent-119.md".to_string(), "duplicate-id"),
            ("agents/agent-119.md".to_string(), "unknown-variable"),
        ]
    );
}

#[test]
fn previews_are_rendered_when_asked_for() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for i in 0..40 {
        write(
            dir.path(),
            &format!("agents/a{i:02}.md"),
            &format!("---\nid: a{i:02}\n---\nI am {{{{ agent.id }}}}; input {{input}}\n"),
        );
    }
    let plain = compile(dir.path());
    assert!(plain.prompts.is_empty());
    let c = bmad2pf_compiler::compile_with(
        dir.path(),
        bmad2pf_compiler::CompileOptions { previews: true },
    );
    let b = ok(&c);
    assert_eq!(c.prompts.len(), 40);
    for (id, agent) in &b.agents {
        let expected = bmad2pf_compiler::prompt::preview(agent)
            .unwrap_or_else(|e| panic!("preview of {id}: {e}"));
        assert_eq!(c.prompts[id], expected);
    }
    assert_eq!(c.prompts["a07"], "I am a07; input {{ input }}\n");
    assert!(c.phases.iter().any(|(phase, _)| *phase == "prompts"));
}
