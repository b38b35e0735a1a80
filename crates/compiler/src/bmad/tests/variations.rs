//! The loose shapes real BMAD v4 packs use (SPEC 1.6), each written as a
//! real file tree in a temporary directory and read through `bmad::read`.

use super::support::{agent_md, errors, is_bmad_layout, read, read_files, warnings, write_tree};

#[test]
fn crlf_and_non_ascii_text_with_positions() {
    let text = "<!-- Powered by BMAD™ Core -->\r\n# game-designer\r\n\r\n```yaml\r\nagent:\r\n  name: Ålvaro\r\n  id: game-designer\r\n  title: Game Designer™ 🎮️\r\n  icon: 🏃‍♂️\r\n  whenToUse: Use for non‑trivial design — ideas, GDDs\r\npersona:\r\n  role: Designer\r\nmood: happy\r\ncommands:\r\n  - help: Show “commands”\r\n```\r\n";
    let (parts, diags) = read_files(&[("agents/game-designer.md", text)]);
    let agent = &parts.agents["game-designer"];
    assert_eq!(
        agent.description,
        "Game Designer™ 🎮️: Use for non\u{2011}trivial design — ideas, GDDs"
    );
    assert_eq!(agent.metadata["icon"], "🏃‍♂️");
    assert_eq!(agent.commands[0].description, "Show “commands”");
    let unknown = warnings(&diags, "bmad-unknown-key");
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].file, "agents/game-designer.md");
    assert_eq!((unknown[0].line, unknown[0].col), (13, 1));
    assert_eq!(agent.metadata["mood"], "happy");
}

#[test]
fn large_agent_file_with_fences_before_and_after() {
    let mut extra = String::from("activation-instructions:\n");
    for i in 0..900 {
        extra.push_str(&format!(
            "  - Step {i}: keep reading ✓ and never stop reading the file\n"
        ));
    }
    let text = format!(
        "# big\n\n```bash\necho hi\n```\n\n{}\n## Notes\n\n```yaml\nagent: {{id: other}}\n```\n",
        agent_md("big", &extra)
    );
    assert!(text.len() > 45_000, "{}", text.len());
    let (parts, diags) = read_files(&[("agents/big.md", &text)]);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(parts.agents.len(), 1);
    let steps = parts.agents["big"].metadata["activation-instructions"]
        .as_array()
        .map(Vec::len);
    assert_eq!(steps, Some(900));
}

#[test]
fn commands_in_every_shape_through_read() {
    let extra = "commands:\n  - help: Show help\n  - '*yolo - Toggle confirmations'\n  - 'status: Show where we are'\n  - develop-story:\n      - order-of-execution: read, implement, test\n      - blocking: halt on ambiguity\n  - critique {file|text}: Critique something\n  - '*checklist {checklist}\" - Run a checklist'\n";
    let (parts, diags) = read_files(&[("agents/dev.md", &agent_md("dev", extra))]);
    let names: Vec<&str> = parts.agents["dev"]
        .commands
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "*help",
            "*yolo",
            "*status",
            "*develop-story",
            "*critique",
            "*checklist"
        ]
    );
    assert!(diags.is_empty(), "{diags:?}");
    let plain_map = "commands:\n  help: Show help\n  exit: Leave\n";
    let (parts, _) = read_files(&[("agents/m.md", &agent_md("m", plain_map))]);
    let names: Vec<&str> = parts.agents["m"]
        .commands
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["*help", "*exit"]);
}

