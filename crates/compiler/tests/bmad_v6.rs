//! The BMAD v6 and skills examples (`examples/bmad-v6`, `examples/bmad-skills`)
//! compiled and checked precisely: layout, agents, commands, flows, step
//! chains, routes, documents, metadata and every warning.

use bmad2pf_compiler::bundle::{Bundle, FlowSpec, SourceLayout, StepSpec};
use bmad2pf_compiler::{Compilation, compile, layout_summary};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn compiled(name: &str) -> Result<(Compilation, Bundle), String> {
    compiled_at(&example(name))
}

/// The compilation of the tree at `src` and its bundle (an error listing
/// the diagnostics when there is none).
fn compiled_at(src: &std::path::Path) -> Result<(Compilation, Bundle), String> {
    let c = compile(src);
    let bundle = c
        .bundle
        .clone()
        .ok_or_else(|| format!("no bundle: {:?}", c.diagnostics))?;
    Ok((c, bundle))
}

/// `(code, file, line)` of every diagnostic.
fn warnings(c: &Compilation) -> Vec<(&'static str, String, u32)> {
    c.diagnostics
        .iter()
        .map(|d| (d.code, d.file.clone(), d.line))
        .collect()
}

fn flow<'b>(b: &'b Bundle, name: &str) -> Result<&'b FlowSpec, String> {
    b.flows.get(name).ok_or_else(|| format!("no flow {name}"))
}

fn step<'f>(f: &'f FlowSpec, id: &str) -> Result<&'f StepSpec, String> {
    f.steps
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| format!("no step {id}"))
}

/// The `next` map of a step, as `(action, target)` pairs.
fn routes(s: &StepSpec) -> Vec<(&str, &str)> {
    s.next
        .iter()
        .map(|(a, t)| (a.as_str(), t.as_str()))
        .collect()
}

fn meta_str<'m>(m: &'m BTreeMap<String, serde_json::Value>, key: &str) -> &'m str {
    m.get(key).and_then(|v| v.as_str()).unwrap_or_default()
}

fn prompt(s: &StepSpec) -> &str {
    meta_str(&s.metadata, "prompt")
}

#[test]
fn v6_module_tree() -> Result<(), String> {
    let (c, b) = compiled("bmad-v6")?;
    assert_eq!(b.layout, SourceLayout::BmadV6);
    assert_eq!(
        layout_summary(&b).as_deref(),
        Some("BMAD v6 module tree: 2 modules, 0 skills, 7 steps")
    );
    assert_eq!(
        b.agents.keys().collect::<Vec<_>>(),
        ["bbq/grocer", "bbq/pitmaster", "core/host"]
    );
    assert_eq!(
        b.flows.keys().collect::<Vec<_>>(),
        ["bbq/plan-menu", "bbq/shopping-list", "core/help"]
    );

    // The agent: description, persona, commands (menu, aliases, routes), prompt parts.
    let pit = &b.agents["bbq/pitmaster"];
    assert_eq!(pit.format_version, "bmad-v6");
    assert_eq!(pit.description, "Pitmaster: menu planning, fire management");
    let persona = pit.persona.as_ref().ok_or("persona")?;
    assert_eq!(
        persona.style.as_deref(),
        Some("Short sentences, with the odd ember pun. It's a \\'friendly\\' style.")
    );
    assert_eq!(
        persona.core_principles,
        [
            "Plan for the guests you have, not the ones you wish for.",
            "Low and slow beats hot and fast. Patience is an ingredient."
        ]
    );
    let commands: Vec<&str> = pit.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        commands,
        [
            "*mp",
            "*plan-menu",
            "*sl",
            "*shopping-list",
            "*ch",
            "*chat",
            "*gx",
            "*alt",
            "*dishes"
        ]
    );
    assert_eq!(
        pit.commands[0].description,
        "Plan the menu (runs flow `bbq/plan-menu`)"
    );
    assert_eq!(pit.tasks[0].name, "critical_actions");
    assert_eq!(
        pit.tasks[0].content,
        "- Load _bmad/bbq/config.yaml before anything else\n- Greet Sam by name"
    );
    assert_eq!(
        pit.metadata["resources"],
        serde_json::json!({"bbq/pitmaster/fire-log.md": "# Fire log\n\nLast cook: ribs, 5 hours.\n"})
    );
    assert_eq!(pit.data[0].name, "menu *ch");
    assert_eq!(
        pit.data[0].content,
        "Talk about fire and smoke; answer in English. {{keep_this}}"
    );
    assert!(
        pit.prompt_template
            .ends_with("{% if tasks %}\n## Instructions\n{{ tasks }}\n{% endif %}")
    );

    // The step-file flow: chain, branch, loop, documents, waits.
    let plan = flow(&b, "bbq/plan-menu")?;
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "step-01-guests",
            "step-02-dishes",
            "step-02b-vegetarian",
            "step-03-review",
            "step-04-done"
        ]
    );
    assert!(plan.steps.iter().all(|s| s.agents == ["bbq/pitmaster"]));
    assert_eq!(
        routes(step(plan, "step-01-guests")?),
        [("default", "step-02-dishes")]
    );
    assert_eq!(
        routes(step(plan, "step-02-dishes")?),
        [
            ("*alt", "step-02b-vegetarian"),
            ("default", "step-03-review")
        ]
    );
    assert_eq!(
        routes(step(plan, "step-02b-vegetarian")?),
        [("default", "step-03-review")]
    );
    assert_eq!(
        routes(step(plan, "step-03-review")?),
        [("*dishes", "step-02-dishes"), ("default", "step-04-done")]
    );
    assert_eq!(routes(step(plan, "step-04-done")?), [("default", "end")]);
    assert_eq!(plan.max_visits, 10);
    assert_eq!(meta_str(&plan.metadata, "main_document"), "menu-plan");
    assert_eq!(plan.steps[0].creates, ["menu-plan"]);
    assert!(
        plan.steps[1..]
            .iter()
            .all(|s| s.updates == ["menu-plan"] && s.creates.is_empty())
    );
    assert_eq!(
        step(plan, "step-01-guests")?.metadata["waits"],
        serde_json::json!(["menu:C"])
    );
    assert_eq!(
        step(plan, "step-02-dishes")?.metadata["waits"],
        serde_json::json!(["ask"])
    );
    assert_eq!(
        step(plan, "step-03-review")?.metadata["waits"],
        serde_json::json!(["menu:A,C,P"])
    );
    // Variables: module.yaml layers, bmad.vars, step front matter; the rest stays.
    let p2 = prompt(step(plan, "step-02-dishes")?);
    assert!(p2.starts_with("You are running one step of a BMAD workflow"));
    assert!(p2.contains("Pick dishes from `src/bbq/workflows/plan-menu/data/cuts.csv`"));
    assert!(p2.contains("You are Sam's pitmaster. Speak English."));
    assert!(p2.ends_with(
        "end your reply with the line that names it:\n- `ACTION: *alt` → step-02b-vegetarian\n"
    ));
    assert!(p2.contains("Plans go to\n`_bmad-output/plans`"));
    let p1 = prompt(step(plan, "step-01-guests")?);
    assert!(p1.contains("Create `_bmad-output/plans/menu-plan-{{date}}.md` from `src/bbq/workflows/plan-menu/templates/menu-template.md`"));
    // The template a step's front matter names is inlined, not a resource.
    assert!(p1.ends_with("## `templateFile` (src/bbq/workflows/plan-menu/templates/menu-template.md)\n\n---\nstepsCompleted: []\n---\n\n# Menu plan for Sam ({{date}})\n\n## Guests\n\n## Dishes\n\n## Timings"));
    assert_eq!(
        plan.metadata["resources"],
        serde_json::json!({"bbq/plan-menu/data/cuts.csv": "cut,minutes\nbrisket,720\nribs,300\ncorn,20\n"})
    );
    assert_eq!(meta_str(&plan.metadata, "owner"), "bbq/pitmaster");

    // The workflow.yaml flow: one step with instructions, template, checklist.
    let shop = flow(&b, "bbq/shopping-list")?;
    assert_eq!(shop.steps.len(), 1);
    let s = &shop.steps[0];
    assert_eq!(s.id, "shopping-list");
    // module-help.csv names the pitmaster, though the grocer (first by id) has it in its menu.
    assert_eq!(s.agents, ["bbq/pitmaster"]);
    assert_eq!(s.creates, ["shopping-list"]);
    assert_eq!(
        s.metadata["reads_matching"],
        serde_json::json!(["*menu-plan*"])
    );
    assert_eq!(
        s.metadata["waits"],
        serde_json::json!(["ask", "template-output"])
    );
    let p = prompt(s);
    for part in [
        "- output_folder: _bmad-output\n",
        "- user_name: Sam\n",
        "## Instructions (src/bbq/workflows/shopping-list/instructions.md)",
        "<template-output>shopping_list</template-output>",
        "## Template (src/bbq/workflows/shopping-list/template.md)",
        "# Shopping list for {{project_name}}\n\nPrepared for Sam on {{date}}.",
        "## Checklist (src/bbq/workflows/shopping-list/checklist.md)",
        "- [ ] Charcoal and lighters are on the list",
    ] {
        assert!(p.contains(part), "missing {part:?} in {p}");
    }
    assert_eq!(
        shop.metadata["resources"],
        serde_json::json!({"bbq/shopping-list/data/prices.csv": "item,price\ncharcoal,12\n"})
    );
    let grocer = &b.agents["bbq/grocer"];
    assert_eq!(
        grocer.metadata["teams"],
        serde_json::json!(["bbq/party-team"])
    );
    assert_eq!(
        grocer.persona.as_ref().map(|p| p.core_principles.len()),
        Some(2)
    );
    assert_eq!(
        grocer.commands[0].description,
        "Write the shopping list (input: {project-root}/_bmad/bbq/workflows/shopping-list/data/prices.csv) (runs flow `bbq/shopping-list`)"
    );

    // The core task, owned by the agent whose menu names it.
    let help = flow(&b, "core/help")?;
    assert_eq!(help.steps[0].agents, ["core/host"]);
    assert!(
        prompt(&help.steps[0]).contains("List the workflows of this project for Sam, in English,")
    );

    assert_eq!(
        warnings(&c),
        [
            (
                "bmad-unknown-target",
                "src/bbq/agents/pitmaster.agent.yaml".to_string(),
                31
            ),
            (
                "bmad-unknown-agent",
                "src/bbq/module-help.csv".to_string(),
                4
            ),
            ("bmad-unknown-agent", "src/bbq/module.yaml".to_string(), 1),
            (
                "bmad-team-unknown-agent",
                "src/bbq/teams/party-team.yaml".to_string(),
                4
            ),
            (
                "bmad-team-unknown-workflow",
                "src/bbq/teams/party-team.yaml".to_string(),
                5
            ),
            (
                "bmad-script-skipped",
                "src/bbq/workflows/plan-menu/scripts/count.py".to_string(),
                1
            ),
            (
                "bmad-yaml-repaired",
                "src/bbq/workflows/plan-menu/steps/step-03-review.md".to_string(),
                5
            ),
            (
                "bmad-variable",
                "src/bbq/workflows/plan-menu/steps/step-04-done.md".to_string(),
                8
            ),
            (
                "bmad-unreachable-step",
                "src/bbq/workflows/plan-menu/steps/step-05-leftovers.md".to_string(),
                1
            ),
            (
                "bmad-variable",
                "src/bbq/workflows/plan-menu/workflow.md".to_string(),
                14
            ),
            (
                "bmad-missing-file",
                "src/bbq/workflows/plan-menu/workflow.md".to_string(),
                16
            ),
        ]
    );
    Ok(())
}

