//! One source tree with many different mistakes: a single `compile()` call
//! reports every one of them, each with its code, file and line, and does
//! not pile follow-up errors on top (no bundle is produced).

use bmad2pf_compiler::compile;
use std::path::Path;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

fn broken_tree(root: &Path) {
    write(root, "tasks/create-prd.md", "Write the PRD.\n");
    write(
        root,
        "agents/analyst.md",
        "---\nid: analyst\ntols: [word_count]\nparallel: \"yes\"\n---\nAnalyse {input}.\n",
    );
    write(
        root,
        "agents/architect.md",
        "---\nid: architect\ntools: [wrod_count]\n---\nDesign for {{ story_id }}.\n\nInput: {{ inptu }}\n",
    );
    write(root, "agents/bad.md", "---\nid: 9lives\n---\nHello.\n");
    write(
        root,
        "agents/broken.md",
        "---\nid: broken\ntasks: [a, b\n---\nNever read.\n",
    );
    write(
        root,
        "agents/dev.md",
        "---\nwait_for:\n  agents: [qa]\nmemory_scope: global\n---\nCode it.\n{% if input %}\nunclosed\n",
    );
    write(
        root,
        "agents/pm.md",
        "---\nid: pm\ntasks: [create-prd, nope]\n---\nPlan {input}.\n",
    );
    write(root, "agents/pm2.md", "---\nid: pm\n---\nAnother PM.\n");
    write(
        root,
        "agents/po.md",
        "---\nid: po\ncommands: [\"*approve\", \"revise!\"]\n---\nReview.\n",
    );
    write(
        root,
        "agents/qa.md",
        "---\nrequires: [dev]\n---\nTest it.\n",
    );
    write(
        root,
        "workflow.yaml",
        "flows:\n  main:\n    steps:\n      - agents: [analyst, archtect]\n      - agent: broken\n      - id: review\n        agent: po\n        next: {\"*approve\": revew}\n",
    );
    write(
        root,
        "tools.yaml",
        "tools:\n  lint:\n    kind: command\n    command: markdownlint --stdin\n",
    );
    write(root, "runtime.yaml", "llm:\n  modle: gpt-4o\n");
}

#[test]
fn every_mistake_is_reported_in_one_pass() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    broken_tree(dir.path());
    let c = compile(dir.path());
    assert!(c.bundle.is_none());
    let found: Vec<(&str, &str, u32)> = c
        .diagnostics
        .iter()
        .filter(|d| d.severity == bmad2pf_compiler::diag::Severity::Error)
        .map(|d| (d.code, d.file.as_str(), d.line))
        .collect();
    let expected: Vec<(&str, &str, u32)> = vec![
        ("unknown-key", "agents/analyst.md", 3),        // tols
        ("wrong-type", "agents/analyst.md", 4),         // parallel: "yes"
        ("unknown-tool", "agents/architect.md", 3),     // wrod_count
        ("unknown-variable", "agents/architect.md", 7), // {{ inptu }}
        ("bad-id", "agents/bad.md", 2),                 // 9lives
        ("yaml-syntax", "agents/broken.md", 4),         // unclosed flow list
        ("bad-memory-scope", "agents/dev.md", 4),       // global
        ("template-syntax", "agents/dev.md", 7),        // unclosed {% if %}
        ("missing-resource", "agents/pm.md", 3),        // nope
        ("duplicate-id", "agents/pm2.md", 2),           // pm again
        ("bad-command", "agents/po.md", 3),             // revise!
        ("dependency-cycle", "agents/qa.md", 2),        // dev ↔ qa
        ("unknown-key", "runtime.yaml", 2),             // modle
        ("wrong-type", "tools.yaml", 4),                // shell string command
        ("unknown-agent", "workflow.yaml", 4),          // archtect
        ("unknown-step", "workflow.yaml", 8),           // revew
    ];
    let rendered: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(found, expected, "\n{}", rendered.join("\n"));

    let by_code = |code: &str| {
        c.diagnostics
            .iter()
            .find(|d| d.code == code)
            .unwrap_or_else(|| panic!("no {code}"))
            .clone()
    };
    assert_eq!(
        by_code("unknown-tool").hint.as_deref(),
        Some("did you mean `word_count`?")
    );
    assert_eq!(
        by_code("unknown-agent").hint.as_deref(),
        Some("did you mean `architect`?")
    );
    assert_eq!(
        by_code("unknown-step").hint.as_deref(),
        Some("did you mean `review`?")
    );
    assert_eq!(
        by_code("unknown-variable").hint.as_deref(),
        Some("did you mean `input`?")
    );
    assert!(
        by_code("duplicate-id")
            .message
            .contains("agents/pm.md and agents/pm2.md")
    );
    assert!(by_code("missing-resource").message.contains("tasks/"));
    assert!(
        by_code("dependency-cycle")
            .message
            .contains("dev → qa → dev")
            || by_code("dependency-cycle")
                .message
                .contains("qa → dev → qa")
    );
    assert!(
        by_code("wrong-type")
            .message
            .contains("`parallel` must be a boolean")
    );
    let shell = c
        .diagnostics
        .iter()
        .find(|d| d.file == "tools.yaml")
        .map(|d| d.hint.clone());
    assert_eq!(
        shell.flatten().as_deref(),
        Some(
            "commands are never run through a shell; write command: [\"markdownlint\", \"--stdin\"]"
        )
    );
}

#[test]
fn missing_source_and_empty_source_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let c = compile(&dir.path().join("nope"));
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["no-source"]);
    let c = compile(dir.path());
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["no-agents"]);
    assert!(c.bundle.is_none());
}

#[test]
fn approval_gates_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let root = dir.path();
    write(root, "agents/pm.md", "---\nid: pm\n---\nPlan.\n");
    write(root, "agents/po.md", "---\nid: po\n---\nReview.\n");
    write(
        root,
        "workflow.yaml",
        "flows:\n  main:\n    steps:\n      - id: draft\n        agent: pm\n        approve: sometimes\n      - id: review\n        agent: po\n        approve: before\n        on_reject: drfat\n      - agent: pm\n        approve_prompt: Never asked\n",
    );
    let c = compile(root);
    let found: Vec<(&str, u32)> = c.diagnostics.iter().map(|d| (d.code, d.line)).collect();
    assert_eq!(
        found,
        [
            ("bad-value", 6),
            ("unknown-step", 10),
            ("unused-gate-field", 12)
        ],
        "{:#?}",
        c.diagnostics
    );

    write(
        root,
        "workflow.yaml",
        "flows:\n  main:\n    steps:\n      - id: draft\n        agent: pm\n        approve: true\n      - id: review\n        agent: po\n        approve: before\n        approve_prompt: Review now?\n        on_reject: draft\n",
    );
    let c = compile(root);
    let bundle = c
        .bundle
        .unwrap_or_else(|| panic!("compiles: {:#?}", c.diagnostics));
    let gates: Vec<_> = bundle.flows["main"]
        .steps
        .iter()
        .map(|s| serde_json::to_value(&s.gate).unwrap_or_default())
        .collect();
    assert_eq!(
        gates,
        [
            serde_json::json!({"when": "after"}),
            serde_json::json!({"when": "before", "prompt": "Review now?", "on_reject": "draft"})
        ]
    );
}