#[test]
fn persona_variants_customization_and_unknown_keys() {
    let extra = "  customization: null\npersona:\n  role: Only a role\n  identity: Someone\ncore_principles:\n  - Be kind\n  - CRITICAL: Be right\nIIDE-FILE-RESOLUTION:\n  - typo kept\nstartup: [greet]\n";
    let text = agent_md("p", "").replace("```\n", "") + extra + "```\n";
    let (parts, diags) = read_files(&[("agents/p.md", &text)]);
    let agent = &parts.agents["p"];
    let persona = agent.persona.clone().unwrap_or_default();
    assert_eq!(persona.role.as_deref(), Some("Only a role"));
    assert!(persona.style.is_none() && persona.focus.is_none());
    assert_eq!(persona.core_principles, ["Be kind", "CRITICAL: Be right"]);
    assert_eq!(agent.metadata["customization"], serde_json::Value::Null);
    assert_eq!(
        agent.metadata["IIDE-FILE-RESOLUTION"],
        serde_json::json!(["typo kept"])
    );
    assert!(agent.metadata.contains_key("startup"));
    let unknown = warnings(&diags, "bmad-unknown-key");
    assert_eq!(unknown.len(), 1, "{diags:?}");
    assert_eq!(
        unknown[0].hint.as_deref(),
        Some("did you mean `IDE-FILE-RESOLUTION`?")
    );
    assert!(errors(&diags).is_empty());

    let string_customization = agent_md("s", "").replace(
        "  title: Tester\n",
        "  title: Tester\n  customization: Always answer in French\n",
    );
    let (parts, _) = read_files(&[("agents/s.md", &string_customization)]);
    assert_eq!(
        parts.agents["s"].metadata["customization"],
        "Always answer in French"
    );
    assert!(parts.agents["s"].persona.is_none());
}

#[test]
fn dependencies_with_comments_without_extensions_and_missing() {
    let extra = "dependencies:\n  tasks:\n    - create-doc.md # the generic one\n    - execute-checklist\n    - missing-task.md\n  templates:\n    - prd-tmpl\n  utils:\n    - doc-helper\n  data:\n    - kb.md\n  workflows:\n    - greenfield.yaml\n  widgets:\n    - x\n";
    let (parts, diags) = read_files(&[
        ("agents/pm.md", &agent_md("pm", extra)),
        ("tasks/create-doc.md", "Create {{ doc }}"),
        ("tasks/execute-checklist.md", "Run it"),
        (
            "templates/prd-tmpl.yaml",
            "template: {id: prd, name: PRD}\nsections:\n  - {id: a, title: Alpha}\n",
        ),
        ("templates/prd-tmpl.md", "old markdown template"),
        ("utils/doc-helper.md", "helper"),
        ("data/kb.md", "knowledge"),
    ]);
    let pm = &parts.agents["pm"];
    let tasks: Vec<(&str, &str)> = pm
        .tasks
        .iter()
        .map(|r| (r.name.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        tasks,
        [
            ("create-doc.md", "tasks/create-doc.md"),
            ("execute-checklist", "tasks/execute-checklist.md")
        ]
    );
    assert_eq!(pm.tasks[0].content, "Create {{ doc }}");
    assert_eq!(pm.templates[0].path, "templates/prd-tmpl.yaml");
    assert!(pm.templates[0].content.starts_with("# PRD\n"));
    let data: Vec<&str> = pm.data.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(data, ["utils/doc-helper.md", "data/kb.md"]);
    assert_eq!(
        pm.metadata["dependencies.workflows"],
        serde_json::json!(["greenfield.yaml"])
    );

    let missing = warnings(&diags, "bmad-missing-dependency");
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].file, "agents/pm.md");
    assert!(
        missing[0].message.contains("`missing-task.md`"),
        "{}",
        missing[0].message
    );
    assert!(
        missing[0].message.contains("searched tasks/"),
        "{}",
        missing[0].message
    );
    let unknown = warnings(&diags, "bmad-unknown-key");
    assert_eq!(unknown.len(), 1);
    assert!(unknown[0].message.contains("widgets"));
    assert!(errors(&diags).is_empty());
}