#[test]
fn skills_tree() -> Result<(), String> {
    let (c, b) = compiled("bmad-skills")?;
    assert_eq!(b.layout, SourceLayout::BmadSkills);
    assert_eq!(
        layout_summary(&b).as_deref(),
        Some("BMAD skills: 2 modules, 3 skills, 5 steps")
    );
    assert_eq!(b.agents.keys().collect::<Vec<_>>(), ["bmad-agent-gardener"]);
    assert_eq!(
        b.flows.keys().collect::<Vec<_>>(),
        ["bmad-plan-beds", "bmad-water-check"]
    );

    // customize.toml merged with custom/<skill>.toml and custom/<skill>.user.toml.
    let g = &b.agents["bmad-agent-gardener"];
    assert_eq!(g.format_version, "bmad-skill");
    assert_eq!(
        g.description,
        "A gardener who plans beds and answers questions about soil"
    );
    let persona = g.persona.as_ref().ok_or("persona")?;
    assert_eq!(
        persona.style.as_deref(),
        Some("Brief, with a dry sense of humour.")
    );
    assert_eq!(
        persona.core_principles,
        [
            "Feed the soil, not the plant.",
            "Plant what you will eat.",
            "Rotate the crops every year."
        ]
    );
    let commands: Vec<(&str, &str)> = g
        .commands
        .iter()
        .map(|c| (c.name.as_str(), c.description.as_str()))
        .collect();
    assert_eq!(
        commands,
        [
            (
                "*pb",
                "Plan the beds for this season (runs flow `bmad-plan-beds`)"
            ),
            ("*sq", "Ask about soil"),
            ("*wc", "Check the watering (runs flow `bmad-water-check`)"),
            ("*oneshot", "route of flow `bmad-plan-beds`"),
        ]
    );
    let skill_md = &g.tasks[0].content;
    assert!(
        skill_md
            .starts_with("# Gardener\n\nYou are Flora, Head Gardener, working on The Allotment.")
    );
    assert!(skill_md.contains("## Principles\n\n- Feed the soil, not the plant.\n- Plant what you will eat.\n- Rotate the crops every year."));
    assert!(skill_md.contains("## Things you never do\n\n_None._"));
    assert_eq!(
        g.metadata["resources"],
        serde_json::json!({"bmad-agent-gardener/references/compost.md": "# Compost\n\nGreens and browns, half and half.\n"})
    );
    let names: Vec<&str> = g.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["SKILL.md", "activation_steps"]);
    assert_eq!(
        g.tasks[1].content,
        "- Read the persistent facts.\n- Greet the user and show the menu."
    );
    assert!(g.data.iter().any(|d| d.name == "persistent_facts"
        && d.content.contains("- file:notes/garden-*.md")));

    // The step-file skill: chain, a prose route, resources, shim alias.
    let beds = flow(&b, "bmad-plan-beds")?;
    let ids: Vec<&str> = beds.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "step-01-survey",
            "step-02-layout",
            "step-03-planting",
            "step-04-oneshot"
        ]
    );
    assert_eq!(routes(&beds.steps[0]), [("default", "step-02-layout")]);
    assert_eq!(
        routes(&beds.steps[1]),
        [
            ("*oneshot", "step-04-oneshot"),
            ("default", "step-03-planting")
        ]
    );
    assert_eq!(routes(&beds.steps[2]), [("default", "end")]);
    assert_eq!(routes(&beds.steps[3]), [("default", "end")]);
    assert_eq!(meta_str(&beds.metadata, "main_document"), "bed-plan");
    assert_eq!(beds.steps[2].metadata["waits"], serde_json::json!(["halt"]));
    assert_eq!(
        beds.steps[1].metadata["front_matter"]["spec_file"],
        serde_json::json!("")
    );
    assert!(
        prompt(&beds.steps[0])
            .contains("Output goes to `garden-output/bed-plan.md`, beds to `garden-output/beds`.")
    );
    assert_eq!(
        beds.metadata["aliases"],
        serde_json::json!({"bmad-old-beds": "plan from the old menu"})
    );
    assert_eq!(
        beds.metadata["resources"],
        serde_json::json!({"bmad-plan-beds/references/soil.md": "# Soil types\n\nClay holds water; sand drains; loam is the gardener's friend.\n"})
    );
    assert_eq!(meta_str(&beds.metadata, "module"), "gdn");

    // The single-file skill: `{workflow.<key>}` and `on_complete`.
    let water = flow(&b, "bmad-water-check")?;
    let p = prompt(&water.steps[0]);
    assert!(p.contains("Check the beds every morning. Consider:\n\n- Dry top soil\n- Drooping leaves\n\nWrite the result for The Allotment.\n\nHeadless mode:"));
    assert!(p.ends_with("## On completion\n\nTell the user which beds to water first."));
    assert_eq!(water.steps[0].agents, ["bmad-agent-gardener"]);
    assert_eq!(water.metadata["headless_contract"], serde_json::json!(true));
    assert!(!beds.metadata.contains_key("headless_contract"));

    assert_eq!(
        warnings(&c),
        [
            // `[[bmad-snapshot:step-01-survey.md]]` means the skill root; the file is in steps/.
            (
                "bmad-step-path",
                "plan/bmad-plan-beds/SKILL.md".to_string(),
                9
            ),
            (
                "bmad-script-skipped",
                "plan/bmad-plan-beds/scripts/measure.py".to_string(),
                1
            ),
            ("bmad-skipped-file", "v6-shims/README.md".to_string(), 1),
            (
                "bmad-shim",
                "v6-shims/bmad-old-beds/SKILL.md".to_string(),
                4
            ),
        ]
    );
    Ok(())
}

