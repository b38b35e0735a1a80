//! The shipped `examples/bmad-core` pack imports cleanly, with the agents,
//! commands, resources, flow and team data it was written to have.

use super::support::{is_bmad_layout, read};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/bmad-core")
}

#[test]
fn example_is_detected_and_imports_without_diagnostics() {
    let src = example_dir();
    assert!(is_bmad_layout(&src));
    let (parts, diags) = read(&src);
    let all: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert!(diags.is_empty(), "{all:#?}");
    let ids: Vec<&str> = parts.agents.keys().map(String::as_str).collect();
    assert_eq!(ids, ["analyst", "architect", "pm", "po"]);
    assert!(parts.tools.is_empty());
}

#[test]
fn agents_have_commands_persona_and_resources() {
    let (parts, _) = read(&example_dir());
    let pm = &parts.agents["pm"];
    assert_eq!(pm.format_version, "bmad-v4");
    assert_eq!(pm.source, "agents/pm.md");
    assert!(
        pm.description
            .starts_with("Product Manager: Turning a project brief")
    );
    let commands: Vec<&str> = pm.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        commands,
        ["*help", "*create-prd", "*checklist", "*shard-prd", "*exit"]
    );
    assert_eq!(
        pm.commands[1].description,
        "run task create-doc.md with template prd-tmpl.yaml"
    );
    let persona = pm.persona.clone().unwrap_or_default();
    assert_eq!(
        persona.role.as_deref(),
        Some("Product owner of the \"what\" and the \"why\"")
    );
    assert_eq!(persona.core_principles.len(), 3);
    let names =
        |list: &[crate::bundle::Resource]| list.iter().map(|r| r.path.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&pm.tasks),
        [
            "tasks/create-doc.md",
            "tasks/execute-checklist.md",
            "tasks/shard-doc.md"
        ]
    );
    assert_eq!(names(&pm.templates), ["templates/prd-tmpl.yaml"]);
    assert_eq!(names(&pm.checklists), ["checklists/pm-checklist.md"]);
    assert_eq!(names(&pm.data), ["data/technical-preferences.md"]);
    assert_eq!(pm.metadata["icon"], "🗂️");
    assert_eq!(pm.metadata["customization"], serde_json::Value::Null);
    assert!(pm.metadata.contains_key("activation-instructions"));
    assert!(pm.metadata.contains_key("IDE-FILE-RESOLUTION"));
    assert_eq!(pm.metadata["teams"], serde_json::json!(["team-planning"]));

    let analyst = &parts.agents["analyst"];
    let brainstorm = analyst.commands.iter().find(|c| c.name == "*brainstorm");
    assert_eq!(
        brainstorm.map(|c| c.description.as_str()),
        Some("Run the brainstorming task on a topic (arguments: {topic})")
    );
    let po = &parts.agents["po"];
    assert!(po.commands.iter().any(|c| c.name == "*approve"));
    assert!(po.templates.is_empty());
}

#[test]
fn templates_become_outlines_and_tasks_stay_verbatim() {
    let (parts, _) = read(&example_dir());
    let pm = &parts.agents["pm"];
    let prd = &pm.templates[0].content;
    assert!(
        prd.starts_with("# {{project_name}} Product Requirements\n"),
        "{prd}"
    );
    assert!(prd.contains("## Requirements\n"));
    assert!(prd.contains("### Functional\n"));
    assert!(prd.contains("| Date | Version | Change | Author |"));
    assert!(prd.contains("_Repeatable:"));
    assert!(prd.contains("As a {{user_type}},"));
    let create_doc = &pm.tasks[0].content;
    let on_disk = std::fs::read_to_string(example_dir().join("tasks/create-doc.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(create_doc, &on_disk);
}

#[test]
fn prompt_template_renders_in_strict_mode_without_rendering_resources() {
    let (parts, _) = read(&example_dir());
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for agent in parts.agents.values() {
        let tasks: Vec<String> = agent.tasks.iter().map(|t| t.content.clone()).collect();
        let docs = BTreeMap::from([("prd.md", "the PRD {{ x }}")]);
        let out = env
            .render_str(
                &agent.prompt_template,
                minijinja::context! {
                    persona => "persona", commands => "commands", tasks => tasks.join("\n"),
                    templates => "templates", checklists => "checklists", data => "data", input => "build it",
                    docs => docs,
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", agent.id));
        assert!(out.contains("build it"));
        assert!(out.contains("the PRD {{ x }}"));
        if agent.id == "pm" {
            assert!(out.contains("Replace every `{{placeholder}}`"));
            assert!(out.starts_with("You are Theo, Product Manager (BMAD agent `pm`)."));
        }
    }
}

#[test]
fn workflow_becomes_a_flow_with_contracts_and_metadata() {
    let (parts, _) = read(&example_dir());
    let names: Vec<&str> = parts.flows.keys().map(String::as_str).collect();
    assert_eq!(names, ["greenfield-service"]);
    let flow = &parts.flows["greenfield-service"];
    assert_eq!(flow.source, "workflows/greenfield-service.yaml");
    assert_eq!(flow.max_visits, 10);
    assert_eq!(
        flow.description,
        "Plan a new service from idea to development-ready documents."
    );
    // Workflow-level fields are kept as flow metadata, not dropped.
    assert_eq!(flow.metadata["type"], "greenfield");
    assert_eq!(flow.metadata["project_types"][0], "web-service");
    assert!(!flow.metadata.contains_key("sequence"));
    let steps = &flow.steps;
    assert_eq!(steps.len(), 9);
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "step-1", "step-2", "step-3", "step-4", "step-5", "step-6", "step-7", "step-8",
            "step-9"
        ]
    );
    assert_eq!(steps[0].agents, ["analyst"]);
    assert_eq!(steps[0].creates, ["project-brief.md"]);
    assert_eq!(
        steps[0].metadata["optional_steps"],
        serde_json::json!(["brainstorm_session", "competitor_scan"])
    );
    assert_eq!(steps[1].requires, ["project-brief.md"]);
    assert_eq!(steps[3].updates, ["prd.md"]);
    assert_eq!(
        steps[3].metadata["updates_qualifiers"]["prd.md"],
        "if needed"
    );
    assert_eq!(
        steps[3].metadata["condition"],
        "architecture_changes_stories"
    );
    assert_eq!(steps[4].metadata["uses"], "po-master-checklist");
    assert_eq!(
        steps[4].requires,
        ["project-brief.md", "prd.md", "architecture.md"]
    );
    assert!(steps[5].agents.is_empty(), "various is a human step");
    assert_eq!(steps[5].metadata["agent"], "various");
    assert!(steps[6].agents.is_empty());
    assert_eq!(steps[6].metadata["step"], "project_setup_guidance");
    assert_eq!(steps[6].metadata["action"], "create_repository_and_ci");
    assert_eq!(steps[7].agents, ["po"]);
    assert_eq!(steps[7].creates, ["sharded_docs"]);
    assert!(steps[7].requires.is_empty());
    assert_eq!(
        steps[7].metadata["requires_other"],
        serde_json::json!(["all_artifacts_in_project"])
    );
    assert_eq!(steps[8].metadata["step"], "workflow_end");
}

#[test]
fn import_is_deterministic() {
    let (a, _) = read(&example_dir());
    let (b, _) = read(&example_dir());
    assert_eq!(a.agents, b.agents);
    assert_eq!(a.flows, b.flows);
}