#[test]
fn unparseable_template_is_kept_raw_with_a_warning() {
    let extra = "dependencies:\n  templates:\n    - broken-tmpl.yaml\n";
    let (parts, diags) = read_files(&[
        ("agents/a.md", &agent_md("a", extra)),
        ("agents/b.md", &agent_md("b", extra)),
        ("templates/broken-tmpl.yaml", "template: [unclosed\n"),
    ]);
    assert_eq!(
        parts.agents["a"].templates[0].content,
        "template: [unclosed\n"
    );
    assert_eq!(
        parts.agents["b"].templates[0].content,
        "template: [unclosed\n"
    );
    let template_warnings = warnings(&diags, "bmad-template");
    assert_eq!(
        template_warnings.len(),
        1,
        "each file is reported once: {diags:?}"
    );
    assert_eq!(template_warnings[0].file, "templates/broken-tmpl.yaml");
    assert!(errors(&diags).is_empty());
}

const AGENTS: [&str; 4] = ["analyst", "pm", "architect", "po"];

fn with_agents(extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = AGENTS
        .iter()
        .map(|id| (format!("agents/{id}.md"), agent_md(id, "")))
        .collect();
    files.extend(extra.iter().map(|(p, c)| (p.to_string(), c.to_string())));
    files
}

fn read_owned(files: &[(String, String)]) -> (crate::ProjectParts, crate::diag::Diagnostics) {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    read_files(&refs)
}

#[test]
fn every_workflow_shape_becomes_flows() {
    let files = with_agents(&[
        (
            "workflows/plain.yaml",
            "workflow:\n  id: plain\n  sequence:\n    - agent: analyst\n      creates: brief.md\n",
        ),
        (
            "workflows/game.yaml",
            "workflow:\n  id: game-prototype\n  prototype_sequence:\n    - step: concept\n      agent: analyst\n      creates: concept.md\n  game_jam_sequence:\n    - step: jam\n      agent: pm\n      requires: concept.md\n  jam_workflow_end:\n    action: submit\n",
        ),
        (
            "workflows/phased.yml",
            "workflow:\n  id: phased\n  phases:\n    design:\n      - agent: architect\n    review:\n      - agent: po\n",
        ),
        (
            "workflows/bare-steps.yaml",
            "steps:\n  - agent: pm\n  - agent: po\n",
        ),
        ("workflows/README.md", "not a workflow"),
    ]);
    let (parts, diags) = read_owned(&files);
    let names: Vec<&str> = parts.flows.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "bare-steps",
            "game-prototype.game_jam_sequence",
            "game-prototype.prototype_sequence",
            "phased.design",
            "phased.review",
            "plain"
        ]
    );
    let jam = &parts.flows["game-prototype.game_jam_sequence"];
    assert_eq!(jam.source, "workflows/game.yaml");
    assert_eq!(jam.steps[0].agents, ["pm"]);
    assert_eq!(jam.steps[0].requires, ["concept.md"]);
    assert_eq!(jam.steps[0].metadata["step"], "jam");
    assert_eq!(parts.flows["bare-steps"].steps.len(), 2);
    assert_eq!(parts.flows["phased.review"].steps[0].agents, ["po"]);
    let skipped = warnings(&diags, "bmad-skipped-file");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].file, "workflows/README.md");
    assert!(errors(&diags).is_empty());
}

#[test]
fn loose_workflow_values_are_metadata_not_failures() {
    let files = with_agents(&[(
        "workflows/loose.yaml",
        "workflow:\n  id: loose\n  sequence:\n    - agent: pm\n      creates: v0_prompt (optional)\n    - agent: analyst/pm\n      updates: prd.md (if needed)\n    - agent: various\n      updates: any_flagged_documents\n    - agent: po\n      requires: all_artifacts_in_project\n      validates: all_artifacts\n      uses: po-master-checklist\n    - agent: wizard\n      creates: prototype-stories/\n    - agent: game-designer OR pm\n      repeats: for_each_epic\n",
    )]);
    let (parts, diags) = read_owned(&files);
    let steps = &parts.flows["loose"].steps;
    assert_eq!(steps[0].creates, ["v0_prompt"]);
    assert_eq!(
        steps[0].metadata["creates_qualifiers"]["v0_prompt"],
        "optional"
    );
    assert_eq!(steps[1].agents, ["analyst"]);
    assert_eq!(steps[1].metadata["agent"], "analyst/pm");
    assert_eq!(
        steps[1].metadata["agent_alternatives"],
        serde_json::json!(["analyst", "pm"])
    );
    assert_eq!(steps[1].updates, ["prd.md"]);
    assert!(steps[2].agents.is_empty());
    assert!(steps[3].requires.is_empty());
    assert_eq!(
        steps[3].metadata["requires_other"],
        serde_json::json!(["all_artifacts_in_project"])
    );
    assert_eq!(steps[3].metadata["validates"], "all_artifacts");
    assert!(steps[4].agents.is_empty());
    assert_eq!(steps[4].creates, ["prototype-stories"]);
    assert_eq!(steps[5].agents, ["pm"]);
    let unknown = warnings(&diags, "bmad-unknown-agent");
    assert_eq!(unknown.len(), 1, "only `wizard` is unknown: {diags:?}");
    assert_eq!(unknown[0].file, "workflows/loose.yaml");
    assert!(errors(&diags).is_empty());
}