#[test]
fn bundles_are_deterministic() -> Result<(), String> {
    for name in ["bmad-v6", "bmad-skills"] {
        let (_, a) = compiled(name)?;
        let (_, b) = compiled(name)?;
        let a = serde_json::to_string(&a).map_err(|e| e.to_string())?;
        let b = serde_json::to_string(&b).map_err(|e| e.to_string())?;
        assert_eq!(a, b);
    }
    Ok(())
}

/// Writes `files` (path, text) under a fresh temporary directory.
fn tree(files: &[(&str, &str)]) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for (rel, text) in files {
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, text).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

#[test]
fn installed_project() -> Result<(), String> {
    let dir = tree(&[
        (
            "_bmad/bbq/config.yaml",
            "user_name: Pat\noutput_folder: '{project-root}/out'\n",
        ),
        (
            "_bmad/config.toml",
            "[core]\ncommunication_language = 'French'\n[modules.bbq]\nuser_name = 'Toml'\n",
        ),
        ("_bmad/bbq/agents/pm.md", "# compiled agent\n"),
        ("_bmad/_config/manifest.csv", "name\nx\n"),
        (
            "_bmad/bbq/workflows/plan/workflow.md",
            "---\nname: plan\n---\nFor {user_name} in {communication_language}: start at steps/step-01-a.md\n",
        ),
        (
            "_bmad/bbq/workflows/plan/steps/step-01-a.md",
            "---\nnextStepFile: ./step-02-b.md\n---\nA into {output_folder}/plan.md\n",
        ),
        (
            "_bmad/bbq/workflows/plan/steps/step-02-b.md",
            "B, or back to ./step-01-a.md\n",
        ),
        (
            ".claude/skills/bmad-hello/SKILL.md",
            "---\nname: bmad-hello\ndescription: Say hello\n---\nHello {user_name}.\n",
        ),
        (
            ".cursor/skills/bmad-hello/SKILL.md",
            "---\nname: bmad-hello\ndescription: Say hi\n---\nHi.\n",
        ),
        (
            ".agents/skills/bmad-agent-x/SKILL.md",
            "---\nname: bmad-agent-x\ndescription: X\n---\nI am {agent.name}.\n",
        ),
        (
            ".agents/skills/bmad-agent-x/customize.toml",
            "[agent]\nname = 'Base'\n[[agent.menu]]\ncode = 'HI'\ndescription = '[HI] Hello'\nskill = 'bmad-hello'\n[[agent.menu]]\ncode = 'PL'\ndescription = '[PL] Plan'\nskill = 'bmad-bbq-plan'\n",
        ),
        (
            "_bmad/custom/bmad-agent-x.toml",
            "[agent]\nname = 'Custom'\n",
        ),
        ("src/main.rs", "fn main() {}\n"),
    ])?;
    let (c, b) = compiled_at(dir.path())?;
    assert_eq!(b.layout, SourceLayout::BmadInstall);
    assert_eq!(b.agents.keys().collect::<Vec<_>>(), ["bmad-agent-x"]);
    assert_eq!(
        b.flows.keys().collect::<Vec<_>>(),
        ["bbq/plan", "bmad-hello"]
    );
    let x = &b.agents["bmad-agent-x"];
    assert!(x.tasks[0].content.contains("I am Custom."));
    let commands: Vec<&str> = x.commands.iter().map(|c| c.name.as_str()).collect();
    // `bmad-bbq-plan` is the module-help form of `bbq/plan`; `*a` is plan's loop back.
    assert_eq!(commands, ["*hi", "*pl", "*a"]);
    let plan = flow(&b, "bbq/plan")?;
    assert_eq!(
        routes(&plan.steps[1]),
        [("*a", "step-01-a"), ("default", "end")]
    );
    let p = prompt(&plan.steps[0]);
    assert!(p.contains("For Toml in French"), "{p}");
    assert!(p.contains("A into out/plan.md"), "{p}");
    assert!(prompt(&flow(&b, "bmad-hello")?.steps[0]).contains("Hello {user_name}."));
    assert_eq!(
        warnings(&c),
        [
            (
                "bmad-skill-copy",
                ".cursor/skills/bmad-hello/SKILL.md".to_string(),
                1
            ),
            ("bmad-skipped-file", "_bmad/bbq/agents/pm.md".to_string(), 1),
        ]
    );
    Ok(())
}

