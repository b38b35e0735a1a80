//! The shipped `examples/planning` project compiles cleanly into the bundle
//! its README describes, deterministically, and every prompt previews.

use bmad2pf_compiler::bundle::{Bundle, MemoryScope, SourceLayout, ToolKind};
use bmad2pf_compiler::config::ProviderKind;
use bmad2pf_compiler::{Compilation, compile, prompt};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/planning")
}

fn compiled() -> (Compilation, Bundle) {
    let c = compile(&example());
    let rendered: Vec<String> = c.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        c.diagnostics.is_empty(),
        "diagnostics:\n{}",
        rendered.join("\n")
    );
    let bundle = c.bundle.clone().unwrap_or_else(|| panic!("no bundle"));
    (c, bundle)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn agents_flows_steps_and_routes() {
    let (_, b) = compiled();
    assert_eq!(b.layout, SourceLayout::Preprocessing);
    assert_eq!(
        b.agents.keys().collect::<Vec<_>>(),
        ["analyst", "architect", "interviewer", "pm", "po"]
    );
    assert_eq!(
        b.flows.keys().collect::<Vec<_>>(),
        ["brief", "kickoff", "planning"]
    );
    assert_eq!(b.agents["interviewer"].tools, ["ask_human"]);

    let planning = &b.flows["planning"];
    assert_eq!(planning.max_visits, 3);
    assert_eq!(planning.source, "workflow.yaml");
    let steps: Vec<(&str, Vec<&str>)> = planning
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.agents.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("step-1", vec!["analyst"]),
            ("design", vec!["pm", "architect"]),
            ("review", vec!["po"]),
            ("revise", vec!["pm"]),
        ]
    );
    assert!(planning.steps[0].next.is_empty());
    assert_eq!(
        planning.steps[2].next,
        map(&[("*approve", "end"), ("*revise", "revise")])
    );
    assert_eq!(planning.steps[3].next, map(&[("default", "review")]));
    assert_eq!(b.flows["brief"].max_visits, 10);
}

#[test]
fn agent_fields_are_resolved() {
    let (_, b) = compiled();
    let analyst = &b.agents["analyst"];
    assert_eq!(analyst.format_version, "2.0");
    assert_eq!(analyst.memory_scope, MemoryScope::Shared("planning".into()));
    assert_eq!(analyst.creates, ["project-brief.md"]);
    let persona = analyst.persona.clone().unwrap_or_default();
    assert_eq!(persona.role.as_deref(), Some("Business analyst"));
    assert_eq!(persona.core_principles.len(), 2);
    assert_eq!(analyst.tasks[0].path, "tasks/create-brief.md");
    assert_eq!(analyst.templates[0].path, "templates/brief-tmpl.md");
    // Legacy placeholders converted, the JSON example kept.
    assert!(
        analyst
            .prompt_template
            .contains("{{ persona }}\n\nYou work on story {{ story_id }}")
    );
    assert!(
        analyst
            .prompt_template
            .contains(r#"{"audience": "...", "problem": "..."}"#)
    );

    let pm = &b.agents["pm"];
    assert!(pm.parallel);
    assert_eq!(pm.retry_count, Some(1));
    assert_eq!(pm.timeout_s, None);
    assert_eq!(pm.llm.temperature, Some(0.3));
    assert_eq!(pm.llm.max_tokens, Some(3000));
    assert_eq!(pm.requires, ["project-brief.md"]);
    assert_eq!(pm.reads, ["review.md"]);

    let po = &b.agents["po"];
    let commands: Vec<&str> = po.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(commands, ["*approve", "*revise"]);
    assert!(
        po.persona
            .as_ref()
            .and_then(|p| p.text.as_deref())
            .is_some_and(|t| t.starts_with("You are the product owner"))
    );
    let schema = po.output_schema.clone().unwrap_or_default();
    assert_eq!(schema["required"], serde_json::json!(["action", "summary"]));
    assert_eq!(po.sequence.len(), 3);
    assert_eq!(po.sequence[0].checklist.as_deref(), Some("po-checklist"));

    assert_eq!(b.agents["architect"].timeout_s, Some(90));
    assert_eq!(b.agents["architect"].format_version, "2.0");
}

#[test]
fn tools_runtime_and_metadata() {
    let (c, b) = compiled();
    let kinds: Vec<(&str, ToolKind)> = b.tools.iter().map(|(k, t)| (k.as_str(), t.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("lint_markdown", ToolKind::Command),
            ("wiki_search", ToolKind::Http),
            ("word_count", ToolKind::Builtin)
        ]
    );
    assert_eq!(
        b.tools["lint_markdown"].command,
        ["markdownlint", "--stdin"]
    );
    assert_eq!(b.tools["wiki_search"].method.as_deref(), Some("GET"));
    assert_eq!(b.tools["wiki_search"].timeout_s, 10);
    assert_eq!(c.runtime.llm.provider, ProviderKind::Mock);
    assert_eq!(c.runtime.llm.mock.seed, 7);
    assert!(
        c.runtime_yaml
            .as_deref()
            .is_some_and(|t| t.contains("provider: mock"))
    );
    assert_eq!(b.source_hash.len(), 64);
    assert!(b.generator.starts_with("bmad2pf "));
    let phases: Vec<&str> = c.phases.iter().map(|(name, _)| *name).collect();
    assert_eq!(phases, ["load", "read", "runtime"]);
}

#[test]
fn compiling_twice_gives_the_same_bundle() {
    let (_, first) = compiled();
    let (_, second) = compiled();
    assert_eq!(first, second);
}

#[test]
fn every_prompt_previews_and_resources_stay_verbatim() -> Result<(), String> {
    let (_, b) = compiled();
    for agent in b.agents.values() {
        prompt::preview(agent)?;
    }
    let analyst = prompt::preview(&b.agents["analyst"])?;
    // The template resource's Jinja-looking text is not rendered.
    assert!(
        analyst.contains("## Project brief: {{ project_name }}"),
        "{analyst}"
    );
    assert!(
        analyst
            .contains("You work on story {{ story_id }}. The idea from the user:\n\n{{ input }}")
    );
    assert!(analyst.contains("Role: Business analyst"));
    let pm = prompt::preview(&b.agents["pm"])?;
    assert!(pm.contains("{{ docs[\"project-brief.md\"] }}"), "{pm}");
    assert!(pm.contains("### pm-checklist"));
    Ok(())
}