fn installed_project() -> tempfile::TempDir {
    let game_pm = "# game-pm\n\n```yaml\nagent:\n  id: pm\n  title: Game PM\ndependencies:\n  tasks:\n    - create-doc.md\n    - game-only.md\n    - shared-task.md\n  utils:\n    - workflow-management.md\n```\n";
    write_tree(&[
        (
            ".bmad-core/agents/pm.md",
            &agent_md("pm", "dependencies:\n  tasks: [create-doc.md]\n"),
        ),
        (".bmad-core/agents/analyst.md", &agent_md("analyst", "")),
        (".bmad-core/tasks/create-doc.md", "core create-doc"),
        (".bmad-core/utils/workflow-management.md", "core utils"),
        (
            ".bmad-core/workflows/greenfield.yaml",
            "workflow:\n  id: greenfield\n  sequence:\n    - agent: pm\n",
        ),
        (".bmad-core/core-config.yaml", "markdownExploder: true\n"),
        (".bmad-2d-phaser-game-dev/agents/game-pm.md", game_pm),
        (
            ".bmad-2d-phaser-game-dev/agents/game-designer.md",
            &agent_md("game-designer", ""),
        ),
        (
            ".bmad-2d-phaser-game-dev/tasks/create-doc.md",
            "game create-doc",
        ),
        (".bmad-2d-phaser-game-dev/tasks/game-only.md", "game only"),
        (
            ".bmad-2d-phaser-game-dev/workflows/greenfield.yaml",
            "workflow:\n  id: greenfield\n  sequence:\n    - agent: game-designer\n    - agent: pm\n    - agent: game-pm\n    - agent: analyst\n",
        ),
        (
            ".bmad-2d-phaser-game-dev/agent-teams/game-team.yaml",
            "bundle:\n  name: Game Team\nagents: ['*', analyst, ghost]\nworkflows:\n  - greenfield.md\n  - missing-flow.yaml\n",
        ),
        ("common/tasks/shared-task.md", "shared"),
        (".claude/commands/BMad/agents/pm.md", "not a pack"),
        ("docs/prd.md", "user docs"),
    ])
}