#[test]
fn the_only_errors_are_duplicates() -> Result<(), String> {
    let dir = tree(&[
        ("m/module.yaml", "code: m\n"),
        (
            "m/agents/a/pm.agent.yaml",
            "agent:\n  metadata: {title: A}\n",
        ),
        (
            "m/agents/b/pm.agent.yaml",
            "agent:\n  metadata: {title: B}\n",
        ),
        ("x/SKILL.md", "---\nname: same\n---\nx\n"),
        ("y/SKILL.md", "---\nname: same\n---\ny\n"),
        ("z/SKILL.md", "---\nname: [broken\n---\nz\n"),
        ("z/customize.toml", "[agent\n"),
    ])?;
    let c = compile(dir.path());
    assert!(c.bundle.is_none());
    let errors: Vec<(&str, String)> = c
        .diagnostics
        .iter()
        .filter(|d| d.severity == bmad2pf_compiler::diag::Severity::Error)
        .map(|d| (d.code, d.message.clone()))
        .collect();
    assert_eq!(
        errors,
        [
            (
                "duplicate-agent-id",
                "agent id `m/pm` twice in module `m`: in m/agents/a/pm.agent.yaml and in m/agents/b/pm.agent.yaml".to_string()
            ),
            ("duplicate-skill", "skill name `same` twice: in x/SKILL.md and in y/SKILL.md".to_string()),
        ]
    );
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code).collect();
    assert!(
        codes.contains(&"bmad-yaml-repaired") && codes.contains(&"bmad-toml"),
        "{codes:?}"
    );
    Ok(())
}

#[test]
fn one_module_folder_is_a_tree_too() -> Result<(), String> {
    let c = compile(&example("bmad-v6").join("src/bbq"));
    let b = c.bundle.ok_or("no bundle")?;
    assert_eq!(b.layout, SourceLayout::BmadV6);
    assert_eq!(
        b.flows.keys().collect::<Vec<_>>(),
        ["bbq/plan-menu", "bbq/shopping-list"]
    );
    Ok(())
}

#[test]
fn names_that_are_no_ids_are_repaired_with_a_warning() -> Result<(), String> {
    // A module code, an agent file name and a skill name that a run could
    // never be started with (`Spec Writer`, `Bmad Taste!`).
    let dir = tree(&[
        ("src/acme/module.yaml", "code: \"Ac me\"\nname: Acme\n"),
        (
            "src/acme/agents/Spec Writer.agent.yaml",
            "agent:\n  metadata:\n    name: Wren\n    title: Writer\n  persona:\n    role: Writes\n  menu: []\n",
        ),
        (
            "src/acme/skills/bmad-taste/SKILL.md",
            "---\nname: \"Bmad Taste!\"\ndescription: Taste it\n---\nTaste.\n",
        ),
    ])?;
    let c = compile(dir.path());
    let repaired: Vec<(&str, String, u32)> = warnings(&c)
        .into_iter()
        .filter(|(code, _, _)| *code == "bmad-invalid-id")
        .collect();
    assert_eq!(
        repaired,
        [
            (
                "bmad-invalid-id",
                "src/acme/agents/Spec Writer.agent.yaml".into(),
                1
            ),
            ("bmad-invalid-id", "src/acme/module.yaml".into(), 1),
            (
                "bmad-invalid-id",
                "src/acme/skills/bmad-taste/SKILL.md".into(),
                2
            ),
        ]
    );
    let b = c.bundle.ok_or("no bundle")?;
    assert!(
        b.agents.contains_key("Ac-me/Spec-Writer"),
        "{:?}",
        b.agents.keys()
    );
    assert!(b.flows.contains_key("Bmad-Taste"), "{:?}", b.flows.keys());
    Ok(())
}

#[test]
fn a_module_descriptor_folder_is_one_warning() -> Result<(), String> {
    // BMAD 6.13: `bmod-<code>/` beside the skills, for BMAD's installer.
    let dir = tree(&[
        (
            "bmad-taste/SKILL.md",
            "---\nname: bmad-taste\ndescription: Taste it\n---\nTaste.\n",
        ),
        ("bmad-taste/module-manifest.toml", "module = \"kit\"\n"),
        (
            "bmod-kit/bmod.toml",
            "[bmod]\ncode = \"kit\"\nskills = [\"bmad-taste\"]\n",
        ),
        ("bmod-kit/help/help.md", "# Help\n"),
        ("bmod-kit/migration-1.toml", "x = 1\n"),
    ])?;
    let c = compile(dir.path());
    assert_eq!(
        warnings(&c),
        [("bmad-skipped-file", "bmod-kit/bmod.toml".to_string(), 1)]
    );
    let message = c.diagnostics.iter().next().map(|d| d.message.clone());
    assert!(message.is_some_and(|m| m.contains("its 3 file(s)")));
    Ok(())
}

#[test]
fn a_catalogue_row_names_a_skill_by_its_name() -> Result<(), String> {
    // As in BMAD 6.1: the command (`bmad-bbq-buy`) is not the skill's name.
    let dir = tree(&[
        ("src/bbq/module.yaml", "code: bbq\nname: Barbecue\n"),
        (
            "src/bbq/agents/grocer.agent.yaml",
            "agent:\n  metadata:\n    name: Gus\n    title: Grocer\n  persona:\n    role: Buys\n  menu: []\n",
        ),
        (
            "src/bbq/module-help.csv",
            "module,phase,name,code,sequence,workflow-file,command,required,agent,options,description,output-location,outputs,\nbbq,anytime,Buy,BY,,skill:bmad-buy,bmad-bbq-buy,false,grocer,,Buy the food,,list,\n",
        ),
        (
            "src/bbq/skills/bmad-buy/SKILL.md",
            "---\nname: bmad-buy\ndescription: Buy the food\n---\nWrite the shopping list.\n",
        ),
    ])?;
    let c = compile(dir.path());
    assert_eq!(warnings(&c), []);
    let b = c.bundle.ok_or("no bundle")?;
    assert_eq!(
        meta_str(&flow(&b, "bmad-buy")?.metadata, "owner"),
        "bbq/grocer"
    );
    Ok(())
}