#[test]
fn installed_project_with_two_packs_qualifies_ids() {
    let dir = installed_project();
    assert!(is_bmad_layout(dir.path()));
    let (parts, diags) = read(dir.path());
    let ids: Vec<&str> = parts.agents.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "analyst",
            "bmad-2d-phaser-game-dev/game-designer",
            "bmad-2d-phaser-game-dev/pm",
            "pm"
        ]
    );
    let game_pm = &parts.agents["bmad-2d-phaser-game-dev/pm"];
    assert_eq!(game_pm.source, ".bmad-2d-phaser-game-dev/agents/game-pm.md");
    assert_eq!(game_pm.metadata["pack"], "bmad-2d-phaser-game-dev");
    let tasks: Vec<(&str, &str)> = game_pm
        .tasks
        .iter()
        .map(|r| (r.path.as_str(), r.content.as_str()))
        .collect();
    assert_eq!(
        tasks,
        [
            (
                ".bmad-2d-phaser-game-dev/tasks/create-doc.md",
                "game create-doc"
            ),
            (".bmad-2d-phaser-game-dev/tasks/game-only.md", "game only"),
            ("common/tasks/shared-task.md", "shared"),
        ]
    );
    assert_eq!(
        game_pm.data[0].path,
        ".bmad-core/utils/workflow-management.md"
    );
    assert_eq!(parts.agents["pm"].tasks[0].content, "core create-doc");

    let flows: Vec<&str> = parts.flows.keys().map(String::as_str).collect();
    assert_eq!(flows, ["bmad-2d-phaser-game-dev/greenfield", "greenfield"]);
    let game_flow: Vec<Vec<String>> = parts.flows["bmad-2d-phaser-game-dev/greenfield"]
        .steps
        .iter()
        .map(|s| s.agents.clone())
        .collect();
    assert_eq!(
        game_flow,
        [
            vec!["bmad-2d-phaser-game-dev/game-designer".to_string()],
            vec!["bmad-2d-phaser-game-dev/pm".to_string()],
            vec!["bmad-2d-phaser-game-dev/pm".to_string()],
            vec!["analyst".to_string()],
        ]
    );
    assert_eq!(parts.flows["greenfield"].steps[0].agents, ["pm"]);

    let team = serde_json::json!(["bmad-2d-phaser-game-dev/game-team"]);
    assert_eq!(
        parts.agents["bmad-2d-phaser-game-dev/pm"].metadata["teams"],
        team
    );
    assert_eq!(parts.agents["analyst"].metadata["teams"], team);
    assert!(!parts.agents["pm"].metadata.contains_key("teams"));
    let ghost = warnings(&diags, "bmad-team-unknown-agent");
    assert_eq!(ghost.len(), 1);
    assert!(ghost[0].message.contains("ghost"));
    let missing = warnings(&diags, "bmad-team-unknown-workflow");
    assert_eq!(
        missing.len(),
        1,
        "greenfield.md resolves to greenfield.yaml: {diags:?}"
    );
    assert_eq!(
        missing[0].file,
        ".bmad-2d-phaser-game-dev/agent-teams/game-team.yaml"
    );
    assert!(missing[0].message.contains("missing-flow.yaml"));
    assert!(errors(&diags).is_empty(), "{diags:?}");
}

#[test]
fn source_checkout_with_expansion_packs_is_read() {
    let (parts, diags) = read_files(&[
        ("bmad-core/agents/pm.md", &agent_md("pm", "")),
        (
            "expansion-packs/bmad-creative-writing/agents/editor.md",
            &agent_md("editor", ""),
        ),
    ]);
    let ids: Vec<&str> = parts.agents.keys().map(String::as_str).collect();
    assert_eq!(ids, ["bmad-creative-writing/editor", "pm"]);
    assert!(diags.is_empty(), "{diags:?}");
}

#[test]
fn duplicate_id_in_one_pack_is_an_error_naming_both_files() {
    let (parts, diags) = read_files(&[
        ("agents/pm.md", &agent_md("pm", "")),
        ("agents/pm-copy.md", &agent_md("pm", "")),
        ("agents/analyst.md", &agent_md("analyst", "")),
    ]);
    let errs = errors(&diags);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].code, "duplicate-agent-id");
    assert_eq!(errs[0].file, "agents/pm.md");
    assert_eq!((errs[0].line, errs[0].col), (6, 7));
    assert!(errs[0].message.contains("agents/pm-copy.md"));
    assert!(errs[0].message.contains("agents/pm.md"));
    assert_eq!(parts.agents["pm"].source, "agents/pm-copy.md");
    assert_eq!(parts.agents.len(), 2);
}

#[test]
fn team_with_missing_workflow_and_star_agents() {
    let files = with_agents(&[
        (
            "workflows/greenfield.yaml",
            "workflow:\n  id: greenfield\n  sequence:\n    - agent: pm\n",
        ),
        (
            "agent-teams/team-all.yaml",
            "bundle:\n  name: Everyone\nagents:\n  - '*'\nworkflows:\n  - greenfield.yaml\n  - brownfield.yaml\nextras: 1\n",
        ),
        ("agent-teams/notes.txt", "ignored"),
    ]);
    let (parts, diags) = read_owned(&files);
    for id in AGENTS {
        assert_eq!(
            parts.agents[id].metadata["teams"],
            serde_json::json!(["team-all"]),
            "{id}"
        );
    }
    let missing = warnings(&diags, "bmad-team-unknown-workflow");
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].file, "agent-teams/team-all.yaml");
    assert!(missing[0].message.contains("brownfield.yaml"));
    assert_eq!(warnings(&diags, "bmad-unknown-key").len(), 1);
    assert_eq!(warnings(&diags, "bmad-skipped-file").len(), 1);
    assert!(errors(&diags).is_empty());
}

#[test]
fn broken_agent_files_are_warnings_and_others_still_load() {
    let (parts, diags) = read_files(&[
        ("agents/good.md", &agent_md("good", "")),
        ("agents/broken.md", "# broken\n```yaml\nagent: [\n```\n"),
        ("agents/prose.md", "# just notes\n"),
        ("agents/not-md.txt", "x"),
        (
            "agents/dup-keys.md",
            "```yaml\nagent:\n  id: dup\n  id: again\n```\n",
        ),
    ]);
    let ids: Vec<&str> = parts.agents.keys().map(String::as_str).collect();
    assert_eq!(ids, ["dup", "good"]);
    assert!(errors(&diags).is_empty(), "{diags:?}");
    let files: Vec<&str> = diags.iter().map(|d| d.file.as_str()).collect();
    for file in [
        "agents/broken.md",
        "agents/prose.md",
        "agents/not-md.txt",
        "agents/dup-keys.md",
    ] {
        assert!(files.contains(&file), "{file} not reported: {diags:?}");
    }
}

#[test]
fn layout_detection() {
    let bmad_core = write_tree(&[(".bmad-core/agents/pm.md", &agent_md("pm", ""))]);
    assert!(is_bmad_layout(bmad_core.path()));
    let preprocessing = write_tree(&[(
        "agents/pm.md",
        "---\nid: pm\n---\nExample:\n```yaml\nagent:\n  id: pm\n```\n",
    )]);
    assert!(!is_bmad_layout(preprocessing.path()));
    let empty = write_tree(&[("README.md", "hello")]);
    assert!(!is_bmad_layout(empty.path()));
    let (parts, diags) = read(empty.path());
    assert!(parts.agents.is_empty());
    assert_eq!(warnings(&diags, "bmad-empty").len(), 1);
    assert!(errors(&diags).is_empty());
}

#[test]
fn the_project_config_is_inlined_for_agents_that_load_it() {
    let sm = agent_md("sm", "dependencies:\n  tasks: [create-next-story.md]\n");
    let dev = agent_md(
        "dev",
        "activation-instructions:\n  - Load .bmad-core/core-config.yml and read devLoadAlwaysFiles\n",
    );
    let (parts, diags) = read_files(&[
        ("agents/sm.md", &sm),
        ("agents/dev.md", &dev),
        ("agents/pm.md", &agent_md("pm", "")),
        (
            "tasks/create-next-story.md",
            "Load `{root}/core-config.yaml` from the project root; HALT without it.\n",
        ),
        ("core-config.yaml", "devStoryLocation: docs/stories\n"),
    ]);
    assert!(errors(&diags).is_empty());
    let config_of = |id: &str| {
        parts.agents[id]
            .data
            .iter()
            .find(|r| r.name == "core-config.yaml")
            .map(|r| (r.path.clone(), r.content.clone()))
    };
    let inlined = Some((
        "core-config.yaml".to_string(),
        "devStoryLocation: docs/stories\n".to_string(),
    ));
    assert_eq!(config_of("sm"), inlined, "a task names it");
    assert_eq!(config_of("dev"), inlined, "the agent file names it");
    assert_eq!(config_of("pm"), None, "nothing names it");
}