#[test]
fn a_tree_of_the_first_6_0_alphas_is_read() -> Result<(), String> {
    // The first 6.0 alphas: modules under src/modules with an installer's
    // config for `module.yaml`, paths into the install folder `bmad/`.
    let dir = tree(&[
        (
            "src/modules/bbq/_module-installer/install-config.yaml",
            "code: bbq\nguests:\n  prompt: How many?\n  default: '8'\n  result: '{value}'\n",
        ),
        (
            "src/modules/bbq/agents/pm.agent.yaml",
            "agent:\n  metadata: {name: Pat, title: PM}\n  menu:\n    - trigger: validate-menu\n      validate-workflow: '{project-root}/bmad/bbq/workflows/menu/workflow.yaml'\n      description: Validate the menu against its checklist\n    - trigger: tally\n      exec: '{project-root}/bmad/bbq/tasks/tally.xml'\n      description: Tally the votes\n",
        ),
        // A task beside the one the menu names, which is missing.
        (
            "src/modules/bbq/tasks/shuffle.xml",
            "<task>Shuffle.</task>\n",
        ),
        // A task named like a workflow: the workflow is the flow.
        (
            "src/modules/bbq/tasks/menu.xml",
            "<task>An older menu.</task>\n",
        ),
        (
            "src/modules/bbq/agents/chef.agent.yaml",
            "agent:\n  metadata: {name: Cy, title: Chef}\n  menu:\n    - trigger: menu\n      workflow: '{project-root}/bmad/bbq/workflows/menu/workflow.yaml'\n      data: '{project-root}/bmad/_cfg/agent-party.xml'\n      description: Plan the menu\n",
        ),
        (
            "src/modules/bbq/workflows/menu/workflow.yaml",
            "name: menu\ndescription: Plan a menu\nconfig_source: '{project-root}/bmad/bbq/config.yaml'\noutput_folder: '{config_source}:output_folder'\ninstructions: '{installed_path}/instructions.md'\nvalidation: '{installed_path}/checklist.md'\ndefault_output_file: '{menu_file}'\nvariables:\n  guest_list: '{output_folder}/guests-of-{guests}.md'\n  dishes: ''\n  menu_file: '{output_folder}/bbq-menu.md'\ninput_file_patterns:\n  menu:\n    description: the menu so far\n    whole: '{output_folder}/*menu*.md'\n    sharded: '{output_folder}/*menu*/*.md'\n  recipes:\n    sharded_index: '{output_folder}/recipes/index.md'\n    load_strategy: INDEX_GUIDED\n",
        ),
        (
            "src/modules/bbq/workflows/menu/instructions.md",
            "Plan {{dishes}} dishes for {guests}, listed in {guest_list}.\n",
        ),
        (
            "src/modules/bbq/workflows/menu/checklist.md",
            "- [ ] every dish has a side\n",
        ),
    ])?;
    let (c, b) = compiled_at(dir.path())?;
    let pm = &b.agents["bbq/pm"];
    let validate = pm
        .commands
        .iter()
        .find(|c| c.name == "*validate-menu")
        .ok_or("no *validate-menu")?;
    assert!(
        validate
            .description
            .contains("checks what flow `bbq/menu` wrote against a checklist"),
        "{}",
        validate.description
    );
    // The chef runs the workflow, so the chef owns it.
    let menu = flow(&b, "bbq/menu")?;
    assert_eq!(menu.steps[0].agents, ["bbq/chef"]);
    // `variables:` are variables too; a config key no layer sets
    // (`output_folder`, from core) and an empty value stay for the model.
    let p = prompt(&menu.steps[0]);
    assert!(
        p.contains("Plan {{dishes}} dishes for 8, listed in {output_folder}/guests-of-8.md."),
        "{p}"
    );
    // A key naming one of `variables:`, written before it.
    assert_eq!(menu.steps[0].creates, ["bbq-menu"]);
    // A sharded document is read by its folder's name.
    assert_eq!(
        menu.steps[0].metadata["reads_matching"],
        serde_json::json!(["*menu*", "recipes"])
    );
    // A missing task is named as missing, not taken for another task.
    let tally = pm.commands.iter().find(|c| c.name == "*tally");
    assert_eq!(
        tally.map(|c| c.description.as_str()),
        Some("Tally the votes")
    );
    let warned: Vec<(&str, u32)> = c.diagnostics.iter().map(|d| (d.code, d.line)).collect();
    assert_eq!(
        warned,
        [("bmad-unknown-target", 7), ("bmad-duplicate-flow", 1)],
        "{:?}",
        c.diagnostics
    );
    Ok(())
}

#[test]
fn an_installed_project_without_skills_has_its_compiled_agents() -> Result<(), String> {
    // A 6.0 install: agents only as the installer compiled them.
    let pitmaster = "---\nname: \"pitmaster\"\ndescription: \"Pitmaster\"\n---\n\nEmbody this agent.\n\n```xml\n<agent id=\"pitmaster.agent.yaml\" name=\"Sam\" title=\"Pitmaster\" icon=\"P\">\n<activation critical=\"MANDATORY\">\n  <step n=\"1\">Load {project-root}/_bmad/bbq/config.yaml and STOP and WAIT for input</step>\n</activation>\n<persona>\n  <role>Keeps the fire at 110 &amp; 120 degrees.</role>\n  <principles>- Low and slow</principles>\n</persona>\n<menu>\n  <item cmd=\"MH or fuzzy match on menu or help\">[MH] Redisplay Menu Help</item>\n  <item cmd=\"PM or fuzzy match on plan-menu\" exec=\"{project-root}/_bmad/bbq/workflows/plan-menu/workflow.md\">[PM] Plan the menu</item>\n  <item cmd=\"DA or fuzzy match on exit\">[DA] Dismiss Agent</item>\n</menu>\n</agent>\n```\n";
    let dir = tree(&[
        ("_bmad/bbq/config.yaml", "user_name: Pat\n"),
        ("_bmad/bbq/agents/pitmaster.md", pitmaster),
        (
            "_bmad/bbq/agents/pitmaster-sidecar/memories.md",
            "Brisket rests an hour.\n",
        ),
        // Where an install keeps the agent's memories.
        ("_bmad/_memory/pitmaster-sidecar/log.md", "Oak ran out.\n"),
        (
            "_bmad/bbq/workflows/plan-menu/workflow.md",
            "---\nname: plan-menu\ndescription: Plan a menu\n---\nPlan a menu for {user_name}.\n",
        ),
    ])?;
    let (c, b) = compiled_at(dir.path())?;
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let sam = b.agents.get("bbq/pitmaster").ok_or("no bbq/pitmaster")?;
    let role = sam.persona.as_ref().and_then(|p| p.role.as_deref());
    assert_eq!(role, Some("Keeps the fire at 110 & 120 degrees."));
    let commands: Vec<&str> = sam.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(commands, ["*pm", "*plan-menu"]);
    // The install's activation steps are the chat client's, not the prompt's.
    let mut resources = sam.tasks.iter().chain(&sam.data);
    assert!(resources.all(|r| !r.content.contains("STOP and WAIT")));
    let plan = flow(&b, "bbq/plan-menu")?;
    assert_eq!(plan.steps[0].agents, ["bbq/pitmaster"]);
    assert_eq!(
        sam.metadata["resources"],
        serde_json::json!({
            "bbq/pitmaster/memories.md": "Brisket rests an hour.\n",
            "bbq/pitmaster/_memory/pitmaster-sidecar/log.md": "Oak ran out.\n",
        })
    );
    Ok(())
}

#[test]
fn templates_a_step_names_are_found_or_reported() -> Result<(), String> {
    let dir = tree(&[
        ("bbq/module.yaml", "code: bbq\n"),
        (
            "bbq/workflows/plan/workflow.md",
            "---\nname: plan\n---\nStart at ./steps/step-01-a.md\n",
        ),
        // `./menu-template.md` is beside workflow.md, not beside the step.
        (
            "bbq/workflows/plan/steps/step-01-a.md",
            "---\ntemplateFile: './menu-template.md'\nchecklistFile: '../gone-checklist.md'\nreportTemplate: '{output_folder}/report-template.md'\n---\nFill {templateFile}.\n",
        ),
        ("bbq/workflows/plan/menu-template.md", "# Menu\n"),
    ])?;
    let (c, b) = compiled_at(dir.path())?;
    let p = prompt(&flow(&b, "bbq/plan")?.steps[0]);
    assert!(
        p.contains("Fill bbq/workflows/plan/menu-template.md."),
        "{p}"
    );
    assert!(p.contains("# Menu"), "{p}");
    // The missing checklist is reported; an output path is not.
    let warned: Vec<(&str, u32)> = c.diagnostics.iter().map(|d| (d.code, d.line)).collect();
    assert_eq!(warned, [("bmad-missing-file", 3)], "{:?}", c.diagnostics);
    Ok(())
}

#[test]
fn a_compiled_copy_beside_its_agent_yaml_is_not_read_twice() -> Result<(), String> {
    let dir = tree(&[
        ("bbq/module.yaml", "code: bbq\n"),
        (
            "bbq/agents/chef.agent.yaml",
            "agent:\n  metadata: {name: Cy, title: Chef}\n",
        ),
        (
            "bbq/agents/chef.md",
            "```xml\n<agent name=\"Old\" title=\"Chef\"><persona><role>R</role></persona></agent>\n```\n",
        ),
    ])?;
    let (c, b) = compiled_at(dir.path())?;
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    assert_eq!(b.agents.keys().collect::<Vec<_>>(), ["bbq/chef"]);
    assert!(b.agents["bbq/chef"].persona.is_none(), "read from the YAML");
    Ok(())
}

/// A project as a 6.0 alpha installed it: `bmad/` with `_cfg/` for its
/// state, agents compiled to `.md` with `*`-triggers.
const ALPHA_INSTALL: [(&str, &str); 5] = [
    (
        "bmad/_cfg/manifest.yaml",
        "installation:\n  version: 6.0.0-alpha.9\nmodules:\n  - bbq\n",
    ),
    (
        "bmad/bbq/config.yaml",
        "user_name: Pat\noutput_folder: '{project-root}/docs'\n",
    ),
    (
        "bmad/bbq/agents/pitmaster.md",
        "---\nname: pitmaster\n---\n\n```xml\n<agent id=\"bmad/bbq/agents/pitmaster.md\" name=\"Sam\" title=\"Pitmaster\">\n<activation critical=\"MANDATORY\">\n  <step n=\"1\">Load persona from this current agent file</step>\n  <step n=\"2\">Load {project-root}/{bmad_folder}/bbq/config.yaml NOW</step>\n  <step n=\"3\">Remember: user's name is {user_name}</step>\n  <step n=\"4\">Taste before serving.</step>\n  <step n=\"5\">Show greeting using {user_name}</step>\n</activation>\n<persona><role>Keeps the fire low.</role></persona>\n<menu>\n  <item cmd=\"*help\">Show numbered menu</item>\n  <item cmd=\"*plan-menu\" workflow=\"{project-root}/{bmad_folder}/bbq/workflows/plan-menu/workflow.yaml\">Plan the menu</item>\n  <item cmd=\"*exit\">Exit with confirmation</item>\n</menu>\n</agent>\n```\n",
    ),
    (
        "bmad/bbq/workflows/plan-menu/workflow.yaml",
        "name: plan-menu\ndescription: Plan a menu\nconfig_source: '{project-root}/bmad/bbq/config.yaml'\nuser_name: '{config_source}:user_name'\ninstalled_path: '{project-root}/bmad/bbq/workflows/plan-menu'\ninstructions: '{installed_path}/instructions.md'\n",
    ),
    (
        "bmad/bbq/workflows/plan-menu/instructions.md",
        "Plan a menu for {user_name}.\n",
    ),
];

#[test]
fn a_project_installed_by_a_6_0_alpha_is_read() -> Result<(), String> {
    let mut files = ALPHA_INSTALL.to_vec();
    files.extend([
        // Install state and the project's own files are not sources.
        (
            "bmad/_cfg/agents/bbq-pitmaster.customize.yaml",
            "persona:\n  role: ''\n",
        ),
        ("bmad/_cfg/agent-manifest.csv", "name,path\n"),
        ("bmad/docs/claude-code-instructions.md", "# Using BMAD\n"),
        (
            "bmad/bbq/agents/host.agent.xml",
            "<agent id=\"host\" localskip=\"true\"></agent>\n",
        ),
        ("src/main.rs", "fn main() {}\n"),
        // An agent of no module, with its files in its own folder.
        (
            "bmad/agents/oracle/oracle.md",
            "```xml\n<agent id=\"bmad/agents/oracle/oracle.md\" name=\"Ora\" title=\"Oracle\">\n<activation critical=\"MANDATORY\">\n  <step n=\"1\">Remember: user's name is {user_name}</step>\n  <step n=\"2\">Load COMPLETE file {agent-folder}/instructions.md and follow it</step>\n  <step n=\"3\">Show greeting</step>\n</activation>\n<persona><role>Reads the smoke.</role></persona>\n<menu><item cmd=\"*omen\" action=\"Read the omen.\">Read an omen</item></menu>\n</agent>\n```\n",
        ),
        ("bmad/agents/oracle/instructions.md", "Speak in riddles.\n"),
        (
            "bmad/agents/oracle/oracle-sidecar/memories.md",
            "Last omen: rain.\n",
        ),
    ]);
    let dir = tree(&files)?;
    let (c, b) = compiled_at(dir.path())?;
    let warned: Vec<(&str, &str)> = c
        .diagnostics
        .iter()
        .map(|d| (d.file.as_str(), d.message.as_str()))
        .collect();
    assert_eq!(
        warned,
        [(
            "bmad/bbq/agents/host.agent.xml",
            "an agent written for web bundles (`.agent.xml`): not read"
        )]
    );
    assert_eq!(b.layout, SourceLayout::BmadInstall);
    let sam = b.agents.get("bbq/pitmaster").ok_or("no bbq/pitmaster")?;
    let commands: Vec<&str> = sam.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(commands, ["*plan-menu"]);
    assert!(
        sam.tasks
            .iter()
            .any(|t| t.content.contains("Taste before serving.")),
        "{:?}",
        sam.tasks
    );
    let plan = flow(&b, "bbq/plan-menu")?;
    assert_eq!(plan.steps[0].agents, ["bbq/pitmaster"]);
    assert!(prompt(&plan.steps[0]).contains("Plan a menu for Pat."));
    let ora = b.agents.get("agents/oracle").ok_or("no agents/oracle")?;
    assert!(
        ora.tasks.iter().any(|t| t
            .content
            .contains("Load COMPLETE file bmad/agents/oracle/instructions.md")),
        "{:?}",
        ora.tasks
    );
    assert_eq!(
        ora.metadata["resources"],
        serde_json::json!({
            "agents/oracle/agents/oracle/instructions.md": "Speak in riddles.\n",
            "agents/oracle/memories.md": "Last omen: rain.\n",
        })
    );
    Ok(())
}

#[test]
fn a_checkout_holding_its_sources_and_an_alpha_install_reads_the_sources() -> Result<(), String> {
    // BMAD-METHOD's own checkouts of that time held both.
    let mut files = ALPHA_INSTALL.to_vec();
    files.extend([
        ("src/modules/grill/module.yaml", "code: grill\n"),
        (
            "src/modules/grill/agents/cook.agent.yaml",
            "agent:\n  metadata: {name: Cy, title: Cook}\n",
        ),
    ]);
    let dir = tree(&files)?;
    let (_, b) = compiled_at(dir.path())?;
    assert_eq!(b.layout, SourceLayout::BmadV6);
    assert_eq!(b.agents.keys().collect::<Vec<_>>(), ["grill/cook"]);
    Ok(())
}

#[test]
fn files_an_agent_names_are_its_resources() -> Result<(), String> {
    let dir = tree(&[
        ("bbq/module.yaml", "code: bbq\n"),
        (
            "bbq/agents/chef.agent.yaml",
            "agent:\n  metadata: {name: Cy, title: Chef}\n  critical_actions:\n    - 'Load {project-root}/_bmad/bbq/config.yaml'\n    - 'Consult {project-root}/_bmad/bbq/lore/index.csv, then load the fragments you need from {project-root}/_bmad/bbq/lore/fragments/.'\n    - 'Write notes to {project-root}/docs/notes.md'\n    - 'Season from `_bmad/bbq/data/rubs.csv`'\n    - 'Recall {agent_sidecar_folder}/memories.md'\n  menu:\n    - trigger: PM\n      exec: '{project-root}/_bmad/bbq/workflows/plan/workflow.md'\n      data: '{project-root}/_bmad/bbq/data/pantry.csv'\n      description: '[PM] Plan the menu'\n    - trigger: SL\n      exec: '{project-root}/_bmad/bbq/workflows/plan/workflow.md'\n      data: '{project-root}/_bmad/bbq/workflows/plan/data/cuts.csv'\n      description: '[SL] Shop'\n    - trigger: RT\n      exec: '{project-root}/_bmad/bbq/workflows/plan/workflow.md'\n      data: '{project-root}/_bmad/_config/agent-manifest.csv'\n      description: '[RT] Retro'\n    - trigger: GX\n      exec: '{project-root}/_bmad/bbq/workflows/plan/workflow.md'\n      data: '{project-root}/_bmad/bbq/data/gone.csv'\n      description: '[GX] Gone'\n",
        ),
        ("bbq/data/pantry.csv", "item,count\nsalt,3\n"),
        ("bbq/data/rubs.csv", "rub\ncoffee\n"),
        ("bbq/agents/chef-sidecar/memories.md", "Salt early.\n"),
        ("bbq/lore/index.csv", "id,file\nsmoke,fragments/smoke.md\n"),
        ("bbq/lore/fragments/smoke.md", "Hickory for pork.\n"),
        ("bbq/lore/fragments/tally.py", "print(1)\n"),
        (
            "bbq/workflows/plan/workflow.md",
            "---\nname: plan\n---\nPlan a menu.\n",
        ),
        (
            "bbq/workflows/plan/data/cuts.csv",
            "cut,minutes\nribs,300\n",
        ),
        // The project's own files are not the agent's, named or not.
        ("docs/notes.md", "Old notes.\n"),
    ])?;
    let (c, b) = compiled_at(dir.path())?;
    // A menu input outside every workflow's folder, and the files and
    // folders the critical actions name: the agent's own. A file in a
    // workflow's folder: the flow's (once). An install's state, which a
    // source tree has not, the project's files and scripts: nothing.
    assert_eq!(
        b.agents["bbq/chef"].metadata["resources"],
        serde_json::json!({
            "bbq/chef/data/pantry.csv": "item,count\nsalt,3\n",
            "bbq/chef/data/rubs.csv": "rub\ncoffee\n",
            "bbq/chef/lore/fragments/smoke.md": "Hickory for pork.\n",
            "bbq/chef/lore/index.csv": "id,file\nsmoke,fragments/smoke.md\n",
            "bbq/chef/memories.md": "Salt early.\n",
        })
    );
    // The sidecar folder as the agent's text names it.
    let recall = b.agents["bbq/chef"].tasks.iter().any(|t| {
        t.content
            .contains("Recall bbq/agents/chef-sidecar/memories.md")
    });
    assert!(recall, "{:?}", b.agents["bbq/chef"].tasks);
    assert_eq!(
        flow(&b, "bbq/plan")?.metadata["resources"],
        serde_json::json!({"bbq/plan/data/cuts.csv": "cut,minutes\nribs,300\n"})
    );
    let warned: Vec<(&str, &str, u32)> = c
        .diagnostics
        .iter()
        .map(|d| (d.code, d.file.as_str(), d.line))
        .collect();
    assert_eq!(
        warned,
        [
            ("bmad-missing-file", "bbq/agents/chef.agent.yaml", 22),
            ("bmad-script-skipped", "bbq/lore/fragments/tally.py", 1),
            ("bmad-skipped-file", "docs/notes.md", 1),
        ],
        "{:?}",
        c.diagnostics
    );
    Ok(())
}

#[test]
fn a_project_root_changes_what_paths_say_not_which_files_they_name() -> Result<(), String> {
    let dir = tree(&[
        ("runtime.yaml", "bmad:\n  project_root: /srv/grill\n"),
        (
            "bbq/module.yaml",
            "code: bbq\nproject_name:\n  prompt: Name?\n  default: '{directory_name}'\n  result: '{value}'\n",
        ),
        (
            "bbq/agents/chef.agent.yaml",
            "agent:\n  metadata: {name: Cy, title: Chef}\n  menu:\n    - trigger: SH\n      workflow: '{project-root}/_bmad/bbq/workflows/shop/workflow.yaml'\n      description: '[SH] Shop'\n",
        ),
        (
            "bbq/workflows/shop/workflow.yaml",
            "name: shop\ninstalled_path: '{project-root}/_bmad/bbq/workflows/shop'\ninstructions: '{installed_path}/instructions.md'\n",
        ),
        (
            "bbq/workflows/shop/instructions.md",
            "Shop for {project_name}; save to {project-root}/docs/list.md.\n",
        ),
    ])?;
    let (c, b) = compiled_at(dir.path())?;
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let shop = flow(&b, "bbq/shop")?;
    assert_eq!(shop.steps[0].agents, ["bbq/chef"]);
    let p = prompt(&shop.steps[0]);
    assert!(
        p.contains("Shop for grill; save to /srv/grill/docs/list.md."),
        "{p}"
    );
    Ok(())
}

/// BMAD 6.12 on: no `module.yaml`; each skill's `module-manifest.toml`
/// names its module, whose config layers then apply to it.
#[test]
fn a_skill_manifest_names_its_module() -> Result<(), String> {
    let dir = tree(&[
        (
            "_bmad/config.toml",
            "[core]\nuser_name = 'Pat'\n[modules.grill]\nplanning_artifacts = '{project-root}/plans'\n",
        ),
        (
            ".claude/skills/bmad-plan/SKILL.md",
            "---\nname: bmad-plan\ndescription: Plan the cook\n---\nFollow ./step-01-plan.md\n",
        ),
        (
            ".claude/skills/bmad-plan/step-01-plan.md",
            "Plan for {user_name} into {planning_artifacts}/menu.md.\n",
        ),
        (
            ".claude/skills/bmad-plan/module-manifest.toml",
            "module = \"grill\"\nversion = \"1.0.0\"\n",
        ),
        (
            ".claude/skills/bmad-shop/SKILL.md",
            "---\nname: bmad-shop\ndescription: Shop\n---\nFollow ./step-01-shop.md\n",
        ),
        (
            ".claude/skills/bmad-shop/step-01-shop.md",
            "Shop for {user_name} into {planning_artifacts}/list.md.\n",
        ),
    ])?;
    let (_, b) = compiled_at(dir.path())?;
    let plan = prompt(&flow(&b, "bmad-plan")?.steps[0]);
    assert!(plan.contains("Plan for Pat into plans/menu.md."), "{plan}");
    // Without a manifest the skill is core's: the module's keys do not reach it.
    let shop = prompt(&flow(&b, "bmad-shop")?.steps[0]);
    assert!(
        shop.contains("Shop for Pat into {planning_artifacts}/list.md."),
        "{shop}"
    );
    Ok(())
}

/// A step-file skill's `{workflow.<key>}` come from its merged `[workflow]`
/// table, in the workflow and in its steps, as in a single-file skill.
#[test]
fn a_step_file_skill_fills_its_workflow_keys() -> Result<(), String> {
    let dir = tree(&[
        (
            "skills/bmad-grill/SKILL.md",
            "---\nname: bmad-grill\ndescription: Grill\n---\nHold {workflow.persistent_facts}. Start at ./steps/step-01-fire.md\n",
        ),
        (
            "skills/bmad-grill/steps/step-01-fire.md",
            "Light the fire, then write {workflow.log_path}.\n",
        ),
        (
            "skills/bmad-grill/customize.toml",
            "[workflow]\npersistent_facts = ['Charcoal only', 'No gas']\nlog_path = 'fire-log.md'\n",
        ),
    ])?;
    let (_, b) = compiled_at(dir.path())?;
    let grill = flow(&b, "bmad-grill")?;
    let p = prompt(&grill.steps[0]);
    assert!(p.contains("Hold - Charcoal only\n- No gas."), "{p}");
    assert!(p.contains("then write fire-log.md."), "{p}");
    Ok(())
}

/// BMAD's rendered skills (a SKILL.md that runs `render_skill.py`): the
/// workflow and steps are Jinja templates, rendered from the `[workflow]`
/// customization and the config as BMAD's renderer does; a template that
/// halts warns and is used as written.
#[test]
fn a_rendered_skill_is_read_as_bmad_renders_it() -> Result<(), String> {
    let skill_md = |name: &str| {
        format!(
            "---\nname: {name}\ndescription: Cook\n---\nRun `uv run \"{{project-root}}/_bmad/scripts/render_skill.py\" --skill \"{{skill-root}}\"` and follow the printed workflow.md.\n"
        )
    };
    let workflow = "{% if workflow.route not in (\"quick\", \"slow\") %}{{ halt(\"route must be quick or slow\") }}{% endif %}\
# Cook\n\nFacts:\n{{ workflow.facts }}\n\nWrite {{ initiative_folder }}/menu.md from {{ config.planning_artifacts }} and {{ config.unset_folder }}; \
{% raw %}{{project_name}}{% endraw %} and {skill-name} stay.\n\nRead fully and follow `{{ rendered(\"step-01-light.md\") }}`\n";
    let dir = tree(&[
        (
            "runtime.yaml",
            "bmad:\n  vars:\n    output_folder: out\n    planning_artifacts: plans\n",
        ),
        ("skills/bmad-cook/SKILL.md", &skill_md("bmad-cook")),
        ("skills/bmad-cook/workflow.md", workflow),
        (
            "skills/bmad-cook/step-01-light.md",
            "{% if workflow.route == \"quick\" %}Light it fast.{% else %}Light it slowly.{% endif %} Then follow {{ rendered(\"step-02-eat.md\") }}\n",
        ),
        ("skills/bmad-cook/step-02-eat.md", "Eat.\n"),
        (
            "skills/bmad-cook/references/card.md",
            "Menu card for {{project_name}}.\n",
        ),
        (
            "skills/bmad-cook/customize.toml",
            "[workflow]\nroute = 'quick'\nfacts = ['Charcoal only', 'No gas']\n",
        ),
        ("skills/bmad-wild/SKILL.md", &skill_md("bmad-wild")),
        ("skills/bmad-wild/workflow.md", workflow),
        ("skills/bmad-wild/step-01-light.md", "Light.\n"),
        (
            "skills/bmad-wild/customize.toml",
            "[workflow]\nroute = 'wild'\nfacts = []\n",
        ),
    ])?;
    let (c, b) = compiled_at(dir.path())?;
    let cook = flow(&b, "bmad-cook")?;
    let ids: Vec<&str> = cook.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["step-01-light", "step-02-eat"]);
    let p = prompt(&cook.steps[0]);
    assert!(
        p.contains("Light it fast. Then follow step-02-eat.md"),
        "{p}"
    );
    assert!(p.contains("Facts:\n- Charcoal only\n- No gas"), "{p}");
    assert!(
        p.contains(
            "Write out/menu.md from plans and {unset_folder}; {{project_name}} and bmad-cook stay."
        ),
        "{p}"
    );
    assert!(!p.contains("{%") && !p.contains("halt("), "{p}");
    // The template that halts is used as written, with a warning; so is
    // one naming a value the renderer does not have (its placeholder kept).
    assert!(prompt(&flow(&b, "bmad-wild")?.steps[0]).contains("{{ halt("));
    for file in [
        "skills/bmad-wild/workflow.md",
        "skills/bmad-cook/references/card.md",
    ] {
        assert!(
            warnings(&c).contains(&("bmad-render", file.to_string(), 1)),
            "{file}: {:?}",
            warnings(&c)
        );
    }
    Ok(())
}
